#!/usr/bin/env python3
"""transformers peer of bench/bench_rollout_gpu.cpp: `generate` on a random Qwen2.5 model.

  python3 bench/peer/hf_generate.py --shape 0.5b --prompts 64 [--prompt-len 128 --new 1024]

The model is held in bf16 with SDPA attention (what an RL stack generating with transformers
uses); P random prompts of --prompt-len tokens are sampled once each (temperature 1, no top-k /
top-p) for exactly --new tokens (min_new_tokens = max_new_tokens: no early stop), as one batch.
A short untimed generate first. Prints one JSON line: tokens/s and the mean time per decode step
(whole generate time / new tokens; the prefill included, as it is one step of the loop).
"""
import argparse
import json
import sys
import time

import torch
import transformers

import qwen_shapes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(qwen_shapes.SHAPES), default="0.5b")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=1024)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("hf_generate.py: no CUDA device")
    model = qwen_shapes.build(args.shape, torch.bfloat16, use_cache=True).eval()
    gen = torch.Generator(device="cuda").manual_seed(3)
    vocab = min(150000, qwen_shapes.SHAPES[args.shape]["vocab_size"])
    ids = torch.randint(0, vocab, (args.prompts, args.prompt_len), device="cuda", generator=gen)
    mask = torch.ones_like(ids)
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=0, eos_token_id=None)
    res = dict(bench="hf-generate", shape=args.shape, prompts=args.prompts, prompt_len=args.prompt_len,
               new_tokens=args.new)
    try:
        with torch.no_grad():
            model.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, **kw)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            out = model.generate(ids, attention_mask=mask, max_new_tokens=args.new, min_new_tokens=args.new, **kw)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t
        generated = int(out.shape[0]) * (int(out.shape[1]) - args.prompt_len)
        res.update(seconds=round(seconds, 3), generated_tokens=generated, tok_s=round(generated / seconds, 1),
                   decode_step_ms=round(seconds / args.new * 1e3, 3),
                   peak_alloc_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1))
    except torch.cuda.OutOfMemoryError as e:
        res.update(error=f"OOM: {e}"[:300])
    res.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
