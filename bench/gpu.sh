#!/usr/bin/env bash
# The GPU run in one script. The device machine has a GPU and the CUDA runtime but no package
# registry and no dev headers, so everything is built here and carried:
#
#   bash bench/gpu.sh pack   # here: Release build with CUDA in build-gpu/, binaries + the shared
#                            # libraries the GPU machine may lack into .gpu/ (git-ignored)
#                            # (R1_GPU_TARGETS="r1 r1_tests r1_comm_worker": those alone, no benchmarks)
#   bash bench/gpu.sh run    # there, in the repo root (device tool: carry [".gpu"], timeout 600):
#                            # CUDA tests, the rest of r1_tests beside GPU parity against
#                            # transformers, then benchmarks, ours beside the PyTorch/transformers
#                            # peer in the same run; files under $OUT; summary table last.
#     R1_GPU_BENCH=train (default): train step, 0.5B and 1.5B, and GRPO-step memory
#     R1_GPU_BENCH=rollout: generation, 0.5B and 1.5B, 64 and 256 prompts x 128 + 1024 tokens
#     R1_GPU_BENCH=decode: issue 25's table: 0.5B, 1.5B, 7B, Llama-3.1-8B (R1_GPU_SHAPES="7b ..." picks),
#                          64 and 256 prompts x 128 + 1024 and 2048 tokens, r1 beside transformers
#                          (R1_GPU_PEER=window: the peer timed over 64 steps around the mean position,
#                          hf_generate.py --window; R1_GPU_PEER_FULL="0.5b": there also its whole run)
#     R1_GPU_BENCH=attention: the decode attention launch alone (bench_decode_attention_gpu), 0.5B
#                       and 1.5B heads at 1-2176 keys: its fixed µs and µs per key, variants, stamps
#     R1_GPU_BENCH=ncu: Nsight Compute's counters for one decode step's kernels (0.5B x 64 at the
#                       mean position; R1_GPU_SHAPES picks): DRAM %, occupancy, warp stalls per kernel
#     R1_GPU_BENCH=ncu-source: the same window, one kernel (R1_NCU_KERNEL, a regex; default the
#                       tensor-core decode attention) sampled instruction by instruction: where its
#                       warps stall, per SASS line (bench/ncu_source.py; default shapes 0.5b 1.5b)
#     R1_GPU_BENCH=moe: Moonlight-16B-A3B and Qwen3-30B-A3B shapes (R1_GPU_SHAPES picks): generation (64 x
#       (128 + R1_GPU_NEW, default 1024)) and an 8-layer train step, r1 beside transformers (issue 22)
#     R1_GPU_BENCH=grouped: the experts' grouped GEMMs alone (bench_grouped_gemm_gpu beside
#       bench/peer/grouped_mm.py's torch._grouped_mm), each product's ms and TFLOP/s
#     R1_GPU_BENCH=paged: the paged KV cache (r1 only): tokens/s, sequences in flight, KV blocks and
#                         preemptions at 64 and 256 prompts x 1024 (0.5B, 1.5B), then 256 x 8k
#                         responses (0.5B) with the pool from free memory and with a pool of half
#                         the batch's need (preemption)
#     R1_GPU_BENCH=exact: issue 20: the GRPO step (0.5B and 1.5B, 64 x 8, 1024 new tokens) with
#       rollout.exact_logprobs off, on and on with the attention in fixed key splits (sampler/trainer
#       gap, rollout and step tokens/s), the peer
#     R1_GPU_BENCH=grpo: one whole GRPO step (0.5B, 64 x 8, 1024 new tokens), and the KV cache of
#                        512 x 2k tokens (1.5B) beside the training state
#     R1_GPU_BENCH=dist: data parallel over all GPUs (kind nvidia-h200-x2): NCCL collectives, GRPO
#       step tokens/s per GPU on 1 GPU and on all (weak and strong scaling efficiency)
#     R1_GPU_BENCH=paged-ab (with R1_GPU_BASE=an older pack's folder): generation with the paged
#                           cache beside the preallocated one and transformers (issue 18;
#                           R1_GPU_PEER=0: without transformers, about 4 minutes instead of 9)
#     R1_GPU_BENCH=tools: multi-turn tool rollouts, 0.5B, 256 episodes in flight, 3 sandboxed Python
#                         calls each (and a fixed 50 ms tool beside it): episodes/s, GPU busy share
#     R1_GPU_BENCH=distill: the distillation pipeline (recipes/pipeline_distill_demo.yaml) on the GPU
#     R1_GPU_BENCH=0: no benchmarks.  R1_GPU_TESTS=0: no tests or parity (benchmarks only).
#   (A device call is limited to 600 s: one benchmark set per call.)
#   bash bench/gpu.sh ab BASE [BASE2 ...]: benchmarks of this build beside older packs' (see ab() below).
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
  benches=$(cd bench && ls ./*_gpu.cpp 2>/dev/null | sed 's|^\./||; s|\.cpp$||' | tr '\n' ' ')
  # R1_GPU_TARGETS=r1 packs the r1 program alone (a long run's quick pack: 'gpu.sh r1' needs no more).
  local targets=${R1_GPU_TARGETS:-"r1_tests r1 r1_comm_worker $benches"}
  # shellcheck disable=SC2086
  ninja -C build-gpu $targets
  # A new pack replaces the old one, but keeps the call scripts written beside it (.gpu/*.sh, *.py).
  local keep
  keep=$(mktemp -d)
  cp .gpu/*.sh .gpu/*.py "$keep"/ 2>/dev/null || true
  rm -rf .gpu
  mkdir -p .gpu/lib .gpu/bench
  cp "$keep"/* .gpu/ 2>/dev/null || true
  rm -rf "$keep"
  for t in $targets; do
    case $t in
      r1) cp build-gpu/r1 .gpu/ ;;
      r1_tests|r1_comm_worker) cp "build-gpu/tests/$t" .gpu/ ;;
      *) cp "build-gpu/bench/$t" .gpu/bench/ ;;
    esac
  done
  find .gpu -maxdepth 2 -type f ! -path '.gpu/lib/*' ! -name '*.sh' ! -name '*.py' -exec strip --strip-debug {} \; 2>/dev/null || true
  # Bundle every shared library the binaries resolve here, except the C/C++ runtime (Ubuntu 24.04
  # there has newer, compatible ones) and cuBLAS / the driver (too large to carry; the GPU machine
  # has CUDA 13). Debian 12's libfmt.so.9, OpenBLAS (OpenMP build), GiNaC, ... travel along.
  find .gpu -maxdepth 2 -type f ! -path '.gpu/lib/*' ! -name '*.sh' ! -name '*.py' -exec ldd {} \; 2>/dev/null | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
    case $(basename "$lib") in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
      libcuda.so*|libcublas.so*|libcublasLt.so*|libnccl.so*) ;;
      # Open MPI must be the machine's own (4.1.x, the same ABI): its mpirun loads its own plugins,
      # which must match the libraries the ranks run with.
      libmpi.so*|libopen-rte.so*|libopen-pal.so*|libhwloc.so*|libevent*.so*|libpmix.so*) ;;
      *) cp -L "$lib" .gpu/lib/ ;;
    esac
  done
  # Large libraries and the programs travel compressed (the carried tree must stay under 64 MiB);
  # run unpacks them. xz packs them a third smaller than gzip (r1, r1_tests and two benchmarks fit
  # in one call's carry).
  find .gpu/lib -type f -size +2M -exec xz -T2 -6 {} \;
  find .gpu -maxdepth 2 -type f ! -path '.gpu/lib/*' ! -name '*.sh' ! -name '*.py' -exec xz -T2 -6 {} \;
  {
    echo "SRC_DIR=$ROOT"
    # -dirty: built from a tree with changes not yet committed
    echo "GIT_REV=$(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo "BUILT=$(date -u +%Y-%m-%dT%H:%MZ)"
  } >.gpu/build_info
  echo "packed .gpu/ ($(du -sh .gpu | cut -f1)):"
  ls -la .gpu .gpu/lib
}

# The .gz and .xz files of each folder given, decompressed in place (xz, or Python's lzma where the
# machine lacks xz).
decompress() {
  local d f
  for d in "$@"; do
    gunzip -f "$d"/*.gz 2>/dev/null || true
    for f in "$d"/*.xz; do
      [[ -e $f ]] || continue
      if command -v xz >/dev/null; then
        xz -d -f "$f"
      else
        python3 -c 'import lzma, shutil, sys, os
src = sys.argv[1]; dst = src[:-3]
with lzma.open(src) as i, open(dst, "wb") as o: shutil.copyfileobj(i, o)
shutil.copymode(src, dst); os.remove(src)' "$f"
      fi
    done
  done
}

# Unpacks .gpu/ and points LD_LIBRARY_PATH at the bundled libraries (sets $lib and $py_env).
unpack() {
  # A pack holds r1, r1_tests, benchmarks or some of them (R1_GPU_TARGETS: the carry limit is 64 MiB).
  local any
  any=$(ls .gpu/r1 .gpu/r1.?z .gpu/r1_tests .gpu/r1_tests.?z .gpu/bench/* 2>/dev/null | head -1 || true)
  [[ -n $any ]] || { echo "gpu.sh: .gpu holds no program: run 'bash bench/gpu.sh pack' first" >&2; exit 1; }
  decompress .gpu .gpu/bench
  # shellcheck disable=SC1091
  source .gpu/build_info
  lib=/tmp/r1-gpu-lib
  # Python (torch) keeps the machine's own library path: our bundled libcudart and libgomp must
  # not shadow the ones torch ships with.
  py_env=(env "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}")
  rm -rf "$lib" && mkdir -p "$lib" && cp .gpu/lib/* "$lib"/ && decompress "$lib"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cuBLASLt (and anything else still missing): look in the usual CUDA and pip locations.
  local missing d
  packed=${any%.?z}  # the program run() lists the libraries of
  missing=$(ldd "$packed" | awk '/not found/ {print $1}')
  for m in $missing; do
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
             $(find /usr /opt -name "$m" 2>/dev/null | xargs -r -n1 dirname | sort -u); do
      if [[ -e "$d/$m" ]]; then export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"; break; fi
    done
  done
  # The tests have the build's source dir and r1 binary path baked in: make both exist here.
  if [[ "$SRC_DIR" != "$ROOT" && ! -e "$SRC_DIR" ]]; then mkdir -p "$(dirname "$SRC_DIR")" && ln -s "$ROOT" "$SRC_DIR"; fi
  mkdir -p build-gpu/tests
  if [[ -e .gpu/r1 ]]; then cp .gpu/r1 build-gpu/r1; fi  # tests that run r1 need it packed
  if [[ -e .gpu/r1_comm_worker ]]; then cp .gpu/r1_comm_worker build-gpu/tests/; fi
  # gpu_parity.py runs r1 through this wrapper, which brings back the bundled libraries.
  printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s/.gpu/r1" "$@"\n' "$LD_LIBRARY_PATH" "$ROOT" >"$lib/r1"
  chmod +x "$lib/r1"
}

# bash bench/gpu.sh tests FILTER: the carried r1_tests, only the tests the gtest filter names.
# bash bench/gpu.sh bench NAME ARGS...: one carried benchmark (e.g. bench_grpo_step_gpu --shape 7b).
# bash bench/gpu.sh r1 ARGS...: the carried r1 program on the GPU machine (e.g. a pipeline run:
# r1 pipeline recipes/pipeline_distill_demo.yaml device=cuda dir=$OUT/distill).
r1cmd() {
  unpack
  exec .gpu/r1 "$@"
}

# Nsight Compute's command line (on PATH or in its install folder), or nothing, saying so in the log $1.
find_ncu() {
  local ncu
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 || true)
  if [[ -z $ncu ]]; then echo "gpu.sh: no ncu on this machine" | tee -a "$1" >&2; fi
  echo "$ncu"
}

run() {
  local out=${OUT:-/tmp/r1-gpu-out}
  mkdir -p "$out"
  unpack
  {
    echo "== build $GIT_REV ($BUILT), host $(hostname)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    echo "== ldd"
    ldd "$packed"
  } 2>&1 | tee "$out/env.log"
  if ldd "$packed" | grep -q "not found"; then echo "gpu.sh: unresolved libraries (see above)"; fi

  # One device command may run 600 s: every stage gets what is left of an overall deadline, and the
  # summary is printed from whatever finished.
  local deadline=$((SECONDS + ${R1_GPU_BUDGET_S:-560}))
  # Multi-GPU jobs (CudaDist tests, R1_GPU_BENCH=dist): NVLink multicast (NVLS) stays off.
  export NCCL_NVLS_ENABLE=0
  local py=${PYTHON:-python3}
  : >"$out/bench.jsonl"
  set +e
  # The CPU tests run in the background from the start, beside the GPU tests and GPU parity (none
  # of them is timed); the benchmarks wait for them. The real-tokenizer tests need
  # tests/data/tokenizers (28 MB, fetched from npm here): they run only when it was carried.
  local filter='-Cuda*:*Device*'
  if [ ! -f tests/data/tokenizers/qwen3/tokenizer.json ]; then
    filter="$filter:Real/*:TokenizerLoad.*:TokenizeCli.*:TextBadInput.InvalidUtf8IsAClearError:GenerateCli.*"
    echo "(tests/data/tokenizers not carried: real-tokenizer tests left out)"
  fi
  # Passive OpenMP waiting (as under CTest): spinning test threads would starve the GPU jobs' hosts.
  local rc_cuda=0 rc_parity=0 rc_all=0
  if [[ ${R1_GPU_TESTS:-1} == 1 ]]; then
  OMP_WAIT_POLICY=PASSIVE timeout "$(left 420)" .gpu/r1_tests --gtest_filter="$filter" --gtest_color=no \
    >"$out/all_tests.log" 2>&1 &
  local tests_pid=$!
  # GPU tests: every op against the CPU op, the model and trainer on the device. OpsErrors.Devices
  # skips its no-backend checks when a GPU is usable.
  echo "== CUDA tests (Cuda*, *Device*; the other tests run meanwhile)"
  timeout "$(left 180)" .gpu/r1_tests --gtest_filter='Cuda*:*Device*' --gtest_color=no >"$out/cuda_tests.log" 2>&1
  rc_cuda=$?
  grep -E "^\[ (CUDADEV|  FAILED|  PASSED|  SKIPPED) \]|: Failure$" -A2 "$out/cuda_tests.log" | head -60

  echo "== GPU parity (tools/parity/gpu_parity.py)"
  timeout "$(left 180)" "${py_env[@]}" "$py" tools/parity/gpu_parity.py --r1 "$lib/r1" --work /tmp/r1-gpu-parity \
    --json "$out/parity.json" >"$out/parity.log" 2>&1
  rc_parity=$?
  sed -n '/^== GPU parity/,$p' "$out/parity.log"
  [[ $rc_parity -eq 0 ]] || tail -5 "$out/parity.log"
  # Reward models against transformers' AutoModelForSequenceClassification: r1 in f32 is the gate
  # (layout, pooling, head); r1's bf16 CUDA scores are shown beside it (per-token bf16 error on these
  # random models reaches ~20% of the largest score for qwen3; the pooled reward stays within 1.5%).
  echo "== reward-model parity (tools/parity/rm_parity.py; f32, then bf16 on CUDA for information)"
  timeout "$(left 120)" "${py_env[@]}" "$py" tools/parity/rm_parity.py --r1 "$lib/r1" \
    >"$out/rm_parity.log" 2>&1 || rc_parity=1
  timeout "$(left 120)" "${py_env[@]}" "$py" tools/parity/rm_parity.py --r1 "$lib/r1" --device cuda \
    >"$out/rm_parity_cuda.log" 2>&1
  grep -h "ForSequenceClassification" "$out/rm_parity.log" "$out/rm_parity_cuda.log"
  wait "$tests_pid"
  rc_all=$?
  grep -E "^\[  FAILED  \]|: Failure$" -A2 "$out/all_tests.log" | head -40
  fi

  if [[ ${R1_GPU_BENCH:-train} == distill ]]; then
    echo "== distillation pipeline (recipes/pipeline_distill_demo.yaml, device=cuda)"
    # Models and checkpoints stay on the machine; the records (summaries, metrics, eval) come back.
    timeout "$(left 590)" .gpu/r1 pipeline recipes/pipeline_distill_demo.yaml device=cuda dir=/tmp/r1-distill \
      ${R1_PIPELINE_ARGS:-} 2>"$out/distill.log" | tee "$out/distill_table.txt"
    tail -3 "$out/distill.log"
    (cd /tmp/r1-distill && find . -maxdepth 2 \( -name '*.json' -o -name metrics.jsonl -o -name config.yaml \) \
      -exec cp --parents {} "$out/" \;) || true
  fi
  if [[ ${R1_GPU_BENCH:-train} == dist ]]; then
    # Data parallelism over every GPU of the machine, one rank each (NVLink SHARP/multicast off).
    local ngpu p=${R1_DIST_PROMPTS:-32} new=${R1_DIST_NEW:-512}
    ngpu=$(nvidia-smi -L | wc -l)
    local mpi=(mpirun --allow-run-as-root --bind-to none -x NCCL_NVLS_ENABLE=0 -x LD_LIBRARY_PATH)
    echo "== NCCL collectives, $ngpu ranks (r1_comm_worker)" | tee -a "$out/bench.log"
    timeout "$(left 60)" "${mpi[@]}" -np "$ngpu" .gpu/r1_comm_worker --device cuda 2>&1 | tail -2 | tee -a "$out/bench.log"
    # Weak scaling (the same work per GPU: p prompts x 8 each), then strong (p prompts in all).
    local np prompts
    for np in 1 "$ngpu" "$ngpu"; do
      prompts=$((p * np)); [[ $np == "$ngpu" && -n ${weak_done:-} ]] && prompts=$p
      echo "== GRPO step 0.5b, $prompts x 8 prompts, $new new tokens, $np GPU(s)" | tee -a "$out/bench.log"
      timeout "$(left 200)" "${mpi[@]}" -np "$np" .gpu/bench/bench_grpo_step_gpu --shape 0.5b --prompts "$prompts" \
        --group 8 --new "$new" --steps 3 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
      [[ $np == "$ngpu" ]] && weak_done=1
    done
    "$py" - "$out/bench.jsonl" <<'PY' | tee -a "$out/bench.log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"r1-grpo-step"' in l and '"error"' not in l]
runs = {}
for r in rows:
    if r["step"] > 0:  # step 0 holds one-time work (graph capture, plans, arenas)
        runs.setdefault((r["ranks"], r["prompts"]), []).append(r)
def per_gpu(k):
    rs = runs[k]
    return sum(r["generated_tokens"] for r in rs) / sum(r["step_s"] for r in rs) / k[0]
keys = sorted(runs)
for k in keys:
    print(f"ranks {k[0]} prompts {k[1]:4d}: {per_gpu(k):9.0f} generated tok/s per GPU, step {sum(r['step_s'] for r in runs[k]) / len(runs[k]):.2f} s")
one = [k for k in keys if k[0] == 1]
if one:
    base = one[0]
    for k in keys:
        if k[0] > 1:
            kind = "weak (same work per GPU)" if k[1] == base[1] * k[0] else "strong (same global batch)"
            print(f"scaling efficiency, {k[0]} GPUs, {kind}: {per_gpu(k) / per_gpu(base) * 100:.1f}%")
PY
  fi
  # Ours then the PyTorch peer on each shape, on a quiet machine (the CPU tests are done).
  # R1_GPU_BENCH=0 skips the benchmarks (a quick correctness pass).
  local shape shapes="0.5b 1.5b" which=${R1_GPU_BENCH:-train}
  [[ $which == train ]] || shapes=""
  for shape in $shapes; do
    echo "== train step $shape: r1" | tee -a "$out/bench.log"
    timeout "$(left 90)" .gpu/bench/bench_train_gpu --shape "$shape" --seqs 8 --len 1024 --warmup 3 \
      --steps 10 --profile 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    echo "== train step $shape: torch (amp, bf16)" | tee -a "$out/bench.log"
    timeout "$(left 150)" "${py_env[@]}" "$py" bench/peer/torch_train_step.py --shape "$shape" --modes amp,bf16 \
      --seqs 8 --len 1024 --warmup 3 --steps 10 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
  done
  if [[ -n $shapes ]]; then
    echo "== GRPO step memory, 1.5b: policy + frozen reference + AdamW (r1)" | tee -a "$out/bench.log"
    timeout "$(left 60)" .gpu/bench/bench_train_gpu --shape 1.5b --seqs 8 --len 1024 --warmup 1 --steps 2 \
      --reference 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
  fi
  if [[ $which == rollout ]]; then
    local prompts
    for shape in 0.5b 1.5b; do
      for prompts in 64 256; do
        echo "== generate $shape, $prompts x (128 + 1024): r1" | tee -a "$out/bench.log"
        timeout "$(left 60)" .gpu/bench/bench_rollout_gpu --shape "$shape" --prompts "$prompts" --prompt-len 128 \
          --new 1024 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
        echo "== generate $shape, $prompts x (128 + 1024): transformers" | tee -a "$out/bench.log"
        timeout "$(left 150)" "${py_env[@]}" "$py" bench/peer/hf_generate.py --shape "$shape" --prompts "$prompts" \
          --prompt-len 128 --new 1024 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
      done
    done
  fi
  if [[ $which == decode ]]; then
    # Issue 25's table: decode tokens/s and the fraction of the bandwidth roofline, r1 beside
    # transformers, at 128-token prompts, P prompts x N new tokens, and r1's kernels per decode
    # step. R1_GPU_SHAPES picks the shapes (one device call holds about one shape's eight runs);
    # R1_GPU_PEER=0: r1 alone.
    local prompts new
    for shape in ${R1_GPU_SHAPES:-0.5b 1.5b 7b llama-3.1-8b}; do
      for new in 1024 2048; do
        for prompts in 64 256; do
          echo "== decode $shape, $prompts x (128 + $new): r1" | tee -a "$out/bench.log"
          # --trace 64: then every kernel of 64 more decode steps, timed in their graphs (a second line)
          timeout "$(left 120)" .gpu/bench/bench_rollout_gpu --shape "$shape" --prompts "$prompts" --prompt-len 128 \
            --new "$new" --trace 64 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
          [[ ${R1_GPU_PEER:-1} == 0 ]] && continue  # r1 alone
          local window=()
          [[ ${R1_GPU_PEER:-1} == window ]] && window=(--window 64)
          echo "== decode $shape, $prompts x (128 + $new): transformers ${window[*]}" | tee -a "$out/bench.log"
          timeout "$(left 240)" "${py_env[@]}" "$py" bench/peer/hf_generate.py --shape "$shape" --prompts "$prompts" \
            --prompt-len 128 --new "$new" "${window[@]}" 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
          # R1_GPU_PEER_FULL="0.5b ...": at these shapes' 64 x (128 + 1024) the whole run too, the
          # window's check in the same run
          if [[ ${#window[@]} -gt 0 && " ${R1_GPU_PEER_FULL:-} " == *" $shape "* && $prompts == 64 && $new == 1024 ]]; then
            echo "== decode $shape, $prompts x (128 + $new): transformers, whole run" | tee -a "$out/bench.log"
            timeout "$(left 240)" "${py_env[@]}" "$py" bench/peer/hf_generate.py --shape "$shape" --prompts "$prompts" \
              --prompt-len 128 --new "$new" 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
          fi
        done
      done
    done
  fi
  if [[ $which == attention ]]; then
    # The decode step's attention launch alone (bench_decode_attention_gpu): its µs against the
    # keys (the fixed part and the part per key), then the variants that each change one thing
    # (no RoPE in the prologue, keys in L2, the q/k/v product before it) and the phase stamps.
    # R1_GPU_SHAPES picks (default qwen2.5-0.5b,qwen2.5-1.5b; comma-separated preset names).
    local shapes_a=${R1_GPU_SHAPES:-qwen2.5-0.5b,qwen2.5-1.5b} args
    for args in "--rows 64,256 --keys 1,128,256,640,1152,2176" \
      "--rows 64 --keys 1,256,640,1152 --rope none" "--rows 64 --keys 1,256,640,1152 --cache warm" \
      "--rows 64 --keys 1,640 --with-qkv" "--rows 64 --keys 1,256,640,1152 --stamps" \
      "--rows 64 --keys 640 --stamps --rope none"; do
      echo "== decode attention alone, $shapes_a $args" | tee -a "$out/bench.log"
      # shellcheck disable=SC2086
      timeout "$(left 120)" .gpu/bench/bench_decode_attention_gpu --shape "$shapes_a" $args 2>&1 |
        tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    done
  fi
  if [[ $which == ncu ]]; then
    # Nsight Compute's hardware counters for one decode step's kernels at the mean position of a
    # 64 x (128 + 1024) run (bench_rollout_gpu --ncu-window), then bench/ncu_summary.py's table:
    # per kernel DRAM throughput, occupancy and warp stall reasons (what the CUPTI trace's times
    # alone do not say). R1_GPU_SHAPES picks (default 0.5b); the KV pool is just what the run needs,
    # so ncu's replay saves and restores little memory.
    local ncu
    ncu=$(find_ncu "$out/bench.log")
    for shape in ${R1_GPU_SHAPES:-0.5b}; do
      [[ -z $ncu ]] && break
      echo "== ncu $shape, 64 x (128 + 1024), one decode step at the mean position" | tee -a "$out/bench.log"
      timeout "$(left 300)" "$ncu" --clock-control none --profile-from-start off --launch-count "${R1_NCU_KERNELS:-360}" \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
        --section WarpStateStats --section SchedulerStats -f -o "$out/ncu_$shape" \
        .gpu/bench/bench_rollout_gpu --shape "$shape" --prompts 64 --prompt-len 128 --new 1024 --ncu-window \
        --kv-tokens 90000 >"$out/ncu_$shape.log" 2>&1
      grep '^{' "$out/ncu_$shape.log" | tee -a "$out/bench.log" >>"$out/bench.jsonl"
      tail -3 "$out/ncu_$shape.log"
      "$ncu" --import "$out/ncu_$shape.ncu-rep" --csv --page raw --print-units base >"$out/ncu_$shape.csv" 2>&1
      "$py" bench/ncu_summary.py "$out/ncu_$shape.csv" --json "$out/ncu_$shape.json" | tee -a "$out/bench.log"
    done
  fi
  if [[ $which == ncu-source ]]; then
    # Where one kernel's warps wait, instruction by instruction: ncu's warp-state sampling of its
    # first launch inside the --ncu-window decode steps, the SASS page as CSV, and
    # bench/ncu_source.py's table of the instructions that hold most samples, with their reasons.
    local ncu kernel=${R1_NCU_KERNEL:-decode_mma_kernel}
    ncu=$(find_ncu "$out/bench.log")
    for shape in ${R1_GPU_SHAPES:-0.5b 1.5b}; do
      [[ -z $ncu ]] && break
      echo "== ncu source $shape: $kernel, 64 x (128 + 1024) at the mean position" | tee -a "$out/bench.log"
      # R1_NCU_CACHE=none keeps the caches warm between replays (as inside the step's graph, where
      # the block table, positions and the new q/k/v rows sit in L2); the default flushes them.
      timeout "$(left 200)" "$ncu" --clock-control none --cache-control "${R1_NCU_CACHE:-all}" \
        --profile-from-start off --kernel-name "regex:$kernel" \
        --launch-count 1 --section SourceCounters --section WarpStateStats --section SpeedOfLight \
        --section Occupancy -f -o "$out/ncusrc_$shape" \
        .gpu/bench/bench_rollout_gpu --shape "$shape" --prompts 64 --prompt-len 128 --new 1024 --ncu-window \
        --kv-tokens 90000 >"$out/ncusrc_$shape.log" 2>&1
      tail -3 "$out/ncusrc_$shape.log"
      "$ncu" --import "$out/ncusrc_$shape.ncu-rep" --csv --page source --print-source sass \
        >"$out/ncusrc_$shape.csv" 2>&1
      "$ncu" --import "$out/ncusrc_$shape.ncu-rep" --page details >"$out/ncusrc_$shape.details" 2>&1
      "$py" bench/ncu_source.py "$out/ncusrc_$shape.csv" | tee -a "$out/bench.log"
    done
  fi
  if [[ $which == moe ]]; then
    # Issue 22: the mixture-of-experts shapes (random weights, the published configs), r1 beside
    # transformers in one run: generation at 64 x (128 + 1024), and a train step of the first 8
    # layers (the whole model's fp32 master, gradients and AdamW moments do not fit one GPU).
    # R1_GPU_NEW: new tokens per sequence (transformers needs ~0.2 s a decode step on these shapes:
    # 512 keeps Qwen3-30B-A3B's peer inside its 240 s).
    local new=${R1_GPU_NEW:-1024}
    for shape in ${R1_GPU_SHAPES:-moonlight-16b-a3b qwen3-30b-a3b}; do
      echo "== generate $shape, 64 x (128 + $new): r1" | tee -a "$out/bench.log"
      timeout "$(left 240)" .gpu/bench/bench_rollout_gpu --shape "$shape" --prompts 64 --prompt-len 128 \
        --new "$new" 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
      echo "== generate $shape, 64 x (128 + $new): transformers" | tee -a "$out/bench.log"
      timeout "$(left 240)" "${py_env[@]}" "$py" bench/peer/hf_generate.py --shape "$shape" --prompts 64 \
        --prompt-len 128 --new "$new" 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
      echo "== train step $shape, 8 layers: r1" | tee -a "$out/bench.log"
      timeout "$(left 120)" .gpu/bench/bench_train_gpu --shape "$shape" --layers 8 --seqs 8 --len 1024 \
        --warmup 2 --steps 5 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
      echo "== train step $shape, 8 layers: torch (bf16)" | tee -a "$out/bench.log"
      timeout "$(left 180)" "${py_env[@]}" "$py" bench/peer/torch_train_step.py --shape "$shape" --layers 8 \
        --modes bf16 --seqs 8 --len 1024 --warmup 2 --steps 5 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    done
  fi
  if [[ $which == grouped ]]; then
    # The experts' grouped GEMMs alone, each product timed, r1 beside torch._grouped_mm (issue 22).
    for shape in ${R1_GPU_SHAPES:-moonlight-16b-a3b qwen3-30b-a3b}; do
      echo "== grouped GEMM $shape, 8192 tokens: r1" | tee -a "$out/bench.log"
      timeout "$(left 120)" .gpu/bench/bench_grouped_gemm_gpu --shape "$shape" 2>&1 | tee -a "$out/bench.log" |
        grep '^{' >>"$out/bench.jsonl"
      echo "== grouped GEMM $shape, 8192 tokens: torch._grouped_mm" | tee -a "$out/bench.log"
      timeout "$(left 120)" "${py_env[@]}" "$py" bench/peer/grouped_mm.py --shape "$shape" 2>&1 |
        tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    done
  fi
  if [[ $which == paged ]]; then
    local prompts
    for shape in 0.5b 1.5b; do
      for prompts in 64 256; do
        echo "== paged generate $shape, $prompts x (128 + 1024): r1" | tee -a "$out/bench.log"
        timeout "$(left 60)" .gpu/bench/bench_rollout_gpu --shape "$shape" --prompts "$prompts" --prompt-len 128 \
          --new 1024 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
      done
    done
    # 8k responses: 256 sequences of 128 + 8192 tokens need 256 x 8320 = 2.1M cached tokens; the
    # second run gets half of that (1.06M tokens) and must preempt.
    local kv
    for kv in 0 1064960; do
      echo "== paged generate 0.5b, 256 x (128 + 8192), kv tokens ${kv/#0/free memory x 0.9}: r1" | tee -a "$out/bench.log"
      timeout "$(left 200)" .gpu/bench/bench_rollout_gpu --shape 0.5b --prompts 256 --prompt-len 128 --new 8192 \
        --kv-tokens "$kv" 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    done
  fi
  if [[ $which == paged-ab ]]; then
    # Issue 18: the paged KV cache (this pack) beside the preallocated one (the older pack in
    # R1_GPU_BASE, e.g. a copy of .gpu-base/bench) and transformers, in one run: 64 and 256 prompts
    # x (128 + 1024) at 0.5B and 1.5B, then 256 x (128 + 8192) at 0.5B (the preallocated engine
    # holds all 256 slots of 8,320 tokens at this size: 26 GB).
    local base=${R1_GPU_BASE:?set R1_GPU_BASE to the folder of an older pack} prompts new c bin
    decompress "$base"/bench
    tag() { sed "s/^{/{\"engine\":\"$1\",/"; }
    for c in "0.5b 64 1024" "0.5b 256 1024" "1.5b 64 1024" "1.5b 256 1024" "0.5b 256 8192"; do
      read -r shape prompts new <<<"$c"
      for bin in .gpu/bench "$base"/bench; do
        echo "== generate $shape, $prompts x (128 + $new): r1 $bin" | tee -a "$out/bench.log"
        timeout "$(left 200)" "$bin"/bench_rollout_gpu --shape "$shape" --prompts "$prompts" --prompt-len 128 \
          --new "$new" 2>&1 | tee -a "$out/bench.log" | grep '^{' | tag "${bin%%/*}" >>"$out/bench.jsonl"
      done
      [[ $new -gt 1024 || ${R1_GPU_PEER:-1} == 0 ]] && continue  # R1_GPU_PEER=0: r1's engines alone
      echo "== generate $shape, $prompts x (128 + $new): transformers" | tee -a "$out/bench.log"
      timeout "$(left 150)" "${py_env[@]}" "$py" bench/peer/hf_generate.py --shape "$shape" --prompts "$prompts" \
        --prompt-len 128 --new "$new" 2>&1 | tee -a "$out/bench.log" | grep '^{' | tag transformers >>"$out/bench.jsonl"
    done
  fi
  if [[ $which == tools ]]; then
    local tool
    for tool in python sleep; do
      echo "== tool rollouts 0.5b, 256 episodes x 3 calls ($tool): r1" | tee -a "$out/bench.log"
      timeout "$(left 60)" .gpu/bench/bench_tool_rollout_gpu --shape 0.5b --episodes 256 --turns 3 --turn-len 128 \
        --obs-len 32 --answer-len 64 --tool "$tool" --threads 16 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    done
  fi
  if [[ $which == exact ]]; then  # issue 20: the same GRPO step with the batch-invariant forward off and on
    for shape in ${R1_GPU_SHAPES:-0.5b 1.5b}; do
      for exact in off on split; do
        echo "== GRPO step $shape, 64 x 8, 1024 new tokens, exact $exact: r1" | tee -a "$out/bench.log"
        timeout "$(left 200)" .gpu/bench/bench_grpo_step_gpu --shape "$shape" --prompts 64 --group 8 --new 1024 \
          --steps 2 --exact "$exact" 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
      done
    done
    echo "== GRPO step 0.5b: PyTorch + transformers" | tee -a "$out/bench.log"
    timeout "$(left 240)" "${py_env[@]}" "$py" bench/peer/torch_grpo_step.py --shape 0.5b --prompts 64 --group 8 \
      --new 1024 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
  fi
  if [[ $which == grpo ]]; then
    echo "== GRPO step 0.5b, 64 x 8, up to 1024 new tokens: r1" | tee -a "$out/bench.log"
    timeout "$(left 150)" .gpu/bench/bench_grpo_step_gpu --shape 0.5b --prompts 64 --group 8 --new 1024 --steps 2 \
      2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    echo "== GRPO step 0.5b: PyTorch + transformers" | tee -a "$out/bench.log"
    timeout "$(left 240)" "${py_env[@]}" "$py" bench/peer/torch_grpo_step.py --shape 0.5b --prompts 64 --group 8 \
      --new 1024 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
    echo "== KV cache 512 x 2048 (1.5b) beside the training state: r1" | tee -a "$out/bench.log"
    timeout "$(left 90)" .gpu/bench/bench_rollout_gpu --shape 1.5b --prompts 512 --prompt-len 128 --new 64 \
      --context 2048 --with-training-state 2>&1 | tee -a "$out/bench.log" | grep '^{' >>"$out/bench.jsonl"
  fi
  set -e

  echo
  echo "== ||gpu - cpu|| / ||cpu|| per op (fp32)"
  printf "%-32s %-44s %-10s %s\n" "op" "size" "rel err" "tol"
  grep -h "^\[ ROLLOUT \]" "$out/cuda_tests.log" 2>/dev/null || true
  grep "^\[ CUDAERR \]" "$out/cuda_tests.log" 2>/dev/null | sed 's/^\[ CUDAERR \] //' |
    awk -F' *[|] *' '{tol=$4; sub(/tol /, "", tol); ok = ($3 + 0 <= tol + 0) ? "" : "  FAIL";
                      printf "%-32s %-44s %-10s %s%s\n", $1, $2, $3, tol, ok}' || true
  echo
  "$py" bench/gpu_summary.py "$out" | tee "$out/summary.txt"
  printf "rc: CUDA tests %s, other tests %s, parity %s; %s s\n" "$rc_cuda" "$rc_all" "$rc_parity" "$SECONDS" |
    tee -a "$out/summary.txt"
  [[ $rc_cuda -eq 0 && $rc_all -eq 0 && $rc_parity -eq 0 ]]
}

# bash bench/gpu.sh ab BASE [BASE2 ...]: this build's benchmarks beside older builds', interleaved on
# the same machine, for "no slower than before" checks and for telling several changes apart. Each
# BASE is a folder holding an older pack's bench/ (e.g. .gpu-base: `bash bench/gpu.sh pack` in a
# worktree of the old commit, then copy its .gpu there; .gpu-* folders are git-ignored, so name them
# in the device call's carry); its name less a leading ".gpu-" labels it.
# Round 1 runs the bases in the order given, then this build; round 2 the reverse order, and so on
# (R1_AB_ROUNDS, default 2). Prints one line per benchmark: the median tok/s of each build and its
# ratio to the first BASE, then the median decode step (ms) where the benchmark reports one.
ab() {
  local out=${OUT:-/tmp/r1-gpu-out} d b
  mkdir -p "$out"
  unpack
  local labels=() dirs=()
  for d in "$@"; do
    [[ -d $d/bench ]] || { echo "gpu.sh ab: $d holds no bench/ folder" >&2; exit 2; }
    decompress "$d"/bench
    d=${d%/}; b=$(basename "$d"); b=${b#.gpu-}
    [[ " ${labels[*]} this " != *" $b "* ]] || { echo "gpu.sh ab: two builds labelled $b ($d)" >&2; exit 2; }
    labels+=("$b"); dirs+=("$d/bench")
  done
  labels+=(this); dirs+=(.gpu/bench)
  local cases=(
    "train-0.5b|bench_train_gpu --shape 0.5b --seqs 8 --len 1024 --warmup 3 --steps 10"
    "train-1.5b|bench_train_gpu --shape 1.5b --seqs 8 --len 1024 --warmup 3 --steps 10"
    "generate-0.5b-64|bench_rollout_gpu --shape 0.5b --prompts 64 --prompt-len 128 --new 1024"
    "generate-0.5b-256|bench_rollout_gpu --shape 0.5b --prompts 256 --prompt-len 128 --new 1024"
    "generate-1.5b-64|bench_rollout_gpu --shape 1.5b --prompts 64 --prompt-len 128 --new 1024"
    "generate-1.5b-256|bench_rollout_gpu --shape 1.5b --prompts 256 --prompt-len 128 --new 1024"
    "grpo-0.5b-64x8|bench_grpo_step_gpu --shape 0.5b --prompts 64 --group 8 --new 1024 --steps 2")
  : >"$out/ab.jsonl"
  local c name cmd round i k n=${#dirs[@]}
  for ((round = 1; round <= ${R1_AB_ROUNDS:-2}; ++round)); do
    for c in "${cases[@]}"; do
      name=${c%%|*}; cmd=${c#*|}
      # R1_AB_CASES="train-0.5b train-1.5b": those cases alone (a call's time and carry are short)
      [[ -n ${R1_AB_CASES:-} && " $R1_AB_CASES " != *" $name "* ]] && continue
      for ((k = 0; k < n; ++k)); do
        i=$k; ((round % 2 == 0)) && i=$((n - 1 - k))
        # shellcheck disable=SC2086
        timeout 120 "${dirs[i]}"/$cmd 2>>"$out/ab.log" | grep '^{' |
          sed "s/^{/{\"ab\":\"${labels[i]}\",\"case\":\"$name\",\"round\":$round,/" >>"$out/ab.jsonl"
      done
    done
  done
  "${PYTHON:-python3}" bench/ab_summary.py "$out/ab.jsonl" "${labels[@]}" | tee "$out/ab.txt"
}

# Seconds a stage may take: its own limit, capped by what is left before the run's deadline (>= 1).
left() {
  local l=$((deadline - SECONDS))
  ((l > $1)) && l=$1
  ((l < 1)) && l=1
  echo "$l"
}

case ${1:-} in
  pack) pack ;;
  run) run ;;
  r1) shift; r1cmd "$@" ;;
  ab) shift; ab "${@:-.gpu-base}" ;;
  tests) shift; unpack; NCCL_NVLS_ENABLE=0 exec .gpu/r1_tests --gtest_color=no --gtest_filter="${1:-*}" ;;
  bench) shift; unpack; b=$1; shift; exec ".gpu/bench/$b" "$@" ;;
  *) echo "usage: bash bench/gpu.sh pack|run|r1 ARGS...|tests GTEST_FILTER|bench NAME ARGS...|ab BASE..." >&2; exit 2 ;;
esac
