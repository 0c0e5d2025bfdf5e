#!/usr/bin/env bash
# The GPU run in one script. The device machine has a GPU and the CUDA runtime but no package
# registry and no dev headers, so everything is built here and carried:
#
#   bash bench/gpu.sh pack   # here: Release build with CUDA in build-gpu/, binaries + the shared
#                            # libraries the GPU machine may lack into .gpu/ (git-ignored)
#   bash bench/gpu.sh run    # there, in the repo root (device tool: carry [".gpu"]): runs the CUDA
#                            # tests, then the rest of r1_tests; logs under $OUT; summary table last
#
# The tokenizer golden tests read the git-ignored tests/data/tokenizers/ (scripts/fetch_test_data.sh):
# carry it too (about 28 MB; the carried tree's limit is 64 MiB) or expect those tests to fail there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

pack() {
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_CUDA=ON >/dev/null
  grep -q "R1_HAVE_CUDA" build-gpu/build.ninja || { echo "gpu.sh: nvcc not found, no CUDA backend" >&2; exit 1; }
  local benches
  benches=$(cd bench && ls ./*.cpp 2>/dev/null | sed 's|^\./||; s|\.cpp$||' | tr '\n' ' ')
  # shellcheck disable=SC2086
  ninja -C build-gpu r1_tests r1 $benches
  rm -rf .gpu
  mkdir -p .gpu/lib .gpu/bench
  cp build-gpu/tests/r1_tests build-gpu/r1 .gpu/
  for b in $benches; do cp "build-gpu/bench/$b" .gpu/bench/; done
  strip --strip-debug .gpu/r1_tests .gpu/r1 .gpu/bench/* 2>/dev/null || true
  # Bundle every shared library the binaries resolve here, except the C/C++ runtime (Ubuntu 24.04
  # there has newer, compatible ones) and cuBLAS / the driver (too large to carry; the GPU machine
  # has CUDA 13). Debian 12's libfmt.so.9, OpenBLAS (OpenMP build), GiNaC, ... travel along.
  ldd .gpu/r1_tests .gpu/r1 .gpu/bench/* 2>/dev/null | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
    case $(basename "$lib") in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcublas.so*|libcublasLt.so*) ;;
      *) cp -L "$lib" .gpu/lib/ ;;
    esac
  done
  # Large libraries travel compressed (the carried tree must stay under 64 MiB).
  find .gpu/lib -type f -size +2M -exec gzip -9 {} \;
  {
    echo "SRC_DIR=$ROOT"
    echo "GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "BUILT=$(date -u +%Y-%m-%dT%H:%MZ)"
  } >.gpu/build_info
  echo "packed .gpu/ ($(du -sh .gpu | cut -f1)):"
  ls -la .gpu .gpu/lib
}

run() {
  local out=${OUT:-/tmp/r1-gpu-out}
  mkdir -p "$out"
  [[ -x .gpu/r1_tests ]] || { echo "gpu.sh: .gpu/r1_tests missing: run 'bash bench/gpu.sh pack' first" >&2; exit 1; }
  # shellcheck disable=SC1091
  source .gpu/build_info
  local lib=/tmp/r1-gpu-lib
  rm -rf "$lib" && mkdir -p "$lib" && cp .gpu/lib/* "$lib"/ && gunzip -f "$lib"/*.gz 2>/dev/null || true
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cuBLASLt (and anything else still missing): look in the usual CUDA and pip locations.
  local missing d
  missing=$(ldd .gpu/r1_tests | awk '/not found/ {print $1}')
  for m in $missing; do
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
             $(find /usr /opt -name "$m" 2>/dev/null | xargs -r -n1 dirname | sort -u); do
      if [[ -e "$d/$m" ]]; then export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; break; fi
    done
  done
  # The tests have the build's source dir and r1 binary path baked in: make both exist here.
  if [[ "$SRC_DIR" != "$ROOT" && ! -e "$SRC_DIR" ]]; then mkdir -p "$(dirname "$SRC_DIR")" && ln -s "$ROOT" "$SRC_DIR"; fi
  mkdir -p build-gpu && cp .gpu/r1 build-gpu/r1
  {
    echo "== build $GIT_REV ($BUILT), host $(hostname)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    echo "== ldd"
    ldd .gpu/r1_tests
  } 2>&1 | tee "$out/env.log"
  if ldd .gpu/r1_tests | grep -q "not found"; then echo "gpu.sh: unresolved libraries (see above)"; fi

  set +e
  echo "== CUDA tests"
  timeout 300 .gpu/r1_tests --gtest_filter='Cuda*' --gtest_color=no >"$out/cuda_tests.log" 2>&1
  local rc_cuda=$?
  grep -E "^\[ (CUDADEV|  FAILED|  PASSED|  SKIPPED) \]|: Failure$" -A2 "$out/cuda_tests.log" | head -60
  # OpsErrors.Devices now skips its no-backend checks when a GPU is usable. The real-tokenizer tests
  # need tests/data/tokenizers (28 MB, fetched from npm here): they run only when it was carried.
  echo "== the rest of r1_tests"
  local filter='-Cuda*'
  if [ ! -f tests/data/tokenizers/qwen3/tokenizer.json ]; then
    filter="$filter:Real/*:TokenizerLoad.*:TokenizeCli.*:TextBadInput.InvalidUtf8IsAClearError:GenerateCli.*"
    echo "(tests/data/tokenizers not carried: real-tokenizer tests left out)"
  fi
  timeout 240 .gpu/r1_tests --gtest_filter="$filter" --gtest_color=no >"$out/all_tests.log" 2>&1
  local rc_all=$?
  grep -E "^\[  FAILED  \]|: Failure$" -A2 "$out/all_tests.log" | head -40
  set -e

  echo
  echo "== summary: ||gpu - cpu|| / ||cpu|| per op (fp32)"
  printf "%-32s %-44s %-10s %s\n" "op" "size" "rel err" "tol"
  grep "^\[ CUDAERR \]" "$out/cuda_tests.log" | sed 's/^\[ CUDAERR \] //' |
    awk -F' *[|] *' '{tol=$4; sub(/tol /, "", tol); ok = ($3 + 0 <= tol + 0) ? "" : "  FAIL";
                      printf "%-32s %-44s %-10s %s%s\n", $1, $2, $3, tol, ok}' || true
  printf "%-20s rc=%s  %s\n" "CUDA tests:" "$rc_cuda" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ test' "$out/cuda_tests.log" | tr '\n' ' ')"
  printf "%-20s rc=%s  %s\n" "other r1_tests:" "$rc_all" "$(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ test' "$out/all_tests.log" | tr '\n' ' ')"
  [[ $rc_cuda -eq 0 && $rc_all -eq 0 ]]
}

case ${1:-} in
  pack) pack ;;
  run) run ;;
  *) echo "usage: bash bench/gpu.sh pack|run" >&2; exit 2 ;;
esac
