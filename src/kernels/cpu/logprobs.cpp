#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

namespace {

// zc (tn, vn) = hidden (tn, C) @ weight[v0 : v0 + vn] (vn, C)^T / temperature
void chunk_logits(float* zc, const float* hidden, const float* wchunk, int64_t tn, int64_t vn, int64_t C,
                  float inv_tau) {
  sgemm(false, true, tn, vn, C, inv_tau, hidden, C, wchunk, C, 0.0f, zc, vn);
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
  // Online state per token of the current token chunk, relative to the running max m:
  //   s = sum exp(z - m), w = sum exp(z - m) * (z - m); then lse = m + log s, entropy = log s - w / s.
  std::vector<float> m(static_cast<size_t>(Tc)), zt(static_cast<size_t>(Tc));
  std::vector<double> s(static_cast<size_t>(Tc)), w(static_cast<size_t>(Tc));
  for (int64_t t0 = 0; t0 < T; t0 += Tc) {
    const int64_t tn = std::min(Tc, T - t0);
    std::fill(m.begin(), m.end(), -std::numeric_limits<float>::infinity());
    std::fill(s.begin(), s.end(), 0.0);
    std::fill(w.begin(), w.end(), 0.0);
    std::fill(zt.begin(), zt.end(), 0.0f);
    for (int64_t v0 = 0; v0 < V; v0 += Vc) {
      const int64_t vn = std::min(Vc, V - v0);
      chunk_logits(z.data(), hidden + t0 * C, weight + v0 * C, tn, vn, C, inv_tau);
#pragma omp parallel for schedule(static) if (tn * vn >= kParallelMin)
      for (int64_t t = 0; t < tn; ++t) {
        const float* row = z.data() + t * vn;
        float cm = m[size_t(t)];
        for (int64_t j = 0; j < vn; ++j) cm = std::max(cm, row[j]);
        double st = s[size_t(t)], wt = w[size_t(t)];
        if (st > 0.0 && cm > m[size_t(t)]) {
          const double d = double(m[size_t(t)]) - double(cm), e = std::exp(d);
          wt = e * (wt + d * st);
          st = e * st;
        }
        float cs = 0.0f, cw = 0.0f;  // one chunk in fp32, the running state in double
        for (int64_t j = 0; j < vn; ++j) {
          const float x = row[j] - cm;
          const float e = std::exp(x);
          cs += e;
          cw += e * x;
        }
        s[size_t(t)] = st + cs;
        w[size_t(t)] = wt + cw;
        m[size_t(t)] = cm;
        const int64_t tg = targets[t0 + t];
        if (tg >= v0 && tg < v0 + vn) zt[size_t(t)] = row[tg - v0];
      }
    }
    for (int64_t t = 0; t < tn; ++t) {
      const double logs = std::log(s[size_t(t)]);
      const double l = double(m[size_t(t)]) + logs;
      lse[t0 + t] = float(l);
      logp[t0 + t] = targets[t0 + t] >= 0 ? float(double(zt[size_t(t)]) - l) : 0.0f;
      if (entropy) entropy[t0 + t] = float(logs - w[size_t(t)] / s[size_t(t)]);
    }
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
      chunk_logits(z.data(), hidden + t0 * C, weight + v0 * C, tn, vn, C, inv_tau);
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
