// The op table's runners for the layer ops (embedding, RMSNorm, linear, RoPE, SwiGLU): each draws
// its inputs, runs the op on the case's device, and checks every output against the double-precision
// reference written here; backward outputs start random so the += accumulation is checked, and on
// the CPU they are also checked against finite differences of the reference forward.
#include <fmt/format.h>

#include <cmath>

#include "base/rng.h"
#include "op_table.h"
#include "tensor/device_memory.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

namespace optable {

namespace {

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

// out rows `rows` of x (N, IC) @ w (OC, IC)^T + b.
Vd ref_linear(const Vd& x, const Vd& w, const Vd* b, const Rows& rows, int64_t IC, int64_t OC) {
  Vd out(rows.size() * sz(OC));
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t o = 0; o < OC; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < IC; ++i) s += x[rows[r] * IC + i] * w[o * IC + i];
      out[r * sz(OC) + sz(o)] = s;
    }
  return out;
}

// ref (rows of (N, OC)) += the same rows of r (N, OC), when there is one.
void add_residual(Vd& ref, const Vf& r, const Rows& rows, int64_t OC) {
  if (r.empty()) return;
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t o = 0; o < OC; ++o) ref[i * sz(OC) + sz(o)] += r[sz(rows[i] * OC + o)];
}

Vd ref_rope(const Vd& x, const Vi& pos, const Vf& inv_freq, int64_t T, int64_t H, int64_t HD,
            double sign = 1.0) {
  Vd out(x);
  const int64_t half = HD / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < half; ++j) {
      const double a = sign * double(float(pos[t]) * inv_freq[j]);  // the fp32 angle, as HF computes it
      const double c = std::cos(a), s = std::sin(a);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t i1 = (t * H + h) * HD + j, i2 = i1 + half;
        out[i1] = x[i1] * c - x[i2] * s;
        out[i2] = x[i2] * c + x[i1] * s;
      }
    }
  return out;
}

Vd ref_swiglu(const Vd& g, const Vd& u) {
  Vd out(g.size());
  for (size_t i = 0; i < g.size(); ++i) out[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return out;
}

Vf rope_inv_freq(int64_t HD, double theta) {
  Vf f(sz(HD / 2));
  for (int64_t j = 0; j < HD / 2; ++j) f[j] = float(1.0 / std::pow(theta, double(2 * j) / double(HD)));
  return f;
}

Vi embedding_ids(Run& c) {
  Vi ids = c.randint(c.s.T, 0, int32_t(c.s.V));
  if (c.s.repeats && c.s.T > 11) ids[3] = ids[7] = ids[11];  // repeated ids accumulate
  return ids;
}

Vi rope_positions(Run& c) {
  Vi pos = c.randint(c.s.T, 0, int32_t(c.s.maxpos ? c.s.maxpos : 4000));
  pos[0] = 0;
  return pos;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

void run_embedding_forward(Run& c) {
  const int64_t V = c.s.V, T = c.s.T, C = c.s.C;
  Vf table = c.randn(V * C);
  const Vi ids = embedding_ids(c);
  Tensor tt = c.act(table, {V, C}), out = c.nan({T, C}, c.dt);
  ops::embedding_forward(out, c.ints(ids, {T}), tt);
  Vd ref(sz(T * C));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < C; ++j) ref[t * C + j] = table[ids[t] * C + j];
  c.check("embedding_forward", c.get(out), ref, kExact);
}

void run_embedding_backward(Run& c) {
  const int64_t V = c.s.V, T = c.s.T, C = c.s.C;
  const Vi ids = embedding_ids(c);
  Vf g = c.randn(T * C), d0 = c.randn(V * C, 1.0f, DType::F32);
  Vf init = d0;
  Tensor tg = c.act(g, {T, C}), tdt = c.f32(d0, {V, C});
  ops::embedding_backward(tdt, tg, c.ints(ids, {T}));
  const Vf got = c.get(tdt);
  Vd ref = to_d(init);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < C; ++j) ref[ids[t] * C + j] += g[t * C + j];
  c.check("embedding_backward dtable", got, ref, kStat);  // atomics on CUDA: the f32 add order varies
  if (c.fd(double(T * C))) {
    Vd td = to_d(Vf(sz(V * C), 0.0f));
    auto loss = [&] {
      double s = 0.0;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < C; ++j) s += td[ids[t] * C + j] * g[t * C + j];
      return s;
    };
    check_grad("dtable", td, diff(got, init), loss, 5, 500);
  }
}

// ---------------------------------------------------------------------------------------------

void run_rmsnorm_forward(Run& c) {
  const int64_t N = c.s.N, C = c.s.C;
  const float eps = 1e-6f;
  Vf x = c.randn(N * C, 2.0f), w = c.randn(C);
  Tensor tx = c.act(x, {N, C}), tw = c.act(w, {C}), out = c.nan({N, C}, c.dt), rstd = c.nan({N}, DType::F32);
  ops::rmsnorm_forward(out, rstd, tx, tw, eps);
  Vd rref;
  const Vd oref = ref_rmsnorm(to_d(x), to_d(w), N, C, eps, &rref);
  c.check("rmsnorm_forward out", c.get(out), oref, kElem);
  c.check("rmsnorm_forward rstd(f32)", c.get(rstd), rref, kStat);
}

void run_rmsnorm_backward(Run& c) {
  const int64_t N = c.s.N, C = c.s.C;
  const float eps = 1e-5f;
  Vf x = c.randn(N * C), w = c.randn(C), g = c.randn(N * C);
  Tensor tx = c.act(x, {N, C}), tw = c.act(w, {C}), tg = c.act(g, {N, C});
  Vd r;
  ref_rmsnorm(to_d(x), to_d(w), N, C, eps, &r);
  Vf rstd(r.begin(), r.end());  // the saved statistic, as the forward leaves it (f32)
  Tensor tr = c.f32(rstd, {N});
  Vf dx0 = c.randn(N * C), dw0 = c.randn(C, 1.0f, DType::F32);
  const Vf dx_init = dx0, dw_init = dw0;
  Tensor tdx = c.act(dx0, {N, C}), tdw = c.f32(dw0, {C});
  ops::rmsnorm_backward(tdx, tdw, tg, tx, tw, tr);
  const Vf dx = c.get(tdx), dw = c.get(tdw);
  // dx = rstd * (w g - x rstd^2 mean(w g x)); dw = sum_n g x rstd.
  Vd rdx(sz(N * C)), rdw(sz(C), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    double wgx = 0.0;
    for (int64_t j = 0; j < C; ++j) wgx += double(w[j]) * g[n * C + j] * x[n * C + j];
    const double rs = rstd[n];
    for (int64_t j = 0; j < C; ++j) {
      rdx[n * C + j] = rs * (double(w[j]) * g[n * C + j] - double(x[n * C + j]) * rs * rs * wgx / double(C));
      rdw[j] += double(g[n * C + j]) * x[n * C + j] * rs;
    }
  }
  c.check("rmsnorm_backward dinp", dx, plus(dx_init, rdx), kReduce);
  c.check("rmsnorm_backward dweight(f32)", dw, plus(dw_init, rdw), kStatReduce);
  if (c.fd(double(N * C))) {
    Vd xd = to_d(x), wd = to_d(w);
    auto loss = [&] { return dot(ref_rmsnorm(xd, wd, N, C, eps), g); };
    check_grad("dinp", xd, diff(dx, dx_init), loss, 17);
    check_grad("dweight", wd, diff(dw, dw_init), loss, 18);
  }
  if (c.dev == Device::CPU) {  // optional outputs: dweight only
    Vf dw2 = dw_init;
    Tensor tdw2 = c.f32(dw2, {C});
    ops::rmsnorm_backward(Tensor(), tdw2, tg, tx, tw, tr);
    EXPECT_EQ(c.get(tdw2), dw) << "dweight alone";
  }
}

// ---------------------------------------------------------------------------------------------

void run_linear_forward(Run& c) {
  const int64_t N = c.s.N, IC = c.s.IC, OC = c.s.OC;
  Vf x = c.randn(N * IC), w = c.randn(OC * IC, 1.0f / std::sqrt(float(IC))), b = c.randn(OC);
  const bool wide = c.s.wide_out && c.dt == DType::BF16;  // bf16 operands, f32 logits
  Tensor tx = c.act(x, {N, IC}), tw = c.act(w, {OC, IC}), tb = c.s.bias ? c.act(b, {OC}) : Tensor();
  Vf r = c.s.residual ? c.randn(N * OC) : Vf();
  Tensor tr = c.s.residual ? c.act(r, {N, OC}) : Tensor();
  Tensor out = c.nan({N, OC}, wide ? DType::F32 : c.dt);
  ops::linear_forward(out, tx, tw, tb, tr);
  const Rows rows = c.rows(N, double(IC * OC));
  const Vd bd = to_d(b);
  Vd ref = ref_linear(to_d(x), to_d(w), c.s.bias ? &bd : nullptr, rows, IC, OC);
  add_residual(ref, r, rows, OC);
  c.check(wide ? "linear_forward (f32 out)" : c.s.residual ? "linear_forward (+ residual)" : "linear_forward",
          c.get(out), ref, rows, OC, wide ? kStatReduce : kReduce);
  if (c.s.residual) {  // out is the residual: accumulated in place
    Vf r2 = r;
    Tensor io = c.act(r2, {N, OC});
    ops::linear_forward(io, tx, tw, tb, io);
    c.check("linear_forward (+ residual, in place)", c.get(io), ref, rows, OC, kReduce);
  }
}

// Each product of one input as its own reference linear.
void run_linear_forward_each(Run& c) {
  const int64_t N = c.s.N, IC = c.s.IC;
  const size_t n = c.s.widths.size();
  Vf x = c.randn(N * IC);
  std::vector<Vf> w(n), b(n);  // sized first: the CPU tensors view these vectors' storage
  std::vector<Tensor> tw, tb, outs;
  for (size_t i = 0; i < n; ++i) {
    const int64_t OC = c.s.widths[i];
    w[i] = c.randn(OC * IC, 1.0f / std::sqrt(float(IC)));
    b[i] = c.randn(OC);
    tw.push_back(c.act(w[i], {OC, IC}));
    tb.push_back(c.s.bias && i != 1 ? c.act(b[i], {OC}) : Tensor());  // the second without one
    outs.push_back(c.nan({N, OC}, c.dt));
  }
  ops::linear_forward_each(outs, c.act(x, {N, IC}), tw, tb);
  const Rows rows = c.rows(N, double(IC * 64));
  for (size_t i = 0; i < n; ++i) {
    const int64_t OC = c.s.widths[i];
    const Vd bd = to_d(b[i]);
    c.check(fmt::format("linear_forward_each outs[{}]", i), c.get(outs[i]),
            ref_linear(to_d(x), to_d(w[i]), tb[i].empty() ? nullptr : &bd, rows, IC, OC), rows, OC, kReduce);
  }
}

void run_linear_backward(Run& c) {
  const int64_t N = c.s.N, IC = c.s.IC, OC = c.s.OC;
  Vf x = c.randn(N * IC), w = c.randn(OC * IC, 1.0f / std::sqrt(float(IC))), g = c.randn(N * OC);
  Vf dx0 = c.randn(N * IC), dw0 = c.randn(OC * IC, 1.0f, DType::F32), db0 = c.randn(OC, 1.0f, DType::F32);
  const Vf dx_init = dx0, dw_init = dw0, db_init = db0;
  Tensor tx = c.act(x, {N, IC}), tw = c.act(w, {OC, IC}), tg = c.act(g, {N, OC});
  Tensor tdx = c.act(dx0, {N, IC}), tdw = c.f32(dw0, {OC, IC}), tdb = c.s.bias ? c.f32(db0, {OC}) : Tensor();
  ops::linear_backward(tdx, tdw, tdb, tg, tx, tw);
  const Vf dx = c.get(tdx), dw = c.get(tdw);
  // dinp rows n = g[n] @ w; dweight rows o = sum_n g[n, o] x[n]; dbias = sum_n g[n].
  const Rows xr = c.rows(N, double(OC * IC)), wr = c.rows(OC, double(N * IC));
  Vd rdx(xr.size() * sz(IC), 0.0), rdw(wr.size() * sz(IC), 0.0);
  for (size_t r = 0; r < xr.size(); ++r)
    for (int64_t o = 0; o < OC; ++o) {
      const double go = g[xr[r] * OC + o];
      for (int64_t i = 0; i < IC; ++i) rdx[r * sz(IC) + sz(i)] += go * w[o * IC + i];
    }
  for (size_t r = 0; r < wr.size(); ++r)
    for (int64_t n = 0; n < N; ++n) {
      const double gn = g[n * OC + wr[r]];
      for (int64_t i = 0; i < IC; ++i) rdw[r * sz(IC) + sz(i)] += gn * x[n * IC + i];
    }
  Vd edx = take_rows(dx_init, xr, IC), edw = take_rows(dw_init, wr, IC);
  for (size_t i = 0; i < edx.size(); ++i) edx[i] += rdx[i];
  for (size_t i = 0; i < edw.size(); ++i) edw[i] += rdw[i];
  c.check("linear_backward dinp", dx, edx, xr, IC, kReduce);
  c.check("linear_backward dweight(f32)", dw, edw, wr, IC, kStatReduce);
  if (c.s.bias) {
    Vd rdb = to_d(db_init);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < OC; ++o) rdb[o] += g[n * OC + o];
    c.check("linear_backward dbias(f32)", c.get(tdb), rdb, kStatReduce);
  }
  if (c.fd(double(N * IC * OC))) {
    Vd xd = to_d(x), wd = to_d(w), bd(sz(OC), 0.0);
    const Rows all = Run::all_rows(N);
    auto loss = [&] { return dot(ref_linear(xd, wd, &bd, all, IC, OC), g); };
    check_grad("dinp", xd, diff(dx, dx_init), loss, 30);
    check_grad("dweight", wd, diff(dw, dw_init), loss, 31);
    if (c.s.bias) check_grad("dbias", bd, diff(c.get(tdb), db_init), loss, 32);
  }
  if (c.dev == Device::CPU) {  // empty gradient outputs are skipped
    Vf dw2 = dw_init;
    Tensor tdw2 = c.f32(dw2, {OC, IC});
    ops::linear_backward(Tensor(), tdw2, Tensor(), tg, tx, tw);
    EXPECT_EQ(c.get(tdw2), dw) << "dweight alone";
  }
}

// ---------------------------------------------------------------------------------------------

void run_rope_forward(Run& c) {
  const int64_t T = c.s.T, H = c.s.H, HD = c.s.HD;
  Vf x = c.randn(T * H * HD), inv = rope_inv_freq(HD, 1e6);
  const Vi pos = rope_positions(c);
  Tensor tx = c.act(x, {T, H, HD});
  ops::rope_forward(tx, c.ints(pos, {T}), c.f32(inv, {HD / 2}));
  const Vf y = c.get(tx);
  c.check("rope_forward", y, ref_rope(to_d(x), pos, inv, T, H, HD), kElem);
  if (c.dev == Device::CPU) {
    for (int64_t j = 0; j < H * HD; ++j) EXPECT_EQ(y[j], x[j]) << "position 0 is the identity";
  }
}

void run_rope_backward(Run& c) {
  const int64_t T = c.s.T, H = c.s.H, HD = c.s.HD;
  Vf g = c.randn(T * H * HD), inv = rope_inv_freq(HD, 1e6);
  const Vi pos = rope_positions(c);
  Tensor tg = c.act(g, {T, H, HD});
  ops::rope_backward(tg, c.ints(pos, {T}), c.f32(inv, {HD / 2}));
  const Vf dx = c.get(tg);
  c.check("rope_backward", dx, ref_rope(to_d(g), pos, inv, T, H, HD, -1.0), kElem);  // the transpose
  if (c.fd(double(T * H * HD))) {
    Vd xd = to_d(c.randn(T * H * HD));
    auto loss = [&] { return dot(ref_rope(xd, pos, inv, T, H, HD), g); };
    check_grad("dx", xd, dx, loss, 44, 100);
  }
}

// ---------------------------------------------------------------------------------------------

void run_swiglu_forward(Run& c) {
  const int64_t N = c.s.N, M = c.s.I;
  Vf gate = c.randn(N * M, 2.0f), up = c.randn(N * M);
  Tensor tgate = c.act(gate, {N, M}), tup = c.act(up, {N, M}), out = c.nan({N, M}, c.dt);
  ops::swiglu_forward(out, tgate, tup);
  c.check("swiglu_forward", c.get(out), ref_swiglu(to_d(gate), to_d(up)), kElem);
}

void run_swiglu_backward(Run& c) {
  const int64_t N = c.s.N, M = c.s.I;
  Vf gate = c.randn(N * M, 2.0f), up = c.randn(N * M), g = c.randn(N * M), dg0 = c.randn(N * M),
     du0 = c.randn(N * M);
  const Vf dg_init = dg0, du_init = du0;
  Tensor tgate = c.act(gate, {N, M}), tup = c.act(up, {N, M}), tg = c.act(g, {N, M});
  Tensor tdg = c.act(dg0, {N, M}), tdu = c.act(du0, {N, M});
  ops::swiglu_backward(tdg, tdu, tg, tgate, tup);
  const Vf dg = c.get(tdg), du = c.get(tdu);
  Vd rdg(sz(N * M)), rdu(sz(N * M));
  for (size_t i = 0; i < rdg.size(); ++i) {
    const double a = gate[i], sig = 1.0 / (1.0 + std::exp(-a));
    rdu[i] = double(du_init[i]) + double(g[i]) * a * sig;
    rdg[i] = double(dg_init[i]) + double(g[i]) * up[i] * sig * (1.0 + a * (1.0 - sig));
  }
  c.check("swiglu_backward dgate", dg, rdg, kElem);
  c.check("swiglu_backward dup", du, rdu, kElem);
  if (c.fd(double(N * M))) {
    Vd gd = to_d(gate), ud = to_d(up);
    auto loss = [&] { return dot(ref_swiglu(gd, ud), g); };
    check_grad("dgate", gd, diff(dg, dg_init), loss, 55);
    check_grad("dup", ud, diff(du, du_init), loss, 56);
  }
}

// Packed [gate | up] rows (the MLP's one GEMM of both projections): the reference's values, and
// bitwise what swiglu_forward/backward give the same rows as separate tensors on the same device.
namespace {
// Columns [c0, c0 + w) of each of the N rows of x (N, W).
Vf cols(const Vf& x, int64_t N, int64_t W, int64_t c0, int64_t w) {
  Vf out(sz(N * w));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < w; ++j) out[sz(n * w + j)] = x[sz(n * W + c0 + j)];
  return out;
}
}  // namespace

void run_swiglu_packed_forward(Run& c) {
  const int64_t N = c.s.N, M = c.s.I;
  Vf gu = c.randn(N * 2 * M, 2.0f);
  const Tensor tgu = c.act(gu, {N, 2 * M});  // rounds gu to the run's dtype first
  Vf gate = cols(gu, N, 2 * M, 0, M), up = cols(gu, N, 2 * M, M, M);
  Tensor out = c.nan({N, M}, c.dt), plain = c.nan({N, M}, c.dt);
  ops::swiglu_packed_forward(out, tgu);
  ops::swiglu_forward(plain, c.act(gate, {N, M}), c.act(up, {N, M}));
  const Vf got = c.get(out);
  c.check("swiglu_packed_forward", got, ref_swiglu(to_d(gate), to_d(up)), kElem);
  EXPECT_TRUE(got == c.get(plain)) << "packed rows differ from swiglu_forward's";
}

void run_swiglu_packed_backward(Run& c) {
  const int64_t N = c.s.N, M = c.s.I;
  Vf gu = c.randn(N * 2 * M, 2.0f), g = c.randn(N * M), dgu0 = c.randn(N * 2 * M);
  const Tensor tgu = c.act(gu, {N, 2 * M}), tg = c.act(g, {N, M}), tdgu = c.act(dgu0, {N, 2 * M});
  Vf gate = cols(gu, N, 2 * M, 0, M), up = cols(gu, N, 2 * M, M, M);
  Vf dg0 = cols(dgu0, N, 2 * M, 0, M), du0 = cols(dgu0, N, 2 * M, M, M);
  ops::swiglu_packed_backward(tdgu, tg, tgu);
  Tensor tdg = c.act(dg0, {N, M}), tdu = c.act(du0, {N, M});
  ops::swiglu_backward(tdg, tdu, tg, c.act(gate, {N, M}), c.act(up, {N, M}));
  const Vf dgu = c.get(tdgu);
  EXPECT_TRUE(cols(dgu, N, 2 * M, 0, M) == c.get(tdg)) << "packed dgate differs from swiglu_backward's";
  EXPECT_TRUE(cols(dgu, N, 2 * M, M, M) == c.get(tdu)) << "packed dup differs from swiglu_backward's";
  Vd rdgu(sz(N * 2 * M));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < M; ++j) {
      const size_t i = sz(n * M + j), a = sz(n * 2 * M + j), b = a + sz(M);
      const double x = gate[i], sig = 1.0 / (1.0 + std::exp(-x));
      rdgu[a] = double(dgu0[a]) + double(g[i]) * up[i] * sig * (1.0 + x * (1.0 - sig));
      rdgu[b] = double(dgu0[b]) + double(g[i]) * x * sig;
    }
  c.check("swiglu_packed_backward", dgu, rdgu, kElem);
}

// ---------------------------------------------------------------------------------------------

namespace {
constexpr float kDropP = 0.25f;
constexpr uint64_t kDropSeed = 1234, kDropStream = 77;

// The mask as base/rng.h defines it, element by element (the kernels draw four at a time).
Vd ref_dropout(const Vf& x, float p) {
  Vd out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t w[4];
    r1::Philox::generate(kDropSeed, kDropStream, uint64_t(i / 4), w);
    out[i] = r1::dropout_keep(w, uint64_t(i), p) ? double(x[i]) / (1.0 - double(p)) : 0.0;
  }
  return out;
}
}  // namespace

void run_dropout_forward(Run& c) {
  const int64_t n = c.s.N * c.s.I;
  Vf x = c.randn(n);
  Tensor tx = c.act(x, {n}), out = c.nan({n}, c.dt);
  ops::dropout_forward(out, tx, kDropP, kDropSeed, kDropStream);
  const Vf y = c.get(out);
  c.check("dropout_forward", y, ref_dropout(x, kDropP), kElem);
  if (n >= 4096) {  // the mask keeps about 1 - p of the elements
    int64_t kept = 0;
    for (float v : y) kept += v != 0.0f;
    EXPECT_NEAR(double(kept) / double(n), 1.0 - kDropP, 0.02);
  }
  ops::dropout_forward(out, tx, 0.0f, kDropSeed, kDropStream);  // p = 0: the identity
  c.check("dropout_forward p=0", c.get(out), to_d(x), kElem);
}

void run_dropout_backward(Run& c) {
  const int64_t n = c.s.N * c.s.I;
  Vf g = c.randn(n), dx0 = c.randn(n);
  const Vf dx_init = dx0;
  Tensor tg = c.act(g, {n}), tdx = c.act(dx0, {n});
  ops::dropout_backward(tdx, tg, kDropP, kDropSeed, kDropStream);
  Vd ref = ref_dropout(g, kDropP);
  for (size_t i = 0; i < ref.size(); ++i) ref[i] += double(dx_init[i]);
  c.check("dropout_backward", c.get(tdx), ref, kElem);
}

// RMSNorm then the product (bias, residual), or then [gate; up] and the SwiGLU, against the double
// reference of those ops. On CUDA the decode GEMM is switched on for the op (it declines in f32);
// on the CPU, and where it declines, the op's output must be bitwise what the unfused ops give.
void run_rmsnorm_linear_forward(Run& c) {
  const int64_t N = c.s.N, IC = c.s.IC, OC = c.s.OC, W = c.s.swiglu ? 2 * OC : OC;
  const float eps = 1e-6f;
  Vf x = c.randn(N * IC, 3.0f), g = c.randn(IC), w = c.randn(W * IC, 1.0f / std::sqrt(float(IC))), b = c.randn(OC);
  Vf r = c.s.residual ? c.randn(N * OC) : Vf();
  Tensor tx = c.act(x, {N, IC}), tg = c.act(g, {IC}), tw = c.act(w, {W, IC});
  Tensor tb = c.s.bias ? c.act(b, {OC}) : Tensor(), tr = c.s.residual ? c.act(r, {N, OC}) : Tensor();
  Tensor out = c.nan({N, OC}, c.dt);
#ifdef R1_HAVE_CUDA
  struct On {  // the decode GEMM, for this op's CUDA cases
    On() { r1::cuda::set_decode_gemm(true); }
    ~On() { r1::cuda::set_decode_gemm(r1::cuda::decode_gemm_default()); }
  } on;
#endif
  const bool fused = ops::rmsnorm_linear_forward(out, tx, tg, eps, tw, tb, tr, c.s.swiglu);
  // The unfused ops on the same operands.
  Tensor normed = c.nan({N, IC}, c.dt), rstd = c.nan({N}, DType::F32), plain = c.nan({N, OC}, c.dt);
  ops::rmsnorm_forward(normed, rstd, tx, tg, eps);
  if (c.s.swiglu) {
    Tensor gate_up = c.nan({N, W}, c.dt);
    ops::linear_forward(gate_up, normed, tw, {});
    ops::swiglu_packed_forward(plain, gate_up);
  } else {
    ops::linear_forward(plain, normed, tw, tb, tr);
  }
  if (!fused) out = plain;  // declined: the caller's path
  if (c.dev == Device::CPU || !fused) EXPECT_TRUE(c.get(out) == c.get(plain)) << "not bitwise the unfused ops";
  const Rows rows = c.rows(N, double(IC * W));
  const Vd y = ref_rmsnorm(to_d(x), to_d(g), N, IC, eps), bd = to_d(b);
  const Vd lin = ref_linear(y, to_d(w), c.s.bias ? &bd : nullptr, rows, IC, W);
  Vd ref(rows.size() * sz(OC));
  for (size_t i = 0; i < rows.size(); ++i)
    for (int64_t o = 0; o < OC; ++o) {
      const double v = lin[i * sz(W) + sz(o)];
      ref[i * sz(OC) + sz(o)] = c.s.swiglu ? v / (1.0 + std::exp(-v)) * lin[i * sz(W) + sz(OC + o)]
                                           : v + (c.s.residual ? double(r[sz(rows[i] * OC + o)]) : 0.0);
    }
  c.check(c.s.swiglu ? "rmsnorm_linear_forward (SwiGLU)" : "rmsnorm_linear_forward", c.get(out), ref, rows, OC,
          kReduce);
}

// An output projection and the norm of its result: out against the double product (+ bias +
// residual), normed bitwise what rmsnorm_forward gives on that out (the same row kernel on CUDA, the
// same reference on the CPU), and on the CPU out bitwise linear_forward's. On CUDA bf16 every split
// of K the op may take (1 to 8, and its own rule), out also accumulated in place of the residual.
void run_linear_rmsnorm_forward(Run& c) {
  const int64_t N = c.s.N, IC = c.s.IC, OC = c.s.OC;
  const float eps = 1e-6f;
  Vf x = c.randn(N * IC), w = c.randn(OC * IC, 1.0f / std::sqrt(float(IC))), b = c.randn(OC), g = c.randn(OC);
  Vf r = c.s.residual ? c.randn(N * OC, 4.0f) : Vf();
  Tensor tx = c.act(x, {N, IC}), tw = c.act(w, {OC, IC}), tg = c.act(g, {OC});
  Tensor tb = c.s.bias ? c.act(b, {OC}) : Tensor(), tr = c.s.residual ? c.act(r, {N, OC}) : Tensor();
  const Rows rows = c.rows(N, double(IC * OC));
  const Vd bd = to_d(b);
  Vd ref = ref_linear(to_d(x), to_d(w), c.s.bias ? &bd : nullptr, rows, IC, OC);
  add_residual(ref, r, rows, OC);
  const auto run = [&](const std::string& name, bool in_place) {
    Vf r2 = r;
    Tensor out = in_place ? c.act(r2, {N, OC}) : c.nan({N, OC}, c.dt), normed = c.nan({N, OC}, c.dt);
    const int64_t ws = ops::linear_rmsnorm_workspace(c.dev, N, IC, OC);
    const Tensor work = ws > 0 ? c.nan({ws}, DType::F32) : Tensor();
    const bool fused = ops::linear_rmsnorm_forward(out, normed, tx, tw, tb, in_place ? out : tr, tg, eps, work);
    if (!fused) {  // declined: nothing written
      EXPECT_TRUE(c.dev != Device::CPU && c.dt == DType::F32) << name << ": declined on " << r1::device_name(c.dev);
      for (float v : c.get(normed)) ASSERT_TRUE(std::isnan(v)) << name << ": declined, but normed was written";
      return;
    }
    c.check(name, c.get(out), ref, rows, OC, kReduce);
    Tensor again = c.nan({N, OC}, c.dt);
    ops::rmsnorm_forward(again, c.nan({N}, DType::F32), out, tg, eps);
    EXPECT_TRUE(c.get(normed) == c.get(again)) << name << ": normed is not bitwise rmsnorm_forward of out";
    if (c.dev == Device::CPU) {
      Tensor plain = c.nan({N, OC}, c.dt);
      ops::linear_forward(plain, tx, tw, tb, tr);
      EXPECT_TRUE(c.get(out) == c.get(plain)) << name << ": not bitwise linear_forward";
    }
  };
  run("linear_rmsnorm_forward", false);
  if (c.s.residual) run("linear_rmsnorm_forward (in place of the residual)", true);
#ifdef R1_HAVE_CUDA
  if (c.dev == Device::CUDA && c.dt == DType::BF16) {
    struct Reset {
      ~Reset() { r1::cuda::set_linear_norm_splits(0); }
    } reset;
    for (int S : {1, 2, 3, 8}) {
      r1::cuda::set_linear_norm_splits(S);
      run(fmt::format("linear_rmsnorm_forward (K split {} ways)", r1::cuda::linear_norm_splits(N, IC, OC)), false);
    }
  }
#endif
}

}  // namespace optable
