#!/usr/bin/env bash
# Runs one libFuzzer target until its edge coverage stops growing: no new `cov:` for QUIET seconds, or
# CAP seconds in all. One process (no -jobs: libFuzzer would fork workers); the corpus grows as it
# runs; crashes and hangs land in ARTIFACTS. An input running over FUZZ_TIMEOUT (25 s: a shared machine
# stalls processes for seconds) is a hang. The log's last lines give the executions, coverage and time.
# Usage: fuzz/run_to_plateau.sh <fuzz program> <corpus dir> [quiet_s=180] [cap_s=600] [libFuzzer flags...]
set -uo pipefail
prog="$1" corpus="$2" quiet="${3:-180}" cap="${4:-600}"
shift $(($# < 4 ? $# : 4))
name=$(basename "$prog")
artifacts="${ARTIFACTS:-build-fuzz/artifacts/$name}"
mkdir -p "$corpus" "$artifacts"
log="$artifacts/run.log"

start=$(date +%s)
"$prog" -max_total_time="$cap" -timeout=${FUZZ_TIMEOUT:-25} -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" "$corpus" >"$log" 2>&1 &
pid=$!
last_cov=0 last_new=$start
while kill -0 "$pid" 2>/dev/null; do
  sleep 5
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  now=$(date +%s)
  if [ -n "$cov" ] && [ "$cov" -gt "$last_cov" ]; then last_cov=$cov last_new=$now; fi
  if [ $((now - last_new)) -ge "$quiet" ]; then
    kill -INT "$pid" 2>/dev/null  # libFuzzer prints its final stats on SIGINT
    break
  fi
done
wait "$pid"
rc=$?
echo "$name: rc $rc, $(( $(date +%s) - start )) s, last new cov at +$((last_new - start)) s"
grep -E '^#[0-9]+' "$log" | tail -1
grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$log"
grep -E '^==[0-9]+==|^SUMMARY|Test unit written|deadly signal|timeout after' "$log" | head -5
exit "$rc"
