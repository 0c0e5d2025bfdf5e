#pragma once
// CPU reference kernels: raw fp32 pointers, row-major, contiguous (llm.c style). No validation here:
// r1::ops (kernels/ops.cpp) checks shapes, dtypes, devices and index ranges before calling these.
// Backward kernels ACCUMULATE (+=) into their gradient outputs, except rope_backward (in place).
// A nullptr gradient output means "not wanted" where noted.
#include <cstdint>

namespace r1::cpu {

// Work (in elements touched) below which an op runs on one thread: opening an OpenMP region costs
// microseconds, and much more when the cores are shared, which dominates small ops.
constexpr int64_t kParallelMin = 1 << 15;

// ---- embedding.cpp ----
// out (T, C) = table (V, C) [ids (T)]
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C);
// dtable (V, C) += scatter of dout (T, C) by ids (T). Deterministic (parallel over C).
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int64_t C);

// ---- rmsnorm.cpp ----
// out (N, C) = inp (N, C) * rstd * weight (C); rstd (N) = 1 / sqrt(mean(inp^2) + eps)
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                     float eps);
// dinp (N, C) +=, dweight (C) += ; either may be nullptr.
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C);

// ---- gemm.cpp ----
// C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major; op(A) is A (M, K) or, with trans_a, A^T
// of A (K, M); op(B) likewise (K, N). OpenBLAS in fixed tiles: the same bits for any thread count.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// The same product with every element's bits fixed by its row of op(A) and column of op(B) alone,
// whatever M and N (batch-invariant: kernels/invariance.h); slower for small M (fixed blocks).
void sgemm_rows(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
// A forward's product: sgemm_rows while ops::batch_invariant() is on, else sgemm.
void sgemm_forward(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                   int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// ---- linear.cpp (sgemm) ----
// out (N, OC) = inp (N, IC) @ weight (OC, IC)^T + bias (OC, nullable) + residual (N, OC, nullable;
// may be out)
void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                    const float* residual, int64_t N, int64_t IC, int64_t OC);
// dinp (N, IC) += dout (N, OC) @ weight; dweight (OC, IC) += dout^T @ inp; dbias (OC) += sum_N dout.
// Any gradient output may be nullptr.
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC);
// For b < B: out[b] (M, N) = inp[b] (M, K) @ w[b]^T (trans_w: w[b] is (N, K)) or @ w[b] (w[b] is
// (K, N)); matrix b of X at X + b * stride_X, rows ld_X apart.
void batched_matmul(float* out, int64_t ld_out, int64_t stride_out, const float* inp, int64_t ld_inp,
                    int64_t stride_inp, const float* w, int64_t ld_w, int64_t stride_w, bool trans_w,
                    int64_t B, int64_t M, int64_t N, int64_t K);

// ---- rope.cpp ----
// x (T, H, HD) rotated in place, HF rotate_half layout; positions (T), inv_freq (HD/2).
// The angle is float(pos) * inv_freq in fp32 (as HF computes it), cos/sin evaluated from that.
void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                  int64_t HD);
// dx (T, H, HD) in place: rotation by -angle (the transpose).
void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                   int64_t HD);

// x (T, H, HD) in place, interleaved pairs (x_{2j}, x_{2j+1}) rotated into rotate_half's layout
// (ops.h rope_interleaved_forward); the backward maps the gradient back (the transpose).
void rope_interleaved_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                              int64_t HD);
void rope_interleaved_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                               int64_t HD);

// ---- moe.cpp ----
// dst (N, Wd) columns [dc, dc + W) = (or +=) src (N, Ws) columns [sc, sc + W).
void copy_columns(float* dst, int64_t Wd, int64_t dc, const float* src, int64_t Ws, int64_t sc, int64_t W,
                  int64_t N, bool accumulate);
// The router (ops.h MoeRouting, passed as plain fields): experts (T, K), weights (T, K) from
// logits (T, E), bias (E, nullable); replay (T, K, nullable): rows whose first entry is >= 0 are
// the chosen experts (routing replay), the others are routed.
struct Routing {
  bool sigmoid = false;
  int64_t top_k = 1, n_group = 1, topk_group = 1;
  bool norm_topk = false;
  float norm_eps = 0.0f, scaling = 1.0f;
};
void moe_route_forward(int32_t* experts, float* weights, const float* logits, const float* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r);
// dlogits (T, E) += from dweights (T, K).
void moe_route_backward(float* dlogits, const float* dweights, const float* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r);
// order, tokens (T * K), offsets (E + 1) from experts (T, K).
void moe_permute(int32_t* order, int32_t* tokens, int32_t* offsets, const int32_t* experts, int64_t T, int64_t K,
                 int64_t E);
// out (T, C) = sum_k weights[t, k] * y[row of t * K + k]; order (T * K).
void moe_combine_forward(float* out, const float* y, const int32_t* order, const float* weights, int64_t T,
                         int64_t K, int64_t C);
// dy (T * K, C) +=, dweights (T, K) += (either nullable).
void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const int32_t* order,
                          const float* weights, int64_t T, int64_t K, int64_t C);
// Grouped linear: rows [offsets[e], offsets[e + 1]) of inp (R, IN) through matrix e (OUT, IN) at
// w + e * stride: out (R, OUT) =; dinp +=, dw (matrix e at dw + e * dstride) += (either nullable).
void grouped_linear_forward(float* out, const float* inp, const float* w, int64_t stride, const int32_t* offsets,
                            int64_t E, int64_t IN, int64_t OUT);
void grouped_linear_backward(float* dinp, float* dw, int64_t dstride, const float* dout, const float* inp,
                             const float* w, int64_t stride, const int32_t* offsets, int64_t E, int64_t IN,
                             int64_t OUT);

// ---- attention.cpp ----
// Packed varlen causal GQA. q (T, NH, HD); k (T, NKV, HD); v (T, NKV, HDV); out (T, NH, HDV);
// lse (T, NH); cu_seqlens (B + 1). Query head h uses kv head h / (NH / NKV).
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                       int64_t HD, int64_t HDV, float scale);
// dq (T, NH, HD) +=, dk (T, NKV, HD) +=, dv (T, NKV, HDV) += ; flash-style recomputation from lse.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* cu_seqlens,
                        int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale);
// Paged cache: k_cache (NB, BS, NKV, HD), v_cache (NB, BS, NKV, HDV); block_table (S, MB). Row j of
// sequence s is row j % BS of block block_table[s * MB + j / BS]. k (T, NKV, HD), v (T, NKV, HDV):
// token t goes to row pos[t] of sequence slots[t]. v_cache null (the latent cache): keys only, and
// attention_cached reads each value as the first HDV columns of its key row.
void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v,
                    const int32_t* block_table, const int32_t* slots, const int32_t* pos, int64_t T,
                    int64_t BS, int64_t MB, int64_t NKV, int64_t HD, int64_t HDV);
// q (T, NH, HD), out (T, NH, HDV): query t attends to rows [0, pos[t]] of sequence slots[t], keys
// in order (the packed attention's order, so a prefill through the cache gives its bits).
void attention_cached(float* out, const float* q, const float* k_cache, const float* v_cache,
                      const int32_t* block_table, const int32_t* slots, const int32_t* pos, int64_t T,
                      int64_t BS, int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale);

// ---- dropout.cpp ----
void dropout_forward(float* out, const float* x, float p, uint64_t seed, uint64_t stream, int64_t n);
void dropout_backward(float* dx, const float* dout, float p, uint64_t seed, uint64_t stream, int64_t n);

// ---- swiglu.cpp ----
// Over rows of F: out (rows, F) = silu(gate) * up, gate and up rows `stride` elements apart (F for
// separate tensors, 2F for packed [gate | up] rows).
void swiglu_forward(float* out, const float* gate, const float* up, int64_t rows, int64_t F, int64_t stride);
// dgate +=, dup += (rows `stride` apart, as gate and up)
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t rows, int64_t F, int64_t stride);

// ---- elementwise.cpp ----
void add(float* out, const float* a, const float* b, int64_t n);  // out may alias a or b
void add_inplace(float* dst, const float* src, int64_t n);
void scale_inplace(float* x, float s, int64_t n);
void zero(float* x, int64_t n);
void copy(float* dst, const float* src, int64_t n);
void convert_to_bf16(uint16_t* dst, const float* src, int64_t n);  // rounded to nearest even
double sum_squares(const float* x, int64_t n);

// ---- logprobs.cpp ----
// Fused lm-head + log-softmax. hidden (T, C), weight (V, C), targets (T) (< 0: none, logp = 0).
// logp (T), lse (T) of z = hidden @ weight^T / temperature, entropy (T, nullable).
// Scratch: at most max_scratch floats of logits (tokens are chunked too when T * vocab_chunk exceeds it).
void token_logprobs_forward(float* logp, float* lse, float* entropy, const float* hidden, const float* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch = int64_t(1) << 23);
// out (R, V) = hidden (R, C) @ weight (V, C)^T / temperature, in vocabulary chunks of vocab_chunk
// with token_logprobs_forward's product per chunk (its tiles, written whole).
void lm_head_logits(float* out, const float* hidden, const float* weight, int64_t R, int64_t C, int64_t V,
                    float temperature, int64_t vocab_chunk);
// logp (R), lse (R) of targets (R) from logits (R, V), folded as token_logprobs_forward folds its
// tiles (chunks of vocab_chunk, the same per-row state).
void logprobs_of_logits(float* logp, float* lse, const float* logits, const int32_t* targets, int64_t R, int64_t V,
                        int64_t vocab_chunk);
// dhidden (T, C) +=, dweight (V, C) += (either nullable), given dlogp (T) and the saved lse (T).
void token_logprobs_backward(float* dhidden, float* dweight, const float* dlogp, const float* hidden,
                             const float* weight, const int32_t* targets, const float* lse, int64_t T,
                             int64_t C, int64_t V, float temperature, int64_t vocab_chunk,
                             int64_t max_scratch = int64_t(1) << 23);
// loss = -sum(logp * mask) / sum(mask) (0 when sum(mask) == 0); dlogp (T) += -mask / sum(mask).
float cross_entropy_forward(const float* logp, const float* mask, int64_t T);
void cross_entropy_backward(float* dlogp, const float* mask, int64_t T);

// ---- adamw.cpp ----
// param, grad, m, v (n). g = grad * grad_scale; bias-corrected AdamW with decoupled weight decay.
// copy_f32 / copy_bf16 (n, optional; bf16 as raw bits): receive the updated param (bf16 rounded to
// nearest even).
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale,
                  float* copy_f32 = nullptr, uint16_t* copy_bf16 = nullptr);

}  // namespace r1::cpu
