#!/usr/bin/env bash
# Builds the fuzz targets' corpora (docs/FUZZING.md, "Seed corpora") into build-fuzz/corpus/<target>
# (or DIR/<target>): the regression inputs, the repository's real files, and the corpora earlier runs
# grew (fuzz/corpus/<target>.tar.gz, minimised with libFuzzer's -merge=1; see `save` below).
#   fuzz/seed_corpus.sh [DIR]           seeds every target
#   fuzz/seed_corpus.sh save PROGRAM    minimises build-fuzz/corpus/<target> into fuzz/corpus/<target>.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = save ]; then
  prog=$2 name=$(basename "$2") t=${name#fuzz_}
  min=$(mktemp -d)
  # detect_leaks=0: libcln (the math targets) keeps 26 bytes to the end, which would fail the merge.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$prog" -merge=1 -timeout=25 -rss_limit_mb=2048 "$min" \
    "build-fuzz/corpus/$t" >/dev/null 2>&1
  mkdir -p fuzz/corpus
  tar -C "$min" -czf "fuzz/corpus/$t.tar.gz" .
  echo "fuzz/corpus/$t.tar.gz: $(find "$min" -type f | wc -l) inputs, $(du -h "fuzz/corpus/$t.tar.gz" | cut -f1)"
  rm -rf "$min"
  exit 0
fi

out=${1:-build-fuzz/corpus}
for d in fuzz/regressions/*/; do
  t=$(basename "$d")
  mkdir -p "$out/$t"
  cp "$d"* "$out/$t/"
  if [ -f "fuzz/corpus/$t.tar.gz" ]; then tar -C "$out/$t" -xzf "fuzz/corpus/$t.tar.gz"; fi
done
mkdir -p "$out/chat_template" "$out/config_json" "$out/safetensors_header" "$out/yaml_recipe" "$out/jsonl_rows" \
  "$out/math_answer" "$out/code_block"
# Each fixture's template (tokenizer_config.json's chat_template, a string or named ones).
python3 - "$out/chat_template" tests/fixtures/chat_templates/*/tokenizer_config.json <<'PY'
import json, os, sys
for path in sys.argv[2:]:
    t = json.load(open(path)).get("chat_template")
    if t is None: continue
    named = t if isinstance(t, list) else [{"name": "default", "template": t}]
    for e in named:
        name = os.path.basename(os.path.dirname(path)) + "_" + e["name"]
        open(os.path.join(sys.argv[1], name + ".jinja"), "w").write(e["template"])
PY
for d in tests/fixtures/parity/*/; do
  n=$(basename "$d")
  cp "$d/config.json" "$out/config_json/$n.json"
  # The header and the first 2 KiB of data: whole files are up to 900 KiB, which slows every run.
  python3 - "$d/model.safetensors" "$out/safetensors_header/$n.safetensors" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
open(sys.argv[2], "wb").write(b[:8 + n + 2048])
PY
done
cp recipes/*.yaml bench/recipes/*.yaml "$out/yaml_recipe/"
for f in data/*.jsonl; do head -n 5 "$f" >"$out/jsonl_rows/$(basename "$f")"; done
# Math and code: gold line + completion, from the math cases (every 8th of them).
python3 - tests/fixtures/math_cases.jsonl "$out/math_answer" "$out/code_block" <<'PY'
import json, sys
for i, line in enumerate(open(sys.argv[1])):
    if i % 8: continue
    c = json.loads(line)
    open(f"{sys.argv[2]}/case_{i}.txt", "w").write(c["gold"] + "\n" + c["completion"])
    open(f"{sys.argv[3]}/case_{i}.txt", "w").write(c["completion"])
PY
for t in "$out"/*/; do echo "$(basename "$t"): $(find "$t" -type f | wc -l) inputs"; done
