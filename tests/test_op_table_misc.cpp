// The op table's runners for the elementwise ops (add, add_inplace, scale_inplace, zero, convert,
// sum_squares), AdamW and the masked cross-entropy, each against a double-precision reference.
// Exact where the op is exact in f32 (an add, a product, a copy).
#include <cmath>

#include "base/bf16.h"
#include "op_table.h"

namespace optable {

namespace {
constexpr Bound kExactF32{0.0, 1e-2};  // exact in f32; one bf16 rounding of the f32 result in bf16
}  // namespace

void run_add(Run& c) {
  const int64_t n = c.s.N;
  Vf a = c.randn(n), b = c.randn(n);
  Tensor ta = c.act(a, {n}), tb = c.act(b, {n}), out = c.nan({1, n}, c.dt);  // any shapes of equal numel
  ops::add(out, ta, tb);
  Vd ref(sz(n));
  for (int64_t i = 0; i < n; ++i) ref[i] = double(a[i]) + b[i];
  c.check("add", c.get(out), ref, kExactF32);
  ops::add(ta, ta, tb);  // out aliasing an input (the residual stream)
  c.check("add (aliased)", c.get(ta), ref, kExactF32);
  c.check_untouched("add", ta);
}

void run_add_inplace(Run& c) {
  const int64_t n = c.s.N;
  Vf a = c.randn(n), b = c.randn(n);
  Tensor ta = c.act(a, {n}), tb = c.act(b, {n});
  ops::add_inplace(ta, tb);
  Vd ref(sz(n));
  for (int64_t i = 0; i < n; ++i) ref[i] = double(a[i]) + b[i];
  c.check("add_inplace", c.get(ta), ref, kExactF32);
  c.check_untouched("add_inplace", ta);
}

void run_scale_inplace(Run& c) {
  const int64_t n = c.s.N;
  Vf x = c.randn(n);
  Tensor tx = c.act(x, {n});
  ops::scale_inplace(tx, -0.37f);
  Vd ref(sz(n));
  for (int64_t i = 0; i < n; ++i) ref[i] = double(x[i]) * double(-0.37f);
  c.check("scale_inplace", c.get(tx), ref, kExactF32);
  c.check_untouched("scale_inplace", tx);
}

void run_zero(Run& c) {
  const int64_t n = c.s.N;
  Vf x = c.randn(n);
  Tensor tx = c.act(x, {n});
  ops::zero(tx);
  c.check("zero", c.get(tx), Vd(sz(n), 0.0), kExact);
  c.check_untouched("zero", tx);
}

// The f32 source rounded once to the case's dtype: exactly the reference rounded (bf16 on the CPU
// too, where only this op and AdamW's copy take it).
void run_convert(Run& c) {
  const int64_t n = c.s.N;
  Vf x = c.randn(n, 3.0f, DType::F32);
  Tensor src = c.f32(x, {n}), dst = c.nan({n}, c.dt);
  ops::convert(dst, src);
  Vd ref = to_d(x);
  if (c.dt == DType::BF16)
    for (double& v : ref) v = double(r1::bf16_to_f32(r1::f32_to_bf16(float(v))));
  c.check("convert", c.get(dst), ref, kExact);
}

void run_sum_squares(Run& c) {
  const int64_t n = c.s.N;
  Vf x = c.randn(n);
  Tensor tx = c.act(x, {n});
  double ref = 0.0;
  for (float v : x) ref += double(v) * v;
  c.check_scalar("sum_squares", ops::sum_squares(tx), ref, 1e-12);  // double accumulation of the same values
}

// ---------------------------------------------------------------------------------------------

// s.steps updates (at least 4: from zero moments at step 1, as a run starts; otherwise 2 from
// random moments at step 3). The compute copy: bf16 in a bf16 case, every step; f32 on the even
// steps of an f32 case (none on the odd ones).
void run_adamw_update(Run& c) {
  const int64_t n = c.s.N, steps = c.s.steps ? c.s.steps : 2;
  const bool from_start = steps >= 4;
  ops::AdamWParams hp;
  hp.lr = 1e-2f;
  hp.beta1 = 0.9f;
  hp.beta2 = 0.95f;
  hp.eps = 1e-8f;
  hp.weight_decay = 0.1f;
  hp.grad_scale = 0.5f;
  Vf p = c.randn(n, 1.0f, DType::F32), m(sz(n), 0.0f), v(sz(n), 0.0f), copy(sz(n), 0.0f);
  if (!from_start) {
    m = c.randn(n, 0.1f, DType::F32);
    v = c.randn(n, 0.1f, DType::F32);
    for (auto& x : v) x = x * x;
  }
  Vd pd = to_d(p), md = to_d(m), vd = to_d(v);
  Tensor tp = c.f32(p, {n}), tm = c.f32(m, {n}), tv = c.f32(v, {n}), tc = c.nan({n}, c.dt);
  for (int64_t k = 0; k < steps; ++k) {
    hp.step = from_start ? k + 1 : k + 3;
    Vf g = c.randn(n, 3.0f, DType::F32);
    g[0] = 0.0f;
    const bool with_copy = c.dt == DType::BF16 || k % 2 == 1;
    ops::adamw_update(tp, c.f32(g, {n}), tm, tv, hp, with_copy ? tc : Tensor());
    const double b1 = hp.beta1, b2 = hp.beta2, t = double(hp.step);
    for (int64_t i = 0; i < n; ++i) {
      const double gi = double(g[i]) * hp.grad_scale;
      md[i] = b1 * md[i] + (1 - b1) * gi;
      vd[i] = b2 * vd[i] + (1 - b2) * gi * gi;
      const double mh = md[i] / (1 - std::pow(b1, t)), vh = vd[i] / (1 - std::pow(b2, t));
      pd[i] -= double(hp.lr) * (mh / (std::sqrt(vh) + hp.eps) + hp.weight_decay * pd[i]);
    }
    const std::string at = " step " + std::to_string(hp.step);
    const Vf got = c.get(tp);
    c.check("adamw_update param(f32)" + at, got, pd, Bound{1e-5, 1e-5, 1e-6, 1e-5});
    c.check("adamw_update m(f32)" + at, c.get(tm), md, Bound{1e-5, 1e-5, 1e-7, 1e-5});
    c.check("adamw_update v(f32)" + at, c.get(tv), vd, Bound{1e-5, 1e-5, 1e-7, 1e-5});
    if (with_copy) {  // the updated param, rounded to the copy's dtype, in the same pass
      c.check("adamw_update compute_copy" + at, c.get(tc), to_d(rounded(got, c.dt)), kExact);
    }
  }
  c.check_untouched("adamw_update param", tp);
  c.check_untouched("adamw_update compute_copy", tc);
}

// ---------------------------------------------------------------------------------------------

namespace {
Vf cross_entropy_mask(Run& c, int64_t T) {
  Vf mask(sz(T), 0.0f);
  if (c.s.masked) return mask;  // no token with a target
  const Vi bits = c.randint(T, 0, 2);
  for (int64_t t = 0; t < T; ++t) mask[t] = float(bits[t]);
  mask[0] = 1.0f;
  return mask;
}
}  // namespace

void run_cross_entropy_forward(Run& c) {
  const int64_t T = c.s.T;
  Vf lp = c.randn(T), mask = cross_entropy_mask(c, T);
  Tensor tl = c.act(lp, {T}), tm = c.f32(mask, {T});
  const float got = ops::cross_entropy_forward(tl, tm);
  double num = 0.0, den = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    num += double(lp[t]) * mask[t];
    den += mask[t];
  }
  if (c.s.masked) {
    EXPECT_EQ(got, 0.0f) << "no masked tokens: loss 0";
    return;
  }
  c.check_scalar("cross_entropy_forward", got, -num / den, 1e-5);
  if (c.dev == Device::CPU) {
    EXPECT_NEAR(got, -num / den, 1e-6);
  }
}

void run_cross_entropy_backward(Run& c) {
  const int64_t T = c.s.T;
  Vf mask = cross_entropy_mask(c, T), g0 = c.randn(T);
  const Vf init = g0;
  Tensor tg = c.act(g0, {T});
  ops::cross_entropy_backward(tg, c.f32(mask, {T}));
  double den = 0.0;
  for (float m : mask) den += m;
  Vd ref = to_d(init);
  if (den > 0.0) {
    for (int64_t t = 0; t < T; ++t) ref[t] -= mask[t] / den;
  }
  const Vf got = c.get(tg);
  c.check("cross_entropy_backward", got, ref, c.s.masked ? kExact : Bound{1e-5, 1e-2, 1e-6, 0.0});
  if (c.fd(double(T)) && den > 0.0) {
    Vd lpd = to_d(c.randn(T));
    auto loss = [&] {
      double num = 0.0;
      for (int64_t t = 0; t < T; ++t) num += lpd[t] * mask[t];
      return -num / den;
    };
    check_grad("dlogp", lpd, diff(got, init), loss, 92);
  }
}

}  // namespace optable
