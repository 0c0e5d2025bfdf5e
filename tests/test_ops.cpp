// Tests of the CPU op set (kernels/ops.h): every forward against a naive double-precision reference
// written here, every backward against central finite differences of that reference, plus shape
// and device errors. Backward buffers start non-zero to check that gradients accumulate (+=).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/cpu/cpu_ops.h"
#ifdef R1_HAVE_CUDA
#include "device/cuda_device.h"
#endif
#include "kernels/ops.h"
#include "tensor/tensor.h"

namespace {

using r1::Tensor;
using Vf = std::vector<float>;
using Vd = std::vector<double>;
using Vi = std::vector<int32_t>;

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

Vf randn(size_t n, uint64_t seed, float scale = 1.0f) {
  r1::Rng rng(seed);
  Vf v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

Vd to_d(const Vf& v) { return Vd(v.begin(), v.end()); }

Vf diff(const Vf& a, const Vf& b) {
  Vf d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

Tensor F(Vf& v, std::initializer_list<int64_t> dims) { return Tensor::f32(v.data(), dims); }
Tensor I(Vi& v, std::initializer_list<int64_t> dims) { return Tensor::i32(v.data(), dims); }

// |got - ref| <= atol + rtol * |ref| elementwise; reports the worst element.
void expect_close(const std::string& what, const Vf& got, const Vd& ref, double rtol = 1e-5, double atol = 1e-5) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double worst = 0.0;
  size_t wi = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double excess = std::fabs(double(got[i]) - ref[i]) - (atol + rtol * std::fabs(ref[i]));
    if (!(excess <= worst)) {
      worst = std::isnan(excess) ? INFINITY : excess;
      wi = i;
    }
  }
  EXPECT_LE(worst, 0.0) << what << "[" << wi << "]: got " << got[wi] << ", expected " << ref[wi];
}

double dot(const Vd& a, const Vf& r) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * double(r[i]);
  return s;
}

// Compares the analytic gradient of loss() w.r.t. x with central differences on x (double), over all
// elements or a fixed random subset of max_checks. Tolerance is relative to max(|fd|, rms(grad)).
void check_grad(const std::string& what, Vd& x, const Vf& analytic, const std::function<double()>& loss,
                uint64_t seed, size_t max_checks = 50, double eps = 1e-5, double rtol = 1e-4) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  std::vector<size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), sz(0));
  if (idx.size() > max_checks) {
    r1::Rng rng(seed, 7);
    for (size_t i = 0; i < max_checks; ++i) std::swap(idx[i], idx[i + rng.next_u32() % (idx.size() - i)]);
    idx.resize(max_checks);
  }
  double rms = 0.0;
  for (float g : analytic) rms += double(g) * g;
  rms = std::sqrt(rms / double(std::max<size_t>(analytic.size(), 1)));
  int failures = 0;
  for (size_t i : idx) {
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double lp = loss();
    x[i] = x0 - eps;
    const double lm = loss();
    x[i] = x0;
    const double fd = (lp - lm) / (2 * eps);
    const double tol = rtol * std::max(std::fabs(fd), rms) + 1e-7;
    if (std::fabs(analytic[i] - fd) > tol && failures++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << ", finite difference " << fd;
    }
  }
  EXPECT_EQ(failures, 0) << what;
}

// Throws r1::Error whose message contains every substring.
void expect_error(const std::function<void()>& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
    ADD_FAILURE() << "no r1::Error thrown (expected: " << *parts.begin() << ")";
  } catch (const r1::Error& e) {
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// double-precision references

Vd ref_rmsnorm(const Vd& x, const Vd& w, int64_t N, int64_t C, double eps, Vd* rstd = nullptr) {
  Vd out(sz(N * C));
  if (rstd) rstd->assign(sz(N), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += x[n * C + c] * x[n * C + c];
    const double r = 1.0 / std::sqrt(ss / double(C) + eps);
    for (int64_t c = 0; c < C; ++c) out[n * C + c] = x[n * C + c] * r * w[c];
    if (rstd) (*rstd)[n] = r;
  }
  return out;
}

Vd ref_linear(const Vd& x, const Vd& w, const Vd* b, int64_t N, int64_t IC, int64_t OC) {
  Vd out(sz(N * OC));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < IC; ++i) s += x[n * IC + i] * w[o * IC + i];
      out[n * OC + o] = s;
    }
  return out;
}

Vd ref_rope(const Vd& x, const Vi& pos, const Vf& inv_freq, int64_t T, int64_t H, int64_t HD) {
  Vd out(x);
  const int64_t half = HD / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < half; ++j) {
        const double a = double(float(pos[t]) * inv_freq[j]);  // the fp32 angle, as HF computes it
        const int64_t i1 = (t * H + h) * HD + j, i2 = i1 + half;
        out[i1] = x[i1] * std::cos(a) - x[i2] * std::sin(a);
        out[i2] = x[i2] * std::cos(a) + x[i1] * std::sin(a);
      }
  return out;
}

// Naive causal varlen GQA attention; also returns lse (T, NH).
Vd ref_attention(const Vd& q, const Vd& k, const Vd& v, const Vi& cu, int64_t NH, int64_t NKV, int64_t HD,
                 double scale, Vd* lse = nullptr) {
  const int64_t T = cu.back(), B = int64_t(cu.size()) - 1;
  Vd out(sz(T * NH * HD), 0.0);
  if (lse) lse->assign(sz(T * NH), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = cu[b]; i < cu[b + 1]; ++i)
      for (int64_t h = 0; h < NH; ++h) {
        const int64_t g = h / (NH / NKV);
        Vd s;
        double m = -INFINITY;
        for (int64_t j = cu[b]; j <= i; ++j) {
          double d = 0.0;
          for (int64_t c = 0; c < HD; ++c) d += q[(i * NH + h) * HD + c] * k[(j * NKV + g) * HD + c];
          s.push_back(d * scale);
          m = std::max(m, s.back());
        }
        double sum = 0.0;
        for (double& x : s) sum += (x = std::exp(x - m));
        for (int64_t j = cu[b]; j <= i; ++j)
          for (int64_t c = 0; c < HD; ++c)
            out[(i * NH + h) * HD + c] += s[sz(j - cu[b])] / sum * v[(j * NKV + g) * HD + c];
        if (lse) (*lse)[i * NH + h] = m + std::log(sum);
      }
  return out;
}

Vd ref_swiglu(const Vd& g, const Vd& u) {
  Vd out(g.size());
  for (size_t i = 0; i < g.size(); ++i) out[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return out;
}

// Full-vocabulary log-softmax: logp (target < 0: 0), lse, entropy.
void ref_logprobs(const Vd& hidden, const Vd& w, const Vi& targets, int64_t C, int64_t V, double tau, Vd& logp,
                  Vd& lse, Vd& entropy) {
  const int64_t T = int64_t(targets.size());
  logp.assign(sz(T), 0.0);
  lse.assign(sz(T), 0.0);
  entropy.assign(sz(T), 0.0);
  Vd z(sz(V));
  for (int64_t t = 0; t < T; ++t) {
    double m = -INFINITY;
    for (int64_t j = 0; j < V; ++j) {
      double d = 0.0;
      for (int64_t c = 0; c < C; ++c) d += hidden[t * C + c] * w[j * C + c];
      z[j] = d / tau;
      m = std::max(m, z[j]);
    }
    double sum = 0.0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(z[j] - m);
    const double l = m + std::log(sum);
    double h = 0.0;
    for (int64_t j = 0; j < V; ++j) h -= std::exp(z[j] - l) * (z[j] - l);
    lse[t] = l;
    entropy[t] = h;
    if (targets[t] >= 0) logp[t] = z[targets[t]] - l;
  }
}

Vf rope_inv_freq(int64_t HD, double theta) {
  Vf f(sz(HD / 2));
  for (int64_t j = 0; j < HD / 2; ++j) f[j] = float(1.0 / std::pow(theta, double(2 * j) / double(HD)));
  return f;
}

Vi make_cu(const std::vector<int>& lens) {
  Vi cu{0};
  for (int l : lens) cu.push_back(cu.back() + l);
  return cu;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// embedding

TEST(OpsEmbedding, ForwardBackward) {
  const int64_t V = 11, C = 37, T = 13;
  Vf table = randn(sz(V * C), 1);
  Vi ids(T);
  r1::Rng rng(2);
  for (auto& i : ids) i = int32_t(rng.next_u32() % V);
  ids[3] = ids[7] = ids[11];  // repeated ids accumulate
  Vf out(sz(T * C));
  r1::ops::embedding_forward(F(out, {T, C}), I(ids, {T}), F(table, {V, C}));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) ASSERT_EQ(out[t * C + c], table[ids[t] * C + c]);

  Vf R = randn(sz(T * C), 3), g0 = randn(sz(V * C), 4), dtable = g0;
  r1::ops::embedding_backward(F(dtable, {V, C}), F(R, {T, C}), I(ids, {T}));
  Vd td = to_d(table);
  auto loss = [&] {
    double s = 0.0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) s += td[ids[t] * C + c] * R[t * C + c];
    return s;
  };
  check_grad("dtable", td, diff(dtable, g0), loss, 5, 500);
}

// ---------------------------------------------------------------------------------------------
// rmsnorm

TEST(OpsRmsnorm, Forward) {
  const int64_t N = 13, C = 37;
  const float eps = 1e-6f;
  Vf x = randn(sz(N * C), 10, 2.0f), w = randn(sz(C), 11), out(sz(N * C)), rstd(sz(N));
  r1::ops::rmsnorm_forward(F(out, {N, C}), F(rstd, {N}), F(x, {N, C}), F(w, {C}), eps);
  Vd rref;
  expect_close("out", out, ref_rmsnorm(to_d(x), to_d(w), N, C, eps, &rref));
  expect_close("rstd", rstd, rref);
}

TEST(OpsRmsnorm, Backward) {
  const int64_t N = 13, C = 37;
  const float eps = 1e-5f;
  Vf x = randn(sz(N * C), 12), w = randn(sz(C), 13), out(sz(N * C)), rstd(sz(N));
  r1::ops::rmsnorm_forward(F(out, {N, C}), F(rstd, {N}), F(x, {N, C}), F(w, {C}), eps);
  Vf R = randn(sz(N * C), 14), gx0 = randn(sz(N * C), 15), gw0 = randn(sz(C), 16);
  Vf dx = gx0, dw = gw0;
  r1::ops::rmsnorm_backward(F(dx, {N, C}), F(dw, {C}), F(R, {N, C}), F(x, {N, C}), F(w, {C}), F(rstd, {N}));
  Vd xd = to_d(x), wd = to_d(w);
  auto loss = [&] { return dot(ref_rmsnorm(xd, wd, N, C, eps), R); };
  check_grad("dinp", xd, diff(dx, gx0), loss, 17);
  check_grad("dweight", wd, diff(dw, gw0), loss, 18);
  // Optional outputs: dweight only.
  Vf dw2 = gw0;
  r1::ops::rmsnorm_backward(Tensor(), F(dw2, {C}), F(R, {N, C}), F(x, {N, C}), F(w, {C}), F(rstd, {N}));
  for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dw2[c], dw[c]);
}

// ---------------------------------------------------------------------------------------------
// linear

TEST(OpsLinear, Forward) {
  const int64_t N = 13, IC = 37, OC = 19;
  Vf x = randn(sz(N * IC), 20), w = randn(sz(OC * IC), 21), b = randn(sz(OC), 22);
  Vf out(sz(N * OC));
  Vd bd = to_d(b);
  r1::ops::linear_forward(F(out, {N, OC}), F(x, {N, IC}), F(w, {OC, IC}), F(b, {OC}));
  expect_close("out (bias)", out, ref_linear(to_d(x), to_d(w), &bd, N, IC, OC), 1e-5, 1e-5);
  r1::ops::linear_forward(F(out, {N, OC}), F(x, {N, IC}), F(w, {OC, IC}), Tensor());
  expect_close("out (no bias)", out, ref_linear(to_d(x), to_d(w), nullptr, N, IC, OC), 1e-5, 1e-5);
}

TEST(OpsLinear, Backward) {
  const int64_t N = 13, IC = 37, OC = 19;
  Vf x = randn(sz(N * IC), 23), w = randn(sz(OC * IC), 24), b = randn(sz(OC), 25);
  Vf R = randn(sz(N * OC), 26);
  Vf gx0 = randn(sz(N * IC), 27), gw0 = randn(sz(OC * IC), 28), gb0 = randn(sz(OC), 29);
  Vf dx = gx0, dw = gw0, db = gb0;
  r1::ops::linear_backward(F(dx, {N, IC}), F(dw, {OC, IC}), F(db, {OC}), F(R, {N, OC}), F(x, {N, IC}),
                           F(w, {OC, IC}));
  Vd xd = to_d(x), wd = to_d(w), bd = to_d(b);
  auto loss = [&] { return dot(ref_linear(xd, wd, &bd, N, IC, OC), R); };
  check_grad("dinp", xd, diff(dx, gx0), loss, 30);
  check_grad("dweight", wd, diff(dw, gw0), loss, 31);
  check_grad("dbias", bd, diff(db, gb0), loss, 32);
  // Empty gradient outputs are skipped.
  Vf dw2 = gw0;
  r1::ops::linear_backward(Tensor(), F(dw2, {OC, IC}), Tensor(), F(R, {N, OC}), F(x, {N, IC}), F(w, {OC, IC}));
  for (size_t i = 0; i < dw.size(); ++i) EXPECT_EQ(dw2[i], dw[i]);
}

// ---------------------------------------------------------------------------------------------
// rope

TEST(OpsRope, Forward) {
  const int64_t T = 13, H = 3, HD = 16;
  Vf x = randn(sz(T * H * HD), 40), inv = rope_inv_freq(HD, 1e6);
  Vi pos(T);
  r1::Rng rng(41);
  for (auto& p : pos) p = int32_t(rng.next_u32() % 4000);
  pos[0] = 0;
  Vf y = x;
  r1::ops::rope_forward(F(y, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  expect_close("rope", y, ref_rope(to_d(x), pos, inv, T, H, HD), 1e-5, 1e-5);
  for (int64_t c = 0; c < H * HD; ++c) EXPECT_EQ(y[c], x[c]);  // position 0 is the identity
}

TEST(OpsRope, Backward) {
  const int64_t T = 13, H = 2, HD = 8;
  Vf x = randn(sz(T * H * HD), 42), inv = rope_inv_freq(HD, 10000.0), R = randn(sz(T * H * HD), 43);
  Vi pos(T);
  for (int64_t t = 0; t < T; ++t) pos[t] = int32_t(3 * t + 1);
  Vf dx = R;
  r1::ops::rope_backward(F(dx, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  Vd xd = to_d(x);
  auto loss = [&] { return dot(ref_rope(xd, pos, inv, T, H, HD), R); };
  check_grad("dx", xd, dx, loss, 44, 100);
}

// ---------------------------------------------------------------------------------------------
// attention

namespace {

struct AttnCase {
  std::vector<int> lens;
  int64_t NH, NKV, HD;
};

const AttnCase kAttnCases[] = {
    {{5, 1, 13, 7}, 4, 2, 8},   // GQA, a length-1 sequence
    {{9, 4, 1}, 3, 3, 12},      // MHA (NH == NKV)
    {{6, 0, 11}, 4, 1, 6},      // MQA, an empty sequence
};

}  // namespace

TEST(OpsAttention, Forward) {
  uint64_t seed = 100;
  for (const AttnCase& ac : kAttnCases) {
    Vi cu = make_cu(ac.lens);
    const int64_t T = cu.back(), NH = ac.NH, NKV = ac.NKV, HD = ac.HD;
    const float scale = 1.0f / std::sqrt(float(HD));
    Vf q = randn(sz(T * NH * HD), ++seed, 1.5f), k = randn(sz(T * NKV * HD), ++seed, 1.5f);
    Vf v = randn(sz(T * NKV * HD), ++seed);
    Vf out(q.size()), lse(sz(T * NH));
    r1::ops::attention_forward(F(out, {T, NH, HD}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, NKV, HD}),
                               F(v, {T, NKV, HD}), I(cu, {int64_t(cu.size())}), scale);
    Vd lref;
    Vd oref = ref_attention(to_d(q), to_d(k), to_d(v), cu, NH, NKV, HD, scale, &lref);
    expect_close("out NH=" + std::to_string(NH), out, oref);
    expect_close("lse NH=" + std::to_string(NH), lse, lref);
  }
}

TEST(OpsAttention, Backward) {
  uint64_t seed = 200;
  for (const AttnCase& ac : kAttnCases) {
    Vi cu = make_cu(ac.lens);
    const int64_t T = cu.back(), NH = ac.NH, NKV = ac.NKV, HD = ac.HD;
    const float scale = 1.0f / std::sqrt(float(HD));
    Vf q = randn(sz(T * NH * HD), ++seed), k = randn(sz(T * NKV * HD), ++seed);
    Vf v = randn(sz(T * NKV * HD), ++seed), R = randn(q.size(), ++seed);
    Vf out(q.size()), lse(sz(T * NH));
    Tensor cut = I(cu, {int64_t(cu.size())});
    r1::ops::attention_forward(F(out, {T, NH, HD}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, NKV, HD}),
                               F(v, {T, NKV, HD}), cut, scale);
    Vf gq0 = randn(q.size(), ++seed), gk0 = randn(k.size(), ++seed), gv0 = randn(v.size(), ++seed);
    Vf dq = gq0, dk = gk0, dv = gv0;
    r1::ops::attention_backward(F(dq, {T, NH, HD}), F(dk, {T, NKV, HD}), F(dv, {T, NKV, HD}), F(R, {T, NH, HD}),
                                F(q, {T, NH, HD}), F(k, {T, NKV, HD}), F(v, {T, NKV, HD}), F(out, {T, NH, HD}),
                                F(lse, {T, NH}), cut, scale);
    Vd qd = to_d(q), kd = to_d(k), vd = to_d(v);
    auto loss = [&] { return dot(ref_attention(qd, kd, vd, cu, NH, NKV, HD, scale), R); };
    const std::string tag = " NH=" + std::to_string(NH) + " NKV=" + std::to_string(NKV);
    check_grad("dq" + tag, qd, diff(dq, gq0), loss, ++seed, 60);
    check_grad("dk" + tag, kd, diff(dk, gk0), loss, ++seed, 60);
    check_grad("dv" + tag, vd, diff(dv, gv0), loss, ++seed, 60);
  }
}

TEST(OpsAttention, CachedMatchesForward) {
  uint64_t seed = 300;
  for (const AttnCase& ac : kAttnCases) {
    Vi cu = make_cu(ac.lens);
    const int64_t B = int64_t(ac.lens.size()), T = cu.back(), NH = ac.NH, NKV = ac.NKV, HD = ac.HD;
    const int64_t S = B + 2, L = 16;
    const float scale = 1.0f / std::sqrt(float(HD));
    Vf q = randn(sz(T * NH * HD), ++seed), k = randn(sz(T * NKV * HD), ++seed);
    Vf v = randn(sz(T * NKV * HD), ++seed);
    Vf out(q.size()), lse(sz(T * NH));
    r1::ops::attention_forward(F(out, {T, NH, HD}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, NKV, HD}),
                               F(v, {T, NKV, HD}), I(cu, {B + 1}), scale);
    // Sequence b lives in slot S - 1 - b; the caches start as garbage (rows past pos are never read).
    Vi slots(T), pos(T);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = cu[b]; t < cu[b + 1]; ++t) {
        slots[t] = int32_t(S - 1 - b);
        pos[t] = int32_t(t - cu[b]);
      }
    const size_t csize = sz(S * L * NKV * HD);
    Vf kc = randn(csize, ++seed, 100.0f), vc = randn(csize, ++seed, 100.0f);
    Tensor kct = F(kc, {S, L, NKV, HD}), vct = F(vc, {S, L, NKV, HD});

    // (1) Prefill everything at once.
    r1::ops::kv_cache_write(kct, vct, F(k, {T, NKV, HD}), F(v, {T, NKV, HD}), I(slots, {T}), I(pos, {T}));
    Vf out_c(q.size());
    r1::ops::attention_cached(F(out_c, {T, NH, HD}), F(q, {T, NH, HD}), kct, vct, I(slots, {T}), I(pos, {T}),
                              scale);
    expect_close("cached (prefill) NH=" + std::to_string(NH), out_c, to_d(out), 1e-6, 1e-6);

    // (2) Decode-style: fresh garbage cache, one position of every sequence per step.
    for (Vf* c : {&kc, &vc}) {  // in place: kct, vct point at these buffers
      Vf garbage = randn(csize, ++seed, 100.0f);
      std::copy(garbage.begin(), garbage.end(), c->begin());
    }
    Vf out_d(q.size(), NAN);
    for (int32_t p = 0; p < L; ++p) {
      std::vector<int64_t> toks;
      for (int64_t t = 0; t < T; ++t)
        if (pos[t] == p) toks.push_back(t);
      if (toks.empty()) continue;
      const int64_t n = int64_t(toks.size());
      Vf qs, ks, vs, os(sz(n * NH * HD));
      Vi ss, ps;
      for (int64_t t : toks) {
        qs.insert(qs.end(), q.begin() + t * NH * HD, q.begin() + (t + 1) * NH * HD);
        ks.insert(ks.end(), k.begin() + t * NKV * HD, k.begin() + (t + 1) * NKV * HD);
        vs.insert(vs.end(), v.begin() + t * NKV * HD, v.begin() + (t + 1) * NKV * HD);
        ss.push_back(slots[t]);
        ps.push_back(pos[t]);
      }
      r1::ops::kv_cache_write(kct, vct, F(ks, {n, NKV, HD}), F(vs, {n, NKV, HD}), I(ss, {n}), I(ps, {n}));
      r1::ops::attention_cached(F(os, {n, NH, HD}), F(qs, {n, NH, HD}), kct, vct, I(ss, {n}), I(ps, {n}), scale);
      for (int64_t i = 0; i < n; ++i)
        std::copy(os.begin() + i * NH * HD, os.begin() + (i + 1) * NH * HD, out_d.begin() + toks[i] * NH * HD);
    }
    expect_close("cached (decode) NH=" + std::to_string(NH), out_d, to_d(out), 1e-6, 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------
// swiglu

TEST(OpsSwiglu, ForwardBackward) {
  const int64_t N = 13, I_ = 37;
  Vf g = randn(sz(N * I_), 50, 2.0f), u = randn(sz(N * I_), 51), out(g.size());
  r1::ops::swiglu_forward(F(out, {N, I_}), F(g, {N, I_}), F(u, {N, I_}));
  expect_close("swiglu", out, ref_swiglu(to_d(g), to_d(u)));

  Vf R = randn(g.size(), 52), gg0 = randn(g.size(), 53), gu0 = randn(g.size(), 54), dg = gg0, du = gu0;
  r1::ops::swiglu_backward(F(dg, {N, I_}), F(du, {N, I_}), F(R, {N, I_}), F(g, {N, I_}), F(u, {N, I_}));
  Vd gd = to_d(g), ud = to_d(u);
  auto loss = [&] { return dot(ref_swiglu(gd, ud), R); };
  check_grad("dgate", gd, diff(dg, gg0), loss, 55);
  check_grad("dup", ud, diff(du, gu0), loss, 56);
}

// ---------------------------------------------------------------------------------------------
// elementwise

TEST(OpsElementwise, AddScaleZeroSumSquares) {
  const int64_t n = 1001;
  Vf a = randn(sz(n), 60), b = randn(sz(n), 61), out(sz(n));
  r1::ops::add(F(out, {n}), F(a, {n}), F(b, {n}));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], a[i] + b[i]);
  Vf a2 = a;  // out aliasing a, different shapes of equal numel
  r1::ops::add(F(a2, {7, 143}), F(a2, {n}), F(b, {n}));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(a2[i], a[i] + b[i]);

  Vf d = a;
  r1::ops::add_inplace(F(d, {n}), F(b, {n}));
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(d[i], a[i] + b[i]);
  r1::ops::scale_inplace(F(d, {n}), -0.5f);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(d[i], (a[i] + b[i]) * -0.5f);

  double ss = 0.0;
  for (float x : a) ss += double(x) * x;
  EXPECT_NEAR(r1::ops::sum_squares(F(a, {n})), ss, 1e-12 * ss);

  r1::ops::zero(F(d, {n}));
  for (float x : d) ASSERT_EQ(x, 0.0f);
}

// ---------------------------------------------------------------------------------------------
// token log-probabilities and cross-entropy

namespace {
constexpr int64_t kLT = 13, kLC = 24, kLV = 53;
Vi logprob_targets() {
  Vi tg(kLT);
  r1::Rng rng(70);
  for (auto& t : tg) t = int32_t(rng.next_u32() % kLV);
  tg[2] = -1;
  tg[9] = -1;
  tg[5] = kLV - 1;
  tg[6] = 0;
  return tg;
}
}  // namespace

TEST(OpsLogprobs, ForwardMatchesFullLogSoftmax) {
  const int64_t T = kLT, C = kLC, V = kLV;
  Vf h = randn(sz(T * C), 71), w = randn(sz(V * C), 72, 0.5f);
  Vi tg = logprob_targets();
  for (float tau : {1.0f, 0.7f, 1.3f}) {
    Vd lp_ref, lse_ref, ent_ref;
    ref_logprobs(to_d(h), to_d(w), tg, C, V, tau, lp_ref, lse_ref, ent_ref);
    for (int64_t chunk : {int64_t(1), int64_t(7), int64_t(16), V, int64_t(100)}) {
      Vf lp(sz(T), NAN), lse(sz(T)), ent(sz(T));
      r1::ops::token_logprobs_forward(F(lp, {T}), F(lse, {T}), F(ent, {T}), F(h, {T, C}), F(w, {V, C}),
                                      I(tg, {T}), tau, chunk);
      const std::string tag = " tau=" + std::to_string(tau) + " chunk=" + std::to_string(chunk);
      expect_close("logp" + tag, lp, lp_ref, 1e-5, 2e-5);
      expect_close("lse" + tag, lse, lse_ref, 1e-5, 2e-5);
      expect_close("entropy" + tag, ent, ent_ref, 1e-5, 2e-5);
      EXPECT_EQ(lp[2], 0.0f);
      EXPECT_EQ(lp[9], 0.0f);
    }
  }
  // The entropy output is optional.
  Vf lp(sz(T)), lse(sz(T));
  r1::ops::token_logprobs_forward(F(lp, {T}), F(lse, {T}), Tensor(), F(h, {T, C}), F(w, {V, C}), I(tg, {T}), 1.0f,
                                  16);
}

TEST(OpsLogprobs, Backward) {
  const int64_t T = kLT, C = kLC, V = kLV;
  const float tau = 0.7f;
  const int64_t chunk = 16;
  Vf h = randn(sz(T * C), 73), w = randn(sz(V * C), 74, 0.5f), R = randn(sz(T), 75);
  Vi tg = logprob_targets();
  Vf lp(sz(T)), lse(sz(T));
  r1::ops::token_logprobs_forward(F(lp, {T}), F(lse, {T}), Tensor(), F(h, {T, C}), F(w, {V, C}), I(tg, {T}), tau,
                                  chunk);
  Vf gh0 = randn(h.size(), 76), gw0 = randn(w.size(), 77), dh = gh0, dw = gw0;
  r1::ops::token_logprobs_backward(F(dh, {T, C}), F(dw, {V, C}), F(R, {T}), F(h, {T, C}), F(w, {V, C}),
                                   I(tg, {T}), F(lse, {T}), tau, chunk);
  Vd hd = to_d(h), wd = to_d(w);
  auto loss = [&] {
    Vd l, s, e;
    ref_logprobs(hd, wd, tg, C, V, tau, l, s, e);
    return dot(l, R);
  };
  check_grad("dhidden", hd, diff(dh, gh0), loss, 78, 80);
  check_grad("dweight", wd, diff(dw, gw0), loss, 79, 80);
  // Tokens without a target get no gradient.
  for (int64_t c = 0; c < C; ++c) EXPECT_EQ(dh[2 * C + c], gh0[2 * C + c]);
}

TEST(OpsLogprobs, TokenChunkingMatches) {
  // A tiny scratch limit forces token chunks (1 and 3 tokens) in the CPU kernel; results must agree.
  const int64_t T = kLT, C = kLC, V = kLV;
  Vf h = randn(sz(T * C), 80), w = randn(sz(V * C), 81, 0.5f), dl = randn(sz(T), 82);
  Vi tg = logprob_targets();
  Vf lp0(sz(T)), lse0(sz(T)), e0(sz(T)), dh0(h.size(), 0.0f), dw0(w.size(), 0.0f);
  r1::cpu::token_logprobs_forward(lp0.data(), lse0.data(), e0.data(), h.data(), w.data(), tg.data(), T, C, V, 0.9f,
                                  10);
  r1::cpu::token_logprobs_backward(dh0.data(), dw0.data(), dl.data(), h.data(), w.data(), tg.data(), lse0.data(), T,
                                   C, V, 0.9f, 10);
  for (int64_t scratch : {int64_t(5), int64_t(30)}) {
    Vf lp(sz(T)), lse(sz(T)), e(sz(T)), dh(h.size(), 0.0f), dw(w.size(), 0.0f);
    r1::cpu::token_logprobs_forward(lp.data(), lse.data(), e.data(), h.data(), w.data(), tg.data(), T, C, V, 0.9f,
                                    10, scratch);
    r1::cpu::token_logprobs_backward(dh.data(), dw.data(), dl.data(), h.data(), w.data(), tg.data(), lse.data(), T,
                                     C, V, 0.9f, 10, scratch);
    expect_close("logp", lp, to_d(lp0), 1e-6, 1e-6);
    expect_close("entropy", e, to_d(e0), 1e-6, 1e-6);
    expect_close("dhidden", dh, to_d(dh0), 1e-5, 1e-6);
    expect_close("dweight", dw, to_d(dw0), 1e-5, 1e-6);
  }
}

TEST(OpsCrossEntropy, ForwardBackward) {
  const int64_t T = 9;
  Vf lp = randn(sz(T), 90), mask = {1, 0, 1, 1, 0, 1, 1, 1, 0};
  double num = 0.0, den = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    num += double(lp[t]) * mask[t];
    den += mask[t];
  }
  EXPECT_NEAR(r1::ops::cross_entropy_forward(F(lp, {T}), F(mask, {T})), -num / den, 1e-6);
  Vf g0 = randn(sz(T), 91), dl = g0;
  r1::ops::cross_entropy_backward(F(dl, {T}), F(mask, {T}));
  for (int64_t t = 0; t < T; ++t) EXPECT_NEAR(dl[t] - g0[t], -mask[t] / den, 1e-6);
  // No masked tokens: loss 0, no gradient.
  Vf none(sz(T), 0.0f), dl2 = g0;
  EXPECT_EQ(r1::ops::cross_entropy_forward(F(lp, {T}), F(none, {T})), 0.0f);
  r1::ops::cross_entropy_backward(F(dl2, {T}), F(none, {T}));
  for (int64_t t = 0; t < T; ++t) EXPECT_EQ(dl2[t], g0[t]);
}

// ---------------------------------------------------------------------------------------------
// AdamW

TEST(OpsAdamW, MatchesReference) {
  const int64_t n = 37;
  r1::ops::AdamWParams hp;
  hp.lr = 1e-2f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.95f;
  hp.eps = 1e-8f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.5f;
  Vf p = randn(sz(n), 100), m(sz(n), 0.0f), v(sz(n), 0.0f);
  Vd pd = to_d(p), md(sz(n), 0.0), vd(sz(n), 0.0);
  for (int64_t step = 1; step <= 4; ++step) {
    Vf g = randn(sz(n), 100 + uint64_t(step), 3.0f);
    g[0] = 0.0f;
    hp.step = step;
    r1::ops::adamw_update(F(p, {n}), F(g, {n}), F(m, {n}), F(v, {n}), hp);
    const double b1 = hp.beta1, b2 = hp.beta2;
    for (int64_t i = 0; i < n; ++i) {
      const double gi = double(g[i]) * hp.grad_scale;
      md[i] = b1 * md[i] + (1 - b1) * gi;
      vd[i] = b2 * vd[i] + (1 - b2) * gi * gi;
      const double mh = md[i] / (1 - std::pow(b1, double(step))), vh = vd[i] / (1 - std::pow(b2, double(step)));
      pd[i] -= double(hp.lr) * (mh / (std::sqrt(vh) + hp.eps) + hp.weight_decay * pd[i]);
    }
    expect_close("param step " + std::to_string(step), p, pd, 1e-5, 1e-6);
    expect_close("m step " + std::to_string(step), m, md, 1e-5, 1e-7);
    expect_close("v step " + std::to_string(step), v, vd, 1e-5, 1e-7);
  }
}

// ---------------------------------------------------------------------------------------------
// errors

TEST(OpsErrors, BadShapesNameTheOp) {
  Vf buf(4096, 0.5f);
  Vi ibuf(64, 0);
  auto f = [&](std::initializer_list<int64_t> d) { return Tensor::f32(buf.data(), d); };
  auto i = [&](std::initializer_list<int64_t> d) { return Tensor::i32(ibuf.data(), d); };
  using namespace r1::ops;

  expect_error([&] { linear_forward(f({10, 64}), f({10, 48}), f({64, 32}), Tensor()); },
               {"linear_forward", "weight (64, 32) f32", "inp (10, 48) f32", "IC=48"});
  expect_error([&] { linear_forward(f({10, 63}), f({10, 48}), f({64, 48}), Tensor()); },
               {"linear_forward", "out", "OC=64"});
  expect_error([&] { linear_forward(f({10, 64}), f({10, 48}), f({64, 48}), f({63})); }, {"linear_forward", "bias"});
  expect_error([&] { linear_backward(f({10, 47}), Tensor(), Tensor(), f({10, 64}), f({10, 48}), f({64, 48})); },
               {"linear_backward", "dinp"});
  expect_error([&] { rmsnorm_forward(f({4, 8}), f({4}), f({4, 8}), f({9}), 1e-5f); }, {"rmsnorm_forward", "weight"});
  expect_error([&] { rmsnorm_forward(f({4, 8}), f({4}), Tensor::i32(ibuf.data(), {4, 8}), f({8}), 1e-5f); },
               {"rmsnorm_forward", "inp", "i32"});
  expect_error([&] { rmsnorm_forward(f({4, 8}), Tensor(), f({4, 8}), f({8}), 1e-5f); },
               {"rmsnorm_forward", "rstd", "empty"});
  expect_error([&] { rope_forward(f({4, 2, 7}), i({4}), f({3})); }, {"rope_forward", "odd"});
  expect_error([&] { rope_forward(f({4, 2, 8}), i({4}), f({3})); }, {"rope_forward", "inv_freq"});
  expect_error([&] { embedding_forward(f({4, 8}), i({5}), f({10, 8})); }, {"embedding_forward", "out"});
  ibuf[2] = 10;
  expect_error([&] { embedding_forward(f({4, 8}), i({4}), f({10, 8})); }, {"embedding_forward", "ids[2] = 10"});
  ibuf[2] = 0;
  expect_error([&] { swiglu_forward(f({4, 8}), f({4, 8}), f({4, 9})); }, {"swiglu_forward", "up"});
  expect_error([&] { add(f({10}), f({10}), f({11})); }, {"add", "b"});
  expect_error([&] { adamw_update(f({10}), f({10}), f({10}), f({9}), AdamWParams{}); }, {"adamw_update", "v"});
  expect_error([&] { AdamWParams hp; hp.step = 0; adamw_update(f({10}), f({10}), f({10}), f({10}), hp); },
               {"adamw_update", "step"});

  // attention: heads, cu_seqlens.
  Vi cu = {0, 3, 6};
  expect_error([&] { attention_forward(f({6, 3, 4}), f({6, 3}), f({6, 3, 4}), f({6, 2, 4}), f({6, 2, 4}),
                                       I(cu, {3}), 0.5f); },
               {"attention_forward", "NH = 3", "NKV = 2"});
  expect_error([&] { attention_forward(f({6, 4, 4}), f({6, 4}), f({6, 4, 4}), f({6, 2, 4}), f({6, 2, 5}),
                                       I(cu, {3}), 0.5f); },
               {"attention_forward", "v"});
  Vi cu_bad = {0, 3, 5};
  expect_error([&] { attention_forward(f({6, 4, 4}), f({6, 4}), f({6, 4, 4}), f({6, 2, 4}), f({6, 2, 4}),
                                       I(cu_bad, {3}), 0.5f); },
               {"attention_forward", "cu_seqlens"});
  expect_error([&] { attention_backward(f({6, 4, 4}), f({6, 2, 4}), f({6, 1, 4}), f({6, 4, 4}), f({6, 4, 4}),
                                        f({6, 2, 4}), f({6, 2, 4}), f({6, 4, 4}), f({6, 4}), I(cu, {3}), 0.5f); },
               {"attention_backward", "dv"});
  Vi slots = {0, 1}, pos = {0, 8};
  expect_error([&] { kv_cache_write(f({2, 8, 2, 4}), f({2, 8, 2, 4}), f({2, 2, 4}), f({2, 2, 4}), I(slots, {2}),
                                    I(pos, {2})); },
               {"kv_cache_write", "pos[1] = 8"});
  expect_error([&] { attention_cached(f({2, 4, 4}), f({2, 4, 4}), f({2, 8, 2, 4}), f({3, 8, 2, 4}), I(slots, {2}),
                                      I(pos, {2}), 0.5f); },
               {"attention_cached", "v_cache"});

  // token_logprobs: targets, temperature, chunk.
  Vi tg = {0, 1, 7};
  expect_error([&] { token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 4}), I(tg, {3}), 1.0f, 4); },
               {"token_logprobs_forward", "targets[2] = 7"});
  tg[2] = -1;
  expect_error([&] { token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 5}), I(tg, {3}), 1.0f, 4); },
               {"token_logprobs_forward", "weight"});
  expect_error([&] { token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 4}), I(tg, {3}), 0.0f, 4); },
               {"token_logprobs_forward", "temperature"});
  expect_error([&] { token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 4}), I(tg, {3}), 1.0f, 0); },
               {"token_logprobs_forward", "vocab_chunk"});
  expect_error([&] { token_logprobs_backward(f({3, 4}), f({7, 3}), f({3}), f({3, 4}), f({7, 4}), I(tg, {3}),
                                             f({3}), 1.0f, 4); },
               {"token_logprobs_backward", "dweight"});
  expect_error([&] { cross_entropy_forward(f({3}), f({4})); }, {"cross_entropy_forward", "mask"});
}

bool r1_test_gpu_present() {
#ifdef R1_HAVE_CUDA
  return r1::cuda::cuda_available();
#else
  return false;
#endif
}

TEST(OpsErrors, Devices) {
  Vf buf(256, 0.0f);
  Tensor cpu = Tensor::f32(buf.data(), {4, 8});
  Tensor gpu(buf.data(), r1::DType::F32, {4, 8}, r1::Device::CUDA);  // never dereferenced
  Tensor gpu_rstd(buf.data(), r1::DType::F32, {4}, r1::Device::CUDA);
  Tensor gpu_w(buf.data(), r1::DType::F32, {8}, r1::Device::CUDA);
  expect_error([&] { r1::ops::add(cpu, cpu, gpu); }, {"add", "different devices"});
  // With a GPU the (fake) CUDA tensors would reach real kernels: only check the no-GPU error here.
  if (r1_test_gpu_present()) return;
  expect_error([&] { r1::ops::rmsnorm_forward(gpu, gpu_rstd, gpu, gpu_w, 1e-5f); },
               {"rmsnorm_forward", "CUDA tensors are handled by the CUDA backend"});
  expect_error([&] { r1::ops::zero(gpu); }, {"zero", "CUDA"});
}
