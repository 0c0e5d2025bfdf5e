// The op table's runner for batched_matmul (MLA's absorbed weights, every head in one op): each
// operand's matrices at their strides inside one buffer whose other elements are NaN, so an op that
// reads outside the matrices shows it in its results and one that writes outside them leaves a
// changed gap in out; against a double-precision reference (rows sampled when large). On the CPU,
// also the bits of the same products made one by one (what the MLA decode replaced), and the
// dispatch layer's refusals.
#include <algorithm>
#include <cmath>
#include <limits>

#include "base/error.h"
#include "op_table.h"

namespace optable {

namespace {

// B matrices (r, c) in a buffer: matrix b's element (i, j) at b * stride + i * ld + j.
struct Layout {
  int64_t B, r, c, ld, stride;
  int64_t extent() const { return B > 0 && r > 0 && c > 0 ? (B - 1) * stride + (r - 1) * ld + c : 0; }
  int64_t at(int64_t b, int64_t i, int64_t j) const { return b * stride + i * ld + j; }
};

// One after another, `gap` elements after each row and each matrix (the weights' layout); or, with
// `beside`, side by side in shared rows, `gap` elements after each matrix's columns and at the row's
// end (MLA's heads in the tokens' rows).
Layout layout(const Shape& s, int64_t r, int64_t c, bool beside) {
  if (beside) return {s.batch, r, c, s.batch * (c + s.gap) + s.gap, c + s.gap};
  return {s.batch, r, c, c + s.gap, r * (c + s.gap) + s.gap};
}

// The packed matrices (B, r, c) spread into a NaN buffer at l's places.
Vf spread(const Vf& packed, const Layout& l) {
  Vf buf(sz(l.extent()), std::numeric_limits<float>::quiet_NaN());
  for (int64_t b = 0; b < l.B; ++b)
    for (int64_t i = 0; i < l.r; ++i)
      for (int64_t j = 0; j < l.c; ++j) buf[sz(l.at(b, i, j))] = packed[sz((b * l.r + i) * l.c + j)];
  return buf;
}

// Whether each element of a buffer laid out by l belongs to a matrix.
std::vector<bool> inside(const Layout& l) {
  std::vector<bool> in(sz(l.extent()), false);
  for (int64_t b = 0; b < l.B; ++b)
    for (int64_t i = 0; i < l.r; ++i)
      for (int64_t j = 0; j < l.c; ++j) in[sz(l.at(b, i, j))] = true;
  return in;
}

Vf packed(const Vf& buf, const Layout& l) {
  Vf p(sz(l.B * l.r * l.c));
  for (int64_t b = 0; b < l.B; ++b)
    for (int64_t i = 0; i < l.r; ++i)
      for (int64_t j = 0; j < l.c; ++j) p[sz((b * l.r + i) * l.c + j)] = buf[sz(l.at(b, i, j))];
  return p;
}

ops::Batched view(const Tensor& base, const Layout& l) { return {base, l.B, l.r, l.c, l.ld, l.stride}; }

// Rows `rows` (row b * M + i: token i of matrix b) of out = x (B, M, K) @ op(w); w (B, N, K) with
// trans, else (B, K, N).
Vd ref_batched(const Vf& x, const Vf& w, bool trans, const Rows& rows, int64_t M, int64_t N, int64_t K) {
  Vd out(rows.size() * sz(N), 0.0);
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t b = rows[r] / M, i = rows[r] % M;
    for (int64_t n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int64_t k = 0; k < K; ++k)
        acc += double(x[sz((b * M + i) * K + k)]) * w[sz(trans ? (b * N + n) * K + k : (b * K + k) * N + n)];
      out[r * sz(N) + sz(n)] = acc;
    }
  }
  return out;
}

// Each product alone through the linear ops (whose sgemm calls the MLA decode made per head before):
// the same bits, as the CPU kernel promises.
void expect_linear_bits(Run& c, const Vf& x, const Vf& w, const Vf& got, int64_t M, int64_t N, int64_t K) {
  for (int64_t b = 0; b < c.s.batch; ++b) {
    Vf xb(x.begin() + b * M * K, x.begin() + (b + 1) * M * K),
        wb(w.begin() + b * N * K, w.begin() + (b + 1) * N * K);
    Vf one(sz(M * N), 0.0f);
    const Tensor tx = Tensor::f32(xb.data(), {M, K}), tout = Tensor::f32(one.data(), {M, N});
    if (c.s.trans) {
      ops::linear_forward(tout, tx, Tensor::f32(wb.data(), {N, K}), {});  // x w^T, w (N, K)
    } else {
      // 0 += x w, w (K, N) (the input is read only for a weight gradient: none here)
      ops::linear_backward(tout, {}, {}, tx, tout, Tensor::f32(wb.data(), {K, N}));
    }
    EXPECT_TRUE(std::equal(one.begin(), one.end(), got.begin() + b * M * N))
        << c.label << ": matrix " << b << " has other bits than its product alone";
  }
}

// The dispatch layer's refusals, each naming the op and the operand.
void expect_refusals(Run& c, const ops::Batched& out, const ops::Batched& inp, const ops::Batched& w) {
  const char* op = "batched_matmul";
  ops::Batched o = out;
  o.base = out.base.rows(0, out.base.shape[0] - 1);  // one element short
  expect_error([&] { ops::batched_matmul(o, inp, w, c.s.trans); }, {op, "out", "past its base"});
  ops::Batched short_w = w;
  short_w.base = w.base.rows(0, w.base.shape[0] - 1);
  expect_error([&] { ops::batched_matmul(out, inp, short_w, c.s.trans); }, {op, "w", "past its base"});
  o = out;
  o.cols += 1;
  expect_error([&] { ops::batched_matmul(o, inp, w, c.s.trans); }, {op, "out", "expected"});
  ops::Batched x = inp;
  x.ld = x.cols - 1;
  expect_error([&] { ops::batched_matmul(out, x, w, c.s.trans); }, {op, "inp", "ld"});
  ops::Batched wb = w;
  wb.batch += 1;
  expect_error([&] { ops::batched_matmul(out, inp, wb, c.s.trans); }, {op, "w", "matrices"});
  if (c.s.batch > 1) {
    o = out;
    o.stride = 0;  // every matrix on the first
    expect_error([&] { ops::batched_matmul(o, inp, w, c.s.trans); }, {op, "out", "overlap"});
  }
  if (out.cols <= inp.cols) {  // out's matrices fit inp's places: written over what it reads
    o = out;
    o.base = inp.base;
    o.ld = inp.ld, o.stride = inp.stride;
    expect_error([&] { ops::batched_matmul(o, inp, w, c.s.trans); }, {op, "out shares memory with inp"});
  }
}

}  // namespace

void run_batched_matmul(Run& c) {
  const Shape& s = c.s;
  const int64_t B = s.batch, M = s.T, K = s.IC, N = s.OC;
  const Layout li = layout(s, M, K, s.interleaved), lo = layout(s, M, N, s.interleaved);
  const Layout lw = s.trans ? layout(s, N, K, false) : layout(s, K, N, false);
  const Vf x = c.randn(B * M * K), w = c.randn(B * N * K, 1.0f / std::sqrt(float(std::max<int64_t>(K, 1))));
  Vf xbuf = spread(x, li), wbuf = spread(w, lw),
     obuf(sz(lo.extent()), std::numeric_limits<float>::quiet_NaN());
  const ops::Batched inp = view(c.act(xbuf, {li.extent()}), li), wt = view(c.act(wbuf, {lw.extent()}), lw);
  const ops::Batched out = view(c.act(obuf, {lo.extent()}), lo);
  ops::batched_matmul(out, inp, wt, s.trans);
  const Vf got_buf = c.get(out.base), got = packed(got_buf, lo);
  const Rows rows = c.rows(B * M, double(N * K));
  c.check("batched_matmul", got, ref_batched(x, w, s.trans, rows, M, N, K), rows, N, kReduce);
  const std::vector<bool> in = inside(lo);
  int64_t written = 0;  // gaps of out that lost their NaN
  for (size_t i = 0; i < got_buf.size(); ++i) written += !in[i] && !std::isnan(got_buf[i]);
  EXPECT_EQ(written, 0) << c.label << ": elements between out's matrices were written";
  c.check_untouched("batched_matmul out", out.base);
  if (c.dev != Device::CPU || K == 0) return;
  expect_linear_bits(c, x, w, got, M, N, K);
  expect_refusals(c, out, inp, wt);
}

}  // namespace optable
