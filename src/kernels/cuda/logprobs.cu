// Fused lm-head log-probabilities (f32 or bf16 hidden/weight), vocabulary-chunked like the CPU
// reference: a GEMM writes one (token chunk x vocab chunk) tile of f32 logits into scratch, then a
// row kernel folds the tile in one pass into a per-token online state (running max m,
// s = sum exp(z - m), w = sum exp(z - m) (z - m), the target's logit). The (T, V) logits never exist.
// The backward recomputes each tile, turns it into dz and feeds it to two GEMMs. Also the
// masked-mean cross-entropy.
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// Per-token state of the current token chunk, in scratch before the logits tile.
struct State {
  double* s;
  double* w;
  float* m;
  float* zt;
};

__global__ void state_init_kernel(State st, int64_t tn) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= tn) return;
  st.s[t] = 0.0;
  st.w[t] = 0.0;
  st.m[t] = -INFINITY;
  st.zt[t] = 0.0f;
}

// Online log-sum-exp with the entropy term, relative to the running max m: s = sum exp(z - m),
// w = sum exp(z - m) (z - m). Empty while s == 0.
struct Lse {
  float m, s, w;
};

__device__ inline void lse_push(Lse& a, float x) {
  if (x > a.m) {  // rescale to the new max
    if (a.s > 0.0f) {
      const float d = a.m - x, e = expf(d);
      a.w = e * (a.w + d * a.s);
      a.s *= e;
    }
    a.m = x;
  }
  const float y = x - a.m, e = expf(y);
  a.s += e;
  a.w += e * y;
}

__device__ inline Lse lse_merge(const Lse& a, const Lse& b) {
  if (b.s == 0.0f) return a;
  if (a.s == 0.0f) return b;
  const float M = fmaxf(a.m, b.m), da = a.m - M, db = b.m - M, ea = expf(da), eb = expf(db);
  return {M, a.s * ea + b.s * eb, ea * (a.w + da * a.s) + eb * (b.w + db * b.s)};
}

// Whole-block merge; the result is valid in thread 0.
__device__ inline Lse block_lse(Lse v) {
  __shared__ Lse partial[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Lse other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o),
                    __shfl_xor_sync(0xffffffffu, v.w, o)};
    v = lse_merge(v, other);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x >> 5); ++w) v = lse_merge(v, partial[w]);
  }
  return v;
}

// One block per token row of the tile (row t at z + t * ld), one pass over the row: thread i folds
// elements i * V ... i * V + V - 1, then every blockDim * V further (the partition, so the bits, are
// fixed by vn and V alone; kVecLoad only says whether the V floats load as one vector). The tile's
// sums are fp32, the running state double (as on CPU).
template <int V, bool kVecLoad>
__global__ void fold_tile_kernel(State st, const float* z, int64_t ld, const int32_t* targets, int64_t vn,
                                 int64_t v0) {
  const int64_t t = blockIdx.x;
  const float* row = z + t * ld;
  Lse a{-INFINITY, 0.0f, 0.0f};
  for (int64_t j = threadIdx.x * int64_t(V); j < vn; j += int64_t(blockDim.x) * V) {
    float x[V];
    if constexpr (kVecLoad) {
      load_vec<V>(x, row + j);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) x[k] = row[j + k];
    }
#pragma unroll
    for (int k = 0; k < V; ++k) lse_push(a, x[k]);
  }
  a = block_lse(a);
  if (threadIdx.x == 0) {
    // Merge the tile into the running state in double.
    const float m_old = st.m[t], M = fmaxf(m_old, a.m);
    double s = 0.0, w = 0.0;
    if (st.s[t] > 0.0) {
      const double d = double(m_old) - double(M), e = exp(d);
      s = e * st.s[t];
      w = e * (st.w[t] + d * st.s[t]);
    }
    if (a.s > 0.0f) {
      const double d = double(a.m) - double(M), e = exp(d);
      s += e * double(a.s);
      w += e * (double(a.w) + d * double(a.s));
    }
    st.s[t] = s;
    st.w[t] = w;
    st.m[t] = M;
    const int64_t tg = targets[t];
    if (tg >= v0 && tg < v0 + vn) st.zt[t] = row[tg - v0];
  }
}

// Folds tn rows of vn logits (row stride ld) into the state: 4 floats per step when vn allows (the
// same partition whatever the alignment: token_logprobs_forward's tiles and logprobs_of_logits'
// rows fold alike).
void fold_tile(const State& st, const float* z, int64_t ld, const int32_t* targets, int64_t tn, int64_t vn,
               int64_t v0) {
  cudaStream_t stream = context().stream;
  if (vn % 4 == 0) {
    if (aligned16(z) && ld % 4 == 0) {
      fold_tile_kernel<4, true><<<unsigned(tn), kThreads, 0, stream>>>(st, z, ld, targets, vn, v0);
    } else {
      fold_tile_kernel<4, false><<<unsigned(tn), kThreads, 0, stream>>>(st, z, ld, targets, vn, v0);
    }
  } else {
    fold_tile_kernel<1, false><<<unsigned(tn), kThreads, 0, stream>>>(st, z, ld, targets, vn, v0);
  }
  CUDA_CHECK_LAUNCH();
}

__global__ void finalize_kernel(float* logp, float* lse, float* entropy, const int32_t* targets, State st,
                                int64_t tn) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= tn) return;
  const double logs = log(st.s[t]);
  const double l = double(st.m[t]) + logs;
  lse[t] = float(l);
  logp[t] = targets[t] >= 0 ? float(double(st.zt[t]) - l) : 0.0f;
  if (entropy) entropy[t] = float(logs - st.w[t] / st.s[t]);
}

// z (tn, vn) logits -> dz = dlogp/dz: (onehot - p) * dlogp / tau, zero for tokens without a target.
// G is f32 (dz may be z itself: each element is read before it is written) or bf16.
template <typename G>
__global__ void dlogits_kernel(G* dz, const float* z, const float* dlogp, const int32_t* targets, const float* lse,
                               int64_t tn, int64_t vn, int64_t v0, float inv_tau) {
  const int64_t n = tn * vn;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / vn, j = i - t * vn;
    const int32_t tg = targets[t];
    const float c = tg >= 0 ? dlogp[t] * inv_tau : 0.0f;
    float g = c == 0.0f ? 0.0f : -c * expf(z[i] - lse[t]);
    if (tg - v0 == j) g += c;
    dz[i] = from_f32<G>(g);
  }
}

// dst (n) bf16 += src f32, one rounding.
struct AddF32ToBf16 {
  __nv_bfloat16* dst;
  const float* src;
  template <int V>
  __device__ void apply(int64_t i) const {
    float d[V], s[V];
    load_vec<V>(d, dst + i);
    load_vec<V>(s, src + i);
#pragma unroll
    for (int k = 0; k < V; ++k) d[k] += s[k];
    store_vec<V>(dst + i, d);
  }
};

__global__ void cross_entropy_sums_kernel(double* out, const float* logp, const float* mask, int64_t T) {
  double num = 0.0, den = 0.0;
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) {
    num += double(logp[t]) * double(mask[t]);
    den += double(mask[t]);
  }
  num = block_reduce(num, SumOp{}, 0.0);
  den = block_reduce(den, SumOp{}, 0.0);
  if (threadIdx.x == 0) {
    out[0] = num;
    out[1] = den;
  }
}

__global__ void cross_entropy_backward_kernel(float* dlogp, const float* mask, int64_t T) {
  double den = 0.0;
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) den += double(mask[t]);
  den = block_reduce(den, SumOp{}, 0.0);
  if (den == 0.0) return;
  const float inv = float(1.0 / den);
  for (int64_t t = threadIdx.x; t < T; t += blockDim.x) dlogp[t] -= mask[t] * inv;
}

struct Tiling {
  int64_t Vc, Tc;
};

// Token chunk Tc such that Tc rows of row_bytes fit in budget_bytes (at least 1, at most T).
Tiling tiling(int64_t T, int64_t V, int64_t vocab_chunk, int64_t row_bytes_per_vocab, int64_t row_bytes_fixed,
              int64_t budget_bytes) {
  const int64_t Vc = std::min(vocab_chunk, V);
  return {Vc, std::clamp<int64_t>(budget_bytes / (Vc * row_bytes_per_vocab + row_bytes_fixed), 1, T)};
}

size_t round256(size_t b) { return (b + 255) / 256 * 256; }

// H: the element type of hidden and weight (float or bf16); the logits tile is f32 either way.
template <typename H>
void logprobs_forward_t(float* logp, float* lse, float* entropy, const H* hidden, const H* weight,
                        const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                        int64_t vocab_chunk, int64_t max_scratch) {
  if (T == 0) return;
  Context& ctx = context();
  const Tiling tl = tiling(T, V, vocab_chunk, sizeof(float), 0, max_scratch * int64_t(sizeof(float)));
  const float inv_tau = 1.0f / temperature;
  // Scratch: doubles first (alignment), then floats, then the logits tile (256-byte aligned, which
  // the GEMM's fast paths like).
  const size_t state_bytes = round256(size_t(tl.Tc) * 24);
  char* base = static_cast<char*>(ctx.scratch(state_bytes + size_t(tl.Tc * tl.Vc) * sizeof(float)));
  State st{reinterpret_cast<double*>(base), reinterpret_cast<double*>(base) + tl.Tc,
           reinterpret_cast<float*>(base + size_t(tl.Tc) * 16), nullptr};
  st.zt = st.m + tl.Tc;
  float* z = reinterpret_cast<float*>(base + state_bytes);
  for (int64_t t0 = 0; t0 < T; t0 += tl.Tc) {
    const int64_t tn = std::min(tl.Tc, T - t0);
    const unsigned tb = unsigned((tn + kThreads - 1) / kThreads);
    state_init_kernel<<<tb, kThreads, 0, ctx.stream>>>(st, tn);
    CUDA_CHECK_LAUNCH();
    for (int64_t v0 = 0; v0 < V; v0 += tl.Vc) {
      const int64_t vn = std::min(tl.Vc, V - v0);
      gemm(false, true, tn, vn, C, inv_tau, hidden + t0 * C, C, weight + v0 * C, C, 0.0f, z, vn, forward_order());
      fold_tile(st, z, vn, targets + t0, tn, vn, v0);
    }
    finalize_kernel<<<tb, kThreads, 0, ctx.stream>>>(logp + t0, lse + t0, entropy ? entropy + t0 : nullptr,
                                                     targets + t0, st, tn);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void token_logprobs_forward(float* logp, float* lse, float* entropy, const float* hidden, const float* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch) {
  logprobs_forward_t(logp, lse, entropy, hidden, weight, targets, T, C, V, temperature, vocab_chunk, max_scratch);
}

void token_logprobs_forward(float* logp, float* lse, float* entropy, const bf16* hidden, const bf16* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch) {
  logprobs_forward_t(logp, lse, entropy, hidden, weight, targets, T, C, V, temperature, vocab_chunk, max_scratch);
}

template <typename H>
void lm_head_logits_t(float* out, const H* hidden, const H* weight, int64_t R, int64_t C, int64_t V,
                      float temperature, int64_t vocab_chunk) {
  const int64_t Vc = std::min(vocab_chunk, V);
  const float inv_tau = 1.0f / temperature;
  for (int64_t v0 = 0; v0 < V; v0 += Vc)
    gemm(false, true, R, std::min(Vc, V - v0), C, inv_tau, hidden, C, weight + v0 * C, C, 0.0f, out + v0, V,
         forward_order());
}

void lm_head_logits(float* out, const float* hidden, const float* weight, int64_t R, int64_t C, int64_t V,
                    float temperature, int64_t vocab_chunk) {
  lm_head_logits_t(out, hidden, weight, R, C, V, temperature, vocab_chunk);
}

void lm_head_logits(float* out, const bf16* hidden, const bf16* weight, int64_t R, int64_t C, int64_t V,
                    float temperature, int64_t vocab_chunk) {
  lm_head_logits_t(out, hidden, weight, R, C, V, temperature, vocab_chunk);
}

void logprobs_of_logits(float* logp, float* lse, const float* logits, const int32_t* targets, int64_t R, int64_t V,
                        int64_t vocab_chunk, float* state) {
  if (R == 0) return;
  Context& ctx = context();
  const int64_t Vc = std::min(vocab_chunk, V);
  char* base = state ? reinterpret_cast<char*>(state) : static_cast<char*>(ctx.scratch(size_t(R) * 24));
  if (reinterpret_cast<uintptr_t>(base) % 8 != 0) throw_error("logprobs_of_logits: the workspace must be 8-byte aligned");
  State st{reinterpret_cast<double*>(base), reinterpret_cast<double*>(base) + R,
           reinterpret_cast<float*>(base + size_t(R) * 16), nullptr};
  st.zt = st.m + R;
  const unsigned tb = unsigned((R + kThreads - 1) / kThreads);
  state_init_kernel<<<tb, kThreads, 0, ctx.stream>>>(st, R);
  CUDA_CHECK_LAUNCH();
  for (int64_t v0 = 0; v0 < V; v0 += Vc) fold_tile(st, logits + v0, V, targets, R, std::min(Vc, V - v0), v0);
  finalize_kernel<<<tb, kThreads, 0, ctx.stream>>>(logp, lse, nullptr, targets, st, R);
  CUDA_CHECK_LAUNCH();
}

void token_logprobs_backward(float* dhidden, float* dweight, const float* dlogp, const float* hidden,
                             const float* weight, const int32_t* targets, const float* lse, int64_t T,
                             int64_t C, int64_t V, float temperature, int64_t vocab_chunk,
                             int64_t max_scratch) {
  if (T == 0 || (!dhidden && !dweight)) return;
  Context& ctx = context();
  const Tiling tl = tiling(T, V, vocab_chunk, sizeof(float), 0, max_scratch * int64_t(sizeof(float)));
  const float inv_tau = 1.0f / temperature;
  auto* z = static_cast<float*>(ctx.scratch(size_t(tl.Tc * tl.Vc) * sizeof(float)));
  for (int64_t t0 = 0; t0 < T; t0 += tl.Tc) {
    const int64_t tn = std::min(tl.Tc, T - t0);
    for (int64_t v0 = 0; v0 < V; v0 += tl.Vc) {
      const int64_t vn = std::min(tl.Vc, V - v0);
      gemm(false, true, tn, vn, C, inv_tau, hidden + t0 * C, C, weight + v0 * C, C, 0.0f, z, vn);
      dlogits_kernel<<<grid_for(tn * vn), kThreads, 0, ctx.stream>>>(z, z, dlogp + t0, targets + t0, lse + t0, tn,
                                                                     vn, v0, inv_tau);
      CUDA_CHECK_LAUNCH();
      // dhidden (tn, C) += dz (tn, vn) @ W_chunk (vn, C)
      if (dhidden) gemm(false, false, tn, C, vn, 1.0f, z, vn, weight + v0 * C, C, 1.0f, dhidden + t0 * C, C);
      // dW_chunk (vn, C) += dz^T (vn, tn) @ hidden (tn, C)
      if (dweight) gemm(true, false, vn, C, tn, 1.0f, z, vn, hidden + t0 * C, C, 1.0f, dweight + v0 * C, C);
    }
  }
}

// bf16: the recomputed logits tile stays f32 (exp(z - lse) needs it), dz is rounded to bf16 for the
// two GEMMs, and dhidden of a token chunk is gathered over all vocabulary chunks in f32 and added to
// the bf16 dhidden once (one rounding instead of one per vocabulary chunk).
void token_logprobs_backward(bf16* dhidden, float* dweight, const float* dlogp, const bf16* hidden,
                             const bf16* weight, const int32_t* targets, const float* lse, int64_t T, int64_t C,
                             int64_t V, float temperature, int64_t vocab_chunk, int64_t max_scratch) {
  if (T == 0 || (!dhidden && !dweight)) return;
  Context& ctx = context();
  // Per token row: the f32 tile row, the bf16 dz row, the f32 dhidden row.
  const Tiling tl = tiling(T, V, vocab_chunk, sizeof(float) + sizeof(bf16), int64_t(C * sizeof(float)),
                           max_scratch * int64_t(sizeof(float)));
  const float inv_tau = 1.0f / temperature;
  const size_t z_bytes = round256(size_t(tl.Tc * tl.Vc) * sizeof(float));
  const size_t dz_bytes = round256(size_t(tl.Tc * tl.Vc) * sizeof(bf16));
  char* base = static_cast<char*>(ctx.scratch(z_bytes + dz_bytes + size_t(tl.Tc * C) * sizeof(float)));
  auto* z = reinterpret_cast<float*>(base);
  auto* dz = reinterpret_cast<bf16*>(base + z_bytes);
  auto* dh = reinterpret_cast<float*>(base + z_bytes + dz_bytes);
  for (int64_t t0 = 0; t0 < T; t0 += tl.Tc) {
    const int64_t tn = std::min(tl.Tc, T - t0);
    for (int64_t v0 = 0; v0 < V; v0 += tl.Vc) {
      const int64_t vn = std::min(tl.Vc, V - v0);
      gemm(false, true, tn, vn, C, inv_tau, hidden + t0 * C, C, weight + v0 * C, C, 0.0f, z, vn);
      dlogits_kernel<<<grid_for(tn * vn), kThreads, 0, ctx.stream>>>(dp(dz), z, dlogp + t0, targets + t0, lse + t0,
                                                                     tn, vn, v0, inv_tau);
      CUDA_CHECK_LAUNCH();
      // dh (tn, C) (=|+=) dz (tn, vn) @ W_chunk (vn, C)
      if (dhidden) gemm(false, false, tn, C, vn, 1.0f, dz, vn, weight + v0 * C, C, v0 == 0 ? 0.0f : 1.0f, dh, C);
      // dW_chunk (vn, C) += dz^T (vn, tn) @ hidden (tn, C)
      if (dweight) gemm(true, false, vn, C, tn, 1.0f, dz, vn, hidden + t0 * C, C, 1.0f, dweight + v0 * C, C);
    }
    if (dhidden) {
      __nv_bfloat16* dst = dp(dhidden + t0 * C);
      launch_packed_map<__nv_bfloat16>(AddF32ToBf16{dst, dh}, tn * C, aligned16(dst) && aligned16(dh));
    }
  }
}

float cross_entropy_forward(const float* logp, const float* mask, int64_t T) {
  if (T == 0) return 0.0f;
  Context& ctx = context();
  auto* sums = static_cast<double*>(ctx.scratch(2 * sizeof(double)));
  cross_entropy_sums_kernel<<<1, 1024, 0, ctx.stream>>>(sums, logp, mask, T);
  CUDA_CHECK_LAUNCH();
  double host[2] = {0.0, 0.0};
  CUDA_CHECK(cudaMemcpyAsync(host, sums, sizeof(host), cudaMemcpyDeviceToHost, ctx.stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  return host[1] != 0.0 ? float(-host[0] / host[1]) : 0.0f;
}

void cross_entropy_backward(float* dlogp, const float* mask, int64_t T) {
  if (T == 0) return;
  cross_entropy_backward_kernel<<<1, 1024, 0, context().stream>>>(dlogp, mask, T);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1::cuda
