#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

namespace {

// zc (tn, vn; row stride ldz) = hidden (tn, C) @ weight[v0 : v0 + vn] (vn, C)^T / temperature: the
// forward's tiles (batch-invariant with the mode on: kernels/invariance.h).
void chunk_logits(float* zc, int64_t ldz, const float* hidden, const float* wchunk, int64_t tn, int64_t vn,
                  int64_t C, float inv_tau) {
  sgemm_forward(false, true, tn, vn, C, inv_tau, hidden, C, wchunk, C, 0.0f, zc, ldz);
}

// One token's online state over the vocabulary chunks, relative to the running max m:
//   s = sum exp(z - m), w = sum exp(z - m) * (z - m); then lse = m + log s, entropy = log s - w / s.
// Each chunk sums in fp32, the running state in double.
struct RowState {
  float m = -std::numeric_limits<float>::infinity(), zt = 0.0f;
  double s = 0.0, w = 0.0;
};

// Folds the logits of vocabulary rows [v0, v0 + vn) (row: vn floats) into st.
void fold_chunk(RowState& st, const float* row, int64_t vn, int64_t v0, int64_t target) {
  float cm = st.m;
  for (int64_t j = 0; j < vn; ++j) cm = std::max(cm, row[j]);
  double s = st.s, w = st.w;
  if (s > 0.0 && cm > st.m) {
    const double d = double(st.m) - double(cm), e = std::exp(d);
    w = e * (w + d * s);
    s = e * s;
  }
  float cs = 0.0f, cw = 0.0f;
  for (int64_t j = 0; j < vn; ++j) {
    const float x = row[j] - cm;
    const float e = std::exp(x);
    cs += e;
    cw += e * x;
  }
  st.s = s + cs;
  st.w = w + cw;
  st.m = cm;
  if (target >= v0 && target < v0 + vn) st.zt = row[target - v0];
}

// logp of the target (0 without one), lse and the entropy (optional) from a finished state.
void finish_row(const RowState& st, int64_t target, float& logp, float& lse, float* entropy) {
  const double logs = std::log(st.s);
  const double l = double(st.m) + logs;
  lse = float(l);
  logp = target >= 0 ? float(double(st.zt) - l) : 0.0f;
  if (entropy) *entropy = float(logs - st.w / st.s);
}

}  // namespace

void token_logprobs_forward(float* logp, float* lse, float* entropy, const float* hidden, const float* weight,
                            const int32_t* targets, int64_t T, int64_t C, int64_t V, float temperature,
                            int64_t vocab_chunk, int64_t max_scratch) {
  if (T == 0) return;
  const int64_t Vc = std::min(vocab_chunk, V);
  const int64_t Tc = std::clamp<int64_t>(max_scratch / Vc, 1, T);
  const float inv_tau = 1.0f / temperature;
  std::vector<float> z(static_cast<size_t>(Tc * Vc));
  std::vector<RowState> st(static_cast<size_t>(Tc));
  for (int64_t t0 = 0; t0 < T; t0 += Tc) {
    const int64_t tn = std::min(Tc, T - t0);
    std::fill(st.begin(), st.end(), RowState{});
    for (int64_t v0 = 0; v0 < V; v0 += Vc) {
      const int64_t vn = std::min(Vc, V - v0);
      chunk_logits(z.data(), vn, hidden + t0 * C, weight + v0 * C, tn, vn, C, inv_tau);
#pragma omp parallel for schedule(static) if (tn * vn >= kParallelMin)
      for (int64_t t = 0; t < tn; ++t) fold_chunk(st[size_t(t)], z.data() + t * vn, vn, v0, targets[t0 + t]);
    }
    for (int64_t t = 0; t < tn; ++t)
      finish_row(st[size_t(t)], targets[t0 + t], logp[t0 + t], lse[t0 + t], entropy ? entropy + t0 + t : nullptr);
  }
}

void lm_head_logits(float* out, const float* hidden, const float* weight, int64_t R, int64_t C, int64_t V,
                    float temperature, int64_t vocab_chunk) {
  const int64_t Vc = std::min(vocab_chunk, V);
  const float inv_tau = 1.0f / temperature;
  for (int64_t v0 = 0; v0 < V; v0 += Vc)
    chunk_logits(out + v0, V, hidden, weight + v0 * C, R, std::min(Vc, V - v0), C, inv_tau);
}

void logprobs_of_logits(float* logp, float* lse, const float* logits, const int32_t* targets, int64_t R, int64_t V,
                        int64_t vocab_chunk) {
  const int64_t Vc = std::min(vocab_chunk, V);
#pragma omp parallel for schedule(static) if (R * V >= kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    RowState st;
    for (int64_t v0 = 0; v0 < V; v0 += Vc) fold_chunk(st, logits + r * V + v0, std::min(Vc, V - v0), v0, targets[r]);
    finish_row(st, targets[r], logp[r], lse[r], nullptr);
  }
}

void token_logprobs_backward(float* dhidden, float* dweight, const float* dlogp, const float* hidden,
                             const float* weight, const int32_t* targets, const float* lse, int64_t T,
                             int64_t C, int64_t V, float temperature, int64_t vocab_chunk,
                             int64_t max_scratch) {
  if (T == 0 || (!dhidden && !dweight)) return;
  const int64_t Vc = std::min(vocab_chunk, V);
  const int64_t Tc = std::clamp<int64_t>(max_scratch / Vc, 1, T);
  const float inv_tau = 1.0f / temperature;
  std::vector<float> z(static_cast<size_t>(Tc * Vc)), coef(static_cast<size_t>(Tc));
  for (int64_t t0 = 0; t0 < T; t0 += Tc) {
    const int64_t tn = std::min(Tc, T - t0);
    // d logp / d z_j = (onehot_j - p_j) / tau, with z the unscaled logits.
    bool any = false;
    for (int64_t t = 0; t < tn; ++t) {
      coef[size_t(t)] = targets[t0 + t] >= 0 ? dlogp[t0 + t] * inv_tau : 0.0f;
      any |= coef[size_t(t)] != 0.0f;
    }
    if (!any) continue;
    for (int64_t v0 = 0; v0 < V; v0 += Vc) {
      const int64_t vn = std::min(Vc, V - v0);
      sgemm(false, true, tn, vn, C, inv_tau, hidden + t0 * C, C, weight + v0 * C, C, 0.0f, z.data(), vn);  // not the forward
#pragma omp parallel for schedule(static) if (tn * vn >= kParallelMin)
      for (int64_t t = 0; t < tn; ++t) {
        float* row = z.data() + t * vn;
        const float c = coef[size_t(t)], l = lse[t0 + t];
        if (c == 0.0f) {
          std::fill(row, row + vn, 0.0f);
          continue;
        }
        for (int64_t j = 0; j < vn; ++j) row[j] = -c * std::exp(row[j] - l);
        const int64_t tg = targets[t0 + t];
        if (tg >= v0 && tg < v0 + vn) row[tg - v0] += c;
      }
      // dhidden (tn, C) += dz (tn, vn) @ W_chunk (vn, C)
      if (dhidden) {
        sgemm(false, false, tn, C, vn, 1.0f, z.data(), vn, weight + v0 * C, C, 1.0f, dhidden + t0 * C, C);
      }
      // dW_chunk (vn, C) += dz^T (vn, tn) @ hidden (tn, C)
      if (dweight) {
        sgemm(true, false, vn, C, tn, 1.0f, z.data(), vn, hidden + t0 * C, C, 1.0f, dweight + v0 * C, C);
      }
    }
  }
}

float cross_entropy_forward(const float* logp, const float* mask, int64_t T) {
  double num = 0.0, den = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    num += double(logp[t]) * double(mask[t]);
    den += double(mask[t]);
  }
  return den != 0.0 ? float(-num / den) : 0.0f;
}

void cross_entropy_backward(float* dlogp, const float* mask, int64_t T) {
  double den = 0.0;
  for (int64_t t = 0; t < T; ++t) den += double(mask[t]);
  if (den == 0.0) return;
  const float inv = float(1.0 / den);
  for (int64_t t = 0; t < T; ++t) dlogp[t] -= mask[t] * inv;
}

}  // namespace r1::cpu
