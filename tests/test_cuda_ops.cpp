// Tests of the CUDA backend: every op on CUDA tensors (through r1::ops, so the dispatch is tested too)
// against the same op on CPU tensors, on fresh random inputs, at sizes that fill the chip and at odd
// ones. Error = ||gpu - cpu|| / ||cpu|| (NaN fails). Forward outputs start as NaN so any element the
// kernel leaves unwritten fails; backward outputs start random (the same on both sides) so the +=
// accumulation is checked. Each comparison prints a "[ CUDAERR ]" line that bench/gpu.sh collects.
// Without a GPU (CI), every test skips.
#include <fmt/format.h>
#include <gtest/gtest.h>

#ifdef R1_HAVE_CUDA

#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"
#include "tensor/tensor.h"

namespace {

using r1::Tensor;
using r1::cuda::CudaBuffer;
using Vf = std::vector<float>;
using Vi = std::vector<int32_t>;
namespace ops = r1::ops;

#define REQUIRE_GPU()                                                                                 \
  do {                                                                                                \
    if (!r1::cuda::cuda_available())                                                                  \
      GTEST_SKIP() << "no usable CUDA device: " << r1::cuda::cuda_device_description();               \
  } while (0)

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// Tolerances (relative L2). Exact data movement: 0; elementwise fp32 with libm-level functions:
// 1e-5; reductions, GEMMs, softmax (different summation order): 1e-4 (all fp32, METHOD.md: far under 1e-3).
constexpr double kExact = 0.0, kElem = 1e-5, kReduce = 1e-4;

uint64_t g_seed = 1000;  // every draw gets a fresh seed

Vf randn(size_t n, float scale = 1.0f) {
  r1::Rng rng(++g_seed);
  Vf v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

Vi randint(size_t n, int32_t lo, int32_t hi) {
  r1::Rng rng(++g_seed);
  Vi v(n);
  for (auto& x : v) x = lo + int32_t(rng.next_u32() % uint32_t(hi - lo));
  return v;
}

Tensor F(Vf& v, std::initializer_list<int64_t> dims) { return Tensor::f32(v.data(), dims); }
Tensor I(Vi& v, std::initializer_list<int64_t> dims) { return Tensor::i32(v.data(), dims); }

// A CUDA copy of a host tensor, owning its memory.
struct Dev {
  CudaBuffer buf;
  Tensor t;
};
Dev dev(const Tensor& host) {
  Dev d;
  d.t = r1::cuda::to_device(host, d.buf);
  return d;
}
Vf host(const Dev& d) { return r1::cuda::to_host_f32(d.t); }

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

void check(const std::string& op, const std::string& size, const Vf& gpu, const Vf& cpu, double tol) {
  const double err = rel_err(gpu, cpu);
  std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", op.c_str(), size.c_str(), err, tol);
  std::fflush(stdout);
  EXPECT_LE(err, tol) << op << " " << size;
}

void check_scalar(const std::string& op, const std::string& size, double gpu, double cpu, double tol) {
  const double err = std::isfinite(gpu) ? (cpu != 0.0 ? std::fabs(gpu - cpu) / std::fabs(cpu) : std::fabs(gpu))
                                        : INFINITY;
  std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", op.c_str(), size.c_str(), err, tol);
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

TEST(CudaBackend, AvailabilityNeverThrows) {
  bool avail = false;
  EXPECT_NO_THROW(avail = r1::cuda::cuda_available());
  std::printf("[ CUDADEV ] %s\n", r1::cuda::cuda_device_description());
  if (!avail) GTEST_SKIP() << "no usable CUDA device: " << r1::cuda::cuda_device_description();
}

TEST(CudaBackend, BufferRoundTripAndMove) {
  REQUIRE_GPU();
  Vf a = randn(1000);
  Dev d = dev(F(a, {10, 100}));
  EXPECT_EQ(d.t.device, r1::Device::CUDA);
  EXPECT_EQ(d.t.shape[0], 10);
  CudaBuffer moved = std::move(d.buf);
  EXPECT_EQ(d.buf.data(), nullptr);
  EXPECT_EQ(moved.data(), d.t.data);
  EXPECT_EQ(r1::cuda::to_host_f32(d.t), a);
  Vi ids = randint(77, -5, 5);
  Dev di = dev(I(ids, {77}));
  Vi back(77);
  r1::cuda::to_host(di.t, I(back, {77}));
  EXPECT_EQ(back, ids);
}

TEST(CudaBackend, MixedDevicesAreRejected) {
  REQUIRE_GPU();
  Vf a = randn(64), b = randn(64), out(64);
  Dev da = dev(F(a, {64}));
  try {
    ops::add(F(out, {64}), da.t, F(b, {64}));
    FAIL() << "expected an error";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("different devices"), std::string::npos) << e.what();
  }
}

TEST(CudaBackend, HeadDimAboveLimitFailsClearly) {
  REQUIRE_GPU();
  const int64_t T = 2, HD = 258;
  Vf q = randn(T * HD), o(T * HD, kNaN), l(T, kNaN);
  Vi cu = {0, 2};
  Dev dq = dev(F(q, {T, 1, HD})), dout = dev(F(o, {T, 1, HD})), dl = dev(F(l, {T, 1})), dcu = dev(I(cu, {2}));
  EXPECT_THROW(ops::attention_forward(dout.t, dl.t, dq.t, dq.t, dq.t, dcu.t, 0.1f), r1::Error);
}

// ---------------------------------------------------------------------------------------------

void embedding_case(int64_t V, int64_t T, int64_t C) {
  const std::string sz = dims({{"V", V}, {"T", T}, {"C", C}});
  Vf table = randn(V * C);
  Vi ids = randint(T, 0, int32_t(V));
  Vf out(T * C, kNaN);
  Dev dtab = dev(F(table, {V, C})), dids = dev(I(ids, {T})), dout = dev(F(out, {T, C}));
  ops::embedding_forward(F(out, {T, C}), I(ids, {T}), F(table, {V, C}));
  ops::embedding_forward(dout.t, dids.t, dtab.t);
  check("embedding_forward", sz, host(dout), out, kExact);

  Vf g = randn(T * C), dtable = randn(V * C);
  Dev dg = dev(F(g, {T, C})), ddt = dev(F(dtable, {V, C}));
  ops::embedding_backward(F(dtable, {V, C}), F(g, {T, C}), I(ids, {T}));
  ops::embedding_backward(ddt.t, dg.t, dids.t);
  check("embedding_backward", sz, host(ddt), dtable, kElem);  // atomics: fp32 add order varies
}

TEST(CudaOps, Embedding) {
  REQUIRE_GPU();
  embedding_case(5000, 4096, 1024);
  embedding_case(7, 13, 37);
}

void rmsnorm_case(int64_t N, int64_t C) {
  const std::string sz = dims({{"N", N}, {"C", C}});
  Vf x = randn(N * C), w = randn(C), out(N * C, kNaN), rstd(N, kNaN);
  Dev dx = dev(F(x, {N, C})), dw = dev(F(w, {C})), dout = dev(F(out, {N, C})), dr = dev(F(rstd, {N}));
  ops::rmsnorm_forward(F(out, {N, C}), F(rstd, {N}), F(x, {N, C}), F(w, {C}), 1e-6f);
  ops::rmsnorm_forward(dout.t, dr.t, dx.t, dw.t, 1e-6f);
  check("rmsnorm_forward out", sz, host(dout), out, kElem);
  check("rmsnorm_forward rstd", sz, host(dr), rstd, kElem);

  Vf g = randn(N * C), dinp = randn(N * C), dweight = randn(C);
  Dev dg = dev(F(g, {N, C})), ddi = dev(F(dinp, {N, C})), ddw = dev(F(dweight, {C}));
  ops::rmsnorm_backward(F(dinp, {N, C}), F(dweight, {C}), F(g, {N, C}), F(x, {N, C}), F(w, {C}), F(rstd, {N}));
  ops::rmsnorm_backward(ddi.t, ddw.t, dg.t, dx.t, dw.t, dr.t);
  check("rmsnorm_backward dinp", sz, host(ddi), dinp, kReduce);
  check("rmsnorm_backward dweight", sz, host(ddw), dweight, kReduce);
}

TEST(CudaOps, RMSNorm) {
  REQUIRE_GPU();
  rmsnorm_case(4096, 1024);
  rmsnorm_case(13, 37);
  rmsnorm_case(3, 4099);
}

void linear_case(int64_t N, int64_t IC, int64_t OC, bool bias) {
  const std::string sz = dims({{"N", N}, {"IC", IC}, {"OC", OC}, {"bias", bias}});
  Vf x = randn(N * IC), w = randn(OC * IC, 1.0f / std::sqrt(float(IC))), b = randn(OC), out(N * OC, kNaN);
  Dev dx = dev(F(x, {N, IC})), dw = dev(F(w, {OC, IC})), db = dev(F(b, {OC})), dout = dev(F(out, {N, OC}));
  const Tensor hb = bias ? F(b, {OC}) : Tensor(), gb = bias ? db.t : Tensor();
  ops::linear_forward(F(out, {N, OC}), F(x, {N, IC}), F(w, {OC, IC}), hb);
  ops::linear_forward(dout.t, dx.t, dw.t, gb);
  check("linear_forward", sz, host(dout), out, kReduce);

  Vf g = randn(N * OC), dinp = randn(N * IC), dweight = randn(OC * IC), dbias = randn(OC);
  Dev dg = dev(F(g, {N, OC})), ddi = dev(F(dinp, {N, IC})), ddw = dev(F(dweight, {OC, IC})),
      ddb = dev(F(dbias, {OC}));
  ops::linear_backward(F(dinp, {N, IC}), F(dweight, {OC, IC}), F(dbias, {OC}), F(g, {N, OC}), F(x, {N, IC}),
                       F(w, {OC, IC}));
  ops::linear_backward(ddi.t, ddw.t, ddb.t, dg.t, dx.t, dw.t);
  check("linear_backward dinp", sz, host(ddi), dinp, kReduce);
  check("linear_backward dweight", sz, host(ddw), dweight, kReduce);
  check("linear_backward dbias", sz, host(ddb), dbias, kReduce);
}

TEST(CudaOps, Linear) {
  REQUIRE_GPU();
  linear_case(2048, 1024, 1024, true);
  linear_case(4096, 1024, 3072, false);
  linear_case(13, 37, 19, true);
  linear_case(1, 5, 3, false);
}

// An odd-offset view: the GEMM must handle operands that are only 4-byte aligned.
TEST(CudaOps, LinearOnUnalignedViews) {
  REQUIRE_GPU();
  const int64_t N = 33, IC = 37, OC = 29;
  Vf x = randn((N + 1) * IC), w = randn(OC * IC), out((N + 1) * OC, kNaN);
  Dev dx = dev(F(x, {N + 1, IC})), dw = dev(F(w, {OC, IC})), dout = dev(F(out, {N + 1, OC}));
  ops::linear_forward(F(out, {N + 1, OC}).rows(1, N + 1), F(x, {N + 1, IC}).rows(1, N + 1), F(w, {OC, IC}), {});
  ops::linear_forward(dout.t.rows(1, N + 1), dx.t.rows(1, N + 1), dw.t, {});
  Vf got = host(dout);
  check("linear_forward (view)", dims({{"N", N}, {"IC", IC}, {"OC", OC}}), Vf(got.begin() + OC, got.end()),
        Vf(out.begin() + OC, out.end()), kReduce);
}

void rope_case(int64_t T, int64_t H, int64_t HD, int32_t max_pos) {
  const std::string sz = dims({{"T", T}, {"H", H}, {"HD", HD}, {"maxpos", max_pos}});
  Vf x = randn(T * H * HD), inv(HD / 2);
  for (int64_t j = 0; j < HD / 2; ++j) inv[size_t(j)] = float(1.0 / std::pow(1e6, double(2 * j) / double(HD)));
  Vi pos = randint(T, 0, max_pos);
  Dev dx = dev(F(x, {T, H, HD})), dp = dev(I(pos, {T})), di = dev(F(inv, {HD / 2}));
  ops::rope_forward(F(x, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  ops::rope_forward(dx.t, dp.t, di.t);
  check("rope_forward", sz, host(dx), x, kElem);
  Vf g = randn(T * H * HD);
  Dev dg = dev(F(g, {T, H, HD}));
  ops::rope_backward(F(g, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  ops::rope_backward(dg.t, dp.t, di.t);
  check("rope_backward", sz, host(dg), g, kElem);
}

TEST(CudaOps, Rope) {
  REQUIRE_GPU();
  rope_case(4096, 16, 128, 32768);
  rope_case(13, 3, 38, 7);
}

// Packed causal attention, forward and backward, over sequences of the given lengths (0 allowed).
void attention_case(const std::vector<int32_t>& lens, int64_t NH, int64_t NKV, int64_t HD) {
  Vi cu = {0};
  for (int32_t l : lens) cu.push_back(cu.back() + l);
  const int64_t T = cu.back(), B1 = int64_t(cu.size());
  const std::string sz = dims({{"T", T}, {"B", B1 - 1}, {"NH", NH}, {"NKV", NKV}, {"HD", HD}});
  const float scale = 1.0f / std::sqrt(float(HD));
  Vf q = randn(T * NH * HD), k = randn(T * NKV * HD), v = randn(T * NKV * HD);
  Vf out(T * NH * HD, kNaN), lse(T * NH, kNaN);
  Dev dq = dev(F(q, {T, NH, HD})), dk = dev(F(k, {T, NKV, HD})), dv = dev(F(v, {T, NKV, HD})),
      dcu = dev(I(cu, {B1})), dout = dev(F(out, {T, NH, HD})), dl = dev(F(lse, {T, NH}));
  ops::attention_forward(F(out, {T, NH, HD}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, NKV, HD}),
                         F(v, {T, NKV, HD}), I(cu, {B1}), scale);
  ops::attention_forward(dout.t, dl.t, dq.t, dk.t, dv.t, dcu.t, scale);
  check("attention_forward out", sz, host(dout), out, kReduce);
  check("attention_forward lse", sz, host(dl), lse, kReduce);

  Vf g = randn(T * NH * HD), gq = randn(T * NH * HD), gk = randn(T * NKV * HD), gv = randn(T * NKV * HD);
  Dev dg = dev(F(g, {T, NH, HD})), dgq = dev(F(gq, {T, NH, HD})), dgk = dev(F(gk, {T, NKV, HD})),
      dgv = dev(F(gv, {T, NKV, HD}));
  // Both backends read the CPU forward's out and lse, so only the backward differs.
  Dev dout_cpu = dev(F(out, {T, NH, HD})), dl_cpu = dev(F(lse, {T, NH}));
  ops::attention_backward(F(gq, {T, NH, HD}), F(gk, {T, NKV, HD}), F(gv, {T, NKV, HD}), F(g, {T, NH, HD}),
                          F(q, {T, NH, HD}), F(k, {T, NKV, HD}), F(v, {T, NKV, HD}), F(out, {T, NH, HD}),
                          F(lse, {T, NH}), I(cu, {B1}), scale);
  ops::attention_backward(dgq.t, dgk.t, dgv.t, dg.t, dq.t, dk.t, dv.t, dout_cpu.t, dl_cpu.t, dcu.t, scale);
  check("attention_backward dq", sz, host(dgq), gq, kReduce);
  check("attention_backward dk", sz, host(dgk), gk, kReduce);
  check("attention_backward dv", sz, host(dgv), gv, kReduce);
}

TEST(CudaOps, AttentionPackedGQA) {
  REQUIRE_GPU();
  attention_case({1024, 700, 1, 0, 333, 37}, 16, 4, 128);
  attention_case({512, 512}, 8, 8, 64);
}

TEST(CudaOps, AttentionOddSizes) {
  REQUIRE_GPU();
  attention_case({1, 5, 7}, 3, 1, 36);
  attention_case({1, 1, 2}, 4, 2, 80);
  attention_case({0, 9, 0}, 2, 2, 2);
  attention_case({40}, 2, 1, 256);
}

void kv_cache_case(int64_t S, int64_t L, int64_t NH, int64_t NKV, int64_t HD, int64_t T) {
  const std::string sz = dims({{"S", S}, {"L", L}, {"NH", NH}, {"NKV", NKV}, {"HD", HD}, {"T", T}});
  ASSERT_LE(T, S * L);
  // Distinct (slot, pos) per token: a random permutation of the first T cache rows.
  std::vector<int32_t> perm(size_t(S * L));
  std::iota(perm.begin(), perm.end(), 0);
  r1::Rng rng(++g_seed);
  for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[rng.next_u32() % (i + 1)]);
  Vi slots(T), pos(T);
  for (int64_t t = 0; t < T; ++t) {
    slots[size_t(t)] = perm[size_t(t)] / int32_t(L);
    pos[size_t(t)] = perm[size_t(t)] % int32_t(L);
  }
  const int64_t n = S * L * NKV * HD;
  Vf kc = randn(n), vc = randn(n), k = randn(T * NKV * HD), v = randn(T * NKV * HD);
  Dev dkc = dev(F(kc, {S, L, NKV, HD})), dvc = dev(F(vc, {S, L, NKV, HD})), dk = dev(F(k, {T, NKV, HD})),
      dv = dev(F(v, {T, NKV, HD})), ds = dev(I(slots, {T})), dp = dev(I(pos, {T}));
  ops::kv_cache_write(F(kc, {S, L, NKV, HD}), F(vc, {S, L, NKV, HD}), F(k, {T, NKV, HD}), F(v, {T, NKV, HD}),
                      I(slots, {T}), I(pos, {T}));
  ops::kv_cache_write(dkc.t, dvc.t, dk.t, dv.t, ds.t, dp.t);
  check("kv_cache_write k", sz, host(dkc), kc, kExact);
  check("kv_cache_write v", sz, host(dvc), vc, kExact);

  Vf q = randn(T * NH * HD), out(T * NH * HD, kNaN);
  Dev dq = dev(F(q, {T, NH, HD})), dout = dev(F(out, {T, NH, HD}));
  const float scale = 1.0f / std::sqrt(float(HD));
  ops::attention_cached(F(out, {T, NH, HD}), F(q, {T, NH, HD}), F(kc, {S, L, NKV, HD}), F(vc, {S, L, NKV, HD}),
                        I(slots, {T}), I(pos, {T}), scale);
  ops::attention_cached(dout.t, dq.t, dkc.t, dvc.t, ds.t, dp.t, scale);
  check("attention_cached", sz, host(dout), out, kReduce);
}

TEST(CudaOps, KVCacheAndCachedAttention) {
  REQUIRE_GPU();
  kv_cache_case(8, 1024, 16, 4, 128, 2048);
  kv_cache_case(2, 9, 3, 1, 6, 5);
}

void swiglu_case(int64_t N, int64_t M) {
  const std::string sz = dims({{"N", N}, {"I", M}});
  Vf gate = randn(N * M, 2.0f), up = randn(N * M), out(N * M, kNaN);
  Dev dgate = dev(F(gate, {N, M})), dup = dev(F(up, {N, M})), dout = dev(F(out, {N, M}));
  ops::swiglu_forward(F(out, {N, M}), F(gate, {N, M}), F(up, {N, M}));
  ops::swiglu_forward(dout.t, dgate.t, dup.t);
  check("swiglu_forward", sz, host(dout), out, kElem);
  Vf g = randn(N * M), gg = randn(N * M), gu = randn(N * M);
  Dev dg = dev(F(g, {N, M})), dgg = dev(F(gg, {N, M})), dgu = dev(F(gu, {N, M}));
  ops::swiglu_backward(F(gg, {N, M}), F(gu, {N, M}), F(g, {N, M}), F(gate, {N, M}), F(up, {N, M}));
  ops::swiglu_backward(dgg.t, dgu.t, dg.t, dgate.t, dup.t);
  check("swiglu_backward dgate", sz, host(dgg), gg, kElem);
  check("swiglu_backward dup", sz, host(dgu), gu, kElem);
}

TEST(CudaOps, SwiGLU) {
  REQUIRE_GPU();
  swiglu_case(4096, 2816);
  swiglu_case(13, 37);
}

void elementwise_case(int64_t n) {
  const std::string sz = dims({{"n", n}});
  Vf a = randn(n), b = randn(n), out(n, kNaN);
  Dev da = dev(F(a, {n})), db = dev(F(b, {n})), dout = dev(F(out, {n}));
  ops::add(F(out, {n}), F(a, {n}), F(b, {n}));
  ops::add(dout.t, da.t, db.t);
  check("add", sz, host(dout), out, kExact);
  // out aliasing an input (the residual stream)
  Vf a2 = a;
  ops::add(F(a2, {n}), F(a2, {n}), F(b, {n}));
  ops::add(da.t, da.t, db.t);
  check("add (aliased)", sz, host(da), a2, kExact);
  ops::add_inplace(F(a2, {n}), F(b, {n}));
  ops::add_inplace(da.t, db.t);
  check("add_inplace", sz, host(da), a2, kExact);
  ops::scale_inplace(F(a2, {n}), -0.37f);
  ops::scale_inplace(da.t, -0.37f);
  check("scale_inplace", sz, host(da), a2, kExact);
  const double ss_cpu = ops::sum_squares(F(a2, {n}));
  const double ss_gpu = ops::sum_squares(da.t);
  check_scalar("sum_squares", sz, ss_gpu, ss_cpu, 1e-12);  // double accumulation on both sides
  ops::zero(da.t);
  check("zero", sz, host(da), Vf(n, 0.0f), kExact);
}

TEST(CudaOps, Elementwise) {
  REQUIRE_GPU();
  elementwise_case(4096 * 1024);
  elementwise_case(37);
  elementwise_case(1);
}

void adamw_case(int64_t n) {
  const std::string sz = dims({{"n", n}});
  Vf p = randn(n), g = randn(n), m = randn(n, 0.1f), v = randn(n, 0.1f);
  for (auto& x : v) x = x * x;
  Dev dp = dev(F(p, {n})), dg = dev(F(g, {n})), dm = dev(F(m, {n})), dv = dev(F(v, {n}));
  ops::AdamWParams hp;
  hp.lr = 3e-4f;
  hp.weight_decay = 0.1f;
  hp.step = 3;
  hp.grad_scale = 0.5f;
  ops::adamw_update(F(p, {n}), F(g, {n}), F(m, {n}), F(v, {n}), hp);
  ops::adamw_update(dp.t, dg.t, dm.t, dv.t, hp);
  check("adamw_update param", sz, host(dp), p, kElem);
  check("adamw_update m", sz, host(dm), m, kElem);
  check("adamw_update v", sz, host(dv), v, kElem);
}

TEST(CudaOps, AdamW) {
  REQUIRE_GPU();
  adamw_case(4096 * 1024);
  adamw_case(481);
}

// Token log-probs through r1::ops (default scratch) and, when max_scratch > 0, straight through
// r1::cuda with a tiny scratch so the token chunking runs too.
void logprobs_case(int64_t T, int64_t C, int64_t V, int64_t chunk, float tau, int64_t max_scratch = 0) {
  const std::string sz = dims({{"T", T}, {"C", C}, {"V", V}, {"chunk", chunk}}) +
                         (max_scratch ? " scratch=" + std::to_string(max_scratch) : "");
  Vf h = randn(T * C), w = randn(V * C, 1.0f / std::sqrt(float(C)));
  Vi tg = randint(T, -1, int32_t(V));  // some tokens without a target
  tg[0] = int32_t(V) - 1;
  Vf logp(T, kNaN), lse(T, kNaN), ent(T, kNaN);
  Dev dh = dev(F(h, {T, C})), dw = dev(F(w, {V, C})), dt = dev(I(tg, {T})), dlogp = dev(F(logp, {T})),
      dlse = dev(F(lse, {T})), dent = dev(F(ent, {T}));
  ops::token_logprobs_forward(F(logp, {T}), F(lse, {T}), F(ent, {T}), F(h, {T, C}), F(w, {V, C}), I(tg, {T}), tau,
                              chunk);
  if (max_scratch) {
    r1::cuda::token_logprobs_forward(dlogp.t.f32(), dlse.t.f32(), dent.t.f32(), dh.t.f32(), dw.t.f32(),
                                     dt.t.i32(), T, C, V, tau, chunk, max_scratch);
  } else {
    ops::token_logprobs_forward(dlogp.t, dlse.t, dent.t, dh.t, dw.t, dt.t, tau, chunk);
  }
  check("token_logprobs_forward logp", sz, host(dlogp), logp, kReduce);
  check("token_logprobs_forward lse", sz, host(dlse), lse, kReduce);
  check("token_logprobs_forward entropy", sz, host(dent), ent, kReduce);

  Vf g = randn(T), dhid = randn(T * C), dwt = randn(V * C, 0.01f);
  Dev dg = dev(F(g, {T})), ddh = dev(F(dhid, {T, C})), ddw = dev(F(dwt, {V, C}));
  Dev dlse_cpu = dev(F(lse, {T}));  // both backends use the CPU forward's lse
  ops::token_logprobs_backward(F(dhid, {T, C}), F(dwt, {V, C}), F(g, {T}), F(h, {T, C}), F(w, {V, C}), I(tg, {T}),
                               F(lse, {T}), tau, chunk);
  if (max_scratch) {
    r1::cuda::token_logprobs_backward(ddh.t.f32(), ddw.t.f32(), dg.t.f32(), dh.t.f32(), dw.t.f32(), dt.t.i32(),
                                      dlse_cpu.t.f32(), T, C, V, tau, chunk, max_scratch);
  } else {
    ops::token_logprobs_backward(ddh.t, ddw.t, dg.t, dh.t, dw.t, dt.t, dlse_cpu.t, tau, chunk);
  }
  check("token_logprobs_backward dhidden", sz, host(ddh), dhid, kReduce);
  check("token_logprobs_backward dweight", sz, host(ddw), dwt, kReduce);
}

TEST(CudaOps, TokenLogprobs) {
  REQUIRE_GPU();
  logprobs_case(1024, 1024, 32000, 8192, 0.7f);
  logprobs_case(13, 37, 101, 17, 1.3f);
  logprobs_case(13, 37, 101, 17, 1.0f, 50);  // token chunks of 2 (50 / 17)
  logprobs_case(1, 8, 3, 1000, 1.0f);
}

void cross_entropy_case(int64_t T, bool all_masked_out) {
  const std::string sz = dims({{"T", T}}) + (all_masked_out ? " mask=0" : "");
  Vf logp = randn(T), mask(T);
  Vi bits = randint(T, 0, 2);
  for (int64_t t = 0; t < T; ++t) mask[size_t(t)] = all_masked_out ? 0.0f : float(bits[size_t(t)]);
  Dev dl = dev(F(logp, {T})), dm = dev(F(mask, {T}));
  const float cpu = ops::cross_entropy_forward(F(logp, {T}), F(mask, {T}));
  const float gpu = ops::cross_entropy_forward(dl.t, dm.t);
  check_scalar("cross_entropy_forward", sz, gpu, cpu, kElem);
  Vf g = randn(T);
  Dev dg = dev(F(g, {T}));
  ops::cross_entropy_backward(F(g, {T}), F(mask, {T}));
  ops::cross_entropy_backward(dg.t, dm.t);
  check("cross_entropy_backward", sz, host(dg), g, kElem);
}

TEST(CudaOps, CrossEntropy) {
  REQUIRE_GPU();
  cross_entropy_case(4096, false);
  cross_entropy_case(13, false);
  cross_entropy_case(13, true);
}

}  // namespace

#else  // !R1_HAVE_CUDA

TEST(CudaBackend, NotBuilt) { GTEST_SKIP() << "built without the CUDA backend (nvcc was not found)"; }

#endif
