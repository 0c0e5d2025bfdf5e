#!/usr/bin/env python3
"""The table of `bash bench/gpu.sh ab`: one line per benchmark, each build's median over the rounds.

usage: ab_summary.py AB_JSONL LABEL... (the builds in column order, the first the reference)

AB_JSONL holds one benchmark result a line, tagged by ab() with "ab" (the build's label), "case"
and "round". A build's value is its throughput (tok/s; a GRPO step's counts the steps after the
first); where the benchmark reports a decode step, its median is shown too, in ms.
"""
import json
import statistics
import sys


def throughput(r):
    if "tok_s" in r:
        return r["tok_s"]
    if "step_s" in r and r.get("step", 0) > 0:
        return r["generated_tokens"] / r["step_s"]
    return None


def medians(rows, case, label, key):
    v = [x for x in (key(r) for r in rows if r["case"] == case and r["ab"] == label) if x]
    return statistics.median(v) if v else None


def table(rows, labels):
    cases = []
    for r in rows:
        if r["case"] not in cases:
            cases.append(r["case"])
    lines = [f"{'benchmark':20s} " + " ".join(f"{w:>10s}" for w in labels) +
             " " + " ".join(f"{w + '/' + labels[0]:>12s}" for w in labels[1:]) + "   (tok/s, median of rounds)"]
    for c in cases:
        tok = {w: medians(rows, c, w, throughput) for w in labels}
        missing = [w for w in labels if tok[w] is None]
        if missing:
            lines.append(f"{c:20s} missing: {', '.join(missing)}")
            continue
        lines.append(f"{c:20s} " + " ".join(f"{tok[w]:10.0f}" for w in labels) + " " +
                     " ".join(f"{tok[w] / tok[labels[0]]:12.3f}" for w in labels[1:]))
        step = {w: medians(rows, c, w, lambda r: r.get("decode_step_ms")) for w in labels}
        if all(step[w] is not None for w in labels):
            lines.append(f"{'  decode step, ms':20s} " + " ".join(f"{step[w]:10.4f}" for w in labels))
    return "\n".join(lines)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, labels = sys.argv[1], sys.argv[2:]
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not a JSON line ({e})")
    print(table(rows, labels))


if __name__ == "__main__":
    main()
