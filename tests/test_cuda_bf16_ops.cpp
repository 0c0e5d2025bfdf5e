// Tests of the CUDA bf16 path: every op on bf16 CUDA tensors (through r1::ops, so the dispatch is
// tested too) against the CPU f32 op run on the same bf16-rounded inputs, on fresh random inputs,
// at sizes that fill the chip and at odd ones. Error = ||gpu - cpu|| / ||cpu|| (NaN fails), within
// bf16 rounding: 1e-2. Forward outputs start as NaN so any element left unwritten fails; gradients
// start random (the same values on both sides) so the += accumulation is checked. Each comparison
// prints a "[ CUDAERR ]" line like test_cuda_ops.cpp. The dtype-rule and CPU tests need no GPU;
// the others skip without one.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "base/error.h"
#include "base/rng.h"
#include "kernels/ops.h"
#include "tensor/tensor.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/profiler.h"
#endif

namespace {

using r1::DType;
using r1::Tensor;
using Vf = std::vector<float>;
using Vi = std::vector<int32_t>;
using Vb = std::vector<uint16_t>;
namespace ops = r1::ops;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

void expect_error(const std::function<void()>& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
    ADD_FAILURE() << "no r1::Error thrown (expected: " << *parts.begin() << ")";
  } catch (const r1::Error& e) {
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

Vb to_bits(const Vf& v) {
  Vb b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = r1::f32_to_bf16(v[i]);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Dtype rules: checked before any device work, so fake CUDA tensors (never dereferenced) do.

alignas(64) char g_dummy[64];
Tensor cu(DType dt, std::initializer_list<int64_t> dims) { return Tensor(g_dummy, dt, dims, r1::Device::CUDA); }
Tensor cpu(DType dt, std::initializer_list<int64_t> dims) { return Tensor(g_dummy, dt, dims, r1::Device::CPU); }
constexpr DType B16 = DType::BF16, F32 = DType::F32, I32 = DType::I32;

TEST(CudaBf16Ops, Bf16OnCpuFailsClearly) {
  const char* msg = "bf16 tensors are supported on CUDA only";
  expect_error([] { ops::linear_forward(cpu(B16, {4, 3}), cpu(B16, {4, 8}), cpu(B16, {3, 8}), {}); },
               {"linear_forward", "inp", msg});
  expect_error([] { ops::rmsnorm_forward(cpu(B16, {4, 8}), cpu(F32, {4}), cpu(B16, {4, 8}), cpu(B16, {8}), 1e-6f); },
               {"rmsnorm_forward", "inp", msg});
  expect_error([] { ops::embedding_forward(cpu(B16, {4, 8}), cpu(I32, {4}), cpu(B16, {10, 8})); },
               {"embedding_forward", "table", msg});
  expect_error([] { ops::add(cpu(B16, {8}), cpu(B16, {8}), cpu(B16, {8})); }, {"add", "a", msg});
  expect_error([] { ops::swiglu_forward(cpu(B16, {8}), cpu(B16, {8}), cpu(B16, {8})); }, {"swiglu_forward", msg});
  expect_error([] { ops::rope_forward(cpu(B16, {2, 1, 8}), cpu(I32, {2}), cpu(F32, {4})); }, {"rope_forward", msg});
  expect_error(
      [] {
        ops::attention_forward(cpu(B16, {2, 1, 16}), cpu(F32, {2, 1}), cpu(B16, {2, 1, 16}), cpu(B16, {2, 1, 16}),
                               cpu(B16, {2, 1, 16}), cpu(I32, {2}), 0.25f);
      },
      {"attention_forward", "q", msg});
  expect_error(
      [] {
        ops::token_logprobs_forward(cpu(F32, {2}), cpu(F32, {2}), {}, cpu(B16, {2, 8}), cpu(B16, {5, 8}),
                                    cpu(I32, {2}), 1.0f, 4);
      },
      {"token_logprobs_forward", "hidden", msg});
  // A bf16 operand beside f32 ones is a dtype mismatch named after the operand.
  expect_error([] { ops::linear_forward(cpu(F32, {4, 3}), cpu(F32, {4, 8}), cpu(B16, {3, 8}), {}); },
               {"linear_forward", "weight", "bf16", "f32"});
}

TEST(CudaBf16Ops, DtypeRulesAreChecked) {
  // Weights share the compute dtype of the activation.
  expect_error([] { ops::linear_forward(cu(B16, {4, 3}), cu(B16, {4, 8}), cu(F32, {3, 8}), {}); },
               {"linear_forward", "weight", "(3, 8) f32 cuda", "bf16"});
  expect_error([] { ops::linear_forward(cu(B16, {4, 3}), cu(B16, {4, 8}), cu(B16, {3, 8}), cu(F32, {3})); },
               {"linear_forward", "bias"});
  // Parameter gradients are f32.
  expect_error(
      [] {
        ops::linear_backward(Tensor(), cu(B16, {3, 8}), Tensor(), cu(B16, {4, 3}), cu(B16, {4, 8}), cu(B16, {3, 8}));
      },
      {"linear_backward", "dweight", "f32"});
  expect_error(
      [] {
        ops::linear_backward(cu(F32, {4, 8}), Tensor(), Tensor(), cu(B16, {4, 3}), cu(B16, {4, 8}), cu(B16, {3, 8}));
      },
      {"linear_backward", "dinp", "bf16"});
  expect_error([] { ops::embedding_backward(cu(B16, {10, 8}), cu(B16, {4, 8}), cu(I32, {4})); },
               {"embedding_backward", "dtable", "f32"});
  expect_error(
      [] {
        ops::rmsnorm_backward(Tensor(), cu(B16, {8}), cu(B16, {4, 8}), cu(B16, {4, 8}), cu(B16, {8}), cu(F32, {4}));
      },
      {"rmsnorm_backward", "dweight", "f32"});
  // Row statistics are f32.
  expect_error([] { ops::rmsnorm_forward(cu(B16, {4, 8}), cu(B16, {4}), cu(B16, {4, 8}), cu(B16, {8}), 1e-6f); },
               {"rmsnorm_forward", "rstd", "f32"});
  expect_error(
      [] {
        ops::token_logprobs_backward(cu(B16, {2, 8}), cu(B16, {5, 8}), cu(F32, {2}), cu(B16, {2, 8}),
                                     cu(B16, {5, 8}), cu(I32, {2}), cu(F32, {2}), 1.0f, 4);
      },
      {"token_logprobs_backward", "dweight", "f32"});
  expect_error([] { ops::swiglu_backward(cu(B16, {8}), cu(F32, {8}), cu(B16, {8}), cu(B16, {8}), cu(B16, {8})); },
               {"swiglu_backward", "dup", "bf16"});
  expect_error([] { ops::add(cu(F32, {8}), cu(B16, {8}), cu(B16, {8})); }, {"add", "out", "bf16"});
  expect_error(
      [] {
        ops::attention_forward(cu(B16, {2, 1, 64}), cu(B16, {2, 1}), cu(B16, {2, 1, 64}), cu(B16, {2, 1, 64}),
                               cu(B16, {2, 1, 64}), cu(I32, {2}), 0.125f);
      },
      {"attention_forward", "lse", "f32"});
  // AdamW: everything f32; the compute copy f32 or bf16 with param's numel.
  ops::AdamWParams hp;
  expect_error([&] { ops::adamw_update(cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), hp, cu(I32, {8})); },
               {"adamw_update", "compute_copy", "f32 or bf16"});
  expect_error([&] { ops::adamw_update(cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), hp, cu(B16, {7})); },
               {"adamw_update", "compute_copy", "8 elements"});
  expect_error([&] { ops::adamw_update(cu(B16, {8}), cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), hp, {}); },
               {"adamw_update", "param", "f32"});
}

// The compute copy on the CPU: f32 is the param, bf16 the param rounded to nearest even.
TEST(CudaBf16Ops, AdamWComputeCopyOnCpu) {
  const int64_t n = 1000;
  r1::Rng rng(77);
  Vf p(n), g(n), m(n, 0.0f), v(n, 0.0f), c32(n, kNaN);
  for (auto& x : p) x = rng.normal();
  for (auto& x : g) x = rng.normal();
  Vb cb(n, 0xffff);
  Vf p_plain = p, g_plain = g, m_plain = m, v_plain = v;
  ops::AdamWParams hp;
  hp.lr = 1e-2f;
  hp.weight_decay = 0.1f;
  ops::adamw_update(Tensor::f32(p.data(), {n}), Tensor::f32(g.data(), {n}), Tensor::f32(m.data(), {n}),
                    Tensor::f32(v.data(), {n}), hp, Tensor::f32(c32.data(), {n}));
  ops::adamw_update(Tensor::f32(p_plain.data(), {n}), Tensor::f32(g_plain.data(), {n}),
                    Tensor::f32(m_plain.data(), {n}), Tensor::f32(v_plain.data(), {n}), hp);
  EXPECT_EQ(p, p_plain);  // the copy does not change the update
  EXPECT_EQ(c32, p);
  ++hp.step;
  ops::adamw_update(Tensor::f32(p.data(), {n}), Tensor::f32(g.data(), {n}), Tensor::f32(m.data(), {n}),
                    Tensor::f32(v.data(), {n}), hp, Tensor(cb.data(), DType::BF16, {n}));
  EXPECT_EQ(cb, to_bits(p));
}

#ifdef R1_HAVE_CUDA

using r1::cuda::CudaBuffer;

#define REQUIRE_GPU()                                                                                 \
  do {                                                                                                \
    if (!r1::cuda::cuda_available())                                                                  \
      GTEST_SKIP() << "no usable CUDA device: " << r1::cuda::cuda_device_description();               \
  } while (0)

// Tolerances (relative L2): bf16 outputs 1e-2 (one rounding is ~2e-3); f32 outputs computed from
// the same values in the same way 1e-5; pure data movement 0.
constexpr double kBf16 = 1e-2, kF32 = 1e-5, kExact = 0.0;

float round_bf16(float x) { return r1::bf16_to_f32(r1::f32_to_bf16(x)); }

uint64_t g_seed = 5000;  // every draw gets a fresh seed

// Normal values already rounded to bf16, so the CPU reference sees exactly the GPU's inputs.
Vf randn(size_t n, float scale = 1.0f) {
  r1::Rng rng(++g_seed);
  Vf v(n);
  for (auto& x : v) x = round_bf16(scale * rng.normal());
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

// A CUDA copy of host data, owning its memory.
struct Dev {
  CudaBuffer buf;
  Tensor t;
};
Dev dev_f32(Vf& v, std::initializer_list<int64_t> dims) {
  Dev d;
  d.t = r1::cuda::to_device(Tensor::f32(v.data(), dims), d.buf);
  return d;
}
Dev dev_i32(Vi& v, std::initializer_list<int64_t> dims) {
  Dev d;
  d.t = r1::cuda::to_device(Tensor::i32(v.data(), dims), d.buf);
  return d;
}
Dev dev_b16(const Vf& v, std::initializer_list<int64_t> dims) {
  Vb bits = to_bits(v);
  Dev d;
  d.t = r1::cuda::to_device(Tensor(bits.data(), DType::BF16, dims), d.buf);
  return d;
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

void check(const std::string& op, const std::string& size, const Vf& gpu, const Vf& cpu, double tol) {
  const double err = rel_err(gpu, cpu);
  std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", ("bf16 " + op).c_str(), size.c_str(), err, tol);
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

void embedding_case(int64_t V, int64_t T, int64_t C) {
  const std::string sz = dims({{"V", V}, {"T", T}, {"C", C}});
  Vf table = randn(V * C);
  Vi ids = randint(T, 0, int32_t(V));
  Vf out(T * C, kNaN);
  Dev dtab = dev_b16(table, {V, C}), dids = dev_i32(ids, {T}), dout = dev_b16(out, {T, C});
  ops::embedding_forward(F(out, {T, C}), I(ids, {T}), F(table, {V, C}));
  ops::embedding_forward(dout.t, dids.t, dtab.t);
  check("embedding_forward", sz, host(dout), out, kExact);

  Vf g = randn(T * C), dtable = randn(V * C);
  Dev dg = dev_b16(g, {T, C}), ddt = dev_f32(dtable, {V, C});
  ops::embedding_backward(F(dtable, {V, C}), F(g, {T, C}), I(ids, {T}));
  ops::embedding_backward(ddt.t, dg.t, dids.t);
  check("embedding_backward dtable(f32)", sz, host(ddt), dtable, kF32);  // atomics: add order varies
}

TEST(CudaBf16Ops, Embedding) {
  REQUIRE_GPU();
  embedding_case(32000, 8192, 896);
  embedding_case(7, 13, 37);
}

void rmsnorm_case(int64_t N, int64_t C) {
  const std::string sz = dims({{"N", N}, {"C", C}});
  Vf x = randn(N * C), w = randn(C), out(N * C, kNaN), rstd(N, kNaN);
  Dev dx = dev_b16(x, {N, C}), dw = dev_b16(w, {C}), dout = dev_b16(out, {N, C}), dr = dev_f32(rstd, {N});
  ops::rmsnorm_forward(F(out, {N, C}), F(rstd, {N}), F(x, {N, C}), F(w, {C}), 1e-6f);
  ops::rmsnorm_forward(dout.t, dr.t, dx.t, dw.t, 1e-6f);
  check("rmsnorm_forward out", sz, host(dout), out, kBf16);
  check("rmsnorm_forward rstd(f32)", sz, host(dr), rstd, kF32);

  Vf g = randn(N * C), dinp = randn(N * C), dweight = randn(C);
  Dev dg = dev_b16(g, {N, C}), ddi = dev_b16(dinp, {N, C}), ddw = dev_f32(dweight, {C});
  ops::rmsnorm_backward(F(dinp, {N, C}), F(dweight, {C}), F(g, {N, C}), F(x, {N, C}), F(w, {C}), F(rstd, {N}));
  ops::rmsnorm_backward(ddi.t, ddw.t, dg.t, dx.t, dw.t, dr.t);
  check("rmsnorm_backward dinp", sz, host(ddi), dinp, kBf16);
  check("rmsnorm_backward dweight(f32)", sz, host(ddw), dweight, 1e-4);
}

TEST(CudaBf16Ops, RMSNorm) {
  REQUIRE_GPU();
  rmsnorm_case(8192, 896);
  rmsnorm_case(8192, 1536);
  rmsnorm_case(37, 100);
  rmsnorm_case(3, 4099);
}

// bias_offset > 0: the bias is a view that many elements into its buffer (not 16-byte aligned, so
// the linear falls back from the GEMM's bias epilogue).
void linear_case(int64_t N, int64_t IC, int64_t OC, bool bias, int64_t bias_offset = 0) {
  const std::string sz =
      dims({{"N", N}, {"IC", IC}, {"OC", OC}, {"bias", bias}}) + (bias_offset ? " (unaligned bias)" : "");
  Vf x = randn(N * IC), w = randn(OC * IC, 1.0f / std::sqrt(float(IC))), b = randn(OC + bias_offset);
  Vf out(N * OC, kNaN);
  Dev dx = dev_b16(x, {N, IC}), dw = dev_b16(w, {OC, IC}), db = dev_b16(b, {OC + bias_offset}),
      dout = dev_b16(out, {N, OC});
  Vf hb_data(b.begin() + bias_offset, b.end());
  const Tensor hb = bias ? F(hb_data, {OC}) : Tensor();
  const Tensor gb = bias ? db.t.rows(bias_offset, bias_offset + OC) : Tensor();
  ops::linear_forward(F(out, {N, OC}), F(x, {N, IC}), F(w, {OC, IC}), hb);
  ops::linear_forward(dout.t, dx.t, dw.t, gb);
  check("linear_forward", sz, host(dout), out, kBf16);

  Vf g = randn(N * OC), dinp = randn(N * IC), dweight = randn(OC * IC), dbias = randn(OC);
  Dev dg = dev_b16(g, {N, OC}), ddi = dev_b16(dinp, {N, IC}), ddw = dev_f32(dweight, {OC, IC}),
      ddb = dev_f32(dbias, {OC});
  ops::linear_backward(F(dinp, {N, IC}), F(dweight, {OC, IC}), F(dbias, {OC}), F(g, {N, OC}), F(x, {N, IC}),
                       F(w, {OC, IC}));
  ops::linear_backward(ddi.t, ddw.t, ddb.t, dg.t, dx.t, dw.t);
  check("linear_backward dinp", sz, host(ddi), dinp, kBf16);
  check("linear_backward dweight(f32)", sz, host(ddw), dweight, 1e-4);
  check("linear_backward dbias(f32)", sz, host(ddb), dbias, 1e-4);
}

TEST(CudaBf16Ops, Linear) {
  REQUIRE_GPU();
  linear_case(8192, 1536, 4864, false);  // MLP up
  linear_case(8192, 4864, 896, false);   // MLP down
  linear_case(8192, 896, 1152, true);    // fused q/k/v with bias
  linear_case(37, 100, 19, true);
  linear_case(37, 100, 19, true, 3);
  linear_case(1, 5, 3, false);
}

// Odd-offset views: bf16 operands only 2-byte aligned.
TEST(CudaBf16Ops, LinearOnUnalignedViews) {
  REQUIRE_GPU();
  const int64_t N = 33, IC = 37, OC = 29;
  Vf x = randn((N + 1) * IC), w = randn(OC * IC), out((N + 1) * OC, kNaN);
  Dev dx = dev_b16(x, {N + 1, IC}), dw = dev_b16(w, {OC, IC}), dout = dev_b16(out, {N + 1, OC});
  ops::linear_forward(F(out, {N + 1, OC}).rows(1, N + 1), F(x, {N + 1, IC}).rows(1, N + 1), F(w, {OC, IC}), {});
  ops::linear_forward(dout.t.rows(1, N + 1), dx.t.rows(1, N + 1), dw.t, {});
  Vf got = host(dout);
  check("linear_forward (view)", dims({{"N", N}, {"IC", IC}, {"OC", OC}}), Vf(got.begin() + OC, got.end()),
        Vf(out.begin() + OC, out.end()), kBf16);
}

void rope_case(int64_t T, int64_t H, int64_t HD, int32_t max_pos) {
  const std::string sz = dims({{"T", T}, {"H", H}, {"HD", HD}, {"maxpos", max_pos}});
  Vf x = randn(T * H * HD), inv(HD / 2);
  for (int64_t j = 0; j < HD / 2; ++j) inv[size_t(j)] = float(1.0 / std::pow(1e6, double(2 * j) / double(HD)));
  Vi pos = randint(T, 0, max_pos);
  Dev dx = dev_b16(x, {T, H, HD}), dp = dev_i32(pos, {T}), di = dev_f32(inv, {HD / 2});
  ops::rope_forward(F(x, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  ops::rope_forward(dx.t, dp.t, di.t);
  check("rope_forward", sz, host(dx), x, kBf16);
  Vf g = randn(T * H * HD);
  Dev dg = dev_b16(g, {T, H, HD});
  ops::rope_backward(F(g, {T, H, HD}), I(pos, {T}), F(inv, {HD / 2}));
  ops::rope_backward(dg.t, dp.t, di.t);
  check("rope_backward", sz, host(dg), g, kBf16);
}

TEST(CudaBf16Ops, Rope) {
  REQUIRE_GPU();
  rope_case(8192, 16, 128, 32768);
  rope_case(8192, 16, 64, 4096);
  rope_case(13, 3, 38, 7);
}

// Packed causal attention (the tensor-core kernels of flash_attention.cu), forward and backward.
void attention_case(const std::vector<int32_t>& lens, int64_t NH, int64_t NKV, int64_t HD) {
  Vi cu = {0};
  for (int32_t l : lens) cu.push_back(cu.back() + l);
  const int64_t T = cu.back(), B1 = int64_t(cu.size());
  const std::string sz = dims({{"T", T}, {"B", B1 - 1}, {"NH", NH}, {"NKV", NKV}, {"HD", HD}});
  const float scale = 1.0f / std::sqrt(float(HD));
  Vf q = randn(T * NH * HD), k = randn(T * NKV * HD), v = randn(T * NKV * HD);
  Vf out(T * NH * HD, kNaN), lse(T * NH, kNaN);
  Dev dq = dev_b16(q, {T, NH, HD}), dk = dev_b16(k, {T, NKV, HD}), dv = dev_b16(v, {T, NKV, HD}),
      dcu = dev_i32(cu, {B1}), dout = dev_b16(out, {T, NH, HD}), dl = dev_f32(lse, {T, NH});
  ops::attention_forward(F(out, {T, NH, HD}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, NKV, HD}),
                         F(v, {T, NKV, HD}), I(cu, {B1}), scale);
  ops::attention_forward(dout.t, dl.t, dq.t, dk.t, dv.t, dcu.t, scale);
  check("attention_forward out", sz, host(dout), out, kBf16);
  check("attention_forward lse(f32)", sz, host(dl), lse, kBf16);

  // Both backends read the CPU forward's out (rounded to bf16) and lse, so only the backward differs.
  for (auto& x : out) x = round_bf16(x);
  Vf g = randn(T * NH * HD), gq = randn(T * NH * HD), gk = randn(T * NKV * HD), gv = randn(T * NKV * HD);
  Dev dg = dev_b16(g, {T, NH, HD}), dgq = dev_b16(gq, {T, NH, HD}), dgk = dev_b16(gk, {T, NKV, HD}),
      dgv = dev_b16(gv, {T, NKV, HD});
  Dev dout_cpu = dev_b16(out, {T, NH, HD}), dl_cpu = dev_f32(lse, {T, NH});
  ops::attention_backward(F(gq, {T, NH, HD}), F(gk, {T, NKV, HD}), F(gv, {T, NKV, HD}), F(g, {T, NH, HD}),
                          F(q, {T, NH, HD}), F(k, {T, NKV, HD}), F(v, {T, NKV, HD}), F(out, {T, NH, HD}),
                          F(lse, {T, NH}), I(cu, {B1}), scale);
  ops::attention_backward(dgq.t, dgk.t, dgv.t, dg.t, dq.t, dk.t, dv.t, dout_cpu.t, dl_cpu.t, dcu.t, scale);
  check("attention_backward dq", sz, host(dgq), gq, kBf16);
  check("attention_backward dk", sz, host(dgk), gk, kBf16);
  check("attention_backward dv", sz, host(dgv), gv, kBf16);
}

TEST(CudaBf16Ops, AttentionPackedVarlen) {
  REQUIRE_GPU();
  attention_case({1, 17, 300, 1024}, 14, 2, 64);
  attention_case({1, 17, 300, 1024}, 12, 2, 128);
  attention_case({1, 17, 300, 1024}, 14, 2, 32);
}

TEST(CudaBf16Ops, AttentionEqualLengths) {
  REQUIRE_GPU();
  const std::vector<int32_t> eight(8, 1024);
  attention_case(eight, 14, 2, 64);
  attention_case(eight, 12, 2, 128);
  attention_case(eight, 14, 2, 32);
}

// Tensor-core head dims at odd lengths, and head dims the flash kernels hand to the f32 fallback.
TEST(CudaBf16Ops, AttentionOddSizes) {
  REQUIRE_GPU();
  attention_case({1, 5, 7}, 3, 1, 32);
  attention_case({0, 9, 0, 1}, 4, 4, 96);
  attention_case({129, 63, 65}, 6, 2, 128);
  attention_case({1, 5, 7}, 3, 1, 16);
  attention_case({33, 2}, 4, 2, 40);
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
  Dev dkc = dev_b16(kc, {S, L, NKV, HD}), dvc = dev_b16(vc, {S, L, NKV, HD}), dk = dev_b16(k, {T, NKV, HD}),
      dv = dev_b16(v, {T, NKV, HD}), ds = dev_i32(slots, {T}), dp = dev_i32(pos, {T});
  ops::kv_cache_write(F(kc, {S, L, NKV, HD}), F(vc, {S, L, NKV, HD}), F(k, {T, NKV, HD}), F(v, {T, NKV, HD}),
                      I(slots, {T}), I(pos, {T}));
  ops::kv_cache_write(dkc.t, dvc.t, dk.t, dv.t, ds.t, dp.t);
  check("kv_cache_write k", sz, host(dkc), kc, kExact);
  check("kv_cache_write v", sz, host(dvc), vc, kExact);

  Vf q = randn(T * NH * HD), out(T * NH * HD, kNaN);
  Dev dq = dev_b16(q, {T, NH, HD}), dout = dev_b16(out, {T, NH, HD});
  const float scale = 1.0f / std::sqrt(float(HD));
  ops::attention_cached(F(out, {T, NH, HD}), F(q, {T, NH, HD}), F(kc, {S, L, NKV, HD}), F(vc, {S, L, NKV, HD}),
                        I(slots, {T}), I(pos, {T}), scale);
  ops::attention_cached(dout.t, dq.t, dkc.t, dvc.t, ds.t, dp.t, scale);
  check("attention_cached", sz, host(dout), out, kBf16);
}

TEST(CudaBf16Ops, KVCacheAndCachedAttention) {
  REQUIRE_GPU();
  kv_cache_case(8, 1024, 14, 2, 64, 2048);
  kv_cache_case(16, 512, 12, 2, 128, 4096);
  kv_cache_case(2, 9, 3, 1, 6, 5);
}

void swiglu_case(int64_t N, int64_t M) {
  const std::string sz = dims({{"N", N}, {"I", M}});
  Vf gate = randn(N * M, 2.0f), up = randn(N * M), out(N * M, kNaN);
  Dev dgate = dev_b16(gate, {N, M}), dup = dev_b16(up, {N, M}), dout = dev_b16(out, {N, M});
  ops::swiglu_forward(F(out, {N, M}), F(gate, {N, M}), F(up, {N, M}));
  ops::swiglu_forward(dout.t, dgate.t, dup.t);
  check("swiglu_forward", sz, host(dout), out, kBf16);
  Vf g = randn(N * M), gg = randn(N * M), gu = randn(N * M);
  Dev dg = dev_b16(g, {N, M}), dgg = dev_b16(gg, {N, M}), dgu = dev_b16(gu, {N, M});
  ops::swiglu_backward(F(gg, {N, M}), F(gu, {N, M}), F(g, {N, M}), F(gate, {N, M}), F(up, {N, M}));
  ops::swiglu_backward(dgg.t, dgu.t, dg.t, dgate.t, dup.t);
  check("swiglu_backward dgate", sz, host(dgg), gg, kBf16);
  check("swiglu_backward dup", sz, host(dgu), gu, kBf16);
}

TEST(CudaBf16Ops, SwiGLU) {
  REQUIRE_GPU();
  swiglu_case(8192, 4864);
  swiglu_case(13, 37);
}

// Each op's CPU reference starts from the GPU's current (bf16) values, so every check sees one
// rounding. offset > 0 runs on views that many elements into their buffers (unaligned packs).
void elementwise_case(int64_t n, int64_t offset = 0) {
  const std::string sz = dims({{"n", n}}) + (offset ? fmt::format(" offset={}", offset) : "");
  Vf a_full = randn(n + offset), b_full = randn(n + offset), o_full(n + offset, kNaN);
  Dev da = dev_b16(a_full, {n + offset}), db = dev_b16(b_full, {n + offset}), dout = dev_b16(o_full, {n + offset});
  const Tensor ta = da.t.rows(offset, offset + n), tb = db.t.rows(offset, offset + n),
               tout = dout.t.rows(offset, offset + n);
  Vf a(a_full.begin() + offset, a_full.end()), b(b_full.begin() + offset, b_full.end()), out(n);
  ops::add(F(out, {n}), F(a, {n}), F(b, {n}));
  ops::add(tout, ta, tb);
  check("add", sz, host(tout), out, kBf16);
  // out aliasing an input (the residual stream)
  ops::add(F(a, {n}), F(a, {n}), F(b, {n}));
  ops::add(ta, ta, tb);
  check("add (aliased)", sz, host(ta), a, kBf16);
  a = host(ta);
  ops::add_inplace(F(a, {n}), F(b, {n}));
  ops::add_inplace(ta, tb);
  check("add_inplace", sz, host(ta), a, kBf16);
  a = host(ta);
  ops::scale_inplace(F(a, {n}), -0.37f);
  ops::scale_inplace(ta, -0.37f);
  check("scale_inplace", sz, host(ta), a, kBf16);
  a = host(ta);
  const double ss_cpu = ops::sum_squares(F(a, {n}));
  const double ss_gpu = ops::sum_squares(ta);
  const double ss_err = std::fabs(ss_gpu - ss_cpu) / std::max(ss_cpu, 1e-30);
  std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", "bf16 sum_squares", sz.c_str(), ss_err, 1e-12);
  EXPECT_LE(ss_err, 1e-12) << sz;  // double accumulation of the same values on both sides
  ops::zero(ta);
  check("zero", sz, host(ta), Vf(n, 0.0f), kExact);
  if (offset) {  // the elements before the view are untouched
    Vf full = host(da);
    check("elementwise (outside the view)", sz, Vf(full.begin(), full.begin() + offset),
          Vf(a_full.begin(), a_full.begin() + offset), kExact);
  }
}

TEST(CudaBf16Ops, Elementwise) {
  REQUIRE_GPU();
  elementwise_case(8192 * 896);
  elementwise_case(8192 * 896 + 5, 3);
  elementwise_case(37);
  elementwise_case(1);
}

// AdamW with the compute copy: the f32 update as on the CPU, and the copy equal to the updated
// param rounded to bf16 (or equal to it, f32).
void adamw_case(int64_t n, int64_t offset) {
  const std::string sz = dims({{"n", n}}) + (offset ? fmt::format(" offset={}", offset) : "");
  r1::Rng rng(++g_seed);
  const int64_t nf = n + offset;
  Vf p(nf), g(nf), m(nf), v(nf);
  for (auto& x : p) x = rng.normal();
  for (auto& x : g) x = rng.normal();
  for (auto& x : m) x = 0.1f * rng.normal();
  for (auto& x : v) x = 0.01f * rng.normal() * rng.normal();
  for (auto& x : v) x = x * x;
  Vf cb(nf, kNaN), c32(nf, kNaN);
  Dev dp = dev_f32(p, {nf}), dg = dev_f32(g, {nf}), dm = dev_f32(m, {nf}), dv = dev_f32(v, {nf}),
      dcb = dev_b16(cb, {nf}), dc32 = dev_f32(c32, {nf});
  auto view = [&](const Dev& d) { return d.t.rows(offset, nf); };
  auto hview = [&](Vf& x) { return F(x, {nf}).rows(offset, nf); };
  auto tail = [&](const Vf& x) { return Vf(x.begin() + offset, x.end()); };
  ops::AdamWParams hp;
  hp.lr = 3e-4f;
  hp.weight_decay = 0.1f;
  hp.step = 3;
  hp.grad_scale = 0.5f;
  ops::adamw_update(hview(p), hview(g), hview(m), hview(v), hp);
  ops::adamw_update(view(dp), view(dg), view(dm), view(dv), hp, view(dcb));
  check("adamw_update param(f32)", sz, tail(host(dp)), tail(p), kF32);
  check("adamw_update m(f32)", sz, tail(host(dm)), tail(m), kF32);
  check("adamw_update v(f32)", sz, tail(host(dv)), tail(v), kF32);
  Vf pr = tail(host(dp));
  for (auto& x : pr) x = round_bf16(x);
  check("adamw_update compute_copy", sz, tail(host(dcb)), pr, kExact);
  ++hp.step;
  ops::adamw_update(hview(p), hview(g), hview(m), hview(v), hp);
  ops::adamw_update(view(dp), view(dg), view(dm), view(dv), hp, view(dc32));
  check("adamw_update param(f32), f32 copy", sz, tail(host(dp)), tail(p), kF32);
  check("adamw_update compute_copy(f32)", sz, tail(host(dc32)), tail(host(dp)), kExact);
}

TEST(CudaBf16Ops, AdamWComputeCopy) {
  REQUIRE_GPU();
  adamw_case(4096 * 1024, 0);
  adamw_case(4096 * 1024 + 3, 1);
  adamw_case(481, 0);
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
  Dev dh = dev_b16(h, {T, C}), dw = dev_b16(w, {V, C}), dt = dev_i32(tg, {T}), dlogp = dev_f32(logp, {T}),
      dlse = dev_f32(lse, {T}), dent = dev_f32(ent, {T});
  ops::token_logprobs_forward(F(logp, {T}), F(lse, {T}), F(ent, {T}), F(h, {T, C}), F(w, {V, C}), I(tg, {T}), tau,
                              chunk);
  auto b16 = [](const Dev& d) { return static_cast<const r1::bf16*>(d.t.data); };
  if (max_scratch) {
    r1::cuda::token_logprobs_forward(dlogp.t.f32(), dlse.t.f32(), dent.t.f32(), b16(dh), b16(dw), dt.t.i32(), T, C,
                                     V, tau, chunk, max_scratch);
  } else {
    ops::token_logprobs_forward(dlogp.t, dlse.t, dent.t, dh.t, dw.t, dt.t, tau, chunk);
  }
  check("token_logprobs_forward logp(f32)", sz, host(dlogp), logp, kBf16);
  check("token_logprobs_forward lse(f32)", sz, host(dlse), lse, kBf16);
  check("token_logprobs_forward entropy(f32)", sz, host(dent), ent, kBf16);

  Vf g = randn(T), dhid = randn(T * C), dwt(V * C);
  {
    r1::Rng rng(++g_seed);
    for (auto& x : dwt) x = 0.01f * (rng.uniform() - 0.5f);  // cheaper than normals for V * C values
  }
  Dev dg = dev_f32(g, {T}), ddh = dev_b16(dhid, {T, C}), ddw = dev_f32(dwt, {V, C});
  Dev dlse_cpu = dev_f32(lse, {T});  // both backends use the CPU forward's lse
  ops::token_logprobs_backward(F(dhid, {T, C}), F(dwt, {V, C}), F(g, {T}), F(h, {T, C}), F(w, {V, C}), I(tg, {T}),
                               F(lse, {T}), tau, chunk);
  if (max_scratch) {
    r1::cuda::token_logprobs_backward(static_cast<r1::bf16*>(ddh.t.data), ddw.t.f32(), dg.t.f32(), b16(dh), b16(dw),
                                      dt.t.i32(), dlse_cpu.t.f32(), T, C, V, tau, chunk, max_scratch);
  } else {
    ops::token_logprobs_backward(ddh.t, ddw.t, dg.t, dh.t, dw.t, dt.t, dlse_cpu.t, tau, chunk);
  }
  check("token_logprobs_backward dhidden", sz, host(ddh), dhid, kBf16);
  check("token_logprobs_backward dweight(f32)", sz, host(ddw), dwt, kBf16);
}

TEST(CudaBf16Ops, TokenLogprobsQwenVocab) {
  REQUIRE_GPU();
  logprobs_case(3000, 896, 151936, 16384, 1.0f);
  logprobs_case(1024, 1536, 151936, 8192, 0.7f);
}

TEST(CudaBf16Ops, TokenLogprobsOddSizes) {
  REQUIRE_GPU();
  logprobs_case(13, 37, 101, 17, 1.3f);
  logprobs_case(13, 37, 101, 17, 1.0f, 50);  // token chunks of 1 or 2
  logprobs_case(1, 8, 3, 1000, 1.0f);
}

// The per-op profiler: one row per (op, dtype), only while enabled.
TEST(CudaBf16Ops, Profiler) {
  REQUIRE_GPU();
  const int64_t N = 64, IC = 32, OC = 48;
  Vf x = randn(N * IC), w = randn(OC * IC), out(N * OC, kNaN), o32(N * OC, kNaN);
  Dev dx = dev_b16(x, {N, IC}), dw = dev_b16(w, {OC, IC}), dout = dev_b16(out, {N, OC});
  Dev fx = dev_f32(x, {N, IC}), fw = dev_f32(w, {OC, IC}), fout = dev_f32(o32, {N, OC});
  r1::cuda::profiler_reset();
  ops::linear_forward(dout.t, dx.t, dw.t, {});  // not timed
  r1::cuda::profiler_enable(true);
  EXPECT_TRUE(r1::cuda::profiler_enabled());
  ops::linear_forward(dout.t, dx.t, dw.t, {});
  ops::linear_forward(dout.t, dx.t, dw.t, {});
  ops::linear_forward(fout.t, fx.t, fw.t, {});
  ops::add_inplace(dout.t, dout.t);
  r1::cuda::profiler_enable(false);
  ops::add_inplace(dout.t, dout.t);  // not timed
  const auto rows = r1::cuda::profiler_report();
  auto find = [&](const std::string& name) -> const r1::cuda::ProfileRow* {
    for (const auto& r : rows) {
      if (r.name == name) return &r;
    }
    return nullptr;
  };
  ASSERT_EQ(rows.size(), 3u);
  ASSERT_NE(find("linear_forward bf16"), nullptr);
  EXPECT_EQ(find("linear_forward bf16")->calls, 2);
  EXPECT_GT(find("linear_forward bf16")->total_ms, 0.0);
  ASSERT_NE(find("linear_forward f32"), nullptr);
  EXPECT_EQ(find("linear_forward f32")->calls, 1);
  ASSERT_NE(find("add_inplace bf16"), nullptr);
  EXPECT_EQ(find("add_inplace bf16")->calls, 1);
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_GE(rows[i - 1].total_ms, rows[i].total_ms);
  r1::cuda::profiler_reset();
  EXPECT_TRUE(r1::cuda::profiler_report().empty());
}

#endif  // R1_HAVE_CUDA

}  // namespace
