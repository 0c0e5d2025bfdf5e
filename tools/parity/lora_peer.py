#!/usr/bin/env python3
"""LoRA fixtures from PEFT: adapters PEFT makes, and an adapter r1 made, checked by PEFT.

FIXTURE_DIR holds `base/` (a tiny random Qwen2 model r1 wrote: `r1 init`) and `r1_adapter/` (a
LoRA adapter r1 trained on it with `r1 sft ... train.lora.*`). This script, with torch,
transformers and PEFT (CPU is enough; float64 oracle on the saved float32 weights), writes:

  inputs.jsonl                      five token sequences (lengths 2-48, ids < vocab), fixed seed
  peft_<case>/adapter_config.json   a PEFT adapter over ../base with A and B both random
  peft_<case>/adapter_model.safetensors   (init_lora_weights=False), saved by PeftModel.save_pretrained
  peft_<case>/expected.jsonl        per sequence, float64 log-probs of tokens 1.. with the adapter on
  peft_<case>/grads.safetensors     float64 gradients of -mean(log-probs) for every adapter tensor,
                                    under the names PEFT saves them with (as float32)
  r1_adapter/expected.jsonl         log-probs of base + r1's adapter, loaded by
                                    PeftModel.from_pretrained (the adapter is not modified)

Cases: all_linear (r=4, alpha=8, every linear), rslora_qvd (r=8, alpha=16, rsLoRA scaling,
q_proj, v_proj and down_proj only). tests/test_lora_peer.cpp compares r1 with these to 1e-4.

  python3 tools/parity/lora_peer.py tests/fixtures/lora_peer
"""
import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

CASES = {
    "all_linear": dict(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=False),
    "rslora_qvd": dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], use_rslora=True),
}
LENGTHS = [2, 5, 17, 48, 30]


def make_inputs(vocab):
    g = torch.Generator().manual_seed(1234)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in LENGTHS]


def logprobs(model, ids):
    logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    return lp[:-1].gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def load_base(base_dir):
    return AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32, attn_implementation="eager")


def peft_case(out, name, kw, inputs, seed):
    base_dir = os.path.join(out, "base")
    torch.manual_seed(seed)
    cfg = LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, bias="none", init_lora_weights=False, **kw)
    model = get_peft_model(load_base(base_dir), cfg)
    case_dir = os.path.join(out, "peft_" + name)
    model.save_pretrained(case_dir)  # float32 adapter_model.safetensors + adapter_config.json
    cfg_path = os.path.join(case_dir, "adapter_config.json")
    with open(cfg_path) as f:
        adapter_cfg = json.load(f)
    adapter_cfg["base_model_name_or_path"] = "../base"  # relative, as a user's copy would be
    with open(cfg_path, "w") as f:
        json.dump(adapter_cfg, f, indent=2)

    model = model.double()
    model.eval()
    rows, total, count = [], 0, 0
    for ids in inputs:
        lp = logprobs(model, ids)
        rows.append({"logprobs": lp.tolist()})
        total = total + lp.sum()
        count += lp.numel()
    write_jsonl(os.path.join(case_dir, "expected.jsonl"), rows)
    (-(total / count)).backward()
    grads = {}
    for pname, p in model.named_parameters():
        if "lora_" in pname:
            grads[pname.replace(".default", "")] = p.grad.float().contiguous()
    save_file(grads, os.path.join(case_dir, "grads.safetensors"))
    print(f"{name}: {len(grads)} adapter tensors, {count} tokens")


def r1_adapter_case(out, inputs):
    case_dir = os.path.join(out, "r1_adapter")
    base = load_base(os.path.join(out, "base")).double()
    model = PeftModel.from_pretrained(base, case_dir, torch_dtype=torch.float64).double()
    model.eval()
    with torch.no_grad():
        rows = [{"logprobs": logprobs(model, ids).tolist()} for ids in inputs]
    write_jsonl(os.path.join(case_dir, "expected.jsonl"), rows)
    # Proof that the adapter took part: the base alone (adapters disabled; from_pretrained injected
    # them into `base` in place) gives other numbers.
    with torch.no_grad(), model.disable_adapter():
        base_lp = logprobs(model, inputs[3])
    gap = (torch.tensor(rows[3]["logprobs"]) - base_lp).abs().max().item()
    print(f"r1_adapter: PeftModel loaded it; max |adapted - base| on sequence 3 = {gap:.3e}")
    assert gap > 1e-3, "the r1 adapter changed nothing: is B still zero?"


def main(out):
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    with open(os.path.join(out, "base", "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    inputs = make_inputs(vocab)
    write_jsonl(os.path.join(out, "inputs.jsonl"), [{"ids": ids} for ids in inputs])
    for seed, (name, kw) in enumerate(CASES.items()):
        peft_case(out, name, kw, inputs, seed + 1)
    r1_adapter_case(out, inputs)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
