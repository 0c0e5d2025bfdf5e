#!/usr/bin/env python3
"""One kernel's warp-state samples, SASS instruction by instruction (bench/gpu.sh, R1_GPU_BENCH=ncu-source).

    ncu --import r.ncu-rep --csv --page source --print-source sass > r.csv
    python3 bench/ncu_source.py r.csv [--top 30]

ncu samples each warp's program counter at a fixed interval and records why it did not issue. The
instructions holding most samples are where the kernel's time goes: a load's consumer stalled on
'long scoreboard' waits for memory, a barrier for other warps, an mma for the tensor pipe. Prints
the columns ncu gave, the total samples, then the top instructions (address, SASS, share of all
samples, running share) and, where the page has per-reason columns, each one's two largest reasons.
Last, the samples by how many times an instruction ran: instructions that ran as often belong to
one part of the kernel (once a warp: its prologue and epilogue; once a tile: its loop), so this
says which part holds the time.
"""
import argparse
import collections
import csv
import sys

from ncu_summary import number


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    with open(args.csv, newline="", errors="replace") as f:
        rows = list(csv.reader(f))
    head = next((i for i, r in enumerate(rows) if "Source" in r and any("Sampl" in c for c in r)), None)
    if head is None:
        sys.exit(f"ncu_source: {args.csv}: no header with 'Source' and a sampling column (ncu's output follows)\n"
                 + "\n".join(",".join(r) for r in rows[:20]))
    cols = rows[head]
    body = [r for r in rows[head + 1:] if len(r) == len(cols)]
    src = cols.index("Source")
    addr = next((i for i, c in enumerate(cols) if "Address" in c), None)
    sampling = [i for i, c in enumerate(cols) if "Sampl" in c]  # not empty: the header has one
    total_col = next((i for i in sampling if "All" in cols[i]), sampling[0])
    reasons = [i for i, c in enumerate(cols) if c.startswith("stall_") and "Not Issued" not in c]
    print(f"columns: {' | '.join(cols)}")
    samples = [(number(r[total_col]) or 0.0, r) for r in body]
    total = sum(s for s, _ in samples)
    print(f"{len(body)} instructions, {total:.0f} samples ({cols[total_col]})")
    if total <= 0:
        return
    run = 0.0
    for s, r in sorted(samples, key=lambda x: -x[0])[: args.top]:
        run += s
        why = ""
        if reasons:
            top = sorted(((number(r[i]) or 0.0, cols[i]) for i in reasons), reverse=True)[:2]
            why = "  " + ", ".join(f"{n} {v / s:.0%}" for v, n in top if v > 0) if s else ""
        a = r[addr] if addr is not None else "?"
        print(f"{a:>8} {s / total:6.1%} {run / total:6.1%}  {r[src][:70]}{why}")
    execs = next((i for i, c in enumerate(cols) if c == "Instructions Executed"), None)
    if execs is None:
        return
    parts = collections.defaultdict(lambda: [0.0, 0.0])  # times run -> [instructions run, samples]
    for s, r in samples:
        e = number(r[execs]) or 0.0
        parts[e][0] += e
        parts[e][1] += s
    ran = sum(n for n, _ in parts.values()) or 1.0
    print("by times run (warp-level): share of instructions run, share of samples")
    for e, (n, s) in sorted(parts.items()):
        if n / ran >= 0.005 or s / total >= 0.005:
            print(f"  {e:9.0f}x  {n / ran:6.1%}  {s / total:6.1%}")


if __name__ == "__main__":
    main()
