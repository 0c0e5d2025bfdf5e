// Fused lm-head log-probabilities, vocabulary-chunked like the CPU reference: a GEMM writes one
// (token chunk x vocab chunk) tile of logits into scratch, then a row kernel folds the tile into a
// per-token online state (running max m, s = sum exp(z - m), w = sum exp(z - m) (z - m), the
// target's logit). The backward recomputes each tile, turns it into dz in place and feeds it to two
// GEMMs. Also the masked-mean cross-entropy.
#include <algorithm>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// Per-token state of the current token chunk, in scratch after the logits tile.
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

// One block per token row of the tile. The tile's sums are fp32, the running state double (as on CPU).
__global__ void fold_tile_kernel(State st, const float* z, const int32_t* targets, int64_t vn, int64_t v0) {
  const int64_t t = blockIdx.x;
  const float* row = z + t * vn;
  const float m_old = st.m[t];
  float cm = m_old;
  for (int64_t j = threadIdx.x; j < vn; j += blockDim.x) cm = fmaxf(cm, row[j]);
  cm = block_reduce(cm, MaxOp{}, -INFINITY);
  float cs = 0.0f, cw = 0.0f;
  for (int64_t j = threadIdx.x; j < vn; j += blockDim.x) {
    const float x = row[j] - cm, e = expf(x);
    cs += e;
    cw += e * x;
  }
  cs = block_reduce(cs, SumOp{}, 0.0f);
  cw = block_reduce(cw, SumOp{}, 0.0f);
  if (threadIdx.x == 0) {
    double s = st.s[t], w = st.w[t];
    if (s > 0.0 && cm > m_old) {  // rescale the running sums to the new max
      const double d = double(m_old) - double(cm), e = exp(d);
      w = e * (w + d * s);
      s = e * s;
    }
    st.s[t] = s + cs;
    st.w[t] = w + cw;
    st.m[t] = cm;
    const int64_t tg = targets[t];
    if (tg >= v0 && tg < v0 + vn) st.zt[t] = row[tg - v0];
  }
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

// z (tn, vn) logits -> dlogp/dz: (onehot - p) * dlogp / tau, zero for tokens without a target.
__global__ void dlogits_kernel(float* z, const float* dlogp, const int32_t* targets, const float* lse, int64_t tn,
                               int64_t vn, int64_t v0, float inv_tau) {
  const int64_t n = tn * vn;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / vn, j = i - t * vn;
    const int32_t tg = targets[t];
    const float c = tg >= 0 ? dlogp[t] * inv_tau : 0.0f;
    float g = c == 0.0f ? 0.0f : -c * expf(z[i] - lse[t]);
    if (tg - v0 == j) g += c;
    z[i] = g;
  }
}

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

Tiling tiling(int64_t T, int64_t V, int64_t vocab_chunk, int64_t max_scratch) {
  const int64_t Vc = std::min(vocab_chunk, V);
  return {Vc, std::clamp<int64_t>(max_scratch / Vc, 1, T)};
}

}  // namespace

void token_logprobs_forward(float* logp, float* lse, float* entropy, const float* hidden, const float* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch) {
  if (T == 0) return;
  Context& ctx = context();
  const Tiling tl = tiling(T, V, vocab_chunk, max_scratch);
  const float inv_tau = 1.0f / temperature;
  // Scratch: doubles first (alignment), then floats, then the logits tile.
  char* base = static_cast<char*>(ctx.scratch(size_t(tl.Tc) * 24 + size_t(tl.Tc * tl.Vc) * sizeof(float) + 256));
  State st{reinterpret_cast<double*>(base), reinterpret_cast<double*>(base) + tl.Tc,
           reinterpret_cast<float*>(base + size_t(tl.Tc) * 16), nullptr};
  st.zt = st.m + tl.Tc;
  // The tile starts 256-byte aligned, which the GEMM's fast paths like.
  float* z = reinterpret_cast<float*>(base + (size_t(tl.Tc) * 24 + 255) / 256 * 256);
  for (int64_t t0 = 0; t0 < T; t0 += tl.Tc) {
    const int64_t tn = std::min(tl.Tc, T - t0);
    const unsigned tb = unsigned((tn + kThreads - 1) / kThreads);
    state_init_kernel<<<tb, kThreads, 0, ctx.stream>>>(st, tn);
    CUDA_CHECK_LAUNCH();
    for (int64_t v0 = 0; v0 < V; v0 += tl.Vc) {
      const int64_t vn = std::min(tl.Vc, V - v0);
      gemm(false, true, tn, vn, C, inv_tau, hidden + t0 * C, C, weight + v0 * C, C, 0.0f, z, vn);
      fold_tile_kernel<<<unsigned(tn), kThreads, 0, ctx.stream>>>(st, z, targets + t0, vn, v0);
      CUDA_CHECK_LAUNCH();
    }
    finalize_kernel<<<tb, kThreads, 0, ctx.stream>>>(logp + t0, lse + t0, entropy ? entropy + t0 : nullptr,
                                                     targets + t0, st, tn);
    CUDA_CHECK_LAUNCH();
  }
}

void token_logprobs_backward(float* dhidden, float* dweight, const float* dlogp, const float* hidden,
                             const float* weight, const int32_t* targets, const float* lse, int64_t T,
                             int64_t C, int64_t V, float temperature, int64_t vocab_chunk,
                             int64_t max_scratch) {
  if (T == 0 || (!dhidden && !dweight)) return;
  Context& ctx = context();
  const Tiling tl = tiling(T, V, vocab_chunk, max_scratch);
  const float inv_tau = 1.0f / temperature;
  auto* z = static_cast<float*>(ctx.scratch(size_t(tl.Tc * tl.Vc) * sizeof(float)));
  for (int64_t t0 = 0; t0 < T; t0 += tl.Tc) {
    const int64_t tn = std::min(tl.Tc, T - t0);
    for (int64_t v0 = 0; v0 < V; v0 += tl.Vc) {
      const int64_t vn = std::min(tl.Vc, V - v0);
      gemm(false, true, tn, vn, C, inv_tau, hidden + t0 * C, C, weight + v0 * C, C, 0.0f, z, vn);
      dlogits_kernel<<<grid_for(tn * vn), kThreads, 0, ctx.stream>>>(z, dlogp + t0, targets + t0, lse + t0, tn, vn,
                                                                     v0, inv_tau);
      CUDA_CHECK_LAUNCH();
      // dhidden (tn, C) += dz (tn, vn) @ W_chunk (vn, C)
      if (dhidden) gemm(false, false, tn, C, vn, 1.0f, z, vn, weight + v0 * C, C, 1.0f, dhidden + t0 * C, C);
      // dW_chunk (vn, C) += dz^T (vn, tn) @ hidden (tn, C)
      if (dweight) gemm(true, false, vn, C, tn, 1.0f, z, vn, hidden + t0 * C, C, 1.0f, dweight + v0 * C, C);
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
