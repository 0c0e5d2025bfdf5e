#pragma once
// The tensor-core path of the paged decode attention (decode_attention_mma.cu), for bf16 and the
// head-dim pairs R1_FLASH_HEAD_DIMS names, with 16-byte aligned q, caches and rows. Internal to the
// backend: decode_attention.cu chooses the path and the splits and merges split partials.
#include <cuda_bf16.h>

#include <cstdint>

namespace r1::cuda::flash {

constexpr int kDecodeMmaHeads = 16;  // query heads of one kv head per block (the mma's M)

struct DecodeArgs {
  __nv_bfloat16* out;        // (T, NH, HDV), written when part is null
  float* part;               // split partials: o at ((split * T + t) * NH + h) * HDV, then the
                             // base-2 lse at S * T * NH * HDV + (split * T + t) * NH + h
  const __nv_bfloat16* q;    // (T, NH, HD)
  const __nv_bfloat16* k_cache;
  const __nv_bfloat16* v_cache;
  const int32_t* table;      // (slots, MB): physical block of each slot's block j
  int64_t BS, MB;
  const int32_t* slots;      // (T)
  const int32_t* pos;        // (T): token t attends keys [0, pos[t]]
  int64_t T;
  int NH, NKV;
  float qscale;              // softmax scale * log2(e)
  // The fused RoPE (decode steps; decode_mma only): when qkv is not null, q above is unused. The
  // queries are qkv's first NH * HD columns of row t (stride qkv_row), rotated by inv_freq at
  // pos[t] as rope_qkv_cache_write rotates them; the block whose keys end at pos[t] (the last
  // split, head group 0) rotates the token's keys (the next NKV * HD columns) and writes them and
  // its values (the NKV * HDV after) to the token's cache row before it reads that row. So each
  // token must be in a slot of its own (no token reads a row another token of the launch writes).
  const __nv_bfloat16* qkv = nullptr;
  int64_t qkv_row = 0;
  const float* inv_freq = nullptr;
  __nv_bfloat16* k_write = nullptr;  // the caches again, writable (k_cache, v_cache)
  __nv_bfloat16* v_write = nullptr;
  // Phase stamps (benchmarks only; decode_mma only): when not null, the kernel is the instantiation
  // that writes kDecodeStampWords words per block at stamps + blockIdx.x * kDecodeStampWords (the
  // layout is cuda_ops.h's set_decode_attention_stamps). Null: the plain kernel, which has no trace
  // of them.
  unsigned long long* stamps = nullptr;
};

// Resident blocks per SM of the kernel for (HD, HDV); 0 when there is no such kernel.
int decode_mma_blocks_per_sm(int64_t HD, int64_t HDV);

// Runs the kernel on a grid of T * NKV * HG * S blocks (HG head groups of kDecodeMmaHeads).
void decode_mma(const DecodeArgs& a, int64_t HD, int64_t HDV, int HG, int S);

// The batch-invariant decode (decode_exact.cu, kernels/invariance.h): the training forward's key
// tiles and per-tile code per (token, kv head, head group); a.out written, a.part unused. split: in
// the fixed key splits (flash_attention.cuh's kExactSplitKeys), computed in parallel into the
// workspace (decode_exact_workspace floats for L = MB * BS keys) and merged in split order, as the
// split training forward merges them; else one pass.
void decode_exact(const DecodeArgs& a, int64_t HD, int64_t HDV, bool split, float* workspace, int64_t workspace_floats,
                  int64_t L);
int64_t decode_exact_workspace(int64_t T, int64_t NH, int64_t HDV, int64_t L);

}  // namespace r1::cuda::flash
