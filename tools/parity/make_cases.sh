#!/usr/bin/env bash
# Writes .parity/cases: model directories saved by r1 (init and convert) with r1's log-probs, for
# tools/parity/check_r1_checkpoints.py to load in transformers.
set -euo pipefail
cd "$(dirname "$0")/../.."
R1=build/r1
P=.parity/cases
rm -rf "$P" && mkdir -p "$P"
for a in qwen2 llama qwen3; do
  $R1 init --preset tiny --arch $a --std 0.3 --seed 5 --out $P/init_$a
  cp tests/fixtures/parity/$a/inputs.jsonl $P/init_$a/
  $R1 convert --model tests/fixtures/parity/$a --out $P/convert_$a
  cp tests/fixtures/parity/$a/inputs.jsonl $P/convert_$a/
  cp tests/fixtures/parity/$a/expected.jsonl $P/convert_$a/reference.jsonl
done
$R1 init --preset tiny --arch qwen2 --std 0.3 --seed 6 --dtype bf16 --out $P/init_qwen2_bf16
cp tests/fixtures/parity/qwen2/inputs.jsonl $P/init_qwen2_bf16/
for d in $P/*; do $R1 logprobs --model "$d" < "$d/inputs.jsonl" > "$d/r1_logprobs.jsonl"; done
echo "wrote $(ls $P | wc -l) cases to $P"
