#!/usr/bin/env python3
"""PyTorch peer of bench/bench_train_gpu.cpp: one full train step of a random Qwen2.5 model.

  python3 bench/peer/torch_train_step.py --shape 0.5b --modes amp,bf16 [--seqs 8 --len 1024]

Step = forward (transformers Qwen2ForCausalLM, SDPA attention) -> mean next-token cross-entropy
over every sequence's L-1 targets -> backward -> clip_grad_norm_(1.0) -> fused AdamW.
Modes: `amp` keeps fp32 parameters and runs under torch.autocast(bf16) (r1's numerics: fp32 master
weights, bf16 compute); `bf16` holds the parameters themselves in bf16 (less memory, no master copy).
Each mode prints one JSON line. Step time is the median over --steps steps after --warmup, each
timed with CUDA events.

FLOPs per step (the same formula in bench_train_gpu.cpp):
  flops = 6 * T * N_mm + 12 * n_layers * n_heads * head_dim * sum_b(L_b^2 / 2)
  T = tokens in the step (seqs * len); N_mm = parameters that enter a matmul: per layer
  q, k, v, o, gate, up, down weights, plus the lm_head (V x C, counted although tied); embeddings
  lookups, norms and biases excluded. The attention term is QK^T and PV (2 matmuls x 2 FLOP/MAC
  x head_dim) over the causal half of each L_b x L_b score matrix, times 3 for forward + backward.
MFU = flops / step_time / 989e12 (H100 SXM dense bf16 peak, the spec sheet); `mfu_790` is the same
against ~790 TFLOP/s, the bf16 GEMM rate measured on the H100 (what is reachable in practice).
"""
import argparse
import gc
import json
import statistics
import sys

import torch
import transformers

import qwen_shapes
from qwen_shapes import SHAPES, VOCAB, matmul_params

PEAK_SPEC, PEAK_MEASURED = 989e12, 790e12


def step_flops(s, seqs, length):
    if s["family"] == "deepseek_v3":  # QK^T over 192 dims, PV over 128
        qk, v = s["qk_nope_head_dim"] + s["qk_rope_head_dim"], s["v_head_dim"]
    else:
        qk = v = s.get("head_dim", s["hidden_size"] // s["num_attention_heads"])
    attn = 6 * s["num_hidden_layers"] * s["num_attention_heads"] * (qk + v) * seqs * length * length / 2
    return 6 * seqs * length * matmul_params(s) + attn


def build(shape, mode, layers=0):
    model = qwen_shapes.build(shape, torch.bfloat16 if mode == "bf16" else torch.float32, layers=layers)
    model.train()
    return model


def run(args, mode):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    free0, total = torch.cuda.mem_get_info()
    model = build(args.shape, mode, args.layers)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.0, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(1)
    ids = torch.randint(0, VOCAB, (args.seqs, args.len), device="cuda", generator=gen)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=(mode == "amp")):
            logits = model(input_ids=ids).logits
        # Mean over the seqs * (len - 1) next-token targets, in fp32 as r1's log-softmax.
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss, norm

    for _ in range(args.warmup):
        loss, norm = step()
    torch.cuda.synchronize()
    times = []
    for _ in range(args.steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        loss, norm = step()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    free1, _ = torch.cuda.mem_get_info()
    ms = statistics.median(times)
    tokens = args.seqs * args.len
    shape = dict(SHAPES[args.shape], **({"num_hidden_layers": args.layers} if args.layers > 0 else {}))
    flops = step_flops(shape, args.seqs, args.len)
    res = dict(
        bench="torch", mode=mode, shape=args.shape, seqs=args.seqs, len=args.len,
        steps=args.steps, warmup=args.warmup, step_ms=round(ms, 3),
        step_ms_min=round(min(times), 3), step_ms_max=round(max(times), 3),
        tok_s=round(tokens / (ms / 1e3), 1), tflops=round(flops / (ms / 1e3) / 1e12, 2),
        mfu=round(flops / (ms / 1e3) / PEAK_SPEC, 4), mfu_790=round(flops / (ms / 1e3) / PEAK_MEASURED, 4),
        flops_per_step=flops, matmul_params=matmul_params(shape), layers=shape["num_hidden_layers"],
        params=sum(p.numel() for p in model.parameters()),
        # Allocator peak (live tensors), and what the process took from the device (cache included).
        peak_alloc_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
        peak_reserved_mib=round(torch.cuda.max_memory_reserved() / 2**20, 1),
        device_used_mib=round((free0 - free1) / 2**20, 1),
        loss=round(float(loss), 4), grad_norm=round(float(norm), 4),
        attn=getattr(model.config, "_attn_implementation", "?"), param_dtype=str(next(model.parameters()).dtype),
        gpu=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__)
    del model, opt, ids
    gc.collect()
    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="0.5b")
    ap.add_argument("--modes", default="amp,bf16", help="comma list of amp, bf16")
    ap.add_argument("--layers", type=int, default=0, help="> 0: the shape cut to its first N layers")
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--len", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_train_step.py: no CUDA device", file=sys.stderr)
        sys.exit(1)
    for mode in args.modes.split(","):
        if mode not in ("amp", "bf16"):
            sys.exit(f"unknown mode '{mode}' (amp, bf16)")
        try:
            print(json.dumps(run(args, mode)), flush=True)
        except torch.cuda.OutOfMemoryError as e:
            print(json.dumps(dict(bench="torch", mode=mode, shape=args.shape, error=f"OOM: {e}"[:300])),
                  flush=True)
            gc.collect()
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
