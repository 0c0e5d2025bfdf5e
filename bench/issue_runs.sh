#!/usr/bin/env bash
# The long GPU runs of issues 26 and 18, one after the other in a process session of their own
# (setsid), so they outlast one device call (10 minutes); later calls watch them.
#   bash bench/issue_runs.sh start   (after 'bash bench/gpu.sh pack', carrying .gpu)
#   bash bench/issue_runs.sh show    (status, the logs' ends, metrics into $OUT)
L=/tmp/issue-runs
case "${1:-}" in
start)
  mkdir -p "$L"
  setsid nohup bash "$0" runs >"$L/driver.log" 2>&1 </dev/null &
  ;;
runs)
  df -h /tmp; free -g; nproc
  (while true; do
     echo "$(date +%T) $(nvidia-smi --query-gpu=memory.used --format=csv,noheader) host $(free -g | awk '/Mem/ {print $3}') GiB"
     sleep 15
   done) >"$L/memory.log" 2>&1 &
  # Issue 26: a GRPO step of a Qwen2.5-32B shape with LoRA r=64 on every linear, 8 x 8, 4k responses.
  bash bench/gpu.sh bench bench_grpo_step_gpu --shape 32b --prompts 8 --group 8 --prompt-len 512 --new 4096 \
    --steps 1 --lora-rank 64 --kv-fraction 0.85 >"$L/lora32b.log" 2>&1
  echo "$(date +%T) lora32b rc $?" >>"$L/status"
  # Issue 18: r1 grpo, Qwen2.5-7B shape, full parameters, 16 x 8, 512-token prompts, 8192 new tokens.
  python3 bench/long_prompts.py data/gsm8k_train.jsonl /tmp/long_prompts.jsonl 512 64
  bash bench/gpu.sh r1 grpo bench/recipes/grpo_qwen2.5-7b_8k.yaml >"$L/grpo7b.log" 2>&1
  echo "$(date +%T) grpo7b rc $?" >>"$L/status"
  du -sh /tmp/r1-runs/grpo_7b_8k/checkpoints/* /tmp/r1-runs/grpo_7b_8k/model >>"$L/status" 2>&1
  ;;
show)
  date +%T; cat "$L/status" 2>/dev/null; tail -n 4 "$L/memory.log"
  for f in "$L"/driver.log "$L"/lora32b.log "$L"/grpo7b.log; do
    [[ -e $f ]] && { echo "== $f"; tr '\r' '\n' <"$f" | grep -v '^$' | tail -n 25; }
  done
  cp "$L"/*.log "$L"/status "$OUT"/ 2>/dev/null
  cp /tmp/r1-runs/grpo_7b_8k/metrics.jsonl "$OUT"/grpo7b_metrics.jsonl 2>/dev/null
  true
  ;;
*) echo "usage: bash bench/issue_runs.sh start|show" >&2; exit 2 ;;
esac
