#!/usr/bin/env python3
"""r1.cpp's CUDA model (bf16 compute, fp32 master weights and gradients) against transformers.

  python3 tools/parity/gpu_parity.py --r1 build-gpu/r1 [--work DIR] [--json FILE] [--cases qwen2,qwen3,llama]

For each case, a small but real random model is built with transformers (real widths, vocabulary
and head layout, only a few layers), rounded to bf16 and saved as a bf16 HF checkpoint: the one
checkpoint every contender reads. On a few token sequences (lengths up to 1024) we compare, against
a float64 oracle (transformers, eager attention, fp64 on the GPU, same bf16-valued weights):
  - per-token log-probs: max and mean |delta| of r1 (`r1 logprobs --device cuda`), of transformers
    with bf16 parameters (SDPA) and of transformers with fp32 parameters under autocast(bf16);
  - gradients of loss = -mean(log-probs over all predicted tokens) for every parameter
    (`r1 logprobs --grads-out`): relative L2 error ||g - g64|| / ||g64|| per parameter and over all.
Pass rules (bf16 has 8 mantissa bits: one rounding is ~2e-3 relative, a few layers of them ~1e-2;
a real bug -- wrong index, missing term, wrong sign -- gives errors of order 1):
  log-probs: r1's max|d| <= max(2 x HF-bf16's, --lp-max-abs) and mean|d| <= max(1.5 x HF-bf16's, --lp-mean-abs)
  gradients: all-parameter rel L2 <= max(--grad-rel (1e-2), 1.25 x the better transformers run's); each parameter's <= max(--grad-rel-param,
    2 x the worse transformers run's). k_proj.bias is reported but not gated: its exact gradient is
    zero (a constant key shift leaves softmax unchanged), so its relative error is noise over ~0.
Exits 1 if any case fails, 2 if r1 itself fails. Prints the per-parameter table, then a summary.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM

CASES = {
    # Qwen2.5-0.5B, 4 of its 24 layers: q/k/v biases, GQA 14/2, head_dim 64, tied 151936 vocabulary.
    "qwen2": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                  num_hidden_layers=4, num_attention_heads=14, num_key_value_heads=2,
                  rope_theta=1e6, tie_word_embeddings=True, use_sliding_window=False),
    # Qwen3-0.6B, 2 of 28 layers: q/k RMSNorm, head_dim 128 != hidden/heads, no biases.
    "qwen3": dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                  num_hidden_layers=2, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                  rope_theta=1e6, tie_word_embeddings=True, attention_bias=False),
    # Llama 3 vocabulary, untied lm_head, llama3 rope scaling; narrow to stay cheap.
    "llama": dict(model_type="llama", vocab_size=128256, hidden_size=512, intermediate_size=1536,
                  num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                  max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=False, attention_bias=False,
                  rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                    high_freq_factor=4.0, original_max_position_embeddings=8192)),
}
# Lengths that end mid-tile as well as one full 1024-token sequence.
LENGTHS = [7, 100, 333, 1024]


def randomize(model, gen):
    """Weights with trained-model scales, so that outputs are far from uniform: unit-variance
    projections, logits of std ~3, norms and biases visibly away from their init."""
    c = model.config.hidden_size
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * r)
            elif name.endswith(".bias"):
                p.copy_(0.1 * r)
            elif "embed_tokens" in name or name == "lm_head.weight":
                p.copy_(3.0 / c ** 0.5 * r)
            else:
                p.copy_(r / p.shape[1] ** 0.5)


def make_case(name, root, seed):
    kw = dict(CASES[name])
    kw.setdefault("max_position_embeddings", 4096)
    cfg = AutoConfig.for_model(kw.pop("model_type"), rms_norm_eps=1e-6, hidden_act="silu", **kw)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    gen = torch.Generator().manual_seed(seed)
    randomize(model, gen)
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    seqs = [torch.randint(0, cfg.vocab_size, (n,), generator=gen).tolist() for n in LENGTHS]
    with open(os.path.join(d, "inputs.jsonl"), "w") as f:
        for s in seqs:
            f.write(json.dumps({"ids": s}) + "\n")
    nparams = sum(p.numel() for p in model.parameters())
    return d, seqs, nparams


def hf_run(d, seqs, dtype, attn, autocast):
    """Per-token log-probs (list of fp64 tensors) and gradients of -mean(logp) by parameter name."""
    model = AutoModelForCausalLM.from_pretrained(d, dtype=dtype, attn_implementation=attn).cuda()
    model.eval()  # no dropout in these models; eval only silences training-mode warnings
    total = sum(len(s) - 1 for s in seqs)
    out = []
    for s in seqs:
        ids = torch.tensor([s], device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=ids).logits[0]
        lp = torch.log_softmax(logits.to(torch.float64 if dtype == torch.float64 else torch.float32), -1)
        lp = lp[:-1].gather(1, ids[0, 1:, None])[:, 0]
        (-lp.sum() / total).backward()
        out.append(lp.detach().double())
    grads = {n: p.grad.detach() for n, p in model.named_parameters()}
    del model
    return out, grads


def r1_run(r1, d, device):
    grads_path = os.path.join(d, f"r1_{device}_grads.safetensors")
    cmd = [r1, "logprobs", "--model", d, "--device", device, "--grads-out", grads_path]
    t0 = time.time()
    with open(os.path.join(d, "inputs.jsonl")) as fin:
        p = subprocess.run(cmd, stdin=fin, capture_output=True, text=True)
    secs = time.time() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    lps = [torch.tensor(json.loads(l)["logprobs"], dtype=torch.float64, device="cuda")
           for l in p.stdout.splitlines() if l.strip()]
    grads = {k: v.cuda() for k, v in load_file(grads_path).items()}
    return lps, grads, secs


def lp_err(got, ref):
    d = torch.cat([(a - b).abs() for a, b in zip(got, ref)])
    return float(d.max()), float(d.mean())


def grad_err(got, ref):
    """Per-parameter and all-parameter relative L2 errors of `got` against the fp64 `ref`."""
    missing = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    if missing or extra:
        raise RuntimeError(f"gradient names differ: missing {missing[:5]} extra {extra[:5]}")
    per, num, den = {}, 0.0, 0.0
    for n, g64 in ref.items():
        e2 = float((got[n].double() - g64).pow(2).sum())
        r2 = float(g64.pow(2).sum())
        per[n] = (e2 ** 0.5 / max(r2 ** 0.5, 1e-300), r2 ** 0.5)
        num += e2
        den += r2
    return per, (num / den) ** 0.5


def check_case(name, args):
    d, seqs, nparams = make_case(name, args.work, seed=1000 + len(name))
    res = dict(case=name, params=nparams, tokens=sum(len(s) - 1 for s in seqs), lengths=LENGTHS)
    lp64, g64 = hf_run(d, seqs, torch.float64, "eager", False)
    lp_bf, g_bf = hf_run(d, seqs, torch.bfloat16, "sdpa", False)
    lp_amp, g_amp = hf_run(d, seqs, torch.float32, "sdpa", True)
    torch.cuda.empty_cache()
    lp_r1, g_r1, res["r1_seconds"] = r1_run(args.r1, d, "cuda")
    if [len(x) for x in lp_r1] != [len(s) - 1 for s in seqs]:
        raise RuntimeError(f"r1 returned {[len(x) for x in lp_r1]} log-probs, expected {[len(s) - 1 for s in seqs]}")
    for key, lp in (("r1", lp_r1), ("hf_bf16", lp_bf), ("hf_amp", lp_amp)):
        res[f"lp_max_{key}"], res[f"lp_mean_{key}"] = lp_err(lp, lp64)
    per = {}
    for key, g in (("r1", g_r1), ("hf_bf16", g_bf), ("hf_amp", g_amp)):
        per[key], res[f"grad_rel_{key}"] = grad_err(g, g64)

    fails = []
    if res["lp_max_r1"] > max(2 * res["lp_max_hf_bf16"], args.lp_max_abs):
        fails.append(f"log-prob max|d| {res['lp_max_r1']:.3g}")
    if res["lp_mean_r1"] > max(1.5 * res["lp_mean_hf_bf16"], args.lp_mean_abs):
        fails.append(f"log-prob mean|d| {res['lp_mean_r1']:.3g}")
    if res["grad_rel_r1"] > max(args.grad_rel, 1.25 * min(res["grad_rel_hf_bf16"], res["grad_rel_hf_amp"])):
        fails.append(f"all-parameter grad rel L2 {res['grad_rel_r1']:.3g}")
    worst = ("", 0.0)
    print(f"\n[{name}] per-parameter gradient rel L2 vs fp64 (||g64|| in the last column)")
    print(f"  {'parameter':52s} {'r1-cuda':>9s} {'hf-bf16':>9s} {'hf-amp':>9s} {'||g64||':>9s}")
    for n, (e, norm) in per["r1"].items():
        e_bf, e_amp = per["hf_bf16"][n][0], per["hf_amp"][n][0]
        gated = not n.endswith("k_proj.bias")
        bad = gated and e > max(args.grad_rel_param, 2 * max(e_bf, e_amp))
        if gated and e > worst[1]:
            worst = (n, e)
        if bad:
            fails.append(f"{n} grad rel L2 {e:.3g}")
        tag = "  FAIL" if bad else ("  (not gated)" if not gated else "")
        print(f"  {n:52s} {e:9.2e} {e_bf:9.2e} {e_amp:9.2e} {norm:9.2e}{tag}")
    res["grad_worst_param"], res["grad_worst_rel_r1"] = worst
    res["fails"] = fails
    res["ok"] = not fails
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--r1", default="build-gpu/r1")
    ap.add_argument("--work", default="/tmp/r1-gpu-parity")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--cases", default="qwen2,qwen3,llama")
    ap.add_argument("--lp-max-abs", type=float, default=0.05)
    ap.add_argument("--lp-mean-abs", type=float, default=0.01)
    ap.add_argument("--grad-rel", type=float, default=1e-2)
    ap.add_argument("--grad-rel-param", type=float, default=3e-2)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_parity.py: no CUDA device")
    print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())
    os.makedirs(args.work, exist_ok=True)
    results, r1_failed = [], False
    for name in args.cases.split(","):
        try:
            results.append(check_case(name, args))
        except Exception as e:  # one broken case must not hide the others' numbers
            r1_failed = True
            results.append(dict(case=name, ok=False, error=str(e)[-1500:]))
            print(f"\n[{name}] ERROR: {e}", file=sys.stderr)
        torch.cuda.empty_cache()

    print("\n== GPU parity vs fp64 (log-probs: |delta| in nats; gradients: relative L2)")
    print(f"{'case':6s} {'tokens':>6s} | {'logp max|d|: r1':>15s} {'hf-bf16':>8s} {'hf-amp':>8s} | "
          f"{'mean: r1':>8s} {'hf-bf16':>8s} | {'grad: r1':>8s} {'hf-bf16':>8s} {'hf-amp':>8s} | worst r1 param")
    for r in results:
        if "error" in r:
            print(f"{r['case']:6s} ERROR {r['error'][:200]}")
            continue
        print(f"{r['case']:6s} {r['tokens']:6d} | {r['lp_max_r1']:15.2e} {r['lp_max_hf_bf16']:8.2e} "
              f"{r['lp_max_hf_amp']:8.2e} | {r['lp_mean_r1']:8.2e} {r['lp_mean_hf_bf16']:8.2e} | "
              f"{r['grad_rel_r1']:8.2e} {r['grad_rel_hf_bf16']:8.2e} {r['grad_rel_hf_amp']:8.2e} | "
              f"{r['grad_worst_param']} {r['grad_worst_rel_r1']:.2e} {'OK' if r['ok'] else 'FAIL: ' + '; '.join(r['fails'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(torch=torch.__version__, transformers=transformers.__version__,
                           gpu=torch.cuda.get_device_name(), cases=results), f, indent=1)
    sys.exit(2 if r1_failed else (0 if all(r["ok"] for r in results) else 1))


if __name__ == "__main__":
    main()
