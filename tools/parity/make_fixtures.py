#!/usr/bin/env python3
"""Golden fixtures for r1.cpp's parity tests, written by transformers (the oracle).

For each architecture (qwen2; llama with llama3 rope scaling and untied embeddings; qwen3 with an
explicit head_dim), build a small random model with transformers, save it as an HF directory, and
record in float64: per-token log-probs of fixed token sequences, and the gradient of
loss = -mean(log-probs over all predicted tokens) with respect to every parameter.

  python3 tools/parity/make_fixtures.py OUT_DIR
writes OUT_DIR/<arch>/{config.json, model.safetensors, inputs.jsonl, expected.jsonl, grads.safetensors}.
Run where torch + transformers are installed (the GPU machine); CPU is enough.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              rms_norm_eps=1e-6, hidden_act="silu", attn_implementation="eager")
ARCHS = {
    "qwen2": dict(model_type="qwen2", rope_theta=1e6, tie_word_embeddings=True),
    # llama3 scaling with a short original context so positions below 128 cross every regime.
    "llama": dict(model_type="llama", rope_theta=500000.0, tie_word_embeddings=False, attention_bias=False,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                    high_freq_factor=4.0, original_max_position_embeddings=32)),
    "qwen3": dict(model_type="qwen3", rope_theta=1e6, tie_word_embeddings=True, head_dim=32,
                  attention_bias=False),
}
LENGTHS = [2, 5, 17, 64, 120]


def randomize(model, gen):
    """Weights far from the default init so that every parameter visibly matters."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            elif "embed_tokens" in name or name == "lm_head.weight":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) / p.shape[1] ** 0.5)


def main(out_root):
    print("torch", torch.__version__, "transformers", transformers.__version__)
    for arch, extra in ARCHS.items():
        kw = dict(COMMON)
        kw.update(extra)
        model_type = kw.pop("model_type")
        cfg = AutoConfig.for_model(model_type, **kw)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").to(torch.float64)
        gen = torch.Generator().manual_seed(1234 + len(arch))
        randomize(model, gen)
        rope_type = getattr(model.model.rotary_emb, "rope_type", "?")
        print(arch, "rope_type", rope_type, "params", sum(p.numel() for p in model.parameters()))
        if arch == "llama":
            assert rope_type == "llama3", rope_type

        out = os.path.join(out_root, arch)
        os.makedirs(out, exist_ok=True)
        model.to(torch.float32).save_pretrained(out, safe_serialization=True)
        # The oracle runs on exactly the saved (f32) weights, in float64.
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float64, attn_implementation="eager")
        model.eval()

        seqs = [torch.randint(0, COMMON["vocab_size"], (n,), generator=gen).tolist() for n in LENGTHS]
        total = sum(len(s) - 1 for s in seqs)
        model.zero_grad()
        loss = torch.zeros((), dtype=torch.float64)
        with open(os.path.join(out, "inputs.jsonl"), "w") as fi, open(os.path.join(out, "expected.jsonl"), "w") as fe:
            for s in seqs:
                ids = torch.tensor([s])
                logits = model(input_ids=ids).logits[0].to(torch.float64)
                logp = torch.log_softmax(logits, dim=-1)[:-1].gather(1, ids[0, 1:, None])[:, 0]
                loss = loss - logp.sum() / total
                fi.write(json.dumps({"ids": s}) + "\n")
                fe.write(json.dumps({"logprobs": [float(x) for x in logp.tolist()]}) + "\n")
        loss.backward()
        grads = {n: p.grad.detach().to(torch.float32).contiguous() for n, p in model.named_parameters()}
        save_file(grads, os.path.join(out, "grads.safetensors"), metadata={"loss": repr(float(loss))})
        print(arch, "loss", float(loss), "files", sorted(os.listdir(out)))


if __name__ == "__main__":
    main(sys.argv[1])
