// The mixture-of-experts reference kernels (router, grouping by expert, weighted combination) and
// the column copy that MLA splits and joins its per-head parts with.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

void copy_columns(float* dst, int64_t Wd, int64_t dc, const float* src, int64_t Ws, int64_t sc, int64_t W,
                  int64_t N, bool accumulate) {
#pragma omp parallel for schedule(static) if (N * W >= kParallelMin)
  for (int64_t n = 0; n < N; ++n) {
    float* d = dst + n * Wd + dc;
    const float* s = src + n * Ws + sc;
    if (accumulate) {
      for (int64_t j = 0; j < W; ++j) d[j] += s[j];
    } else {
      std::copy(s, s + W, d);
    }
  }
}

namespace {

// The scores of one token's E logits: softmax (in double, rounded once) or each one's sigmoid.
void router_scores(const float* z, int64_t E, bool sigmoid, float* scores) {
  if (sigmoid) {
    for (int64_t e = 0; e < E; ++e) scores[e] = float(1.0 / (1.0 + std::exp(-double(z[e]))));
    return;
  }
  const double mx = *std::max_element(z, z + E);
  double sum = 0.0;
  for (int64_t e = 0; e < E; ++e) sum += std::exp(double(z[e]) - mx);
  for (int64_t e = 0; e < E; ++e) scores[e] = float(std::exp(double(z[e]) - mx) / sum);
}

// The indices of the n largest of v (ties: the lower index first), in descending order.
void top_n(const std::vector<float>& v, int64_t n, std::vector<int32_t>& idx) {
  idx.resize(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) {
    return v[size_t(a)] > v[size_t(b)] || (v[size_t(a)] == v[size_t(b)] && a < b);
  });
  idx.resize(size_t(n));
}

// Excludes the experts outside the topk_group best groups (their choice scores become -inf, as in
// DeepSeek's reference Gate), a group ranked by the sum of its two best choice scores.
void limit_groups(std::vector<float>& choice, const Routing& r) {
  const int64_t E = int64_t(choice.size()), per = E / r.n_group;
  std::vector<float> group(static_cast<size_t>(r.n_group));
  for (int64_t g = 0; g < r.n_group; ++g) {
    std::vector<float> in(choice.begin() + g * per, choice.begin() + (g + 1) * per);
    std::vector<int32_t> best;
    top_n(in, std::min<int64_t>(2, per), best);
    double s = 0.0;
    for (int32_t i : best) s += in[size_t(i)];
    group[size_t(g)] = float(s);
  }
  std::vector<int32_t> kept;
  top_n(group, r.topk_group, kept);
  std::vector<bool> keep(size_t(r.n_group), false);
  for (int32_t g : kept) keep[size_t(g)] = true;
  for (int64_t e = 0; e < E; ++e)
    if (!keep[size_t(e / per)]) choice[size_t(e)] = -std::numeric_limits<float>::infinity();
}

}  // namespace

void moe_route_forward(int32_t* experts, float* weights, const float* logits, const float* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r) {
  const int64_t K = r.top_k;
#pragma omp parallel for schedule(static) if (T * E >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> scores(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
    router_scores(logits + t * E, E, r.sigmoid, scores.data());
    std::vector<int32_t> chosen;
    if (replay && replay[t * K] >= 0) {
      chosen.assign(replay + t * K, replay + (t + 1) * K);
    } else {
      for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = scores[size_t(e)] + (bias ? bias[e] : 0.0f);
      if (r.n_group > 1) limit_groups(choice, r);
      top_n(choice, K, chosen);
    }
    double sum = 0.0;
    for (int32_t e : chosen) sum += scores[size_t(e)];
    const double denom = r.norm_topk ? sum + double(r.norm_eps) : 1.0;
    for (int64_t k = 0; k < K; ++k) {
      experts[t * K + k] = chosen[size_t(k)];
      weights[t * K + k] = float(double(scores[size_t(chosen[size_t(k)])]) / denom * double(r.scaling));
    }
  }
}

void moe_route_backward(float* dlogits, const float* dweights, const float* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r) {
  const int64_t K = r.top_k;
#pragma omp parallel for schedule(static) if (T * E >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> scores(static_cast<size_t>(E));
    router_scores(logits + t * E, E, r.sigmoid, scores.data());
    const int32_t* ex = experts + t * K;
    // d loss / d score of each chosen expert, through the renormalisation and the scaling.
    std::vector<double> ds(static_cast<size_t>(K));
    double sum = 0.0, gs = 0.0;
    for (int64_t k = 0; k < K; ++k) sum += scores[size_t(ex[k])];
    const double denom = r.norm_topk ? sum + double(r.norm_eps) : 1.0;
    for (int64_t k = 0; k < K; ++k) {
      ds[size_t(k)] = double(dweights[t * K + k]) * double(r.scaling);
      gs += ds[size_t(k)] * scores[size_t(ex[k])];
    }
    for (int64_t k = 0; k < K; ++k) ds[size_t(k)] = ds[size_t(k)] / denom - (r.norm_topk ? gs / (denom * denom) : 0.0);
    float* dz = dlogits + t * E;
    if (r.sigmoid) {
      for (int64_t k = 0; k < K; ++k) {
        const double s = scores[size_t(ex[k])];
        dz[ex[k]] += float(ds[size_t(k)] * s * (1.0 - s));
      }
      continue;
    }
    double dot = 0.0;  // softmax: dz_i = p_i (ds_i - sum_k ds_k p_k)
    for (int64_t k = 0; k < K; ++k) dot += ds[size_t(k)] * scores[size_t(ex[k])];
    std::vector<double> dsel(static_cast<size_t>(E), 0.0);
    for (int64_t k = 0; k < K; ++k) dsel[size_t(ex[k])] = ds[size_t(k)];
    for (int64_t e = 0; e < E; ++e) dz[e] += float(double(scores[size_t(e)]) * (dsel[size_t(e)] - dot));
  }
}

void moe_permute(int32_t* order, int32_t* tokens, int32_t* offsets, const int32_t* experts, int64_t T, int64_t K,
                 int64_t E) {
  std::vector<int32_t> next(size_t(E) + 1, 0);
  for (int64_t i = 0; i < T * K; ++i) ++next[size_t(experts[i]) + 1];
  for (int64_t e = 0; e < E; ++e) next[size_t(e) + 1] += next[size_t(e)];
  std::copy(next.begin(), next.end(), offsets);
  for (int64_t i = 0; i < T * K; ++i) {
    const int32_t row = next[size_t(experts[i])]++;
    order[row] = int32_t(i);
    tokens[row] = int32_t(i / K);
  }
}

namespace {
// The row of each assignment t * K + k.
std::vector<int32_t> rows_of(const int32_t* order, int64_t R) {
  std::vector<int32_t> row(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) row[size_t(order[r])] = int32_t(r);
  return row;
}
}  // namespace

void moe_combine_forward(float* out, const float* y, const int32_t* order, const float* weights, int64_t T,
                         int64_t K, int64_t C) {
  const std::vector<int32_t> row = rows_of(order, T * K);
#pragma omp parallel for schedule(static) if (T * K * C >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    float* o = out + t * C;
    std::fill(o, o + C, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const float w = weights ? weights[t * K + k] : 1.0f;  // no weights: the plain sum
      const float* yr = y + int64_t(row[size_t(t * K + k)]) * C;
      for (int64_t c = 0; c < C; ++c) o[c] += w * yr[c];
    }
  }
}

void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const int32_t* order,
                          const float* weights, int64_t T, int64_t K, int64_t C) {
  const std::vector<int32_t> row = rows_of(order, T * K);
#pragma omp parallel for schedule(static) if (T * K * C >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    const float* g = dout + t * C;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = row[size_t(t * K + k)];
      if (dy) {
        const float w = weights[t * K + k];
        for (int64_t c = 0; c < C; ++c) dy[r * C + c] += w * g[c];
      }
      if (dweights) {
        double s = 0.0;
        for (int64_t c = 0; c < C; ++c) s += double(g[c]) * y[r * C + c];
        dweights[t * K + k] += float(s);
      }
    }
  }
}

// One expert's rows at a time, as linear_forward/backward would run them: the reference.
void grouped_linear_forward(float* out, const float* inp, const float* w, int64_t stride, const int32_t* offsets,
                            int64_t E, int64_t IN, int64_t OUT) {
  for (int64_t e = 0; e < E; ++e) {
    const int64_t a = offsets[e], n = offsets[e + 1] - a;
    linear_forward(out + a * OUT, inp + a * IN, w + e * stride, nullptr, nullptr, n, IN, OUT);
  }
}

void grouped_linear_backward(float* dinp, float* dw, int64_t dstride, const float* dout, const float* inp,
                             const float* w, int64_t stride, const int32_t* offsets, int64_t E, int64_t IN,
                             int64_t OUT) {
  for (int64_t e = 0; e < E; ++e) {
    const int64_t a = offsets[e], n = offsets[e + 1] - a;
    linear_backward(dinp ? dinp + a * IN : nullptr, dw ? dw + e * dstride : nullptr, nullptr, dout + a * OUT,
                    inp + a * IN, w + e * stride, n, IN, OUT);
  }
}

}  // namespace r1::cpu
