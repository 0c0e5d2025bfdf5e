#!/usr/bin/env bash
# The whole test suite: install what is missing, build, run every test (GPU tests skip without a GPU),
# then the sanitizer stage: the parsers' and rewards' unit tests and the fuzz regression corpora under
# ASan + UBSan (scripts/sanitize.sh, docs/FUZZING.md; its own build in build-asan/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
scripts/fetch_test_data.sh   # the real tokenizers the text/ tests compare against
ctest --test-dir build --output-on-failure -j "$(nproc)"
scripts/sanitize.sh build-asan
