#!/usr/bin/env python3
"""transformers peer of bench/bench_rollout_gpu.cpp: `generate` on a random Qwen2.5 model.

  python3 bench/peer/hf_generate.py --shape 0.5b --prompts 64 [--prompt-len 128 --new 1024] [--window W]

The model is held in bf16 with SDPA attention (what an RL stack generating with transformers
uses); P random prompts of --prompt-len tokens are sampled once each (temperature 1, no top-k /
top-p) for exactly --new tokens (min_new_tokens = max_new_tokens: no early stop), as one batch.
A short untimed generate first. Prints one JSON line: tokens/s and the mean time per decode step
(whole generate time / new tokens; the prefill included, as it is one step of the loop).

--window W: the same figures from W + 1 decode steps around the whole run's mean position instead
of all --new of them (transformers takes 60-75 ms a step at every shape here, so the full runs of
issue 25's 16 shapes take about 28 minutes). The prompts' cache is filled to
prompt_len + new / 2 - W / 2 - 1 positions by the model's forward in chunks, then `generate` runs
W + 1 steps from it (the last prompt token, then W new ones); their mean is the run's step, since
what a step costs grows linearly in the position (attention, the dynamic cache's concatenation)
or not at all (host overhead, weights). The first step (the 128-token prefill and one sample) is
timed on its own. tok/s = P * new / (first + (new - 1) * step). "method" says which was run.
"""
import argparse
import json
import sys
import time

import torch
import transformers

import qwen_shapes


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(qwen_shapes.SHAPES), default="0.5b")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=1024)
    ap.add_argument("--window", type=int, default=0, help="decode steps timed around the mean position (0: all)")
    ap.add_argument("--chunk", type=int, default=16384, help="--window: tokens per forward filling the cache")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("hf_generate.py: no CUDA device")
    if args.window and not 0 < args.window < args.new // 2:
        sys.exit(f"hf_generate.py: --window {args.window} must be in (0, new / 2 = {args.new // 2})")
    model = qwen_shapes.build(args.shape, torch.bfloat16, use_cache=True).eval()
    gen = torch.Generator(device="cuda").manual_seed(3)
    vocab = min(150000, qwen_shapes.SHAPES[args.shape]["vocab_size"])
    ids = torch.randint(0, vocab, (args.prompts, args.prompt_len), device="cuda", generator=gen)
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=0, eos_token_id=None)
    res = dict(bench="hf-generate", shape=args.shape, prompts=args.prompts, prompt_len=args.prompt_len,
               new_tokens=args.new, method=f"window {args.window}" if args.window else "full")

    def generate(x, n, **extra):
        return model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, **kw, **extra)

    try:
        with torch.no_grad():
            generate(ids, 8)
            torch.cuda.reset_peak_memory_stats()
            if not args.window:
                seconds, out = timed(lambda: generate(ids, args.new))
                generated = int(out.shape[0]) * (int(out.shape[1]) - args.prompt_len)
                step = seconds / args.new
            else:
                first, _ = timed(lambda: generate(ids, 1))
                start = args.prompt_len + args.new // 2 - args.window // 2  # the window's first cache length + 1
                long_ids = torch.randint(0, vocab, (args.prompts, start), device="cuda", generator=gen)
                cache = transformers.DynamicCache(config=model.config)
                chunk = max(1, args.chunk // args.prompts)
                for s in range(0, start - 1, chunk):  # the cache of every token but the last
                    model(input_ids=long_ids[:, s:min(s + chunk, start - 1)], past_key_values=cache, use_cache=True,
                          logits_to_keep=1)
                window, _ = timed(lambda: generate(long_ids, args.window + 1, past_key_values=cache))
                step = window / (args.window + 1)
                seconds = first + (args.new - 1) * step
                generated = args.prompts * args.new
                res.update(first_step_s=round(first, 4), window_s=round(window, 3),
                           window_positions=[start - 1, start + args.window - 1])
        res.update(seconds=round(seconds, 3), generated_tokens=generated, tok_s=round(generated / seconds, 1),
                   decode_step_ms=round(step * 1e3, 3),
                   peak_alloc_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1))
    except torch.cuda.OutOfMemoryError as e:
        res.update(error=f"OOM: {e}"[:300])
    res.update(gpu=torch.cuda.get_device_name(), torch=torch.__version__, transformers=transformers.__version__)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
