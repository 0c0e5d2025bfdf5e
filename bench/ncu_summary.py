#!/usr/bin/env python3
"""Nsight Compute's raw page of a decode window, kernel by kernel (bench/gpu.sh, R1_GPU_BENCH=ncu).

    ncu --import r.ncu-rep --csv --page raw --print-units base > r.csv
    python3 bench/ncu_summary.py r.csv [--step-kernel prepare_kernel] [--json out.json]

Keeps the whole decode steps among the profiled kernels (from a launch of --step-kernel, the
decode state's kernel that starts each step, to just before the next one's; all from the first
when there is no second), groups them by name (parameters dropped) and grid, and prints per group:
launches per decode step, mean duration, µs per step, DRAM bytes (read + written) and throughput
(GB/s and % of the card's peak), the L2 hit rate, SM throughput, achieved occupancy (warps active
of the SM's maximum), the launch's grid and block, and the three largest warp stall reasons
(warps stalled per issue, for that reason). ncu replays each kernel alone with its caches flushed,
so a duration is the kernel in isolation, not inside the step's graph.
"""
import argparse
import csv
import json
import re
import sys

STALL = re.compile(r"^smsp__average_warps_issue_stalled_(\w+)_per_issue_active\.ratio$")


def number(v):
    v = (v or "").replace(",", "").strip()
    try:
        return float(v)
    except ValueError:
        return None


def short(name):
    """'void r1::cuda::(anonymous namespace)::k<8, true>(Params)' -> 'k<8, true>'."""
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):  # the parameter list: the first '(' outside template brackets
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0 and not name.startswith("(anonymous", i):
            cut = i
            break
    name = name[:cut].replace("(anonymous namespace)", "anon")
    depth, start = 0, 0
    for i in range(len(name) - 1):
        if name[i] == "<":
            depth += 1
        elif name[i] == ">":
            depth -= 1
        elif depth == 0 and name[i : i + 2] == "::":
            start = i + 2
    name = name[start:]
    if name.startswith("void "):
        name = name[5:]
    name = name.replace("sm90_xmma_gemm_", "gemm_").replace("warpgroupsize", "wg")
    return name if len(name) <= 80 else name[:77] + "..."


def load(path):
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own ==PROF== lines are not CSV rows
    rows = list(csv.reader(lines))
    if len(rows) < 3:
        sys.exit(f"ncu_summary: {path}: no profiled kernels (header, units, then one row per kernel)")
    header, body = rows[0], rows[2:]  # rows[1]: the units
    return [dict(zip(header, r)) for r in body]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--step-kernel", default="prepare_kernel")
    ap.add_argument("--json")
    args = ap.parse_args()
    kernels = load(args.csv)
    if kernels and "ID" in kernels[0]:
        kernels.sort(key=lambda k: number(k["ID"]) or 0)
    marks = [i for i, k in enumerate(kernels) if short(k.get("Kernel Name", "")).startswith(args.step_kernel)]
    if marks:
        kernels = kernels[marks[0] : marks[-1]] if len(marks) > 1 else kernels[marks[0] :]
    groups = {}
    for k in kernels:  # one product's kernel apart from another's of other shape: by grid too
        groups.setdefault((short(k.get("Kernel Name", "?")), k.get("launch__grid_size", "")), []).append(k)
    steps = sum(len(v) for (n, _), v in groups.items() if n.startswith(args.step_kernel)) or 1

    def mean(ks, key):
        xs = [x for x in (number(k.get(key)) for k in ks) if x is not None]
        return sum(xs) / len(xs) if xs else None

    out = []
    for (name, _), ks in groups.items():
        stalls = {}
        for key in ks[0]:
            m = STALL.match(key)
            if m and m.group(1) not in ("selected",):
                v = mean(ks, key)
                if v:
                    stalls[m.group(1)] = v
        dur = mean(ks, "gpu__time_duration.sum") or 0.0  # ns
        bps = mean(ks, "dram__bytes.sum.per_second") or 0.0  # DRAM bytes read + written, per second
        out.append({
            "kernel": name,
            "launches_per_step": len(ks) / steps,
            "mean_us": dur / 1e3,
            "us_per_step": dur / 1e3 * len(ks) / steps,
            "dram_mb": bps * dur * 1e-9 / 1e6,
            "dram_gbs": bps / 1e9,
            "dram_pct": mean(ks, "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed"),
            "l2_hit_pct": mean(ks, "lts__t_sector_hit_rate.pct"),
            "sm_pct": mean(ks, "sm__throughput.avg.pct_of_peak_sustained_elapsed"),
            "occupancy_pct": mean(ks, "sm__warps_active.avg.pct_of_peak_sustained_active"),
            "grid": mean(ks, "launch__grid_size"),
            "block": mean(ks, "launch__block_size"),
            "registers": mean(ks, "launch__registers_per_thread"),
            "stalls": dict(sorted(stalls.items(), key=lambda kv: -kv[1])[:3]),
        })
    out.sort(key=lambda r: -r["us_per_step"])
    total = sum(r["us_per_step"] for r in out)
    print(f"ncu: {len(kernels)} kernels, {steps} decode step(s) by {args.step_kernel}; "
          f"{total:.1f} us of isolated kernel time per step")
    fmt = "{:<60} {:>5} {:>8} {:>8} {:>7} {:>6} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5}  {}"
    print(fmt.format("kernel", "/step", "us", "us/step", "DRAM MB", "GB/s", "DRAM%", "L2hit", "SM%", "occ%", "grid", "blk",
                     "stalls (cycles per issue)"))
    f = lambda x, d=1: "-" if x is None else f"{x:.{d}f}"
    for r in out:
        st = ", ".join(f"{k} {v:.1f}" for k, v in r["stalls"].items())
        print(fmt.format(r["kernel"][:60], f(r["launches_per_step"]), f(r["mean_us"], 2), f(r["us_per_step"]),
                         f(r["dram_mb"], 2), f(r["dram_gbs"], 0), f(r["dram_pct"], 0), f(r["l2_hit_pct"], 0),
                         f(r["sm_pct"], 0), f(r["occupancy_pct"], 0), f(r["grid"], 0), f(r["block"], 0), st))
    if args.json:
        with open(args.json, "w") as fo:
            json.dump({"steps": steps, "kernels": out}, fo, indent=1)


if __name__ == "__main__":
    main()
