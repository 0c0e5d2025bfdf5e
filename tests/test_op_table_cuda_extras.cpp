// Named CUDA backend tests beside the op table (test_op_table.cpp): device availability and
// buffers, mixed devices, the cached attention's workspace size, the log-probs' token chunking on
// the device, the dtype rules (checked before any device work, so they run without a GPU), the CPU
// AdamW compute copy, and the per-op profiler. (Moved here from the hand-written
// tests/test_cuda_ops.cpp and tests/test_cuda_bf16_ops.cpp when the op tests became a table.)
// Tests that need a GPU skip without one.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "base/error.h"
#include "base/rng.h"
#include "kernels/ops.h"
#include "kernels/supports.h"
#include "require_gpu.h"
#include "tensor/device_memory.h"
#include "tensor/tensor.h"

#ifdef R1_HAVE_CUDA
#include "device/cuda_device.h"
#include "device/cuda_stream.h"
#include "device/graph.h"
#include "kernels/cuda/cuda_buffer.h"
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

#ifdef R1_HAVE_CUDA

uint64_t g_draws = 0;
Vf randn(size_t n, float scale = 1.0f) {
  r1::Rng rng(9000 + ++g_draws);
  Vf v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

Tensor F(Vf& v, std::initializer_list<int64_t> dims) { return Tensor::f32(v.data(), dims); }
Tensor I(Vi& v, std::initializer_list<int64_t> dims) { return Tensor::i32(v.data(), dims); }

// A device copy of host data (f32 values stored as `dt`), owning its memory.
struct Dev {
  r1::Buffer buf;
  Tensor t;
};
Dev dev_as(DType dt, const Vf& v, std::initializer_list<int64_t> dims) {
  Dev d;
  d.buf = r1::Buffer(v.size() * r1::dtype_size(dt), r1::Device::CUDA);
  d.t = Tensor(d.buf.data(), dt, dims, r1::Device::CUDA);
  r1::copy_from_host_f32(d.t, v.data());
  return d;
}
Dev dev_f32(const Vf& v, std::initializer_list<int64_t> dims) { return dev_as(DType::F32, v, dims); }
Dev dev_b16(const Vf& v, std::initializer_list<int64_t> dims) { return dev_as(DType::BF16, v, dims); }
Dev dev_i32(const Vi& v, std::initializer_list<int64_t> dims) {
  Dev d;
  d.buf = r1::Buffer(v.size() * sizeof(int32_t), r1::Device::CUDA);
  d.t = Tensor(d.buf.data(), DType::I32, dims, r1::Device::CUDA);
  r1::copy_from_host(d.t, v.data());
  return d;
}
Vf host(const Dev& d) { return r1::to_host_f32(d.t); }

double rel_err(const Vf& got, const Vf& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

void check(const std::string& what, const Vf& got, const Vf& ref, double tol) {
  const double err = rel_err(got, ref);
  std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", what.c_str(),
              "T=13 C=37 V=101 chunk=17 scratch=50", err, tol);
  EXPECT_LE(err, tol) << what;
}

#endif  // R1_HAVE_CUDA

}  // namespace

// ---------------------------------------------------------------------------------------------
// Dtype rules: checked before any device work, so fake CUDA tensors (never dereferenced) do.

alignas(64) char g_dummy[64];
Tensor cu(DType dt, std::initializer_list<int64_t> dims) {
  return Tensor(g_dummy, dt, dims, r1::Device::CUDA);
}
Tensor cpu(DType dt, std::initializer_list<int64_t> dims) {
  return Tensor(g_dummy, dt, dims, r1::Device::CPU);
}
constexpr DType B16 = DType::BF16, F32 = DType::F32, I32 = DType::I32;

TEST(CudaBf16Ops, Bf16OnCpuFailsClearly) {
  const char* msg = "bf16 tensors are supported on CUDA only";
  expect_error(
      [] {
        ops::linear_forward(cpu(B16, {4, 3}), cpu(B16, {4, 8}), cpu(B16, {3, 8}), {});
      },
      {"linear_forward", "inp", msg});
  expect_error(
      [] {
        ops::rmsnorm_forward(cpu(B16, {4, 8}), cpu(F32, {4}), cpu(B16, {4, 8}), cpu(B16, {8}), 1e-6f);
      },
      {"rmsnorm_forward", "inp", msg});
  expect_error(
      [] {
        ops::embedding_forward(cpu(B16, {4, 8}), cpu(I32, {4}), cpu(B16, {10, 8}));
      },
      {"embedding_forward", "table", msg});
  expect_error([] { ops::add(cpu(B16, {8}), cpu(B16, {8}), cpu(B16, {8})); }, {"add", "a", msg});
  expect_error([] { ops::swiglu_forward(cpu(B16, {8}), cpu(B16, {8}), cpu(B16, {8})); },
               {"swiglu_forward", msg});
  expect_error(
      [] {
        ops::rope_forward(cpu(B16, {2, 1, 8}), cpu(I32, {2}), cpu(F32, {4}));
      },
      {"rope_forward", msg});
  expect_error(
      [] {
        ops::attention_forward(cpu(B16, {2, 1, 16}), cpu(F32, {2, 1}), cpu(B16, {2, 1, 16}),
                               cpu(B16, {2, 1, 16}), cpu(B16, {2, 1, 16}), cpu(I32, {2}), 0.25f);
      },
      {"attention_forward", "q", msg});
  expect_error(
      [] {
        ops::token_logprobs_forward(cpu(F32, {2}), cpu(F32, {2}), {}, cpu(B16, {2, 8}), cpu(B16, {5, 8}),
                                    cpu(I32, {2}), 1.0f, 4);
      },
      {"token_logprobs_forward", "hidden", msg});
  // A bf16 operand beside f32 ones is a dtype mismatch named after the operand.
  expect_error(
      [] {
        ops::linear_forward(cpu(F32, {4, 3}), cpu(F32, {4, 8}), cpu(B16, {3, 8}), {});
      },
      {"linear_forward", "weight", "bf16", "f32"});
}

TEST(CudaBf16Ops, DtypeRulesAreChecked) {
  // Weights share the compute dtype of the activation.
  expect_error(
      [] {
        ops::linear_forward(cu(B16, {4, 3}), cu(B16, {4, 8}), cu(F32, {3, 8}), {});
      },
      {"linear_forward", "weight", "(3, 8) f32 cuda", "bf16"});
  expect_error(
      [] {
        ops::linear_forward(cu(B16, {4, 3}), cu(B16, {4, 8}), cu(B16, {3, 8}), cu(F32, {3}));
      },
      {"linear_forward", "bias"});
  // Parameter gradients are f32.
  expect_error(
      [] {
        ops::linear_backward(Tensor(), cu(B16, {3, 8}), Tensor(), cu(B16, {4, 3}), cu(B16, {4, 8}),
                             cu(B16, {3, 8}));
      },
      {"linear_backward", "dweight", "f32"});
  expect_error(
      [] {
        ops::linear_backward(cu(F32, {4, 8}), Tensor(), Tensor(), cu(B16, {4, 3}), cu(B16, {4, 8}),
                             cu(B16, {3, 8}));
      },
      {"linear_backward", "dinp", "bf16"});
  expect_error(
      [] {
        ops::embedding_backward(cu(B16, {10, 8}), cu(B16, {4, 8}), cu(I32, {4}));
      },
      {"embedding_backward", "dtable", "f32"});
  expect_error(
      [] {
        ops::rmsnorm_backward(Tensor(), cu(B16, {8}), cu(B16, {4, 8}), cu(B16, {4, 8}), cu(B16, {8}),
                              cu(F32, {4}));
      },
      {"rmsnorm_backward", "dweight", "f32"});
  // Row statistics are f32.
  expect_error(
      [] {
        ops::rmsnorm_forward(cu(B16, {4, 8}), cu(B16, {4}), cu(B16, {4, 8}), cu(B16, {8}), 1e-6f);
      },
      {"rmsnorm_forward", "rstd", "f32"});
  expect_error(
      [] {
        ops::token_logprobs_backward(cu(B16, {2, 8}), cu(B16, {5, 8}), cu(F32, {2}), cu(B16, {2, 8}),
                                     cu(B16, {5, 8}), cu(I32, {2}), cu(F32, {2}), 1.0f, 4);
      },
      {"token_logprobs_backward", "dweight", "f32"});
  expect_error(
      [] { ops::swiglu_backward(cu(B16, {8}), cu(F32, {8}), cu(B16, {8}), cu(B16, {8}), cu(B16, {8})); },
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
                              cu(B16, {2, 8, 2, 16}), cu(I32, {2, 1}), cu(I32, {2}), cu(I32, {2}), 0.25f,
                              cu(B16, {64}));
      },
      {"attention_cached", "workspace", "f32"});
  // AdamW: everything f32; the compute copy f32 or bf16 with param's numel.
  ops::AdamWParams hp;
  expect_error(
      [&] { ops::adamw_update(cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), hp, cu(I32, {8})); },
      {"adamw_update", "compute_copy", "f32 or bf16"});
  expect_error(
      [&] { ops::adamw_update(cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), cu(F32, {8}), hp, cu(B16, {7})); },
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

TEST(CudaBackend, AvailabilityNeverThrows) {
  bool avail = false;
  EXPECT_NO_THROW(avail = r1::cuda::cuda_available());
  std::printf("[ CUDADEV ] %s\n", r1::cuda::cuda_device_description());
  if (!avail) GTEST_SKIP() << "no usable CUDA device: " << r1::cuda::cuda_device_description();
}

TEST(CudaBackend, BufferRoundTripAndMove) {
  REQUIRE_GPU();
  Vf a = randn(1000);
  r1::cuda::CudaBuffer buf;
  const Tensor t = r1::cuda::to_device(F(a, {10, 100}), buf);
  EXPECT_EQ(t.device, r1::Device::CUDA);
  EXPECT_EQ(t.shape[0], 10);
  r1::cuda::CudaBuffer moved = std::move(buf);
  EXPECT_EQ(buf.data(), nullptr);
  EXPECT_EQ(moved.data(), t.data);
  EXPECT_EQ(r1::cuda::to_host_f32(t), a);
  Vi ids(77);
  for (int32_t i = 0; i < 77; ++i) ids[i] = (i * 7) % 10 - 5;
  r1::cuda::CudaBuffer ibuf;
  const Tensor ti = r1::cuda::to_device(I(ids, {77}), ibuf);
  Vi back(77);
  r1::cuda::to_host(ti, I(back, {77}));
  EXPECT_EQ(back, ids);
}

TEST(CudaBackend, MixedDevicesAreRejected) {
  REQUIRE_GPU();
  Vf a = randn(64), b = randn(64), out(64);
  Dev da = dev_f32(a, {64});
  try {
    ops::add(F(out, {64}), da.t, F(b, {64}));
    FAIL() << "expected an error";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("different devices"), std::string::npos) << e.what();
  }
}

TEST(CudaOps, CachedAttentionWorkspaceTooSmallFailsClearly) {
  REQUIRE_GPU();
  const int64_t NH = 2, HD = 64, L = 1500;
  const int64_t need = ops::attention_cached_workspace(1, NH, HD, L);
  ASSERT_GT(need, 0);
  Vf q = randn(NH * HD), kc = randn(L * HD), o(NH * HD, kNaN), ws(need - 1);
  Vi slots = {0}, pos = {int32_t(L - 1)}, table = {0};
  Dev dq = dev_f32(q, {1, NH, HD}), dkc = dev_f32(kc, {1, L, 1, HD}), dout = dev_f32(o, {1, NH, HD}),
      dws = dev_f32(ws, {need - 1}), ds = dev_i32(slots, {1}), dp = dev_i32(pos, {1}),
      dt = dev_i32(table, {1, 1});
  try {
    ops::attention_cached(dout.t, dq.t, dkc.t, dkc.t, dt.t, ds.t, dp.t, 0.125f, dws.t);
    FAIL() << "expected an error";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("workspace"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
}

// ops::linear_rmsnorm_forward declines what its finish cannot take, having written nothing: more than
// 8192 columns (a row is one block of at most 1024 threads, 8 columns each) or 256 rows. At 8192
// columns it runs (the op table checks its values there); K that does not halve is taken whole.
// The host half: the split rule, and the benchmarks' fixed splits (down_proj's apart).
TEST(CudaOps, LinearNormDeclinesWhatItCannotTake) {
  using r1::cuda::linear_norm_splits;
  EXPECT_EQ(linear_norm_splits(2, 64, 8192), 2);
  EXPECT_EQ(linear_norm_splits(2, 64, 8200), 0);
  EXPECT_EQ(linear_norm_splits(257, 64, 64), 0);
  EXPECT_EQ(linear_norm_splits(2, 40, 64), 1);
  {  // the benchmarks' sweep: down_proj (K wider than the output) fixed apart from o_proj
    struct Reset {
      ~Reset() { r1::cuda::set_linear_norm_splits(0); }
    } reset;
    r1::cuda::set_linear_norm_splits(2, 5);
    EXPECT_EQ(linear_norm_splits(64, 8960, 1536), 5);  // 1.5B's down_proj
    EXPECT_EQ(linear_norm_splits(64, 1536, 1536), 2);  // its o_proj
    EXPECT_EQ(linear_norm_splits(64, 4864, 896), 4);   // 0.5B's down_proj: 5 slices would not align
    r1::cuda::set_linear_norm_splits(0, 4);
    EXPECT_EQ(linear_norm_splits(64, 8960, 1536), 4);
    EXPECT_EQ(linear_norm_splits(64, 1536, 1536), 2);  // the rule
  }
  REQUIRE_GPU();
  const int64_t N = 2, IC = 64;
  for (const int64_t OC : {int64_t(8200), int64_t(8192)}) {
    const Vf x = randn(N * IC), w = randn(OC * IC, 0.125f), g = randn(OC), unset(N * OC, kNaN);
    Dev dx = dev_b16(x, {N, IC}), dw = dev_b16(w, {OC, IC}), dg = dev_b16(g, {OC}),
        dout = dev_b16(unset, {N, OC}), dnormed = dev_b16(unset, {N, OC});
    const int64_t ws = std::max<int64_t>(ops::linear_rmsnorm_workspace(r1::Device::CUDA, N, IC, OC), 1);
    Dev dws = dev_f32(Vf(ws, kNaN), {ws});
    const bool fused =
        ops::linear_rmsnorm_forward(dout.t, dnormed.t, dx.t, dw.t, Tensor(), Tensor(), dg.t, 1e-6f, dws.t);
    EXPECT_EQ(fused, OC <= r1::cuda::kLinearNormMaxCols) << OC;
    for (const Dev* d : {&dout, &dnormed}) {
      const Vf got = host(*d);
      const auto unwritten = std::count_if(got.begin(), got.end(), [](float v) { return std::isnan(v); });
      EXPECT_EQ(unwritten, fused ? 0 : N * OC) << OC;
    }
  }
}

// Decode attention through the paged cache on the device against the CPU op on the same inputs:
// a shuffled block table (blocks of 16 rows, and of 5), keys and values with their own head dims,
// f32 and bf16, split (workspace) and not. The step is captured in a CUDA graph once; the block
// table is then rewritten in place (the sequences' blocks moved, as a copy-on-write or a
// preemption leaves them) and the replay reads the new table.
TEST(CudaOps, PagedDecodeAttentionMatchesCpuThroughAGraph) {
  REQUIRE_GPU();
  struct Case {
    int64_t NH, NKV, HD, HDv, BS;
  };
  for (const Case& k : {Case{14, 2, 64, 64, 16}, Case{8, 8, 192, 128, 16}, Case{4, 1, 128, 128, 5}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      const int64_t S = 6, MB = (900 + k.BS - 1) / k.BS, NB = S * MB + 4, T = S;
      const int64_t krow = k.NKV * k.HD, vrow = k.NKV * k.HDv;
      const bool b16 = dt == DType::BF16;
      auto rounded = [&](Vf v) {
        if (b16)
          for (float& x : v) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
        return v;
      };
      const Vf kc = rounded(randn(size_t(NB * k.BS * krow))), vc = rounded(randn(size_t(NB * k.BS * vrow)));
      const Vf q = rounded(randn(size_t(T * k.NH * k.HD)));
      r1::Rng rng(uint64_t(k.BS * 100 + k.HD));
      auto shuffled_table = [&] {
        Vi perm(static_cast<size_t>(NB));
        for (int64_t i = 0; i < NB; ++i) perm[size_t(i)] = int32_t(i);
        for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[rng.next_u32() % (i + 1)]);
        return Vi(perm.begin(), perm.begin() + S * MB);
      };
      Vi table = shuffled_table(), slots(static_cast<size_t>(T)), pos(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) {
        slots[size_t(t)] = int32_t(T - 1 - t);
        pos[size_t(t)] = int32_t(t == 0 ? 899 : rng.next_u32() % 900);
      }
      const float scale = 1.0f / std::sqrt(float(k.HD));
      auto cpu_op = [&](Vi tab) {
        Vf kh = kc, vh = vc, qh = q, out(size_t(T * k.NH * k.HDv));
        ops::attention_cached(F(out, {T, k.NH, k.HDv}), F(qh, {T, k.NH, k.HD}),
                              F(kh, {NB, k.BS, k.NKV, k.HD}), F(vh, {NB, k.BS, k.NKV, k.HDv}),
                              I(tab, {S, MB}), I(slots, {T}), I(pos, {T}), scale);
        return out;
      };
      Dev dk = dev_as(dt, kc, {NB, k.BS, k.NKV, k.HD}), dv = dev_as(dt, vc, {NB, k.BS, k.NKV, k.HDv});
      Dev dq = dev_as(dt, q, {T, k.NH, k.HD}),
          dout = dev_as(dt, Vf(size_t(T * k.NH * k.HDv), kNaN), {T, k.NH, k.HDv});
      Dev dtab = dev_i32(table, {S, MB}), ds = dev_i32(slots, {T}), dp = dev_i32(pos, {T});
      for (bool split : {false, true}) {
        const int64_t ws = split ? ops::attention_cached_workspace(T, k.NH, k.HDv, MB * k.BS) : 0;
        Dev dws = dev_f32(Vf(size_t(std::max<int64_t>(ws, 1)), kNaN), {std::max<int64_t>(ws, 1)});
        const Tensor wst = ws > 0 ? dws.t : Tensor();
        const std::string what = fmt::format("paged NH={} HD={} HDv={} BS={} {}{}", k.NH, k.HD, k.HDv, k.BS,
                                             b16 ? "bf16" : "f32", ws > 0 ? " split" : "");
        auto expect_near_cpu = [&](const std::string& w, const Vf& ref) {
          const double err = rel_err(host(dout), ref), tol = b16 ? 1e-2 : 1e-5;
          std::printf("[ CUDAERR ] %-52s | %.3e | tol %.0e\n", w.c_str(), err, tol);
          EXPECT_LE(err, tol) << w;
        };
        r1::copy_from_host(dtab.t, table.data());
        ops::attention_cached(dout.t, dq.t, dk.t, dv.t, dtab.t, ds.t, dp.t, scale, wst);
        expect_near_cpu(what, cpu_op(table));
        r1::cuda::Graph g;
        g.begin_capture();
        ops::attention_cached(dout.t, dq.t, dk.t, dv.t, dtab.t, ds.t, dp.t, scale, wst);
        g.end_capture();
        const Vi moved = shuffled_table();
        r1::copy_from_host(dtab.t, moved.data());  // in place: the graph reads the table at replay
        g.replay();
        r1::cuda::synchronize();
        expect_near_cpu(what + ", graph, table moved", cpu_op(moved));
      }
    }
  }
}

// Decode over a latent cache (MLA's absorbed form, latent_attention.cu) against the CPU op: the
// new tokens' keys written (keys only) on each device, then every head attending over rows whose
// first HDv columns are the values, for sequences of different lengths sharing a prompt's blocks;
// split (workspace) and not, f32 and bf16, 16 heads (Moonlight) and 128 (DeepSeek-V3). The step is
// captured in a CUDA graph; its replays are bitwise equal, and after the block table is rewritten
// in place a replay reads the new table.
TEST(CudaOps, LatentDecodeAttentionMatchesCpuThroughAGraph) {
  REQUIRE_GPU();
  struct Case {
    int64_t NH, HD, HDv, L;  // L: a multiple of the 16-row blocks
  };
  for (const Case& k : {Case{16, 576, 512, 1200}, Case{128, 576, 512, 400}, Case{3, 24, 16, 320}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      const int64_t S = 5, T = S, BS = 16, MB = k.L / BS, NB = S * MB + 3, prompt = 4;  // blocks shared
      const bool b16 = dt == DType::BF16;
      auto rounded = [&](Vf v) {
        if (b16)
          for (float& x : v) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
        return v;
      };
      const Vf kc = rounded(randn(size_t(NB * BS * k.HD))), knew = rounded(randn(size_t(T * k.HD)));
      const Vf q = rounded(randn(size_t(T * k.NH * k.HD)));
      r1::Rng rng(uint64_t(k.NH * 1000 + k.HD));
      auto shared_table = [&] {  // shuffled blocks; every sequence's first `prompt` are sequence 0's
        Vi perm(static_cast<size_t>(NB));
        for (int64_t i = 0; i < NB; ++i) perm[size_t(i)] = int32_t(i);
        for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[rng.next_u32() % (i + 1)]);
        Vi tab(perm.begin(), perm.begin() + S * MB);
        for (int64_t s = 1; s < S; ++s)
          for (int64_t b = 0; b < prompt; ++b) tab[size_t(s * MB + b)] = tab[size_t(b)];
        return tab;
      };
      Vi table = shared_table(), slots(static_cast<size_t>(T)), pos(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) {  // past the prompt, one at the longest length
        slots[size_t(t)] = int32_t(t);
        pos[size_t(t)] = int32_t(t == 0 ? k.L - 1 : prompt * BS + rng.next_u32() % (k.L - prompt * BS));
      }
      const float scale = 1.0f / std::sqrt(float(k.HD));
      Vf kc_cpu = kc, kn = knew;
      ops::kv_cache_write(F(kc_cpu, {NB, BS, 1, k.HD}), {}, F(kn, {T, 1, k.HD}), {}, I(table, {S, MB}),
                          I(slots, {T}), I(pos, {T}));
      auto cpu_op = [&](Vi tab) {
        Vf kh = kc_cpu, qh = q, out(size_t(T * k.NH * k.HDv));
        ops::attention_cached(F(out, {T, k.NH, k.HDv}), F(qh, {T, k.NH, k.HD}), F(kh, {NB, BS, 1, k.HD}), {},
                              I(tab, {S, MB}), I(slots, {T}), I(pos, {T}), scale);
        return out;
      };
      Dev dk = dev_as(dt, kc, {NB, BS, 1, k.HD}), dkn = dev_as(dt, knew, {T, 1, k.HD});
      Dev dq = dev_as(dt, q, {T, k.NH, k.HD}), dout = dev_as(dt, Vf(size_t(T * k.NH * k.HDv), kNaN), {T, k.NH, k.HDv});
      Dev dtab = dev_i32(table, {S, MB}), ds = dev_i32(slots, {T}), dp = dev_i32(pos, {T});
      ops::kv_cache_write(dk.t, {}, dkn.t, {}, dtab.t, ds.t, dp.t);
      EXPECT_EQ(host(dk), kc_cpu) << "latent kv_cache_write";
      for (bool split : {false, true}) {
        const int64_t ws = split ? ops::attention_cached_workspace(T, k.NH, k.HDv, MB * BS) : 0;
        EXPECT_TRUE(!split || ws > 0) << "few sequences split";
        Dev dws = dev_f32(Vf(size_t(std::max<int64_t>(ws, 1)), kNaN), {std::max<int64_t>(ws, 1)});
        const Tensor wst = ws > 0 ? dws.t : Tensor();
        const std::string what = fmt::format("latent NH={} HD={} HDv={} {}{}", k.NH, k.HD, k.HDv,
                                             b16 ? "bf16" : "f32", ws > 0 ? " split" : "");
        auto expect_near_cpu = [&](const std::string& w, const Vf& got, const Vf& ref) {
          const double err = rel_err(got, ref), tol = b16 ? 1e-2 : 1e-5;
          std::printf("[ CUDAERR ] %-52s | %.3e | tol %.0e\n", w.c_str(), err, tol);
          EXPECT_LE(err, tol) << w;
        };
        r1::copy_from_host(dtab.t, table.data());
        ops::attention_cached(dout.t, dq.t, dk.t, {}, dtab.t, ds.t, dp.t, scale, wst);
        const Vf eager = host(dout);
        expect_near_cpu(what, eager, cpu_op(table));
        r1::cuda::Graph g;
        g.begin_capture();
        ops::attention_cached(dout.t, dq.t, dk.t, {}, dtab.t, ds.t, dp.t, scale, wst);
        g.end_capture();
        g.replay();
        r1::cuda::synchronize();
        const Vf first = host(dout);
        g.replay();
        r1::cuda::synchronize();
        EXPECT_EQ(std::memcmp(first.data(), eager.data(), eager.size() * sizeof(float)), 0) << what << " graph";
        EXPECT_EQ(std::memcmp(host(dout).data(), first.data(), first.size() * sizeof(float)), 0)
            << what << " replays";
        const Vi moved = shared_table();
        r1::copy_from_host(dtab.t, moved.data());  // in place: the graph reads the table at replay
        g.replay();
        r1::cuda::synchronize();
        expect_near_cpu(what + ", graph, table moved", host(dout), cpu_op(moved));
      }
    }
  }
}

// bf16 decode attention over a paged cache of T sequences, one block table row each (blocks
// i * stride mod T * MB: a permutation when stride is prime to it), sequence t at position
// pos0 + dpos * t: the device's operands and the CPU op's output on the same (bf16-rounded) values.
struct Bf16Decode {
  int64_t T, NH, NKV, HD, BS, MB, NB;
  float scale;
  Vf ref;
  Dev dk, dv, dq, dtab, ds, dp;

  Bf16Decode(int64_t T_, int64_t NH_, int64_t NKV_, int64_t HD_, int64_t MB_, int64_t stride, int32_t pos0,
             int32_t dpos)
      : T(T_), NH(NH_), NKV(NKV_), HD(HD_), BS(16), MB(MB_), NB(T_ * MB_), scale(1.0f / std::sqrt(float(HD_))) {
    auto b16 = [](Vf v) {
      for (float& x : v) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
      return v;
    };
    Vf kc = b16(randn(size_t(NB * BS * NKV * HD))), vc = b16(randn(size_t(NB * BS * NKV * HD)));
    Vf q = b16(randn(size_t(T * NH * HD)));
    Vi table(static_cast<size_t>(T * MB)), slots(static_cast<size_t>(T)), pos(static_cast<size_t>(T));
    for (int64_t i = 0; i < T * MB; ++i) table[size_t(i)] = int32_t((i * stride) % (T * MB));
    for (int64_t t = 0; t < T; ++t) slots[size_t(t)] = int32_t(t), pos[size_t(t)] = pos0 + dpos * int32_t(t);
    ref.assign(size_t(T * NH * HD), 0.0f);
    dk = dev_b16(kc, {NB, BS, NKV, HD});
    dv = dev_b16(vc, {NB, BS, NKV, HD});
    dq = dev_b16(q, {T, NH, HD});
    dtab = dev_i32(table, {T, MB});
    ds = dev_i32(slots, {T});
    dp = dev_i32(pos, {T});
    ops::attention_cached(F(ref, {T, NH, HD}), F(q, {T, NH, HD}), F(kc, {NB, BS, NKV, HD}), F(vc, {NB, BS, NKV, HD}),
                          I(table, {T, MB}), I(slots, {T}), I(pos, {T}), scale);
  }
  // The device's output (workspace: the split scratch, or none).
  Vf run(const Tensor& workspace = {}) {
    Dev dout = dev_b16(Vf(size_t(T * NH * HD), kNaN), {T, NH, HD});
    ops::attention_cached(dout.t, dq.t, dk.t, dv.t, dtab.t, ds.t, dp.t, scale, workspace);
    return host(dout);
  }
};

// bf16 decode attention has two kernels: the tensor cores (the default, P rounded to bf16 as in
// the training forward) and the CUDA cores (P in f32), which bench_rollout_gpu --attention simt
// selects. Both match the CPU op; their bits differ, so the switch reaches the dispatch.
TEST(CudaOps, DecodeAttentionKernelSwitchSelectsTheKernel) {
  REQUIRE_GPU();
  Bf16Decode d(/*T=*/8, /*NH=*/12, /*NKV=*/2, /*HD=*/128, /*MB=*/40, /*stride=*/1, /*pos0=*/100, /*dpos=*/60);
  std::vector<Vf> got;
  for (bool tensor : {true, false}) {
    r1::cuda::set_decode_attention_tensor_cores(tensor);
    got.push_back(d.run());
    EXPECT_LE(rel_err(got.back(), d.ref), 1e-2) << (tensor ? "tensor cores" : "CUDA cores");
  }
  r1::cuda::set_decode_attention_tensor_cores(true);
  EXPECT_NE(std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)), 0);
}

// set_decode_attention_splits (the benchmarks' --attention-splits sweep) fixes the decode
// attention's key splits: with S > 1 the kernel writes its partial sums to the workspace (left NaN
// by one split) and the merge sums them, on both kernels; every S matches the CPU op.
TEST(CudaOps, ForcedDecodeAttentionSplitsMatchCpu) {
  REQUIRE_GPU();
  Bf16Decode d(/*T=*/4, /*NH=*/14, /*NKV=*/2, /*HD=*/64, /*MB=*/60, /*stride=*/7, /*pos0=*/200, /*dpos=*/250);
  const int64_t ws = ops::attention_cached_workspace(d.T, d.NH, d.HD, d.MB * d.BS);
  ASSERT_GT(ws, 0);
  for (bool tensor : {true, false}) {
    r1::cuda::set_decode_attention_tensor_cores(tensor);
    for (int64_t S : {1, 3, 8}) {
      r1::cuda::set_decode_attention_splits(S);
      Dev dws = dev_f32(Vf(size_t(ws), kNaN), {ws});
      const std::string what = fmt::format("{} cores, {} splits", tensor ? "tensor" : "CUDA", S);
      EXPECT_LE(rel_err(d.run(dws.t), d.ref), 1e-2) << what;
      const Vf part = host(dws);
      const bool written = std::any_of(part.begin(), part.end(), [](float x) { return !std::isnan(x); });
      EXPECT_EQ(written, S > 1) << what << ": the workspace " << (written ? "was" : "was not") << " written";
    }
  }
  r1::cuda::set_decode_attention_splits(0);
  r1::cuda::set_decode_attention_tensor_cores(true);
}

// set_decode_rope_fused (the benchmarks' --fused-rope) picks rope_qkv_attention_cached's path: on,
// the one launch (counted native); off, rope_qkv_cache_write then attention_cached (fallback).
// Both give the same bits in the out rows and both caches.
TEST(CudaOps, FusedRopeSwitchSelectsThePath) {
  REQUIRE_GPU();
  Bf16Decode d(/*T=*/8, /*NH=*/14, /*NKV=*/2, /*HD=*/64, /*MB=*/40, /*stride=*/3, /*pos0=*/100, /*dpos=*/60);
  const int64_t W = (d.NH + 2 * d.NKV) * d.HD;
  const Vf kc = host(d.dk), vc = host(d.dv), qkv = randn(size_t(d.T * W));
  Vf inv(size_t(d.HD / 2));
  for (size_t j = 0; j < inv.size(); ++j) inv[j] = float(1.0 / std::pow(1e6, double(2 * j) / double(d.HD)));
  const Dev dinv = dev_f32(inv, {d.HD / 2});
  std::vector<Vf> got;
  for (bool fused : {true, false}) {
    r1::cuda::set_decode_rope_fused(fused);
    Dev dk = dev_b16(kc, {d.NB, d.BS, d.NKV, d.HD}), dv = dev_b16(vc, {d.NB, d.BS, d.NKV, d.HD});
    Dev dqkv = dev_b16(qkv, {d.T, W}), dq = dev_b16(Vf(size_t(d.T * d.NH * d.HD)), {d.T, d.NH, d.HD});
    Dev dout = dev_b16(Vf(size_t(d.T * d.NH * d.HD), kNaN), {d.T, d.NH, d.HD});
    r1::ops::reset_path_counts();
    ops::rope_qkv_attention_cached(dout.t, dq.t, dqkv.t, dk.t, dv.t, d.dtab.t, d.ds.t, d.dp.t, dinv.t, d.scale);
    const auto id = r1::ops::Op::rope_qkv_attention_cached;
    EXPECT_EQ(r1::ops::path_count(id, r1::ops::Path::native), fused ? 1 : 0) << "fused " << fused;
    EXPECT_EQ(r1::ops::path_count(id, r1::ops::Path::fallback), fused ? 0 : 1) << "fused " << fused;
    got.push_back(host(dout));
    for (const Dev* c : {&dk, &dv}) {
      const Vf h = host(*c);
      got.back().insert(got.back().end(), h.begin(), h.end());
    }
  }
  r1::cuda::set_decode_rope_fused(true);
  EXPECT_EQ(std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)), 0)
      << "the out rows or the caches differ between the two paths";
}

// cuda::set_decode_attention_stamps (bench_decode_attention_gpu --stamps) runs the tensor-core
// kernel's stamping instantiation: out has the same bits as the plain kernel's, and each block's
// words are in order (entry, prologue, every warp's loop end, the loops' barrier, exit; its
// globaltimer entry before its exit), on a real SM, with its own count of 16-key tiles. Too small
// a buffer throws before any launch; unset, the plain kernel writes no word.
TEST(CudaOps, DecodeAttentionStampsLeaveTheBitsAlone) {
  REQUIRE_GPU();
  Bf16Decode d(/*T=*/8, /*NH=*/12, /*NKV=*/2, /*HD=*/128, /*MB=*/40, /*stride=*/3, /*pos0=*/100, /*dpos=*/60);
  const int64_t kW = r1::cuda::kDecodeStampWords, blocks = d.T * d.NKV;  // one head group, no split
  r1::cuda::set_decode_attention_splits(1);
  const Vf plain = d.run();
  r1::cuda::CudaBuffer buf(size_t(blocks * kW) * 8);
  const Tensor words = buf.tensor(DType::I32, {2 * blocks * kW});
  Vi zeros(size_t(2 * blocks * kW), 0), got(zeros.size());
  r1::copy_from_host(words, zeros.data());
  auto* st = static_cast<unsigned long long*>(buf.data());
  r1::cuda::set_decode_attention_stamps(st, blocks * kW - 1);
  EXPECT_THROW(d.run(), std::exception) << "a buffer one word short";
  r1::copy_tensor(I(got, {2 * blocks * kW}), words);
  EXPECT_EQ(got, zeros) << "the launch that threw wrote stamps";
  r1::cuda::set_decode_attention_stamps(st, blocks * kW);
  const Vf stamped = d.run();
  r1::cuda::set_decode_attention_stamps(nullptr, 0);
  EXPECT_EQ(std::memcmp(plain.data(), stamped.data(), plain.size() * sizeof(float)), 0);
  r1::copy_tensor(I(got, {2 * blocks * kW}), words);
  std::vector<unsigned long long> w(size_t(blocks * kW));
  std::memcpy(w.data(), got.data(), w.size() * 8);
  const int sms = r1::cuda::sm_count();
  for (int64_t b = 0; b < blocks; ++b) {
    const unsigned long long* s = w.data() + b * kW;
    const int64_t t = b / d.NKV, keys = 100 + 60 * t + 1;
    EXPECT_LT(s[0], s[1]) << "block " << b;
    for (int q = 0; q < 4; ++q) {
      EXPECT_LE(s[1], s[2 + q]) << "block " << b << " warp " << q;
      EXPECT_LE(s[2 + q], s[6]) << "block " << b << " warp " << q;
    }
    EXPECT_LT(s[6], s[7]) << "block " << b;
    EXPECT_GT(s[8], 0u) << "block " << b;
    EXPECT_LE(s[8], s[9]) << "block " << b;
    EXPECT_LT(s[10], unsigned(sms)) << "block " << b;
    EXPECT_EQ(s[11], unsigned((keys + 15) / 16)) << "block " << b;
  }
  r1::copy_from_host(words, zeros.data());
  EXPECT_EQ(std::memcmp(d.run().data(), plain.data(), plain.size() * sizeof(float)), 0);
  r1::copy_tensor(I(got, {2 * blocks * kW}), words);
  EXPECT_EQ(got, zeros) << "unset, the kernel wrote stamps";
  r1::cuda::set_decode_attention_splits(0);
}

// The log-probs' token chunking on the device: a tiny scratch (50 floats) makes token chunks of 2
// (50 / 17) straight through r1::cuda; the result matches the CPU op on the same inputs.
TEST(CudaOps, TokenLogprobsTokenChunks) {
  REQUIRE_GPU();
  const int64_t T = 13, C = 37, V = 101, chunk = 17, scratch = 50;
  const float tau = 1.0f;
  for (DType dt : {DType::F32, DType::BF16}) {
    const bool b16 = dt == DType::BF16;
    const std::string p = b16 ? "bf16 " : "";
    Vf h = randn(T * C), w = randn(V * C, 1.0f / std::sqrt(float(C)));
    if (b16) {
      for (auto& x : h) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
      for (auto& x : w) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
    }
    Vi tg(T);
    for (int64_t t = 0; t < T; ++t) tg[t] = int32_t((t * 37) % (V + 1)) - 1;
    Vf lp(T), lse(T), ent(T);
    ops::token_logprobs_forward(F(lp, {T}), F(lse, {T}), F(ent, {T}), F(h, {T, C}), F(w, {V, C}), I(tg, {T}),
                                tau, chunk);
    Dev dh = dev_as(dt, h, {T, C}), dw = dev_as(dt, w, {V, C}), dtg = dev_i32(tg, {T});
    Dev dlp = dev_f32(Vf(T, kNaN), {T}), dlse = dev_f32(Vf(T, kNaN), {T}), dent = dev_f32(Vf(T, kNaN), {T});
    auto bp = [](const Dev& d) { return static_cast<r1::bf16*>(d.t.data); };
    if (b16) {
      r1::cuda::token_logprobs_forward(dlp.t.f32(), dlse.t.f32(), dent.t.f32(), bp(dh), bp(dw), dtg.t.i32(),
                                       T, C, V, tau, chunk, scratch);
    } else {
      r1::cuda::token_logprobs_forward(dlp.t.f32(), dlse.t.f32(), dent.t.f32(), dh.t.f32(), dw.t.f32(),
                                       dtg.t.i32(), T, C, V, tau, chunk, scratch);
    }
    const double tol = b16 ? 1e-2 : 1e-4;
    check(p + "token_logprobs_forward logp", host(dlp), lp, tol);
    check(p + "token_logprobs_forward lse", host(dlse), lse, tol);
    check(p + "token_logprobs_forward entropy", host(dent), ent, tol);
    Vf g = randn(T), dhid = randn(T * C), dwt = randn(V * C, 0.01f);
    if (b16) {
      for (auto& x : dhid) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
    }
    Dev dg = dev_f32(g, {T}), ddh = dev_as(dt, dhid, {T, C}), ddw = dev_f32(dwt, {V, C}),
        dl = dev_f32(lse, {T});
    ops::token_logprobs_backward(F(dhid, {T, C}), F(dwt, {V, C}), F(g, {T}), F(h, {T, C}), F(w, {V, C}),
                                 I(tg, {T}), F(lse, {T}), tau, chunk);
    if (b16) {
      r1::cuda::token_logprobs_backward(bp(ddh), ddw.t.f32(), dg.t.f32(), bp(dh), bp(dw), dtg.t.i32(),
                                        dl.t.f32(), T, C, V, tau, chunk, scratch);
    } else {
      r1::cuda::token_logprobs_backward(ddh.t.f32(), ddw.t.f32(), dg.t.f32(), dh.t.f32(), dw.t.f32(),
                                        dtg.t.i32(), dl.t.f32(), T, C, V, tau, chunk, scratch);
    }
    check(p + "token_logprobs_backward dhidden", host(ddh), dhid, tol);
    check(p + "token_logprobs_backward dweight", host(ddw), dwt, tol);
  }
}

// The embedding backward is deterministic (issue 20: no atomics in a backward): tokens that share
// an id are added into its row in position order, as the CPU does, so f32 gradients give the CPU's
// bits, bf16 ones the CPU's bits on the bf16 values, and a second run the same bits. Many tokens
// share a few ids (and one id is most of the batch), the rest are unique; dtable starts non-zero.
TEST(CudaOps, EmbeddingBackwardIsTheCpuBitsEveryRun) {
  REQUIRE_GPU();
  const int64_t T = 5000, C = 264, V = 700;  // C: whole 16-byte packs of f32 and bf16
  r1::Rng rng(77);
  Vi ids(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    const uint32_t r = rng.next_u32() % 100;
    ids[size_t(t)] = r < 40 ? 3 : r < 70 ? int32_t(rng.next_u32() % 8) : int32_t(8 + rng.next_u32() % (V - 8));
  }
  const Vf table0 = randn(size_t(V * C), 0.1f);
  for (const DType dt : {DType::F32, DType::BF16}) {
    Vf g = randn(size_t(T * C));
    if (dt == DType::BF16)
      for (float& x : g) x = r1::bf16_to_f32(r1::f32_to_bf16(x));  // the values the device holds
    Vf want = table0;
    ops::embedding_backward(F(want, {V, C}), F(g, {T, C}), I(ids, {T}));
    Dev dg = dev_as(dt, g, {T, C}), di = dev_i32(ids, {T});
    Vf first;
    for (int run = 0; run < 2; ++run) {
      Dev dtab = dev_f32(table0, {V, C});
      ops::embedding_backward(dtab.t, dg.t, di.t);
      const Vf got = host(dtab);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << (dt == DType::F32 ? "f32" : "bf16") << " run " << run << ": not the CPU's bits";
      if (run == 0) first = got;
      else EXPECT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0);
    }
  }
}

// The bf16 attention backward on the tensor cores has no atomics (dQ from its own kernel, key
// tiles summed in order; dK/dV partials summed per kv group in order), so the same inputs give
// the same dq, dk and dv bits every run. Many key tiles add into each query row here (sequences of
// up to 2,000 tokens, 32 tiles), which float atomics would sum in a different order from run to run.
TEST(CudaOps, FlashAttentionBackwardIsTheSameBitsEveryRun) {
  REQUIRE_GPU();
  struct Case {
    int64_t NH, NKV, HD, HDv;
  };
  for (const Case& k : {Case{14, 2, 64, 64}, Case{12, 2, 128, 128}, Case{4, 4, 192, 128}}) {
    const Vi cu = {0, 2000, 2777, 3100, 4100};
    const int64_t B = int64_t(cu.size()) - 1, T = cu.back();
    auto b16 = [](Vf v) {
      for (float& x : v) x = r1::bf16_to_f32(r1::f32_to_bf16(x));
      return v;
    };
    const Vf q = b16(randn(size_t(T * k.NH * k.HD))), kk = b16(randn(size_t(T * k.NKV * k.HD)));
    const Vf v = b16(randn(size_t(T * k.NKV * k.HDv))), dout = b16(randn(size_t(T * k.NH * k.HDv)));
    Dev dq_in = dev_b16(q, {T, k.NH, k.HD}), dk_in = dev_b16(kk, {T, k.NKV, k.HD}), dv_in = dev_b16(v, {T, k.NKV, k.HDv});
    Dev ddo = dev_b16(dout, {T, k.NH, k.HDv}), dcu = dev_i32(cu, {B + 1});
    Dev dout_fwd = dev_b16(Vf(size_t(T * k.NH * k.HDv), 0.0f), {T, k.NH, k.HDv});
    Dev dlse = dev_f32(Vf(size_t(T * k.NH), 0.0f), {T, k.NH});
    const float scale = 1.0f / std::sqrt(float(k.HD));
    ops::attention_forward(dout_fwd.t, dlse.t, dq_in.t, dk_in.t, dv_in.t, dcu.t, scale);
    std::vector<Vf> first;
    for (int run = 0; run < 3; ++run) {
      Dev gq = dev_b16(Vf(size_t(T * k.NH * k.HD), 0.0f), {T, k.NH, k.HD});
      Dev gk = dev_b16(Vf(size_t(T * k.NKV * k.HD), 0.0f), {T, k.NKV, k.HD});
      Dev gv = dev_b16(Vf(size_t(T * k.NKV * k.HDv), 0.0f), {T, k.NKV, k.HDv});
      ops::attention_backward(gq.t, gk.t, gv.t, ddo.t, dq_in.t, dk_in.t, dv_in.t, dout_fwd.t, dlse.t, dcu.t, scale);
      const std::vector<Vf> got = {host(gq), host(gk), host(gv)};
      double norm = 0.0;
      for (float x : got[0]) norm += double(x) * x;
      ASSERT_GT(norm, 0.0) << "dq is all zero";
      if (run == 0) {
        first = got;
        continue;
      }
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_EQ(std::memcmp(got[i].data(), first[i].data(), got[i].size() * sizeof(float)), 0)
            << "HD " << k.HD << ": " << "qkv"[i] << " gradient of run " << run << " differs from run 0";
    }
  }
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

#else  // !R1_HAVE_CUDA

TEST(CudaBackend, NotBuilt) { GTEST_SKIP() << "built without the CUDA backend (nvcc was not found)"; }

#endif
