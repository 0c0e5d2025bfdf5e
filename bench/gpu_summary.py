#!/usr/bin/env python3
"""The short table bench/gpu.sh prints last: tests, GPU parity, train step, generation, GRPO step.

  python3 bench/gpu_summary.py OUT_DIR
reads OUT_DIR/{cuda_tests.log, all_tests.log, parity.json, bench.jsonl} (any may be missing) and
prints one block per part. Standard library only.
"""
import json
import os
import re
import sys


def test_counts(path):
    if not os.path.exists(path):
        return "not run"
    text = open(path, errors="replace").read()
    parts = re.findall(r"^\[\s+(PASSED|FAILED|SKIPPED)\s+\] (\d+) tests?", text, re.M)
    return ", ".join(f"{n} {k.lower()}" for k, n in parts) or "no gtest summary (crashed or timed out?)"


def parity(path):
    if not os.path.exists(path):
        log = os.path.join(os.path.dirname(path), "parity.log")
        last = open(log, errors="replace").read().strip().splitlines()[-1:] if os.path.exists(log) else []
        print(f"parity: no result ({last[0][:150] if last else 'not run'})")
        return
    cases = json.load(open(path))["cases"]
    print(f"{'parity vs fp64':14s} {'logp max|d| r1':>14s} {'hf-bf16':>8s} {'grad relL2 r1':>13s} {'hf-bf16':>8s} {'hf-amp':>8s}")
    for c in cases:
        if "error" in c:
            print(f"{c['case']:14s} ERROR {c['error'][:100]}")
            continue
        print(f"{c['case']:14s} {c['lp_max_r1']:14.2e} {c['lp_max_hf_bf16']:8.2e} {c['grad_rel_r1']:13.2e} "
              f"{c['grad_rel_hf_bf16']:8.2e} {c['grad_rel_hf_amp']:8.2e}  {'OK' if c['ok'] else 'FAIL'}")


def train_bench(rows):
    rows = [r for r in rows if r.get("bench") in ("r1", "torch")]
    if not rows:
        return
    print(f"{'train step':16s} {'tok/s':>9s} {'step ms':>8s} {'MFU':>6s} {'MFU790':>6s} {'peak MiB':>9s} "
          f"{'used MiB':>9s} {'/t-amp':>7s}")
    for shape in sorted({r.get("shape") for r in rows if r.get("shape")}):
        of = [r for r in rows if r.get("shape") == shape]
        if not any(r.get("bench") == "torch" for r in of):
            of.append(dict(bench="torch", mode="*", error="no result (see bench.log)"))
        amp = next((r for r in of if r.get("bench") == "torch" and r.get("mode") == "amp" and "tok_s" in r), None)
        for r in of:
            ref = r.get("mode") == "amp+ref"  # GRPO memory run: its time includes a reference forward
            name = f"{shape} {('r1+ref' if ref else 'r1') if r['bench'] == 'r1' else 'torch-' + r.get('mode', '?')}"
            if "tok_s" not in r:
                print(f"{name:16s} {r.get('error', 'no result')[:80]}")
                continue
            ratio = f"{r['tok_s'] / amp['tok_s']:.2f}x" if amp and not ref else "-"
            mib = lambda k: f"{r[k]:9.0f}" if k in r else f"{'-':>9s}"
            print(f"{name:16s} {r['tok_s']:9.0f} {r['step_ms']:8.1f} {100 * r['mfu']:5.1f}% "
                  f"{100 * r['mfu_790']:5.1f}% {mib('peak_alloc_mib')} {mib('device_used_mib')} {ratio:>7s}")
    for r in rows:
        if r.get("profile"):
            tot = r.get("profile_ms") or sum(p[2] for p in r["profile"])
            top = ", ".join(f"{p[0]} {100 * p[2] / tot:.0f}%" for p in r["profile"][:6])
            print(f"{r['shape']} r1 per-op ({tot:.0f} ms in ops / {r['step_ms']:.0f} ms step): {top}")
    print("MFU = FLOPs/step (bench/README.md) / step time / 989 TFLOP/s (MFU790: / 790, the measured GEMM rate);\n"
          "peak MiB = torch allocator peak; used MiB = device memory the run took (cudaMemGetInfo delta);\n"
          "/t-amp = tok/s over torch-amp's; r1+ref = policy + frozen reference + AdamW (GRPO memory)")


def rollout_bench(rows):
    r1 = [r for r in rows if r.get("bench") == "r1-rollout" and not r.get("training_state")]
    if r1:
        checks = []
        print(f"{'generate':22s} {'r1 tok/s':>9s} {'hf tok/s':>9s} {'r1/hf':>6s} {'step ms':>8s} {'roofline':>8s} {'of it':>6s}")
        for r in r1:
            key = (r.get("shape"), r.get("prompts"), r.get("new_tokens"))
            peers = [h for h in rows if h.get("bench") == "hf-generate"
                     and (h.get("shape"), h.get("prompts"), h.get("new_tokens")) == key and "tok_s" in h]
            # the whole run where there is one, else the window's estimate (marked w)
            hf = next((h for h in peers if h.get("method", "full") == "full"), peers[0] if peers else None)
            if len(peers) > 1:
                checks.append((key, peers))
            name = f"{r['shape']} {r['prompts']}x({r['prompt_len']}+{r['new_tokens']})"
            if "tok_s" not in r:
                print(f"{name:22s} {r.get('error', 'no result')[:80]}")
                continue
            windowed = hf and hf.get("method", "full") != "full"
            hf_s = (f"{hf['tok_s']:8.0f}" + ("w" if windowed else " ")) if hf else f"{'-':>9s}"
            ratio = f"{r['tok_s'] / hf['tok_s']:5.1f}x" if hf else f"{'-':>6s}"
            print(f"{name:22s} {r['tok_s']:9.0f} {hf_s} {ratio} {r['decode_step_ms']:8.2f} {r['roofline_step_ms']:8.2f} "
                  f"{100 * r['roofline_frac']:5.0f}%")
        print("step ms = mean decode step (graph replay, sampling and stops included); roofline = (matmul weights +\n"
              "each sequence's cached keys/values, bf16) / measured copy bandwidth; of it = roofline / step;\n"
              "w: transformers timed over a window of steps around the mean position (hf_generate.py --window)")
        for key, peers in checks:
            print(f"peer check {key[0]} {key[1]}x(+{key[2]}): " + ", ".join(
                f"{h.get('method', 'full')} {h['tok_s']:.0f} tok/s ({h['decode_step_ms']:.1f} ms a step)" for h in peers))
        paged = [r for r in r1 if "kv_blocks" in r and "tok_s" in r]
        if paged:
            print(f"{'paged KV cache':22s} {'pool MiB':>9s} {'blocks':>8s} {'peak':>8s} {'in flight':>9s} "
                  f"{'preempt':>8s} {'recomputed':>10s}")
            for r in paged:
                name = f"{r['shape']} {r['prompts']}x({r['prompt_len']}+{r['new_tokens']})"
                print(f"{name:22s} {r['kv_cache_mib']:9.0f} {r['kv_blocks']:8d} {r['kv_blocks_peak']:8d} "
                      f"{r['concurrency']:9.1f} {r['preemptions']:8d} {r['recomputed_tokens']:10d}")
            print("blocks of kv_block_size tokens; in flight = mean sequences per decode step; recomputed = tokens\n"
                  "prefilled again for preempted sequences")
    for r in rows:
        if r.get("bench") == "r1-rollout" and r.get("training_state"):
            print(f"KV cache {r['prompts']} x {r['context']} ({r['shape']}, {r['kv_cache_mib']:.0f} MiB) beside the "
                  f"training state: {r.get('device_used_mib', 0) / 1024:.1f} GiB in use" if "tok_s" in r
                  else f"KV cache beside the training state: {r.get('error', 'no result')[:80]}")


def grpo_bench(rows):
    runs = [r for r in rows if r.get("bench") in ("r1-grpo-step", "torch-grpo-step")]
    if not runs:
        return
    print(f"{'GRPO step':28s} {'rollout':>8s} {'reward':>7s} {'ref+old':>8s} {'update':>7s} {'step s':>7s} "
          f"{'tokens':>8s} {'roll tok/s':>10s} {'gap max':>9s} {'clip 1st':>8s}")
    for r in runs:
        exact = r.get("exact")
        name = f"{'r1' if r['bench'].startswith('r1') else 'torch+hf'} {r['shape']}" + (
            f" step {r['step']}" if "step" in r else "") + (f" exact {exact}" if exact not in (None, "off", False) else "")
        if "step_s" not in r:
            print(f"{name:28s} {r.get('error', 'no result')[:80]}")
            continue
        gap = r.get("logp_gap_max", -1)
        print(f"{name:28s} {r['rollout_s']:8.1f} {r['reward_s']:7.2f} {r['reference_s']:8.1f} {r['update_s']:7.1f} "
              f"{r['step_s']:7.1f} {r['generated_tokens']:8.0f} {r.get('rollout_tok_s', 0):10.0f} "
              f"{(f'{gap:.2e}' if gap >= 0 else '-'):>9s} {r.get('clip_fraction_first', 0):8.4f}")
    print("seconds; ref+old = reference log-probs (r1: the rollout's log-probs are the old ones; torch: both passes);"
          " gap max = max |sampler - trainer| log-prob at the first update (rollout.exact_logprobs: 0)")


def grouped_bench(rows):
    r1 = [r for r in rows if r.get("bench") == "r1-grouped"]
    if not r1:
        return
    print(f"{'grouped GEMM':28s} {'product':>16s} {'r1 ms':>8s} {'TFLOP/s':>8s} {'torch ms':>9s} {'TFLOP/s':>8s} {'r1/torch':>8s}")
    for r in r1:
        if "ms" not in r:
            print(f"{r.get('shape', '?'):28s} {r.get('error', 'no result')[:80]}")
            continue
        t = next((x for x in rows if x.get("bench") == "torch-grouped" and "ms" in x and
                  all(x.get(k) == r.get(k) for k in ("shape", "matrix", "product"))), None)
        peer = f"{t['ms']:9.3f} {t['tflops']:8.1f} {t['ms'] / r['ms']:8.2f}" if t else f"{'-':>9s} {'-':>8s} {'-':>8s}"
        print(f"{r['shape'] + ' ' + r['matrix']:28s} {r['product']:>16s} {r['ms']:8.3f} {r['tflops']:8.1f} {peer}")
    print("median ms per call; r1/torch = torch's time over r1's (above 1: r1 faster); dense = one matrix, all rows")


def attention_bench(rows):
    """bench_decode_attention_gpu's lines: each launch, then per (shape, rows, variant) a line fit of
    the attention kernel's µs against the keys: the fixed µs a launch and the µs per 1,000 keys (and
    what the keys' bytes alone take per 1,000 at the copy bandwidth)."""
    r1 = [r for r in rows if r.get("bench") == "r1-decode-attention"]
    if not r1:
        return
    print(f"{'decode attention':18s} {'rows':>5s} {'keys':>6s} {'variant':>18s} {'us':>8s} {'kernel':>8s} {'bytes us':>9s} {'of bw':>6s}")
    fits = {}
    for r in r1:
        if "us" not in r:
            print(f"{r.get('shape', '?'):18s} {r.get('error', 'no result')[:80]}")
            continue
        variant = f"{r['rope']},{r['cache']}" + (",qkv" if r.get("with_qkv") else "") + (f",S{r['splits']}" if r.get("splits") else "")
        kernel = r.get("attention_us", 0.0)
        print(f"{r['shape']:18s} {r['rows']:5d} {r['keys']:6d} {variant:>18s} {r['us']:8.2f} {kernel:8.2f} {r['bytes_us']:9.2f} {r.get('kv_frac', 0):6.2f}")
        if kernel > 0:
            fits.setdefault((r["shape"], r["rows"], variant), []).append((r["keys"], kernel, r["bytes_us"]))
    for (shape, n, variant), pts in fits.items():
        if len({k for k, _, _ in pts}) < 2:
            continue
        mk = sum(k for k, _, _ in pts) / len(pts)
        mu = sum(u for _, u, _ in pts) / len(pts)
        slope = sum((k - mk) * (u - mu) for k, u, _ in pts) / sum((k - mk) ** 2 for k, _, _ in pts)
        per_key_bytes = max(b / k for k, _, b in pts)
        print(f"  fit {shape} x {n} ({variant}): {mu - slope * mk:.2f} us fixed + {1000 * slope:.2f} us per 1,000 keys"
              f" (their bytes alone: {1000 * per_key_bytes:.2f})")
    for r in rows:
        if r.get("bench") == "r1-decode-attention-stamps" and "span_us" in r:
            print(f"  stamps {r['shape']} x {r['rows']} at {r['keys']} keys ({r['rope']}): span {r['span_us']:.2f} us,"
                  f" entry spread {r['entry_spread_us']:.2f}, block {r['block_us_median']:.2f} (max {r['block_us_max']:.2f}):"
                  f" prologue {r['prologue_us_median']:.2f}, loop {r['loop_us_median']:.2f}"
                  f" ({r['loop_us_per_warp_tile']:.3f} a warp's tile), merge {r['merge_us_median']:.2f}; {r['sm_ghz']:.2f} GHz")
    print("us: host clock over a graph of launches; kernel: CUPTI; bytes us: the keys and values at the copy bandwidth")


def bench(path):
    if not os.path.exists(path):
        print("benchmarks: not run")
        return
    rows = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    train_bench(rows)
    rollout_bench(rows)
    grpo_bench(rows)
    grouped_bench(rows)
    attention_bench(rows)


def main(out):
    print("== summary")
    print(f"CUDA tests:      {test_counts(os.path.join(out, 'cuda_tests.log'))}")
    print(f"other r1_tests:  {test_counts(os.path.join(out, 'all_tests.log'))}")
    parity(os.path.join(out, "parity.json"))
    bench(os.path.join(out, "bench.jsonl"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
