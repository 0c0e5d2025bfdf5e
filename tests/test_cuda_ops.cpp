// Tests of the CUDA backend: every op on CUDA tensors (through r1::ops, so the dispatch is tested too)
// against the same op on CPU tensors, on fresh random inputs, at sizes that fill the chip and at odd
// ones. Error = ||gpu - cpu|| / ||cpu|| (NaN fails). Forward outputs start as NaN so any element the
// kernel leaves unwritten fails; backward outputs start random (the same on both sides) so the +=
// accumulation is checked. Each comparison prints a "[ CUDAERR ]" line that bench/gpu.sh collects.
// The op cases shared with the bf16 tests (test_cuda_bf16_ops.cpp) are in cuda_test_util.h and run
// here on f32. Without a GPU (CI), every test skips.
#include <gtest/gtest.h>

#ifdef R1_HAVE_CUDA

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "cuda_test_util.h"
#include "model/kv_cache.h"

namespace {

// The shared helpers bound to this file's dtype, f32.
Vf randn(size_t n, float scale = 1.0f) { return randn(DType::F32, n, scale); }
Vi randint(size_t n, int32_t lo, int32_t hi) { return randint(DType::F32, n, lo, hi); }
void check(const std::string& op, const std::string& size, const Vf& gpu, const Vf& cpu, double tol) {
  check(DType::F32, op, size, gpu, cpu, tol);
}

void check_scalar(const std::string& op, const std::string& size, double gpu, double cpu, double tol) {
  const double err = std::isfinite(gpu) ? (cpu != 0.0 ? std::fabs(gpu - cpu) / std::fabs(cpu) : std::fabs(gpu))
                                        : INFINITY;
  std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", op.c_str(), size.c_str(), err, tol);
  std::fflush(stdout);
  EXPECT_LE(err, tol) << op << " " << size;
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
// The shared cases (cuda_test_util.h) on f32, and the f32-only ones (elementwise, AdamW, cross-entropy).

constexpr DType kF = DType::F32;

TEST(CudaOps, Embedding) {
  REQUIRE_GPU();
  embedding_case(kF, 5000, 4096, 1024);
  embedding_case(kF, 7, 13, 37);
}

TEST(CudaOps, RMSNorm) {
  REQUIRE_GPU();
  rmsnorm_case(kF, 4096, 1024);
  rmsnorm_case(kF, 13, 37);
  rmsnorm_case(kF, 3, 4099);
}

TEST(CudaOps, Linear) {
  REQUIRE_GPU();
  linear_case(kF, 2048, 1024, 1024, true);
  linear_case(kF, 4096, 1024, 3072, false);
  linear_case(kF, 13, 37, 19, true);
  linear_case(kF, 1, 5, 3, false);
}

TEST(CudaOps, LinearOnUnalignedViews) {
  REQUIRE_GPU();
  linear_view_case(kF);
}

TEST(CudaOps, Rope) {
  REQUIRE_GPU();
  rope_case(kF, 4096, 16, 128, 32768);
  rope_case(kF, 13, 3, 38, 7);
}

TEST(CudaOps, AttentionPackedGQA) {
  REQUIRE_GPU();
  attention_case(kF, {1024, 700, 1, 0, 333, 37}, 16, 4, 128);
  attention_case(kF, {512, 512}, 8, 8, 64);
}

TEST(CudaOps, AttentionOddSizes) {
  REQUIRE_GPU();
  attention_case(kF, {1, 5, 7}, 3, 1, 36);
  attention_case(kF, {1, 1, 2}, 4, 2, 80);
  attention_case(kF, {0, 9, 0}, 2, 2, 2);
  attention_case(kF, {40}, 2, 1, 256);
}

TEST(CudaOps, KVCacheAndCachedAttention) {
  REQUIRE_GPU();
  kv_cache_case(kF, 8, 1024, 16, 4, 128, 2048);
  kv_cache_case(kF, 2, 9, 3, 1, 6, 5);
}

// Decode steps (one token per slot) through the split (flash-decoding) path and without it.
TEST(CudaOps, CachedAttentionDecode) {
  REQUIRE_GPU();
  cached_attention_case(kF, 1, 1, 1500, 8, 1, 128, true);  // G = 8, one token: the most splits
  cached_attention_case(kF, 5, 1, 1500, 14, 2, 64, true);  // G = 7
  cached_attention_case(kF, 5, 1, 1500, 14, 2, 64, false);
  cached_attention_case(kF, 64, 1, 600, 4, 2, 128, true);  // G = 2
  cached_attention_case(kF, 64, 1, 700, 2, 2, 80, true);   // G = 1
  cached_attention_case(kF, 64, 1, 700, 2, 2, 80, false);
  cached_attention_case(kF, 8, 1, 1500, 8, 1, 256, true);
  cached_attention_case(kF, 3, 1, 1500, 16, 1, 64, true);  // G = 16: two head groups
  cached_attention_case(kF, 4, 1, 1000, 24, 2, 64, true);  // G = 12: head groups of 8 and 4
}

// Prefill chunks (several rows per slot), and grids that fill the GPU without splitting.
TEST(CudaOps, CachedAttentionChunksAndLargeBatches) {
  REQUIRE_GPU();
  cached_attention_case(kF, 48, 16, 1500, 12, 2, 128, true);  // G = 6
  cached_attention_case(kF, 512, 128, 1500, 16, 2, 64, true);
  cached_attention_case(kF, 512, 1, 160, 16, 2, 64, true);
}

// Head dims off the 16-byte path (bf16 loads element by element at 36; 198: 2 dims per thread).
TEST(CudaOps, CachedAttentionOddHeadDims) {
  REQUIRE_GPU();
  cached_attention_case(kF, 5, 1, 1500, 6, 2, 36, true);
  cached_attention_case(kF, 3, 1, 700, 4, 1, 198, true);
  cached_attention_case(kF, 3, 1, 700, 4, 1, 198, false);
  cached_attention_case(kF, 2, 1, 300, 3, 1, 6, true);
}

TEST(CudaOps, CachedAttentionWorkspaceTooSmallFailsClearly) {
  REQUIRE_GPU();
  const int64_t NH = 2, HD = 64, L = 1500;
  const int64_t need = ops::attention_cached_workspace(1, NH, HD, L);
  ASSERT_GT(need, 0);
  Vf q = randn(NH * HD), kc = randn(L * HD), o(NH * HD, kNaN), ws(need - 1);
  Vi slots = {0}, pos = {int32_t(L - 1)};
  Dev dq = dev(F(q, {1, NH, HD})), dkc = dev(F(kc, {1, L, 1, HD})), dout = dev(F(o, {1, NH, HD})),
      dws = dev(F(ws, {need - 1})), ds = dev(I(slots, {1})), dp = dev(I(pos, {1}));
  try {
    ops::attention_cached(dout.t, dq.t, dkc.t, dkc.t, ds.t, dp.t, 0.125f, dws.t);
    FAIL() << "expected an error";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("workspace"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
}

TEST(CudaOps, SwiGLU) {
  REQUIRE_GPU();
  swiglu_case(kF, 4096, 2816);
  swiglu_case(kF, 13, 37);
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

TEST(CudaOps, TokenLogprobs) {
  REQUIRE_GPU();
  logprobs_case(kF, 1024, 1024, 32000, 8192, 0.7f);
  logprobs_case(kF, 13, 37, 101, 17, 1.3f);
  logprobs_case(kF, 13, 37, 101, 17, 1.0f, 50);  // token chunks of 2 (50 / 17)
  logprobs_case(kF, 1, 8, 3, 1000, 1.0f);
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
