#pragma once
// CUDA kernels: the same raw-pointer contract as kernels/cpu/cpu_ops.h, but every pointer is device
// memory. No validation here: r1::ops (kernels/ops.cpp) checks shapes, dtypes and devices first;
// index ranges (ids, slots, positions, cu_seqlens) are the caller's contract on CUDA, since
// checking them would read device memory back. Backward kernels ACCUMULATE (+=) like the CPU ones,
// except rope_backward (in place). All work is queued on the backend's stream (cuda_context.h);
// functions returning a host value wait for it. Plain C++ header (no CUDA types).
//
// Every op has an f32 and a bf16 overload. bf16: activations, weights and activation gradients are
// bf16 (bf16 *), the math inside is fp32 and each output is rounded once (to nearest even);
// parameter gradients, rstd, lse, logp, entropy, dlogp and inv_freq stay f32 (float *).
#include <cstdint>

#include "base/bf16.h"

namespace r1::cuda {

// ---- embedding.cu ----
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C);
void embedding_forward(bf16* out, const int32_t* ids, const bf16* table, int64_t T, int64_t C);
// Duplicate ids accumulate with atomics: the order of the fp32 adds is not fixed.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int64_t C);
void embedding_backward(float* dtable, const bf16* dout, const int32_t* ids, int64_t T, int64_t C);

// ---- rmsnorm.cu ----
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                     float eps);
void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const bf16* weight, int64_t N, int64_t C,
                     float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C);
void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp, const bf16* weight,
                      const float* rstd, int64_t N, int64_t C);

// ---- linear.cu (cuBLASLt, fp32 compute: no TF32) ----
// residual (N, OC, nullable; may be out): summed with the product before out is written.
void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const float* residual, int64_t N, int64_t IC, int64_t OC);
// bf16: the bias (bf16) is added by the GEMM's epilogue, the residual is its C (beta 1, D = out).
void linear_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, const bf16* residual,
                    int64_t N, int64_t IC, int64_t OC);
// bf16 operands, f32 result (logits for sampling), no bias.
void linear_forward(float* out, const bf16* inp, const bf16* weight, int64_t N, int64_t IC, int64_t OC);
// ops::linear_forward_each on bf16 in one launch of the decode GEMM (profiled as `op`), when it takes
// the rows and shapes; false, having done nothing, otherwise (the caller runs each product).
bool linear_forward_each(const char* op, bf16* const* outs, const bf16* inp, const bf16* const* weights,
                         const bf16* const* biases, const int64_t* OCs, int count, int64_t N, int64_t IC);
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC);
void linear_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int64_t N, int64_t IC, int64_t OC);

// ---- gemm.cpp ---- (the CPU's contract, kernels/cpu/cpu_ops.h: one strided-batched cuBLASLt GEMM
// for all B products, fp32 compute; B < 2^31)
void batched_matmul(float* out, int64_t ld_out, int64_t stride_out, const float* inp, int64_t ld_inp,
                    int64_t stride_inp, const float* w, int64_t ld_w, int64_t stride_w, bool trans_w,
                    int64_t B, int64_t M, int64_t N, int64_t K);
void batched_matmul(bf16* out, int64_t ld_out, int64_t stride_out, const bf16* inp, int64_t ld_inp,
                    int64_t stride_inp, const bf16* w, int64_t ld_w, int64_t stride_w, bool trans_w,
                    int64_t B, int64_t M, int64_t N, int64_t K);

// ---- rope.cu ----
void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                  int64_t HD);
void rope_forward(bf16* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H, int64_t HD);
void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                   int64_t HD);
void rope_backward(bf16* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H, int64_t HD);
// The interleaved layout (ops.h rope_interleaved_*), HD <= kMaxInterleavedHeadDim (rows are staged
// in shared memory).
constexpr int64_t kMaxInterleavedHeadDim = 4096;
void rope_interleaved_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                              int64_t HD);
void rope_interleaved_forward(bf16* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                              int64_t HD);
void rope_interleaved_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T,
                               int64_t H, int64_t HD);
void rope_interleaved_backward(bf16* dx, const int32_t* positions, const float* inv_freq, int64_t T,
                               int64_t H, int64_t HD);

// ---- attention.cu ---- (q/k head dim HD and v head dim HDV, each <= kMaxHeadDim; out and dout
// have HDV)
constexpr int64_t kMaxHeadDim = 256;
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                       int64_t HD, int64_t HDV, float scale);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* cu_seqlens,
                        int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale);
// The paged KV cache (ops.h): k_cache (NB, BS, NKV, HD), v_cache (NB, BS, NKV, HDV), block_table
// (S, MB); row j of sequence s is row j % BS of block block_table[s * MB + j / BS]. A latent cache
// (ops.h) writes keys only: v_cache and v null, HDV = 0.
void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v,
                    const int32_t* block_table, const int32_t* slots, const int32_t* pos, int64_t T,
                    int64_t BS, int64_t MB, int64_t NKV, int64_t HD, int64_t HDV);
void kv_cache_write(bf16* k_cache, bf16* v_cache, const bf16* k, const bf16* v, const int32_t* block_table,
                    const int32_t* slots, const int32_t* pos, int64_t T, int64_t BS, int64_t MB, int64_t NKV,
                    int64_t HD, int64_t HDV);
// ---- rope_cache.cu ----
// rope_forward of q (T, NH, HD) and k (T, NKV, HD) in place, then kv_cache_write of the rotated k and
// v. q, k and v's rows are rows.q, rows.k, rows.v elements apart (the columns of one packed product
// when those are its width); q_out, when not null, receives the rotated queries as (T, NH, HD).
// q_norm and k_norm (HD each, both or neither): each q and k head is first rmsnorm_forward'ed with
// them (eps), and rounded, as qk_norm does before RoPE (in place, like the rotation).
struct RopeRows {
  int64_t q, k, v;
};
void rope_kv_cache_write(float* q, float* k, const float* v, float* k_cache, float* v_cache, float* q_out,
                         RopeRows rows, const float* q_norm, const float* k_norm, float eps,
                         const int32_t* block_table, const int32_t* slots, const int32_t* pos, const float* inv_freq,
                         int64_t T, int64_t BS, int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV);
void rope_kv_cache_write(bf16* q, bf16* k, const bf16* v, bf16* k_cache, bf16* v_cache, bf16* q_out, RopeRows rows,
                         const bf16* q_norm, const bf16* k_norm, float eps, const int32_t* block_table,
                         const int32_t* slots, const int32_t* pos, const float* inv_freq, int64_t T, int64_t BS,
                         int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV);
// attention_cached is in decode_attention.cu, attention_cached_workspace in decode_split.cu.
// workspace (optional): workspace_floats f32 for the partials of the split over the key range;
// attention_cached_workspace is what these shapes need (0: they never split); with none there is no
// split, a smaller one caps the splits. Graph-safe: no allocation, no synchronization, a launch
// shape that depends on the arguments only (the block table's contents and pos may change between
// replays).
struct PagedCache {
  const int32_t* block_table = nullptr;  // (S, MB)
  int64_t BS = 0, MB = 0, NKV = 0, HD = 0, HDV = 0;
};
int64_t attention_cached_workspace(int64_t T, int64_t NH, int64_t HDV, int64_t L);
// attention_cached on bf16 takes the tensor-core kernel at the flash head dims (the default);
// false sends it to the CUDA-core kernel as well (benchmarks' A/B: bench_rollout_gpu --attention).
void set_decode_attention_tensor_cores(bool on);
// The key splits of attention_cached's non-invariant path: 0 (the default), best_splits's choice by
// waves (decode_split.h); S > 0, S splits, as far as the workspace holds them (benchmarks' sweep).
void set_decode_attention_splits(int64_t S);
// Phase stamps of the tensor-core decode attention, for benchmarks (bench_decode_attention_gpu
// --stamps). While set, each launch of that kernel runs its stamping instantiation, and block b
// writes kDecodeStampWords words at stamps + b * kDecodeStampWords:
//   0      clock64 at entry (thread 0; SM cycles, as are 1-7)
//   1      after the prologue: the queries in shared memory, the first tiles queued (thread 0)
//   2..5   the end of warp w's key loop (its lane 0)
//   6      after the block barrier that ends the loops (thread 0)
//   7      at exit, its share of the output written (thread 0)
//   8, 9   %globaltimer (ns) at entry and exit (thread 0)
//   10     the SM that ran the block; 11 the block's tiles of 16 keys
// Each launch overwrites its blocks' words. A launch whose grid needs more than `words` throws.
// Null (the default): the plain kernel. The pointer is read at launch, so a captured graph keeps
// the one it was captured with.
constexpr int kDecodeStampWords = 12;
void set_decode_attention_stamps(unsigned long long* stamps, int64_t words);
// The bf16 linear of a decode step's rows (at most kDecodeGemmMaxRows) on the decode GEMM
// (decode_gemm.cu), or on cuBLASLt like more rows (the default: it is faster; A/B benchmarks).
void set_decode_gemm(bool on);
// With the decode GEMM on, its products (and their fused norm and SwiGLU) on its TMA + wgmma kernel
// instead of the mma.sync one (decode_gemm.cu; off by default: benchmarks' --tma and the tests).
void set_decode_gemm_tma(bool on);
bool decode_gemm_default();  // what a process starts with
bool decode_gemm_on();       // what set_decode_gemm last set
// With the decode GEMM on, which of a decode step's products it takes, by what is fused into them
// (a mask; all by default): the others stay on cuBLASLt, beside their own RMSNorm and SwiGLU
// launches (benchmarks' A/B: bench_rollout_gpu --decode-gemm-products).
enum : unsigned { kDecodeGemmPlain = 1, kDecodeGemmNorm = 2, kDecodeGemmNormSwiglu = 4, kDecodeGemmAll = 7 };
void set_decode_gemm_products(unsigned mask);
// ops::rmsnorm_linear_forward on the decode GEMM (profiled as `op`): false, having done nothing,
// when it does not take the case (off, more than kDecodeGemmMaxRows rows, unaligned, the exact forward).
bool rmsnorm_linear_forward(const char* op, bf16* out, const bf16* x, const bf16* norm_weight, float eps,
                            const bf16* weight, const bf16* bias, const bf16* residual, int64_t N, int64_t IC,
                            int64_t OC, bool swiglu);
// ---- linear_norm.cu: a decode step's output projection and the next RMSNorm ----
// ops::linear_rmsnorm_forward on bf16: out (N, OC) = x @ weight^T (+ bias) + residual (nullable; may
// be out), one rounding, and normed (N, OC) = rmsnorm(out; norm_weight, eps), bitwise rmsnorm_forward
// on out. K split linear_norm_splits ways into workspace (f32, at least linear_norm_workspace
// elements). False, having done nothing, where it declines: off, more than kLinearNormMaxRows rows,
// more than kLinearNormMaxCols columns (a row's finish is one block of at most 1024 threads, 8
// columns each), IC or OC not a multiple of 8, an operand not 16-byte aligned, the exact
// forward, the decode GEMM on (whose products take the norm in instead), or too small a workspace.
constexpr int64_t kLinearNormMaxRows = 256, kLinearNormMaxCols = 8192;
bool linear_norm_forward(const char* op, bf16* out, bf16* normed, const bf16* x, const bf16* weight,
                         const bf16* bias, const bf16* residual, const bf16* norm_weight, float eps,
                         float* workspace, int64_t workspace_elems, int64_t N, int64_t IC, int64_t OC);
// The split of K it takes for the shape; 0: it declines the shape.
int linear_norm_splits(int64_t N, int64_t IC, int64_t OC);
// f32 elements of workspace it needs (0: it declines the shape).
int64_t linear_norm_workspace(int64_t N, int64_t IC, int64_t OC);
// -1: off (it always declines); 0: the rule, K in two (whole where IC is not a multiple of 16; the
// default); S in [1, 8]: S ways where K allows (benchmarks' A/B and sweep: bench_rollout_gpu
// --linear-norm). wide_splits in [1, 8] fixes the products wider in than out (down_proj) apart.
void set_linear_norm_splits(int splits, int wide_splits = 0);
void attention_cached(float* out, const float* q, const float* k_cache, const float* v_cache,
                      const PagedCache& pc, const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH,
                      float scale, float* workspace = nullptr, int64_t workspace_floats = 0);
void attention_cached(bf16* out, const bf16* q, const bf16* k_cache, const bf16* v_cache,
                      const PagedCache& pc, const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH,
                      float scale, float* workspace = nullptr, int64_t workspace_floats = 0);
// A decode step's RoPE, cache write and attention in one launch (rope_qkv_cache_write then
// attention_cached, bitwise): qkv (T, NH * HD + NKV * HD + NKV * HDV), row stride qkv_row, as the
// packed q/k/v product leaves it, is read, not changed. Each token must be in a slot of its own
// (its block writes its cache row, then reads it). Only bf16 on the tensor-core kernel with one
// head group per kv head (NH / NKV <= kFusedRopeMaxGroup), and not in the batch-invariant forward; false (nothing
// done) otherwise, or when set_decode_rope_fused(false). Graph-safe, like attention_cached.
constexpr int64_t kFusedRopeMaxGroup = 16;  // query heads per kv head: one block's head group
bool rope_qkv_attention_cached(bf16* out, const bf16* qkv, int64_t qkv_row, bf16* k_cache, bf16* v_cache,
                               const PagedCache& pc, const int32_t* slots, const int32_t* pos, const float* inv_freq,
                               int64_t T, int64_t NH, float scale, float* workspace, int64_t workspace_floats);
// Whether rope_qkv_attention_cached may fuse (default on; off: the benchmarks' A/B).
void set_decode_rope_fused(bool on);

// ---- latent_attention.cu ---- attention_cached over a latent cache (no v_cache, MLA's absorbed
// decode): the values are the first pc.HDV columns of the key rows. 1 <= HDV <= HD <=
// kMaxLatentHeadDim (DeepSeek-V3: HD 576, HDV 512); any NH divisible by pc.NKV. The workspace as
// attention_cached's (attention_cached_workspace with HDV). Graph-safe, like attention_cached.
constexpr int64_t kMaxLatentHeadDim = 1024;
void attention_cached_latent(float* out, const float* q, const float* k_cache, const PagedCache& pc,
                             const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH, float scale,
                             float* workspace = nullptr, int64_t workspace_floats = 0);
void attention_cached_latent(bf16* out, const bf16* q, const bf16* k_cache, const PagedCache& pc,
                             const int32_t* slots, const int32_t* pos, int64_t T, int64_t NH, float scale,
                             float* workspace = nullptr, int64_t workspace_floats = 0);

// ---- flash_attention.cu ---- bf16 on tensor cores, flash-style: memory linear in T.
// Same semantics as the f32 versions above; lse stays f32. Tensor cores for the (HD, HDV) pairs
// flash_attention_native names, with 16-byte aligned operands; other head dims (each <=
// kMaxHeadDim) and unaligned views run the f32 kernels on widened copies (the declared fallback).
// Both return true when the tensor-core kernels ran, false for the fallback.
// The backward uses the context's scratch for D = rowsum(dout * out) and an f32 dq accumulator.
bool flash_attention_native(int64_t HD, int64_t HDV);
bool attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                       int64_t HD, int64_t HDV, float scale);
bool attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q, const bf16* k,
                        const bf16* v, const bf16* out, const float* lse, const int32_t* cu_seqlens,
                        int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale);

// ---- moe.cu ---- (the CPU's raw-pointer contract, kernels/cpu/cpu_ops.h; experts, replay and order
// must hold valid indices: nothing checks them on the device)
void copy_columns(float* dst, int64_t Wd, int64_t dc, const float* src, int64_t Ws, int64_t sc, int64_t W,
                  int64_t N, bool accumulate);
void copy_columns(bf16* dst, int64_t Wd, int64_t dc, const bf16* src, int64_t Ws, int64_t sc, int64_t W,
                  int64_t N, bool accumulate);
// The router's settings (ops.h MoeRouting, checked by r1::ops). E <= kMaxExperts: a token's scores
// live in shared memory.
struct Routing {
  bool sigmoid = false;
  int top_k = 1, n_group = 1, topk_group = 1;
  bool norm_topk = false;
  float norm_eps = 0.0f, scaling = 1.0f;
};
constexpr int64_t kMaxExperts = 2048;
// Chooses the same experts as the CPU (the same f32 scores and order). bias (nullable) in the
// logits' dtype or f32 (transformers keeps e_score_correction_bias in fp32); replay nullable.
void moe_route_forward(int32_t* experts, float* weights, const float* logits, const float* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r);
void moe_route_forward(int32_t* experts, float* weights, const bf16* logits, const bf16* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r);
void moe_route_forward(int32_t* experts, float* weights, const bf16* logits, const float* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r);
// dlogits += in f32, or in bf16 beside bf16 logits (the router's linear_backward takes it as dout).
void moe_route_backward(float* dlogits, const float* dweights, const float* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r);
void moe_route_backward(float* dlogits, const float* dweights, const bf16* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r);
void moe_route_backward(bf16* dlogits, const float* dweights, const bf16* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r);
// The stable counting sort, E <= kMaxExperts, T * K < 2^31.
void moe_permute(int32_t* order, int32_t* tokens, int32_t* offsets, const int32_t* experts, int64_t T,
                 int64_t K, int64_t E);
// out (T, C); y (T * K, C). While it runs, out's rows hold each token's row numbers when they fit
// (C * sizeof(element) >= 4 K, 4-byte aligned rows); otherwise T * K ints of the context's scratch.
void moe_combine_forward(float* out, const float* y, const int32_t* order, const float* weights, int64_t T,
                         int64_t K, int64_t C);
void moe_combine_forward(bf16* out, const bf16* y, const int32_t* order, const float* weights, int64_t T,
                         int64_t K, int64_t C);
// dy (T * K, C) += and dweights (T, K) f32 += (either nullable).
void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const int32_t* order,
                          const float* weights, int64_t T, int64_t K, int64_t C);
void moe_combine_backward(bf16* dy, float* dweights, const bf16* dout, const bf16* y, const int32_t* order,
                          const float* weights, int64_t T, int64_t K, int64_t C);

// ---- grouped_gemm.cu ---- (the CPU's contract, kernels/cpu/cpu_ops.h, with offsets (E + 1) on the
// device: never read on the host, so the ops can be captured in a graph; R the rows, offsets[E] = R)
void grouped_linear_forward(float* out, const float* inp, const float* w, int64_t stride, const int32_t* offsets,
                            int64_t E, int64_t R, int64_t IN, int64_t OUT);
void grouped_linear_forward(bf16* out, const bf16* inp, const bf16* w, int64_t stride, const int32_t* offsets,
                            int64_t E, int64_t R, int64_t IN, int64_t OUT);
void grouped_linear_backward(float* dinp, float* dw, int64_t dstride, const float* dout, const float* inp,
                             const float* w, int64_t stride, const int32_t* offsets, int64_t E, int64_t R,
                             int64_t IN, int64_t OUT);
void grouped_linear_backward(bf16* dinp, float* dw, int64_t dstride, const bf16* dout, const bf16* inp,
                             const bf16* w, int64_t stride, const int32_t* offsets, int64_t E, int64_t R,
                             int64_t IN, int64_t OUT);

// ---- dropout.cu ----
void dropout_forward(float* out, const float* x, float p, uint64_t seed, uint64_t stream, int64_t n);
void dropout_forward(bf16* out, const bf16* x, float p, uint64_t seed, uint64_t stream, int64_t n);
void dropout_backward(float* dx, const float* dout, float p, uint64_t seed, uint64_t stream, int64_t n);
void dropout_backward(bf16* dx, const bf16* dout, float p, uint64_t seed, uint64_t stream, int64_t n);

// ---- swiglu.cu ----
// Over rows of F: out (rows, F); gate, up (and dgate, dup) rows `stride` elements apart.
void swiglu_forward(float* out, const float* gate, const float* up, int64_t rows, int64_t F, int64_t stride);
void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t rows, int64_t F, int64_t stride);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t rows, int64_t F, int64_t stride);
void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t rows,
                     int64_t F, int64_t stride);

// ---- elementwise.cu ----
void add(float* out, const float* a, const float* b, int64_t n);  // out may alias a or b
void add(bf16* out, const bf16* a, const bf16* b, int64_t n);
void add_inplace(float* dst, const float* src, int64_t n);
void add_inplace(bf16* dst, const bf16* src, int64_t n);
void scale_inplace(float* x, float s, int64_t n);
void scale_inplace(bf16* x, float s, int64_t n);
void zero(float* x, int64_t n);
void zero(bf16* x, int64_t n);
void convert(float* dst, const float* src, int64_t n);
void convert(bf16* dst, const float* src, int64_t n);
double sum_squares(const float* x, int64_t n);  // waits for the stream
double sum_squares(const bf16* x, int64_t n);

// ---- logprobs.cu ----
// Logits are computed a (token chunk x vocab_chunk) tile at a time into f32 scratch of at most
// max_scratch floats, like the CPU version (the bf16 backward fits its f32 tile, its bf16 dlogits
// tile and an f32 dhidden accumulator into the same 4 * max_scratch bytes).
void token_logprobs_forward(float* logp, float* lse, float* entropy, const float* hidden, const float* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch = int64_t(1) << 24);
void token_logprobs_forward(float* logp, float* lse, float* entropy, const bf16* hidden, const bf16* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch = int64_t(1) << 24);
// Row-invariant GEMM plans (the batch-invariant forward): reference_rows > 0, one algorithm without
// a split of K per (N, K, layout), the best at that many rows, for every M (checked to take it;
// default kInvariantGemmRows: a GRPO rollout's 64 x 8 decode rows, measured fastest on an H100 among
// 64, 512, 2048 and per shape); 0, the best such algorithm for each shape (whose K order may depend
// on M). For tests and benchmarks.
constexpr int64_t kInvariantGemmRows = 512;
void set_invariant_gemm_policy(int64_t reference_rows);
// The batch-invariant forward's attention in fixed key splits (flash_attention.cuh's kExactSplitKeys:
// the training forward merges them in registers, the decode computes them in parallel and merges
// them in the same order), instead of one pass; off by default. exact_attention_split(HD, HDV): on,
// ops::batch_invariant() on, and the head dims have the split kernels; the training forward and the
// decode both ask it, so they agree. For tests and benchmarks.
void set_exact_attention_split(bool on);
bool exact_attention_split(int64_t HD, int64_t HDV);
// ops::lm_head_logits: out (R, V) f32, token_logprobs_forward's chunk products written whole.
void lm_head_logits(float* out, const float* hidden, const float* weight, int64_t R, int64_t C, int64_t V,
                    float temperature, int64_t vocab_chunk);
void lm_head_logits(float* out, const bf16* hidden, const bf16* weight, int64_t R, int64_t C, int64_t V,
                    float temperature, int64_t vocab_chunk);
// ops::logprobs_of_logits: token_logprobs_forward's fold over logits (R, V) f32; the rows' state (24 R
// bytes) in `state` (6 R floats), or the context's scratch when null.
void logprobs_of_logits(float* logp, float* lse, const float* logits, const int32_t* targets, int64_t R, int64_t V,
                        int64_t vocab_chunk, float* state = nullptr);
void token_logprobs_backward(float* dhidden, float* dweight, const float* dlogp, const float* hidden,
                             const float* weight, const int32_t* targets, const float* lse, int64_t T,
                             int64_t C, int64_t V, float temperature, int64_t vocab_chunk,
                             int64_t max_scratch = int64_t(1) << 24);
// dhidden bf16 +=, dweight f32 +=.
void token_logprobs_backward(bf16* dhidden, float* dweight, const float* dlogp, const bf16* hidden,
                             const bf16* weight, const int32_t* targets, const float* lse, int64_t T, int64_t C,
                             int64_t V, float temperature, int64_t vocab_chunk,
                             int64_t max_scratch = int64_t(1) << 24);
float cross_entropy_forward(const float* logp, const float* mask, int64_t T);  // waits for the stream
void cross_entropy_backward(float* dlogp, const float* mask, int64_t T);

// ---- adamw.cu ----
// param, grad, m, v f32. copy (optional, f32 or bf16): receives the updated param, rounded, in the
// same pass.
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale,
                  float* copy = nullptr);
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale, bf16* copy);

}  // namespace r1::cuda
