// Tests of the CUDA bf16 path: every op on bf16 CUDA tensors (through r1::ops, so the dispatch is
// tested too) against the CPU f32 op run on the same bf16-rounded inputs, on fresh random inputs,
// at sizes that fill the chip and at odd ones. Error = ||gpu - cpu|| / ||cpu|| (NaN fails), within
// bf16 rounding: 1e-2. Forward outputs start as NaN so any element left unwritten fails; gradients
// start random (the same values on both sides) so the += accumulation is checked. Each comparison
// prints a "[ CUDAERR ]" line like test_cuda_ops.cpp. The op cases shared with the f32 tests are in
// cuda_test_util.h and run here on bf16. The dtype-rule and CPU tests need no GPU; the others skip
// without one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "base/error.h"
#include "base/rng.h"
#include "cuda_test_util.h"
#include "kernels/ops.h"
#include "tensor/tensor.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/profiler.h"
#include "model/kv_cache.h"
#endif

namespace {

void expect_error(const std::function<void()>& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
    ADD_FAILURE() << "no r1::Error thrown (expected: " << *parts.begin() << ")";
  } catch (const r1::Error& e) {
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
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
  // The cached attention's workspace is f32.
  expect_error(
      [] {
        ops::attention_cached(cu(B16, {2, 4, 16}), cu(B16, {2, 4, 16}), cu(B16, {2, 8, 2, 16}),
                              cu(B16, {2, 8, 2, 16}), cu(I32, {2}), cu(I32, {2}), 0.25f, cu(B16, {64}));
      },
      {"attention_cached", "workspace", "f32"});
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

// The shared helpers bound to this file's dtype, bf16.
Vf randn(size_t n, float scale = 1.0f) { return randn(DType::BF16, n, scale); }
void check(const std::string& op, const std::string& size, const Vf& gpu, const Vf& cpu, double tol) {
  check(DType::BF16, op, size, gpu, cpu, tol);
}

// ---------------------------------------------------------------------------------------------
// The shared cases (cuda_test_util.h) on bf16, and the bf16-only ones (elementwise on views, AdamW
// with the compute copy, the profiler).

constexpr DType kB = DType::BF16;

TEST(CudaBf16Ops, Embedding) {
  REQUIRE_GPU();
  embedding_case(kB, 32000, 8192, 896);
  embedding_case(kB, 7, 13, 37);
}

TEST(CudaBf16Ops, RMSNorm) {
  REQUIRE_GPU();
  rmsnorm_case(kB, 8192, 896);
  rmsnorm_case(kB, 8192, 1536);
  rmsnorm_case(kB, 37, 100);
  rmsnorm_case(kB, 3, 4099);
}

TEST(CudaBf16Ops, Linear) {
  REQUIRE_GPU();
  linear_case(kB, 8192, 1536, 4864, false);  // MLP up
  linear_case(kB, 8192, 4864, 896, false);   // MLP down
  linear_case(kB, 8192, 896, 1152, true);    // fused q/k/v with bias
  linear_case(kB, 37, 100, 19, true);
  linear_case(kB, 37, 100, 19, true, 3);
  linear_case(kB, 1, 5, 3, false);
}

TEST(CudaBf16Ops, LinearOnUnalignedViews) {
  REQUIRE_GPU();
  linear_view_case(kB);
}

TEST(CudaBf16Ops, Rope) {
  REQUIRE_GPU();
  rope_case(kB, 8192, 16, 128, 32768);
  rope_case(kB, 8192, 16, 64, 4096);
  rope_case(kB, 13, 3, 38, 7);
}

TEST(CudaBf16Ops, AttentionPackedVarlen) {
  REQUIRE_GPU();
  attention_case(kB, {1, 17, 300, 1024}, 14, 2, 64);
  attention_case(kB, {1, 17, 300, 1024}, 12, 2, 128);
  attention_case(kB, {1, 17, 300, 1024}, 14, 2, 32);
}

TEST(CudaBf16Ops, AttentionEqualLengths) {
  REQUIRE_GPU();
  const std::vector<int32_t> eight(8, 1024);
  attention_case(kB, eight, 14, 2, 64);
  attention_case(kB, eight, 12, 2, 128);
  attention_case(kB, eight, 14, 2, 32);
}

// Tensor-core head dims at odd lengths, and head dims the flash kernels hand to the f32 fallback.
TEST(CudaBf16Ops, AttentionOddSizes) {
  REQUIRE_GPU();
  attention_case(kB, {1, 5, 7}, 3, 1, 32);
  attention_case(kB, {0, 9, 0, 1}, 4, 4, 96);
  attention_case(kB, {129, 63, 65}, 6, 2, 128);
  attention_case(kB, {1, 5, 7}, 3, 1, 16);
  attention_case(kB, {33, 2}, 4, 2, 40);
  attention_case(kB, {40}, 2, 1, 256);
}

TEST(CudaBf16Ops, KVCacheAndCachedAttention) {
  REQUIRE_GPU();
  kv_cache_case(kB, 8, 1024, 14, 2, 64, 2048);
  kv_cache_case(kB, 16, 512, 12, 2, 128, 4096);
  kv_cache_case(kB, 2, 9, 3, 1, 6, 5);
}

// Decode steps (one token per slot) through the split (flash-decoding) path and without it, at the
// GQA groups of real models (14/2, 12/2, 16/8, 32/8, 64/8) and a few others.
TEST(CudaBf16Ops, CachedAttentionDecode) {
  REQUIRE_GPU();
  cached_attention_case(kB, 1, 1, 1500, 8, 1, 128, true);  // G = 8, one token: the most splits
  cached_attention_case(kB, 5, 1, 1500, 14, 2, 64, true);  // G = 7
  cached_attention_case(kB, 5, 1, 1500, 14, 2, 64, false);
  cached_attention_case(kB, 64, 1, 600, 12, 2, 128, true);  // G = 6
  cached_attention_case(kB, 64, 1, 600, 4, 2, 128, true);   // G = 2
  cached_attention_case(kB, 64, 1, 700, 2, 2, 80, true);    // G = 1
  cached_attention_case(kB, 64, 1, 700, 2, 2, 80, false);
  cached_attention_case(kB, 16, 1, 1500, 8, 2, 128, true);  // G = 4
  cached_attention_case(kB, 8, 1, 1500, 8, 1, 256, true);
  cached_attention_case(kB, 3, 1, 1500, 16, 1, 64, true);   // G = 16: two head groups
  cached_attention_case(kB, 4, 1, 1000, 24, 2, 64, true);   // G = 12: head groups of 8 and 4
}

// Prefill chunks (several rows per slot), and grids that fill the GPU without splitting.
TEST(CudaBf16Ops, CachedAttentionChunksAndLargeBatches) {
  REQUIRE_GPU();
  cached_attention_case(kB, 48, 16, 1500, 14, 2, 64, true);  // G = 7
  cached_attention_case(kB, 512, 128, 1500, 16, 2, 64, true);
  cached_attention_case(kB, 512, 1, 160, 14, 2, 64, true);
}

// Head dims off the 16-byte path (element by element; 198: 2 dims per thread in P.V).
TEST(CudaBf16Ops, CachedAttentionOddHeadDims) {
  REQUIRE_GPU();
  cached_attention_case(kB, 5, 1, 1500, 6, 2, 36, true);
  cached_attention_case(kB, 3, 1, 700, 4, 1, 198, true);
  cached_attention_case(kB, 2, 1, 300, 3, 1, 6, true);
}

TEST(CudaBf16Ops, SwiGLU) {
  REQUIRE_GPU();
  swiglu_case(kB, 8192, 4864);
  swiglu_case(kB, 13, 37);
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
  r1::Rng rng(next_seed(DType::BF16));
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

TEST(CudaBf16Ops, TokenLogprobsQwenVocab) {
  REQUIRE_GPU();
  logprobs_case(kB, 3000, 896, 151936, 16384, 1.0f);
  logprobs_case(kB, 1024, 1536, 151936, 8192, 0.7f);
}

TEST(CudaBf16Ops, TokenLogprobsOddSizes) {
  REQUIRE_GPU();
  logprobs_case(kB, 13, 37, 101, 17, 1.3f);
  logprobs_case(kB, 13, 37, 101, 17, 1.0f, 50);  // token chunks of 1 or 2
  logprobs_case(kB, 1, 8, 3, 1000, 1.0f);
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
