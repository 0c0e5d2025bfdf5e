#pragma once
// CUDA fp32 kernels: the same raw-pointer contract as kernels/cpu/cpu_ops.h, but every pointer is
// device memory. No validation here: r1::ops (kernels/ops.cpp) checks shapes, dtypes and devices
// first; index ranges (ids, slots, positions, cu_seqlens) are the caller's contract on CUDA, since
// checking them would read device memory back. Backward kernels ACCUMULATE (+=) like the CPU ones,
// except rope_backward (in place). All work is queued on the backend's stream (cuda_context.h);
// functions returning a host value wait for it. Plain C++ header (no CUDA types).
#include <cstdint>

namespace r1::cuda {

// ---- embedding.cu ----
void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int64_t C);
// Duplicate ids accumulate with atomics: the order of the fp32 adds is not fixed.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int64_t C);

// ---- rmsnorm.cu ----
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int64_t N, int64_t C,
                     float eps);
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, int64_t N, int64_t C);

// ---- linear.cu (cuBLASLt, fp32 compute: no TF32) ----
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int64_t N,
                    int64_t IC, int64_t OC);
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, int64_t N, int64_t IC, int64_t OC);

// ---- rope.cu ----
void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                  int64_t HD);
void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int64_t T, int64_t H,
                   int64_t HD);

// ---- attention.cu ---- (HD <= kMaxHeadDim)
constexpr int64_t kMaxHeadDim = 256;
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                       int64_t HD, float scale);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* cu_seqlens,
                        int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD, float scale);
void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v, const int32_t* slots,
                    const int32_t* pos, int64_t T, int64_t L, int64_t NKV, int64_t HD);
void attention_cached(float* out, const float* q, const float* k_cache, const float* v_cache,
                      const int32_t* slots, const int32_t* pos, int64_t T, int64_t L, int64_t NH,
                      int64_t NKV, int64_t HD, float scale);

// ---- swiglu.cu ----
void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n);

// ---- elementwise.cu ----
void add(float* out, const float* a, const float* b, int64_t n);  // out may alias a or b
void add_inplace(float* dst, const float* src, int64_t n);
void scale_inplace(float* x, float s, int64_t n);
void zero(float* x, int64_t n);
double sum_squares(const float* x, int64_t n);  // waits for the stream

// ---- logprobs.cu ----
// Logits are computed a (token chunk x vocab_chunk) tile at a time into scratch of at most
// max_scratch floats, like the CPU version.
void token_logprobs_forward(float* logp, float* lse, float* entropy, const float* hidden, const float* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch = int64_t(1) << 24);
void token_logprobs_backward(float* dhidden, float* dweight, const float* dlogp, const float* hidden,
                             const float* weight, const int32_t* targets, const float* lse, int64_t T,
                             int64_t C, int64_t V, float temperature, int64_t vocab_chunk,
                             int64_t max_scratch = int64_t(1) << 24);
float cross_entropy_forward(const float* logp, const float* mask, int64_t T);  // waits for the stream
void cross_entropy_backward(float* dlogp, const float* mask, int64_t T);

// ---- adamw.cu ----
void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step, float grad_scale);

}  // namespace r1::cuda
