// The op table's runners for the token log-probabilities (lm head + log-softmax in vocabulary
// chunks), against a full-vocabulary log-softmax in double on all tokens or, for large cases, on
// sampled tokens (forward, dhidden) and vocabulary rows (dweight).
#include <algorithm>
#include <cmath>

#include "op_table.h"

namespace optable {

namespace {

constexpr Bound kLogprob{1e-4, 1e-2, 2e-5, 1e-5};
constexpr Bound kLogprobGrad{1e-4, 1e-2, 1e-5, 1e-4};

// Targets in [-1, V) (-1: no target); the last vocabulary row and, in the CPU test's shape, fixed
// ones at both ends of the vocabulary and two tokens without a target.
Vi logprob_targets(Run& c) {
  const int64_t T = c.s.T, V = c.s.V;
  Vi tg = c.randint(T, -1, int32_t(V));
  tg[0] = int32_t(V) - 1;
  if (T >= 10) {
    tg[2] = tg[9] = -1;
    tg[5] = int32_t(V) - 1;
    tg[6] = 0;
  }
  return tg;
}

struct Lm {
  int64_t T, C, V;
  double tau;
};

// Logits z (V) of token t: h_t . w_j / tau.
template <typename X>
void logits(const Lm& m, const std::vector<X>& h, const std::vector<X>& w, int64_t t, Vd& z) {
  z.assign(sz(m.V), 0.0);
  for (int64_t j = 0; j < m.V; ++j) {
    double d = 0.0;
    for (int64_t c = 0; c < m.C; ++c) d += double(h[t * m.C + c]) * double(w[j * m.C + c]);
    z[j] = d / m.tau;
  }
}

// logp, lse, entropy of tokens `rows` (logp = 0 without a target).
template <typename X>
void ref_logprobs(const Lm& m, const std::vector<X>& h, const std::vector<X>& w, const Vi& tg,
                  const Rows& rows, Vd& logp, Vd& lse, Vd& ent) {
  logp.assign(rows.size(), 0.0);
  lse.assign(rows.size(), 0.0);
  ent.assign(rows.size(), 0.0);
  Vd z;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t t = rows[r];
    logits(m, h, w, t, z);
    const double mx = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (double x : z) sum += std::exp(x - mx);
    const double l = mx + std::log(sum);
    double e = 0.0;
    for (double x : z) e -= std::exp(x - l) * (x - l);
    lse[r] = l;
    ent[r] = e;
    if (tg[t] >= 0) logp[r] = z[tg[t]] - l;
  }
}

Lm lm_of(const Run& c) { return {c.s.T, c.s.C, c.s.V, c.s.tau > 0.0f ? double(c.s.tau) : 1.0}; }

}  // namespace

void run_token_logprobs_forward(Run& c) {
  const Lm m = lm_of(c);
  Vf h = c.randn(m.T * m.C), w = c.randn(m.V * m.C, 1.0f / std::sqrt(float(m.C)));
  const Vi tg = logprob_targets(c);
  Tensor th = c.act(h, {m.T, m.C}), tw = c.act(w, {m.V, m.C}), ttg = c.ints(tg, {m.T});
  Tensor logp = c.nan({m.T}, DType::F32), lse = c.nan({m.T}, DType::F32), ent = c.nan({m.T}, DType::F32);
  ops::token_logprobs_forward(logp, lse, ent, th, tw, ttg, float(m.tau), c.s.chunk);
  const Rows rows = c.rows(m.T, double(m.V * m.C));
  Vd lref, sref, eref;
  ref_logprobs(m, h, w, tg, rows, lref, sref, eref);
  const Vf lp = c.get(logp);
  c.check("token_logprobs_forward logp(f32)", lp, lref, rows, 1, kLogprob);
  c.check("token_logprobs_forward lse(f32)", c.get(lse), sref, rows, 1, kLogprob);
  c.check("token_logprobs_forward entropy(f32)", c.get(ent), eref, rows, 1, kLogprob);
  for (int64_t t = 0; t < m.T; ++t) {
    if (tg[t] < 0) {
      EXPECT_EQ(lp[t], 0.0f) << "token " << t << " has no target";
    }
  }
  // The entropy output is optional.
  Tensor logp2 = c.nan({m.T}, DType::F32), lse2 = c.nan({m.T}, DType::F32);
  ops::token_logprobs_forward(logp2, lse2, Tensor(), th, tw, ttg, float(m.tau), c.s.chunk);
  c.check("token_logprobs_forward logp(f32), no entropy", c.get(logp2), lref, rows, 1, kLogprob);
}

// The head's tempered logits written whole (the sampler's side of the fused op).
void run_lm_head_logits(Run& c) {
  const Lm m = lm_of(c);
  Vf h = c.randn(m.T * m.C), w = c.randn(m.V * m.C, 1.0f / std::sqrt(float(m.C)));
  Tensor th = c.act(h, {m.T, m.C}), tw = c.act(w, {m.V, m.C});
  Tensor out = c.nan({m.T, m.V}, DType::F32);
  ops::lm_head_logits(out, th, tw, float(m.tau), c.s.chunk);
  const Rows rows = c.rows(m.T, double(m.V * m.C));
  Vd ref, z;
  for (int64_t t : rows) {
    logits(m, h, w, t, z);
    ref.insert(ref.end(), z.begin(), z.end());
  }
  c.check("lm_head_logits", c.get(out), ref, rows, m.V, kLogprob);
}

// Log-probs and lse of given logits, folded in vocabulary chunks (targets all in range).
void run_logprobs_of_logits(Run& c) {
  const Lm m = lm_of(c);
  Vf z = c.randn(m.T * m.V, 3.0f);
  Vi tg = c.randint(m.T, 0, int32_t(m.V));
  tg[0] = int32_t(m.V) - 1;
  Tensor tz = c.act(z, {m.T, m.V}), ttg = c.ints(tg, {m.T});
  Tensor logp = c.nan({m.T}, DType::F32), lse = c.nan({m.T}, DType::F32);
  ops::logprobs_of_logits(logp, lse, tz, ttg, c.s.chunk);
  const Rows rows = c.rows(m.T, double(m.V));
  Vd lref, sref;
  for (int64_t t : rows) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < m.V; ++j) mx = std::max(mx, double(z[t * m.V + j]));
    double sum = 0.0;
    for (int64_t j = 0; j < m.V; ++j) sum += std::exp(double(z[t * m.V + j]) - mx);
    sref.push_back(mx + std::log(sum));
    lref.push_back(double(z[t * m.V + tg[t]]) - sref.back());
  }
  c.check("logprobs_of_logits logp", c.get(logp), lref, rows, 1, kLogprob);
  c.check("logprobs_of_logits lse", c.get(lse), sref, rows, 1, kLogprob);
}

void run_token_logprobs_backward(Run& c) {
  const Lm m = lm_of(c);
  Vf h = c.randn(m.T * m.C), w = c.randn(m.V * m.C, 1.0f / std::sqrt(float(m.C)));
  const Vi tg = logprob_targets(c);
  Tensor th = c.act(h, {m.T, m.C}), tw = c.act(w, {m.V, m.C}), ttg = c.ints(tg, {m.T});
  // The saved lse: the forward op's on the case's device where it runs, else the f32 CPU op's.
  Vf lse(sz(m.T), 0.0f);
  Vi tgh = tg;
  if (ops::supports(Op::token_logprobs_forward, {}, c.dt, c.dev).path != ops::Path::unsupported) {
    Tensor tl = c.nan({m.T}, DType::F32);
    ops::token_logprobs_forward(c.nan({m.T}, DType::F32), tl, Tensor(), th, tw, ttg, float(m.tau), c.s.chunk);
    lse = Run::get(tl);
  } else {
    Vf lp(sz(m.T));
    ops::token_logprobs_forward(Tensor::f32(lp.data(), {m.T}), Tensor::f32(lse.data(), {m.T}), Tensor(),
                                Tensor::f32(h.data(), {m.T, m.C}), Tensor::f32(w.data(), {m.V, m.C}),
                                Tensor::i32(tgh.data(), {m.T}), float(m.tau), c.s.chunk);
  }
  Vf dl = c.randn(m.T, 1.0f, DType::F32), dh0 = c.randn(m.T * m.C),
     dw0 = c.randn(m.V * m.C, 0.01f, DType::F32);
  const Vf dh_init = dh0, dw_init = dw0;
  Tensor tdh = c.act(dh0, {m.T, m.C}), tdw = c.f32(dw0, {m.V, m.C});
  ops::token_logprobs_backward(tdh, tdw, c.f32(dl, {m.T}), th, tw, ttg, c.f32(lse, {m.T}), float(m.tau),
                               c.s.chunk);
  const Vf dh = c.get(tdh), dw = c.get(tdw);

  // d logp_t / d z_tj = (1[j = target] - p_tj) / tau with p from the saved lse; no target: 0.
  const Rows hr = c.rows(m.T, double(2 * m.V * m.C)), wr = c.rows(m.V, double(2 * m.T * m.C));
  Vd edh = take_rows(dh_init, hr, m.C), edw = take_rows(dw_init, wr, m.C), z;
  for (size_t r = 0; r < hr.size(); ++r) {
    const int64_t t = hr[r];
    if (tg[t] < 0) continue;
    logits(m, h, w, t, z);
    for (int64_t j = 0; j < m.V; ++j) {
      const double coef = dl[t] * ((j == tg[t] ? 1.0 : 0.0) - std::exp(z[j] - lse[t])) / m.tau;
      for (int64_t cc = 0; cc < m.C; ++cc) edh[r * sz(m.C) + sz(cc)] += coef * w[j * m.C + cc];
    }
  }
  for (size_t r = 0; r < wr.size(); ++r) {
    const int64_t j = wr[r];
    for (int64_t t = 0; t < m.T; ++t) {
      if (tg[t] < 0) continue;
      double zj = 0.0;
      for (int64_t cc = 0; cc < m.C; ++cc) zj += double(h[t * m.C + cc]) * w[j * m.C + cc];
      const double coef = dl[t] * ((j == tg[t] ? 1.0 : 0.0) - std::exp(zj / m.tau - lse[t])) / m.tau;
      for (int64_t cc = 0; cc < m.C; ++cc) edw[r * sz(m.C) + sz(cc)] += coef * h[t * m.C + cc];
    }
  }
  c.check("token_logprobs_backward dhidden", dh, edh, hr, m.C, kLogprobGrad);
  c.check("token_logprobs_backward dweight(f32)", dw, edw, wr, m.C, kLogprobGrad);
  if (c.dev == Device::CPU) {  // tokens without a target get no gradient
    for (int64_t t = 0; t < m.T; ++t)
      for (int64_t cc = 0; tg[t] < 0 && cc < m.C; ++cc) EXPECT_EQ(dh[t * m.C + cc], dh_init[t * m.C + cc]);
  }
  if (c.fd(double(m.T * m.V * m.C))) {
    Vd hd = to_d(h), wd = to_d(w);
    const Rows all = Run::all_rows(m.T);
    auto loss = [&] {
      Vd l, s, e;
      ref_logprobs(m, hd, wd, tg, all, l, s, e);
      return dot(l, dl);
    };
    check_grad("dhidden", hd, diff(dh, dh_init), loss, 78, 80);
    check_grad("dweight", wd, diff(dw, dw_init), loss, 79, 80);
  }
}

}  // namespace optable
