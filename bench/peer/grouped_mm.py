#!/usr/bin/env python3
"""The peer of bench_grouped_gemm_gpu: the experts' grouped GEMM in PyTorch (torch._grouped_mm, what
transformers' grouped_mm experts run), on the same shapes and routing statistics.

  python3 bench/peer/grouped_mm.py [--shape moonlight-16b-a3b|qwen3-30b-a3b] [--tokens 8192] [--iters 20]

For the gate/up matrix (IN = C, OUT = I) and the down matrix (IN = I, OUT = C), R = tokens x K rows
routed to K distinct uniformly random experts per token (rows sorted by expert), bf16:
  forward   out = torch._grouped_mm(inp, W.transpose(-2, -1), offs)    W (E, OUT, IN)
  forward_backward  the forward and its autograd backward: dinp and dW (bf16, as PyTorch keeps
            them), 3x the forward's FLOPs
  dense     inp @ W0^T, one matrix (the dense GEMM of the same FLOPs)
One JSON line per (matrix, product): median milliseconds over --iters (CUDA events) and TFLOP/s.
"""
import argparse
import json

import torch

SHAPES = {  # hidden, moe_intermediate, experts, experts per token (the published configs)
    "moonlight-16b-a3b": (2048, 1408, 64, 6),
    "qwen3-30b-a3b": (2048, 768, 128, 8),
}


def median_ms(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="moonlight-16b-a3b", choices=sorted(SHAPES))
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    C, I, E, K = SHAPES[args.shape]
    R = args.tokens * K
    gen = torch.Generator().manual_seed(7)
    experts = torch.rand(args.tokens, E, generator=gen).topk(K, dim=-1).indices.flatten()
    counts = torch.bincount(experts, minlength=E)
    offs = torch.cumsum(counts, 0).to(torch.int32).cuda()
    dev = "cuda"
    for name, IN, OUT in (("gate_up", C, I), ("down", I, C)):
        flops = 2.0 * R * IN * OUT
        inp = (torch.rand(R, IN, device=dev) * 2 - 1).to(torch.bfloat16).requires_grad_()
        w = ((torch.rand(E, OUT, IN, device=dev) * 2 - 1) * 0.02).to(torch.bfloat16).requires_grad_()
        g = (torch.rand(R, OUT, device=dev) * 2 - 1).to(torch.bfloat16)

        def forward():
            return torch._grouped_mm(inp, w.transpose(-2, -1), offs=offs)

        def backward():
            inp.grad = None
            w.grad = None
            forward().backward(g)

        w0 = w.detach()[0]
        x = inp.detach()
        for product, fn, times in (("forward", lambda: forward(), 1), ("forward_backward", backward, 3),
                                   ("dense", lambda: x @ w0.t(), 1)):
            ms = median_ms(fn, args.iters)
            print(json.dumps(dict(bench="torch-grouped", shape=args.shape, matrix=name, product=product, rows=R,
                                  experts=E, ms=round(ms, 4), tflops=round(times * flops / ms * 1e-9, 1),
                                  **{"in": IN, "out": OUT}, gpu=torch.cuda.get_device_name(),
                                  torch=torch.__version__)), flush=True)
        del inp, w, g


if __name__ == "__main__":
    main()
