#pragma once
// Shared by the CUDA op tests: test_cuda_ops.cpp (suite CudaOps, f32 device tensors) and
// test_cuda_bf16_ops.cpp (suite CudaBf16Ops, bf16 device tensors). Each op case is written once,
// takes the device dtype, and compares the op on CUDA tensors of that dtype (f32 where the op's
// rule says so: row statistics, parameter gradients) against the CPU f32 op on the same inputs
// (for bf16: inputs already rounded to bf16). Error = ||gpu - cpu|| / ||cpu|| (NaN fails). Forward
// outputs start as NaN so any element left unwritten fails; gradients start random (the same values
// on both sides) so the += accumulation is checked. Each comparison prints a "[ CUDAERR ]" line
// (prefixed "bf16 " for bf16 rows) that bench/gpu.sh collects. Everything lives in an anonymous
// namespace: each test file gets its own copy, and its own sequence of random draws.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "require_gpu.h"
#include "base/bf16.h"
#include "base/rng.h"
#include "kernels/ops.h"
#include "tensor/tensor.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_buffer.h"
#include "device/cuda_device.h"
#include "kernels/cuda/cuda_ops.h"
#endif

namespace {

using r1::DType;
using r1::Tensor;
using Vf = std::vector<float>;
using Vi = std::vector<int32_t>;
using Vb = std::vector<uint16_t>;
namespace ops = r1::ops;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

[[maybe_unused]] Vb to_bits(const Vf& v) {
  Vb b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = r1::f32_to_bf16(v[i]);
  return b;
}

#ifdef R1_HAVE_CUDA

using r1::cuda::CudaBuffer;

// Tolerances (relative L2). Exact data movement: 0. f32: elementwise with libm-level functions 1e-5;
// reductions, GEMMs, softmax (different summation order) 1e-4 (METHOD.md: far under 1e-3).
// bf16: bf16 outputs 1e-2 (one rounding is ~2e-3); f32 outputs computed from the same values in the
// same way 1e-5.
constexpr double kExact = 0.0, kElem = 1e-5, kReduce = 1e-4, kBf16 = 1e-2, kF32 = 1e-5;

// The tolerance of a check for the dtype under test.
double tol(DType dt, double f32_tol, double bf16_tol) { return dt == DType::BF16 ? bf16_tol : f32_tol; }
// The name of a check whose output stays f32: marked "(f32)" on bf16 rows.
std::string f32_row(DType dt, const std::string& op) { return dt == DType::BF16 ? op + "(f32)" : op; }

float round_bf16(float x) { return r1::bf16_to_f32(r1::f32_to_bf16(x)); }

// Every draw gets a fresh seed: 1001, 1002, ... in the f32 file, 5001, 5002, ... in the bf16 one.
uint64_t g_draws = 0;
uint64_t next_seed(DType dt) { return (dt == DType::BF16 ? 5000 : 1000) + ++g_draws; }

// Normal values; for bf16 already rounded to bf16, so the CPU reference sees exactly the GPU's inputs.
Vf randn(DType dt, size_t n, float scale = 1.0f) {
  r1::Rng rng(next_seed(dt));
  Vf v(n);
  for (auto& x : v) x = dt == DType::BF16 ? round_bf16(scale * rng.normal()) : scale * rng.normal();
  return v;
}

Vi randint(DType dt, size_t n, int32_t lo, int32_t hi) {
  r1::Rng rng(next_seed(dt));
  Vi v(n);
  for (auto& x : v) x = lo + int32_t(rng.next_u32() % uint32_t(hi - lo));
  return v;
}

Tensor F(Vf& v, std::initializer_list<int64_t> dims) { return Tensor::f32(v.data(), dims); }
Tensor I(Vi& v, std::initializer_list<int64_t> dims) { return Tensor::i32(v.data(), dims); }

// A CUDA copy of host data, owning its memory.
struct Dev {
  CudaBuffer buf;
  Tensor t;
};
Dev dev(const Tensor& host) {
  Dev d;
  d.t = r1::cuda::to_device(host, d.buf);
  return d;
}
Dev dev_f32(Vf& v, std::initializer_list<int64_t> dims) { return dev(Tensor::f32(v.data(), dims)); }
Dev dev_i32(Vi& v, std::initializer_list<int64_t> dims) { return dev(Tensor::i32(v.data(), dims)); }
Dev dev_b16(const Vf& v, std::initializer_list<int64_t> dims) {
  Vb bits = to_bits(v);
  return dev(Tensor(bits.data(), DType::BF16, dims));
}
// A copy in the dtype under test.
Dev dev_as(DType dt, Vf& v, std::initializer_list<int64_t> dims) {
  return dt == DType::BF16 ? dev_b16(v, dims) : dev_f32(v, dims);
}

// Any CUDA tensor (f32 or bf16) read back as floats.
Vf host(const Tensor& t) {
  if (t.dtype == DType::F32) return r1::cuda::to_host_f32(t);
  Vb bits(size_t(t.numel()));
  r1::cuda::to_host(t, Tensor(bits.data(), DType::BF16, {t.numel()}));
  Vf v(bits.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = r1::bf16_to_f32(bits[i]);
  return v;
}
Vf host(const Dev& d) { return host(d.t); }

double rel_err(const Vf& gpu, const Vf& cpu) {
  if (gpu.size() != cpu.size()) return INFINITY;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < gpu.size(); ++i) {
    if (!std::isfinite(gpu[i]) && std::isfinite(cpu[i])) return INFINITY;
    const double d = double(gpu[i]) - double(cpu[i]);
    num += d * d;
    den += double(cpu[i]) * double(cpu[i]);
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

void check(DType dt, const std::string& op, const std::string& size, const Vf& gpu, const Vf& cpu, double tol) {
  const double err = rel_err(gpu, cpu);
  const std::string row = dt == DType::BF16 ? "bf16 " + op : op;
  std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", row.c_str(), size.c_str(), err, tol);
  std::fflush(stdout);
  EXPECT_LE(err, tol) << op << " " << size;
}

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> d) {
  std::string s;
  for (const auto& [k, v] : d) {
    if (!s.empty()) s += ' ';
    s += fmt::format("{}={}", k, v);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// The cases shared by both dtypes.

void embedding_case(DType dt, int64_t V, int64_t T, int64_t C) {
  const std::string sz = dims({{"V", V}, {"T", T}, {"C", C}});
  Vf table = randn(dt, V * C);
  Vi ids = randint(dt, T, 0, int32_t(V));
  Vf out(T * C, kNaN);
  Dev dtab = dev_as(dt, table, {V, C}), dids = dev_i32(ids, {T}), dout = dev_as(dt, out, {T, C});
  ops::embedding_forward(F(out, {T, C}), I(ids, {T}), F(table, {V, C}));
  ops::embedding_forward(dout.t, dids.t, dtab.t);
  check(dt, "embedding_forward", sz, host(dout), out, kExact);

  Vf g = randn(dt, T * C), dtable = randn(dt, V * C);
  Dev dg = dev_as(dt, g, {T, C}), ddt = dev_f32(dtable, {V, C});
  ops::embedding_backward(F(dtable, {V, C}), F(g, {T, C}), I(ids, {T}));
  ops::embedding_backward(ddt.t, dg.t, dids.t);
  check(dt, dt == DType::BF16 ? "embedding_backward dtable(f32)" : "embedding_backward", sz, host(ddt), dtable,
        tol(dt, kElem, kF32));  // atomics: fp32 add order varies
}

void rmsnorm_case(DType dt, int64_t N, int64_t C) {
  const std::string sz = dims({{"N", N}, {"C", C}});
  Vf x = randn(dt, N * C), w = randn(dt, C), out(N * C, kNaN), rstd(N, kNaN);
  Dev dx = dev_as(dt, x, {N, C}), dw = dev_as(dt, w, {C}), dout = dev_as(dt, out, {N, C}), dr = dev_f32(rstd, {N});
  ops::rmsnorm_forward(F(out, {N, C}), F(rstd, {N}), F(x, {N, C}), F(w, {C}), 1e-6f);
  ops::rmsnorm_forward(dout.t, dr.t, dx.t, dw.t, 1e-6f);
  check(dt, "rmsnorm_forward out", sz, host(dout), out, tol(dt, kElem, kBf16));
  check(dt, f32_row(dt, "rmsnorm_forward rstd"), sz, host(dr), rstd, tol(dt, kElem, kF32));

  Vf g = randn(dt, N * C), dinp = randn(dt, N * C), dweight = randn(dt, C);
  Dev dg = dev_as(dt, g, {N, C}), ddi = dev_as(dt, dinp, {N, C}), ddw = dev_f32(dweight, {C});
  ops::rmsnorm_backward(F(dinp, {N, C}), F(dweight, {C}), F(g, {N, C}), F(x, {N, C}), F(w, {C}), F(rstd, {N}));
  ops::rmsnorm_backward(ddi.t, ddw.t, dg.t, dx.t, dw.t, dr.t);
  check(dt, "rmsnorm_backward dinp", sz, host(ddi), dinp, tol(dt, kReduce, kBf16));
  check(dt, f32_row(dt, "rmsnorm_backward dweight"), sz, host(ddw), dweight, tol(dt, kReduce, 1e-4));
}

// bias_offset > 0: the bias is a view that many elements into its buffer (not 16-byte aligned, so
// the linear falls back from the GEMM's bias epilogue).
void linear_case(DType dt, int64_t N, int64_t IC, int64_t OC, bool bias, int64_t bias_offset = 0) {
  const std::string sz =
      dims({{"N", N}, {"IC", IC}, {"OC", OC}, {"bias", bias}}) + (bias_offset ? " (unaligned bias)" : "");
  Vf x = randn(dt, N * IC), w = randn(dt, OC * IC, 1.0f / std::sqrt(float(IC))), b = randn(dt, OC + bias_offset);
  Vf out(N * OC, kNaN);
  Dev dx = dev_as(dt, x, {N, IC}), dw = dev_as(dt, w, {OC, IC}), db = dev_as(dt, b, {OC + bias_offset}),
      dout = dev_as(dt, out, {N, OC});
  Vf hb_data(b.begin() + bias_offset, b.end());
  const Tensor hb = bias ? F(hb_data, {OC}) : Tensor();
  const Tensor gb = bias ? db.t.rows(bias_offset, bias_offset + OC) : Tensor();
  ops::linear_forward(F(out, {N, OC}), F(x, {N, IC}), F(w, {OC, IC}), hb);
  ops::linear_forward(dout.t, dx.t, dw.t, gb);
  check(dt, "linear_forward", sz, host(dout), out, tol(dt, kReduce, kBf16));

  Vf g = randn(dt, N * OC), dinp = randn(dt, N * IC), dweight = randn(dt, OC * IC), dbias = randn(dt, OC);
  Dev dg = dev_as(dt, g, {N, OC}), ddi = dev_as(dt, dinp, {N, IC}), ddw = dev_f32(dweight, {OC, IC}),
      ddb = dev_f32(dbias, {OC});
  ops::linear_backward(F(dinp, {N, IC}), F(dweight, {OC, IC}), F(dbias, {OC}), F(g, {N, OC}), F(x, {N, IC}),
                       F(w, {OC, IC}));
  ops::linear_backward(ddi.t, ddw.t, ddb.t, dg.t, dx.t, dw.t);
  check(dt, "linear_backward dinp", sz, host(ddi), dinp, tol(dt, kReduce, kBf16));
  check(dt, f32_row(dt, "linear_backward dweight"), sz, host(ddw), dweight, tol(dt, kReduce, 1e-4));
  check(dt, f32_row(dt, "linear_backward dbias"), sz, host(ddb), dbias, tol(dt, kReduce, 1e-4));
}

// An odd-offset view: the GEMM must handle operands that are only 4-byte (f32) or 2-byte (bf16) aligned.
void linear_view_case(DType dt) {
  const int64_t N = 33, IC = 37, OC = 29;
  Vf x = randn(dt, (N + 1) * IC), w = randn(dt, OC * IC), out((N + 1) * OC, kNaN);
  Dev dx = dev_as(dt, x, {N + 1, IC}), dw = dev_as(dt, w, {OC, IC}), dout = dev_as(dt, out, {N + 1, OC});
  ops::linear_forward(F(out, {N + 1, OC}).rows(1, N + 1), F(x, {N + 1, IC}).rows(1, N + 1), F(w, {OC, IC}), {});
  ops::linear_forward(dout.t.rows(1, N + 1), dx.t.rows(1, N + 1), dw.t, {});
  Vf got = host(dout);
  check(dt, "linear_forward (view)", dims({{"N", N}, {"IC", IC}, {"OC", OC}}), Vf(got.begin() + OC, got.end()),
        Vf(out.begin() + OC, out.end()), tol(dt, kReduce, kBf16));
}

void rope_case(DType dt, int64_t T, int64_t H, int64_t HD, int32_t max_pos) {
  const std::string sz = dims({{"T", T}, {"H", H}, {"HD", HD}, {"maxpos", max_pos}});
  Vf x = randn(dt, T * H * HD), inv(HD / 2);
  for (int64_t j = 0; j < HD / 2; ++j) inv[size_t(j)] = float(1.0 / std::pow(1e6, double(2 * j) / double(HD)));
  Vi pos = randint(dt, T, 0, max_pos);
  Dev dx = dev_as(dt, x, {T, H, HD}), dp = dev_i32(pos, {T}), di = dev_f32(inv, {HD / 2});
  ops::rope_forward(F(x, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  ops::rope_forward(dx.t, dp.t, di.t);
  check(dt, "rope_forward", sz, host(dx), x, tol(dt, kElem, kBf16));
  Vf g = randn(dt, T * H * HD);
  Dev dg = dev_as(dt, g, {T, H, HD});
  ops::rope_backward(F(g, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  ops::rope_backward(dg.t, dp.t, di.t);
  check(dt, "rope_backward", sz, host(dg), g, tol(dt, kElem, kBf16));
}

// Packed causal attention (for bf16 the tensor-core kernels of flash_attention.cu), forward and
// backward, over sequences of the given lengths (0 allowed).
void attention_case(DType dt, const std::vector<int32_t>& lens, int64_t NH, int64_t NKV, int64_t HD) {
  Vi cu = {0};
  for (int32_t l : lens) cu.push_back(cu.back() + l);
  const int64_t T = cu.back(), B1 = int64_t(cu.size());
  const std::string sz = dims({{"T", T}, {"B", B1 - 1}, {"NH", NH}, {"NKV", NKV}, {"HD", HD}});
  const float scale = 1.0f / std::sqrt(float(HD));
  Vf q = randn(dt, T * NH * HD), k = randn(dt, T * NKV * HD), v = randn(dt, T * NKV * HD);
  Vf out(T * NH * HD, kNaN), lse(T * NH, kNaN);
  Dev dq = dev_as(dt, q, {T, NH, HD}), dk = dev_as(dt, k, {T, NKV, HD}), dv = dev_as(dt, v, {T, NKV, HD}),
      dcu = dev_i32(cu, {B1}), dout = dev_as(dt, out, {T, NH, HD}), dl = dev_f32(lse, {T, NH});
  ops::attention_forward(F(out, {T, NH, HD}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, NKV, HD}),
                         F(v, {T, NKV, HD}), I(cu, {B1}), scale);
  ops::attention_forward(dout.t, dl.t, dq.t, dk.t, dv.t, dcu.t, scale);
  check(dt, "attention_forward out", sz, host(dout), out, tol(dt, kReduce, kBf16));
  check(dt, f32_row(dt, "attention_forward lse"), sz, host(dl), lse, tol(dt, kReduce, kBf16));

  // Both backends read the CPU forward's out (for bf16 rounded to bf16) and lse, so only the
  // backward differs.
  if (dt == DType::BF16) {
    for (auto& x : out) x = round_bf16(x);
  }
  Vf g = randn(dt, T * NH * HD), gq = randn(dt, T * NH * HD), gk = randn(dt, T * NKV * HD),
     gv = randn(dt, T * NKV * HD);
  Dev dg = dev_as(dt, g, {T, NH, HD}), dgq = dev_as(dt, gq, {T, NH, HD}), dgk = dev_as(dt, gk, {T, NKV, HD}),
      dgv = dev_as(dt, gv, {T, NKV, HD});
  Dev dout_cpu = dev_as(dt, out, {T, NH, HD}), dl_cpu = dev_f32(lse, {T, NH});
  ops::attention_backward(F(gq, {T, NH, HD}), F(gk, {T, NKV, HD}), F(gv, {T, NKV, HD}), F(g, {T, NH, HD}),
                          F(q, {T, NH, HD}), F(k, {T, NKV, HD}), F(v, {T, NKV, HD}), F(out, {T, NH, HD}),
                          F(lse, {T, NH}), I(cu, {B1}), scale);
  ops::attention_backward(dgq.t, dgk.t, dgv.t, dg.t, dq.t, dk.t, dv.t, dout_cpu.t, dl_cpu.t, dcu.t, scale);
  check(dt, "attention_backward dq", sz, host(dgq), gq, tol(dt, kReduce, kBf16));
  check(dt, "attention_backward dk", sz, host(dgk), gk, tol(dt, kReduce, kBf16));
  check(dt, "attention_backward dv", sz, host(dgv), gv, tol(dt, kReduce, kBf16));
}

void kv_cache_case(DType dt, int64_t S, int64_t L, int64_t NH, int64_t NKV, int64_t HD, int64_t T) {
  const std::string sz = dims({{"S", S}, {"L", L}, {"NH", NH}, {"NKV", NKV}, {"HD", HD}, {"T", T}});
  ASSERT_LE(T, S * L);
  // Distinct (slot, pos) per token: a random permutation of the first T cache rows.
  std::vector<int32_t> perm(size_t(S * L));
  std::iota(perm.begin(), perm.end(), 0);
  r1::Rng rng(next_seed(dt));
  for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[rng.next_u32() % (i + 1)]);
  Vi slots(T), pos(T);
  for (int64_t t = 0; t < T; ++t) {
    slots[size_t(t)] = perm[size_t(t)] / int32_t(L);
    pos[size_t(t)] = perm[size_t(t)] % int32_t(L);
  }
  const int64_t n = S * L * NKV * HD;
  Vf kc = randn(dt, n), vc = randn(dt, n), k = randn(dt, T * NKV * HD), v = randn(dt, T * NKV * HD);
  Dev dkc = dev_as(dt, kc, {S, L, NKV, HD}), dvc = dev_as(dt, vc, {S, L, NKV, HD}), dk = dev_as(dt, k, {T, NKV, HD}),
      dv = dev_as(dt, v, {T, NKV, HD}), ds = dev_i32(slots, {T}), dp = dev_i32(pos, {T});
  ops::kv_cache_write(F(kc, {S, L, NKV, HD}), F(vc, {S, L, NKV, HD}), F(k, {T, NKV, HD}), F(v, {T, NKV, HD}),
                      I(slots, {T}), I(pos, {T}));
  ops::kv_cache_write(dkc.t, dvc.t, dk.t, dv.t, ds.t, dp.t);
  check(dt, "kv_cache_write k", sz, host(dkc), kc, kExact);
  check(dt, "kv_cache_write v", sz, host(dvc), vc, kExact);

  Vf q = randn(dt, T * NH * HD), out(T * NH * HD, kNaN);
  Dev dq = dev_as(dt, q, {T, NH, HD}), dout = dev_as(dt, out, {T, NH, HD});
  const float scale = 1.0f / std::sqrt(float(HD));
  ops::attention_cached(F(out, {T, NH, HD}), F(q, {T, NH, HD}), F(kc, {S, L, NKV, HD}), F(vc, {S, L, NKV, HD}),
                        I(slots, {T}), I(pos, {T}), scale);
  ops::attention_cached(dout.t, dq.t, dkc.t, dvc.t, ds.t, dp.t, scale);
  check(dt, "attention_cached", sz, host(dout), out, tol(dt, kReduce, kBf16));
}

// Cached attention (decode_attention.cu) against the CPU op: T tokens in slots of `rows` tokens at
// consecutive positions (1: decode steps; more: a prefill chunk per slot), attention lengths random
// in [1, L]: slot 0 ends at L, slot 1 starts at 1. Cache rows past every token's reach are NaN, so a
// kernel that reads them fails. workspace: the size attention_cached_workspace asks for (the split
// path, when the grid is small), starting as NaN; otherwise none (one pass).
void cached_attention_case(DType dt, int64_t T, int64_t rows, int64_t L, int64_t NH, int64_t NKV, int64_t HD,
                           bool workspace) {
  ASSERT_LE(rows, L);
  const int64_t S = (T + rows - 1) / rows, row = NKV * HD;
  r1::Rng rng(next_seed(dt));
  Vi slots(T), pos(T);
  std::vector<int64_t> reach(size_t(S), 0);  // cache rows of each slot that some token reads
  for (int64_t s = 0; s < S; ++s) {
    int64_t b = int64_t(rng.next_u32() % uint32_t(L - rows + 1));  // the chunk's first position
    if (s == 0) b = L - rows;
    if (s == 1) b = 0;
    for (int64_t t = s * rows; t < std::min(T, (s + 1) * rows); ++t) {
      slots[size_t(t)] = int32_t(s);
      pos[size_t(t)] = int32_t(b + t - s * rows);
      reach[size_t(s)] = pos[size_t(t)] + 1;
    }
  }
  Vf kc = randn(dt, S * L * row), vc = randn(dt, S * L * row);
  for (int64_t s = 0; s < S; ++s) {
    std::fill(kc.begin() + (s * L + reach[size_t(s)]) * row, kc.begin() + (s + 1) * L * row, kNaN);
    std::fill(vc.begin() + (s * L + reach[size_t(s)]) * row, vc.begin() + (s + 1) * L * row, kNaN);
  }
  Vf q = randn(dt, T * NH * HD), out(T * NH * HD, kNaN);
  const int64_t ws = workspace ? ops::attention_cached_workspace(T, NH, HD, L) : 0;
  Vf ws_host(size_t(std::max<int64_t>(ws, 1)), kNaN);
  const std::string sz = dims({{"T", T}, {"rows", rows}, {"L", L}, {"NH", NH}, {"NKV", NKV}, {"HD", HD}}) +
                         (workspace ? fmt::format(" ws={}", ws) : " no ws");
  Dev dkc = dev_as(dt, kc, {S, L, NKV, HD}), dvc = dev_as(dt, vc, {S, L, NKV, HD}), dq = dev_as(dt, q, {T, NH, HD}),
      dout = dev_as(dt, out, {T, NH, HD}), ds = dev_i32(slots, {T}), dp = dev_i32(pos, {T}),
      dws = dev_f32(ws_host, {int64_t(ws_host.size())});
  const float scale = 1.0f / std::sqrt(float(HD));
  // The CPU op ignores a workspace.
  ops::attention_cached(F(out, {T, NH, HD}), F(q, {T, NH, HD}), F(kc, {S, L, NKV, HD}), F(vc, {S, L, NKV, HD}),
                        I(slots, {T}), I(pos, {T}), scale, ws > 0 ? F(ws_host, {ws}) : Tensor());
  ops::attention_cached(dout.t, dq.t, dkc.t, dvc.t, ds.t, dp.t, scale, ws > 0 ? dws.t : Tensor());
  check(dt, "attention_cached", sz, host(dout), out, tol(dt, kReduce, kBf16));
}

void swiglu_case(DType dt, int64_t N, int64_t M) {
  const std::string sz = dims({{"N", N}, {"I", M}});
  Vf gate = randn(dt, N * M, 2.0f), up = randn(dt, N * M), out(N * M, kNaN);
  Dev dgate = dev_as(dt, gate, {N, M}), dup = dev_as(dt, up, {N, M}), dout = dev_as(dt, out, {N, M});
  ops::swiglu_forward(F(out, {N, M}), F(gate, {N, M}), F(up, {N, M}));
  ops::swiglu_forward(dout.t, dgate.t, dup.t);
  check(dt, "swiglu_forward", sz, host(dout), out, tol(dt, kElem, kBf16));
  Vf g = randn(dt, N * M), gg = randn(dt, N * M), gu = randn(dt, N * M);
  Dev dg = dev_as(dt, g, {N, M}), dgg = dev_as(dt, gg, {N, M}), dgu = dev_as(dt, gu, {N, M});
  ops::swiglu_backward(F(gg, {N, M}), F(gu, {N, M}), F(g, {N, M}), F(gate, {N, M}), F(up, {N, M}));
  ops::swiglu_backward(dgg.t, dgu.t, dg.t, dgate.t, dup.t);
  check(dt, "swiglu_backward dgate", sz, host(dgg), gg, tol(dt, kElem, kBf16));
  check(dt, "swiglu_backward dup", sz, host(dgu), gu, tol(dt, kElem, kBf16));
}

// Token log-probs through r1::ops (default scratch) and, when max_scratch > 0, straight through
// r1::cuda with a tiny scratch so the token chunking runs too. hidden (and dhidden) and the weight
// are in the dtype under test; the per-token values, dlogp and dweight are f32.
void logprobs_case(DType dt, int64_t T, int64_t C, int64_t V, int64_t chunk, float tau, int64_t max_scratch = 0) {
  const bool b16 = dt == DType::BF16;
  const std::string sz = dims({{"T", T}, {"C", C}, {"V", V}, {"chunk", chunk}}) +
                         (max_scratch ? " scratch=" + std::to_string(max_scratch) : "");
  Vf h = randn(dt, T * C), w = randn(dt, V * C, 1.0f / std::sqrt(float(C)));
  Vi tg = randint(dt, T, -1, int32_t(V));  // some tokens without a target
  tg[0] = int32_t(V) - 1;
  Vf logp(T, kNaN), lse(T, kNaN), ent(T, kNaN);
  Dev dh = dev_as(dt, h, {T, C}), dw = dev_as(dt, w, {V, C}), dtg = dev_i32(tg, {T}), dlogp = dev_f32(logp, {T}),
      dlse = dev_f32(lse, {T}), dent = dev_f32(ent, {T});
  ops::token_logprobs_forward(F(logp, {T}), F(lse, {T}), F(ent, {T}), F(h, {T, C}), F(w, {V, C}), I(tg, {T}), tau,
                              chunk);
  auto bf = [](const Dev& d) { return static_cast<const r1::bf16*>(d.t.data); };
  if (max_scratch && b16) {
    r1::cuda::token_logprobs_forward(dlogp.t.f32(), dlse.t.f32(), dent.t.f32(), bf(dh), bf(dw), dtg.t.i32(), T, C,
                                     V, tau, chunk, max_scratch);
  } else if (max_scratch) {
    r1::cuda::token_logprobs_forward(dlogp.t.f32(), dlse.t.f32(), dent.t.f32(), dh.t.f32(), dw.t.f32(),
                                     dtg.t.i32(), T, C, V, tau, chunk, max_scratch);
  } else {
    ops::token_logprobs_forward(dlogp.t, dlse.t, dent.t, dh.t, dw.t, dtg.t, tau, chunk);
  }
  check(dt, f32_row(dt, "token_logprobs_forward logp"), sz, host(dlogp), logp, tol(dt, kReduce, kBf16));
  check(dt, f32_row(dt, "token_logprobs_forward lse"), sz, host(dlse), lse, tol(dt, kReduce, kBf16));
  check(dt, f32_row(dt, "token_logprobs_forward entropy"), sz, host(dent), ent, tol(dt, kReduce, kBf16));

  Vf g = randn(dt, T), dhid = randn(dt, T * C), dwt;
  if (b16) {
    dwt.resize(size_t(V * C));
    r1::Rng rng(next_seed(dt));
    for (auto& x : dwt) x = 0.01f * (rng.uniform() - 0.5f);  // cheaper than normals for V * C values
  } else {
    dwt = randn(dt, V * C, 0.01f);
  }
  Dev dg = dev_f32(g, {T}), ddh = dev_as(dt, dhid, {T, C}), ddw = dev_f32(dwt, {V, C});
  Dev dlse_cpu = dev_f32(lse, {T});  // both backends use the CPU forward's lse
  ops::token_logprobs_backward(F(dhid, {T, C}), F(dwt, {V, C}), F(g, {T}), F(h, {T, C}), F(w, {V, C}), I(tg, {T}),
                               F(lse, {T}), tau, chunk);
  if (max_scratch && b16) {
    r1::cuda::token_logprobs_backward(static_cast<r1::bf16*>(ddh.t.data), ddw.t.f32(), dg.t.f32(), bf(dh), bf(dw),
                                      dtg.t.i32(), dlse_cpu.t.f32(), T, C, V, tau, chunk, max_scratch);
  } else if (max_scratch) {
    r1::cuda::token_logprobs_backward(ddh.t.f32(), ddw.t.f32(), dg.t.f32(), dh.t.f32(), dw.t.f32(), dtg.t.i32(),
                                      dlse_cpu.t.f32(), T, C, V, tau, chunk, max_scratch);
  } else {
    ops::token_logprobs_backward(ddh.t, ddw.t, dg.t, dh.t, dw.t, dtg.t, dlse_cpu.t, tau, chunk);
  }
  check(dt, "token_logprobs_backward dhidden", sz, host(ddh), dhid, tol(dt, kReduce, kBf16));
  check(dt, f32_row(dt, "token_logprobs_backward dweight"), sz, host(ddw), dwt, tol(dt, kReduce, kBf16));
}

#endif  // R1_HAVE_CUDA

}  // namespace
