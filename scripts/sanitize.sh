#!/usr/bin/env bash
# The sanitizer stage of the test command (scripts/test.sh runs it after the suite): ASan + UBSan
# builds of the fuzz targets, replaying their saved inputs (fuzz/regressions/), and of the parsers' and
# rewards' unit tests (tests/CMakeLists.txt: r1_parser_tests). Only the libraries those need are
# built, at -O1, into build-asan/. Any sanitizer report fails the stage.
# Usage: scripts/sanitize.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD="${1:-build-asan}"
start=$(date +%s)
if [ ! -f "$BUILD/build.ninja" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_SANITIZE=ON -DR1_CUDA=OFF >/dev/null
fi
cmake --build "$BUILD" -j "$(nproc)" --target fuzz_targets r1_parser_tests
built=$(date +%s)
# detect_leaks=0: LeakSanitizer needs ptrace, which containers often deny; ASan still finds
# overflows and use-after-free, UBSan undefined behaviour (-fno-sanitize-recover: fatal).
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
  ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)" -R '^(Fuzz|Sanitized)\.'
echo "sanitize: build $((built - start)) s, tests $(($(date +%s) - built)) s"
