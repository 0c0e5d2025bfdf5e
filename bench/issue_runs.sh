#!/usr/bin/env bash
# Issue 18's long GPU runs, one after the other in a process session of their own (setsid), so
# they outlast one device call (10 minutes); later calls watch them.
#   bash bench/issue_runs.sh start [JOB...]   (after 'bash bench/gpu.sh pack', carrying .gpu;
#                                             R1_GPU_TARGETS=r1 packs enough)
#   bash bench/issue_runs.sh show             (status, the logs' ends, metrics into $OUT)
# Jobs (default: grpo7b):
#   grpo7b   r1 grpo, Qwen2.5-7B shape, full parameters, 16 x 8, 512-token prompts, 8192 new tokens
#   grpo1p5b r1 grpo, Qwen2.5-1.5B shape, full parameters, 8 x 8, 512-token prompts, 32,256 new tokens
#   lora32b  a GRPO step of a Qwen2.5-32B shape with LoRA r=64 on every linear, 8 x 8, 4k responses
#   pagedab  generation with the paged cache (this pack) beside the preallocated one (a pack of
#            8ab4e7f's bench_rollout_gpu in .gpu-base/bench, carried) and transformers:
#            R1_GPU_BENCH=paged-ab of bench/gpu.sh, with 25 minutes instead of one call's 9
#   pagedr1  the same without transformers (R1_GPU_PEER=0)
L=/tmp/issue-runs
case "${1:-}" in
start)
  shift
  mkdir -p "$L"
  setsid nohup bash "$0" runs "${@:-grpo7b}" >"$L/driver.log" 2>&1 </dev/null &
  ;;
runs)
  shift
  df -h /tmp; free -g; nproc
  (while true; do
     echo "$(date +%T) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader) host $(free -g | awk '/Mem/ {print $3}') GiB"
     sleep 15
   done) >"$L/memory.log" 2>&1 &
  python3 bench/long_prompts.py data/gsm8k_train.jsonl /tmp/long_prompts.jsonl 512 64
  for job in "$@"; do
    echo "$(date +%T) $job start" >>"$L/status"
    case $job in
      grpo7b) bash bench/gpu.sh r1 grpo bench/recipes/grpo_qwen2.5-7b_8k.yaml >"$L/$job.log" 2>&1 ;;
      grpo1p5b) bash bench/gpu.sh r1 grpo bench/recipes/grpo_qwen2.5-1.5b_32k.yaml >"$L/$job.log" 2>&1 ;;
      lora32b)
        bash bench/gpu.sh bench bench_grpo_step_gpu --shape 32b --prompts 8 --group 8 --prompt-len 512 --new 4096 \
          --steps 1 --lora-rank 64 --kv-fraction 0.85 >"$L/$job.log" 2>&1 ;;
      pagedab|pagedr1)
        R1_GPU_PEER=$([[ $job == pagedab ]] && echo 1 || echo 0) R1_GPU_TESTS=0 R1_GPU_BENCH=paged-ab \
          R1_GPU_BASE=.gpu-base R1_GPU_BUDGET_S=1500 OUT="$L/pagedab" bash bench/gpu.sh run >"$L/$job.log" 2>&1 ;;
      *) echo "unknown job $job" >"$L/$job.log"; false ;;
    esac
    echo "$(date +%T) $job rc $?" >>"$L/status"
    du -sh /tmp/r1-runs/*/checkpoints/* >>"$L/status" 2>&1
    rm -rf /tmp/r1-runs/*/checkpoints  # the next job needs the disk
  done
  ;;
show)
  date +%T; cat "$L/status" 2>/dev/null; tail -n 4 "$L/memory.log"
  for f in "$L"/*.log; do
    [[ $f == */memory.log ]] && continue
    [[ -e $f ]] && { echo "== $f"; tr '\r' '\n' <"$f" | grep -v '^$' | tail -n 25; }
  done
  cp "$L"/*.log "$L"/status "$OUT"/ 2>/dev/null
  [[ -e $L/pagedab/bench.jsonl ]] && cp "$L/pagedab/bench.jsonl" "$OUT/pagedab_bench.jsonl"
  for m in /tmp/r1-runs/*/metrics.jsonl; do
    [[ -e $m ]] && cp "$m" "$OUT/$(basename "$(dirname "$m")")_metrics.jsonl"
  done
  true
  ;;
*) echo "usage: bash bench/issue_runs.sh start [JOB...] | show" >&2; exit 2 ;;
esac
