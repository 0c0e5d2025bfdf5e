// The decode GEMM (kernels/cuda/decode_gemm.cu): the bf16 linear of a decode step's few rows, up to
// three products of one x per launch, split-K reduced over a cluster's shared memory. Checked
// against a double-precision product of the same bf16 values, for every shape class it handles
// (partial row, column and K tiles, one row, several segments with biases, in-place residual), for
// the same bits every run and through a graph, and for being what ops::linear_forward runs at
// decode's rows. The op table's linear rows (test_op_table.cpp) run it too. Tests skip without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "base/bf16.h"
#include "base/error.h"
#include "base/rng.h"
#include "compare_util.h"
#include "kernels/ops.h"
#include "require_gpu.h"
#include "tensor/device_memory.h"
#include "tensor/tensor.h"

#ifdef R1_HAVE_CUDA
#include <cuda_runtime.h>

#include <string>

#include "device/graph.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"

namespace {

using namespace r1;
using Vf = std::vector<float>;

// bf16-representable values (what the device holds), uniform in [-scale, scale).
Vf draw(size_t n, uint64_t seed, float scale) {
  Rng rng(seed);
  Vf v(n);
  for (float& x : v) x = bf16_to_f32(f32_to_bf16(scale * (2 * rng.uniform() - 1)));
  return v;
}

Tensor device(Arena& a, const Vf& v, std::initializer_list<int64_t> dims) {
  Tensor t = a.alloc(DType::BF16, dims);
  copy_from_host_f32(t, v.data());
  return t;
}

bf16* ptr(const Tensor& t) { return t.empty() ? nullptr : static_cast<bf16*>(t.data); }

std::vector<uint16_t> bits(const Tensor& t) {
  std::vector<uint16_t> b(size_t(t.numel()));
  devmem::copy(b.data(), Device::CPU, t.data, t.device, b.size() * 2);
  return b;
}

struct Case {
  int64_t M, K;
  std::vector<int64_t> Ns;
  bool bias, residual, in_place;
};

// One case's operands on the device and its reference (double sums of the same bf16 values).
struct Problem {
  Arena arena{0, Device::CUDA};
  Tensor x;
  std::vector<Tensor> w, b, res, out;
  std::vector<Vf> want;

  explicit Problem(const Case& c) {
    const Vf xs = draw(size_t(c.M * c.K), 1, 1.0f);
    x = device(arena, xs, {c.M, c.K});
    for (size_t s = 0; s < c.Ns.size(); ++s) {
      const int64_t N = c.Ns[s];
      const Vf ws = draw(size_t(N * c.K), 10 + s, 0.05f), bs = draw(size_t(N), 20 + s, 0.5f);
      const Vf rs = draw(size_t(c.M * N), 30 + s, 2.0f);
      w.push_back(device(arena, ws, {N, c.K}));
      b.push_back(c.bias ? device(arena, bs, {N}) : Tensor());
      res.push_back(c.residual ? device(arena, rs, {c.M, N}) : Tensor());
      out.push_back(c.in_place ? res.back() : device(arena, Vf(size_t(c.M * N), 0.0f), {c.M, N}));
      Vf ref(size_t(c.M * N));
      for (int64_t m = 0; m < c.M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double acc = 0;
          for (int64_t k = 0; k < c.K; ++k) acc += double(xs[size_t(m * c.K + k)]) * ws[size_t(n * c.K + k)];
          if (c.bias) acc += bs[size_t(n)];
          if (c.residual) acc += rs[size_t(m * N + n)];
          ref[size_t(m * N + n)] = float(acc);
        }
      want.push_back(ref);
    }
  }

  std::vector<cuda::DecodeProduct> products(const Case& c) const {
    std::vector<cuda::DecodeProduct> d;
    for (size_t s = 0; s < c.Ns.size(); ++s) d.push_back({ptr(w[s]), ptr(b[s]), ptr(res[s]), ptr(out[s]), c.Ns[s]});
    return d;
  }
  bool run(const Case& c) {
    const std::vector<cuda::DecodeProduct> d = products(c);
    return cuda::decode_linear(d.data(), int(d.size()), ptr(x), c.M, c.K);
  }
  cuda::DecodeGemmPlan plan(const Case& c) const {
    const std::vector<cuda::DecodeProduct> d = products(c);
    return cuda::decode_gemm_plan(d.data(), int(d.size()), c.M, c.K);
  }
};

// The kernel on for a test (cuda::set_decode_gemm, the benchmarks' A/B switch), as it was after.
struct DecodeGemmOn {
  DecodeGemmOn() { r1::cuda::set_decode_gemm(true); }
  ~DecodeGemmOn() { r1::cuda::set_decode_gemm(r1::cuda::decode_gemm_default()); }
};

// The TMA kernel on or off for a test (cuda::set_decode_gemm_tma), off after.
struct DecodeGemmTma {
  explicit DecodeGemmTma(bool on) { r1::cuda::set_decode_gemm_tma(on); }
  ~DecodeGemmTma() { r1::cuda::set_decode_gemm_tma(false); }
};

const std::vector<Case>& cases() {
  static const std::vector<Case> k = {
      {64, 896, {896}, false, true, false},                 // 0.5B o_proj at 64 sequences: split K
      {1, 4864, {896}, false, true, true},                  // one sequence's MLP down, in place
      {37, 136, {130}, true, true, false},                  // partial row, column and K tiles
      {200, 1536, {1536, 256, 256}, true, false, false},    // 1.5B q, k, v with biases, 200 rows
      {256, 896, {9728}, false, false, false},              // 0.5B gate/up at 256 rows: no split
  };
  return k;
}

// Every case on the planner's choice, against its reference (tag: which kernel, in the log). Returns
// whether the plans took the split-K reduction and the single pass.
std::pair<bool, bool> expect_planned_cases_match(const char* tag) {
  bool split = false, unsplit = false;
  for (const Case& c : cases()) {
    Problem p(c);
    EXPECT_TRUE(p.run(c)) << "M " << c.M << " K " << c.K;
    const int splits = p.plan(c).splits;
    (splits > 1 ? split : unsplit) = true;
    for (size_t s = 0; s < c.Ns.size(); ++s) {
      const double err = test::rel_l2(to_host_f32(p.out[s]), p.want[s]);
      std::printf("[ %s ] M %lld K %lld N %lld (segment %zu of %zu, splits %d): rel err %.2e\n", tag,
                  static_cast<long long>(c.M), static_cast<long long>(c.K), static_cast<long long>(c.Ns[s]), s,
                  c.Ns.size(), splits, err);
      EXPECT_LE(err, 4e-3) << tag << " M " << c.M << " K " << c.K << " N " << c.Ns[s];  // bf16 output rounding
    }
  }
  return {split, unsplit};
}

// Every kernel (4 to 8 warps; the TMA kernel's widths of 4 to 16 16-column groups) and every split
// (clusters of 1 to 8 blocks, more splits than K has chunks among them), with bias and residual,
// whatever the planner would choose.
void expect_every_plan_matches(const char* tag) {
  for (const Case& c : {Case{64, 896, {896}, false, true, false},     // 0.5B o_proj: 14 chunks of K
                        Case{37, 136, {130, 24}, true, true, true}})  // partial tiles, two segments, 3 chunks, in place
    for (int warps = 4; warps <= cuda::decode_gemm_max_warps(); ++warps)
      for (int splits = 1; splits <= 8; ++splits) {
        Problem p(c);
        const std::vector<cuda::DecodeProduct> d = p.products(c);
        ASSERT_TRUE(cuda::decode_linear_planned(d.data(), int(d.size()), ptr(p.x), c.M, c.K, {warps, splits, 0}));
        for (size_t s = 0; s < c.Ns.size(); ++s)
          EXPECT_LE(test::rel_l2(to_host_f32(p.out[s]), p.want[s]), 4e-3)
              << tag << " M " << c.M << " N " << c.Ns[s] << " warps " << warps << " splits " << splits;
      }
}

}  // namespace

TEST(CudaDecodeGemm, MatchesTheDoubleProductOfTheSameValues) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  const auto [split, unsplit] = expect_planned_cases_match("DECODE");
  EXPECT_TRUE(split && unsplit) << "the cases must run the split-K reduction and the single pass";
}

// expect_every_plan_matches on the mma.sync kernel, and plans out of range refused.
TEST(CudaDecodeGemm, EveryPlanMatchesTheDoubleProduct) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  expect_every_plan_matches("mma.sync");
  const Case c = cases()[0];
  Problem p(c);
  const std::vector<cuda::DecodeProduct> d = p.products(c);
  EXPECT_EQ(cuda::decode_gemm_max_warps(), 8);
  EXPECT_THROW(cuda::decode_linear_planned(d.data(), 1, ptr(p.x), c.M, c.K, {3, 1, 0}), Error);
  EXPECT_THROW(cuda::decode_linear_planned(d.data(), 1, ptr(p.x), c.M, c.K, {9, 1, 0}), Error);
  EXPECT_THROW(cuda::decode_linear_planned(d.data(), 1, ptr(p.x), c.M, c.K, {4, 9, 0}), Error);
}

// The TMA + wgmma kernel (cuda::set_decode_gemm_tma) against the same references: every case,
// planned, and every (width, splits) of two, up to 256 columns (its bits:
// IsTheSameBitsEveryRunAndInAGraph).
TEST(CudaDecodeGemm, TmaKernelMatchesTheDoubleProduct) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  const DecodeGemmTma tma(true);
  EXPECT_EQ(cuda::decode_gemm_max_warps(), 16);
  expect_planned_cases_match("TMA   ");
  expect_every_plan_matches("tma");
  const Case c = cases()[0];
  Problem p(c);
  const std::vector<cuda::DecodeProduct> d = p.products(c);
  EXPECT_THROW(cuda::decode_linear_planned(d.data(), 1, ptr(p.x), c.M, c.K, {17, 1, 0}), Error);
}

// The switch picks the kernel (the other tests would pass on either): a planned launch captured
// into a graph is decode_gemm_tma_kernel with it on and decode_gemm_kernel with it off.
TEST(CudaDecodeGemm, TmaSwitchPicksTheKernel) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  const Case c = cases()[0];
  Problem p(c);
  const std::vector<cuda::DecodeProduct> d = p.products(c);
  auto kernels_launched = [&](bool tma) {
    const DecodeGemmTma use(tma);
    EXPECT_TRUE(p.run(c));  // an eager run first, as before every capture (the kernels' set-up)
    cudaStream_t stream = cuda::context().stream;
    EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
    const bool took = cuda::decode_linear_planned(d.data(), int(d.size()), ptr(p.x), c.M, c.K, {4, 1, 0});
    cudaGraph_t g = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(stream, &g), cudaSuccess);
    EXPECT_TRUE(took);
    std::string names;
    size_t n = 0;
    EXPECT_EQ(cudaGraphGetNodes(g, nullptr, &n), cudaSuccess);
    std::vector<cudaGraphNode_t> nodes(n);
    EXPECT_EQ(cudaGraphGetNodes(g, nodes.data(), &n), cudaSuccess);
    for (cudaGraphNode_t node : nodes) {
      cudaGraphNodeType type{};
      cudaKernelNodeParams kp{};
      const char* name = nullptr;
      if (cudaGraphNodeGetType(node, &type) == cudaSuccess && type == cudaGraphNodeTypeKernel &&
          cudaGraphKernelNodeGetParams(node, &kp) == cudaSuccess && cudaFuncGetName(&name, kp.func) == cudaSuccess)
        names += std::string(name) + " ";
    }
    cudaGraphDestroy(g);
    return names;
  };
  const std::string with = kernels_launched(true), without = kernels_launched(false);
  EXPECT_NE(with.find("decode_gemm_tma_kernel"), std::string::npos) << with;
  EXPECT_NE(without.find("decode_gemm_kernel"), std::string::npos) << without;
  EXPECT_EQ(without.find("decode_gemm_tma_kernel"), std::string::npos) << without;
}

// The fusions against a double-precision reference of the ops they replace: RMSNorm then the
// product (with bias and residual), and RMSNorm then [gate; up] then SwiGLU, at every plan they
// take (SwiGLU on the mma.sync kernel: even warp counts), split and not, full and partial tiles, K
// in an odd and an even number of stages (the TMA kernel's norm alternates two register sets).
// Both kernels: the mma.sync one, then the TMA one (cuda::set_decode_gemm_tma).
TEST(CudaDecodeGemm, FusedNormAndSwigluMatchTheOpsTheyReplace) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  Arena arena(0, Device::CUDA);
  const float eps = 1e-6f;
  struct Shape {
    int64_t M, K, N;
  };
  for (const bool tma : {false, true})
  for (const Shape sh : {Shape{64, 896, 200}, Shape{37, 136, 72}}) {
    const DecodeGemmTma use(tma);
    const int64_t M = sh.M, K = sh.K, N = sh.N;
    const Vf xs = draw(size_t(M * K), 3, 4.0f), gs = draw(size_t(K), 4, 1.5f);
    const Vf ws = draw(size_t(2 * N * K), 5, 0.05f), bs = draw(size_t(N), 6, 0.5f), rs = draw(size_t(M * N), 7, 2.0f);
    const Tensor x = device(arena, xs, {M, K}), gamma = device(arena, gs, {K}), w = device(arena, ws, {2 * N, K});
    const Tensor b = device(arena, bs, {N}), res = device(arena, rs, {M, N});
    // The reference: y = x / rms(x) * gamma, then y @ w^T.
    std::vector<double> y(size_t(M * K));
    for (int64_t m = 0; m < M; ++m) {
      double ss = 0;
      for (int64_t k = 0; k < K; ++k) ss += double(xs[size_t(m * K + k)]) * xs[size_t(m * K + k)];
      const double r = 1.0 / std::sqrt(ss / double(K) + eps);
      for (int64_t k = 0; k < K; ++k) y[size_t(m * K + k)] = xs[size_t(m * K + k)] * r * gs[size_t(k)];
    }
    auto dot = [&](int64_t m, int64_t n) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += y[size_t(m * K + k)] * ws[size_t(n * K + k)];
      return acc;
    };
    Vf want_lin(size_t(M * N)), want_glu(size_t(M * N));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        want_lin[size_t(m * N + n)] = float(dot(m, n) + bs[size_t(n)] + rs[size_t(m * N + n)]);
        const double gate = dot(m, n), up = dot(m, N + n);
        want_glu[size_t(m * N + n)] = float(gate / (1.0 + std::exp(-gate)) * up);
      }
    const cuda::DecodeFusion norm{static_cast<const bf16*>(gamma.data), eps, false};
    const cuda::DecodeFusion norm_glu{static_cast<const bf16*>(gamma.data), eps, true};
    for (int warps = 4; warps <= cuda::decode_gemm_max_warps(); ++warps)
      for (int splits : {1, 3, 8}) {
        Tensor out = arena.alloc(DType::BF16, {M, N});
        const cuda::DecodeProduct lin{ptr(w), ptr(b), ptr(res), ptr(out), N};
        ASSERT_TRUE(cuda::decode_linear_planned(&lin, 1, ptr(x), M, K, {warps, splits, 0}, norm));
        EXPECT_LE(test::rel_l2(to_host_f32(out), want_lin), 4e-3)
            << "norm + linear, M " << M << " warps " << warps << " splits " << splits << " tma " << tma;
        if (warps % 2 && !tma) continue;
        Tensor act = arena.alloc(DType::BF16, {M, N});
        const cuda::DecodeProduct glu{ptr(w), nullptr, nullptr, ptr(act), N};
        ASSERT_TRUE(cuda::decode_linear_planned(&glu, 1, ptr(x), M, K, {warps, splits, 0}, norm_glu));
        EXPECT_LE(test::rel_l2(to_host_f32(act), want_glu), 8e-3)
            << "norm + gate/up + SwiGLU, M " << M << " warps " << warps << " splits " << splits << " tma " << tma;
      }
    // The planner's own choice, and SwiGLU refused where it cannot be: odd warps on the mma.sync
    // kernel, a bias.
    Tensor act = arena.alloc(DType::BF16, {M, N});
    cuda::DecodeProduct glu{ptr(w), nullptr, nullptr, ptr(act), N};
    ASSERT_TRUE(cuda::decode_linear(&glu, 1, ptr(x), M, K, norm_glu));
    EXPECT_LE(test::rel_l2(to_host_f32(act), want_glu), 8e-3) << "planned, M " << M << " tma " << tma;
    if (!tma) {
      EXPECT_EQ(cuda::decode_gemm_plan(&glu, 1, M, K, norm_glu).warps % 2, 0);
      EXPECT_THROW(cuda::decode_linear_planned(&glu, 1, ptr(x), M, K, {5, 1, 0}, norm_glu), Error);
    }
    glu.bias = ptr(b);
    EXPECT_FALSE(cuda::decode_linear(&glu, 1, ptr(x), M, K, norm_glu)) << "SwiGLU with a bias";
  }
}

// The split-K partials are summed in split order, whichever block of the cluster finishes first,
// so the bits do not depend on timing, eager or replayed; on both kernels.
TEST(CudaDecodeGemm, IsTheSameBitsEveryRunAndInAGraph) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  for (const bool tma : {false, true}) {  // both kernels
    const DecodeGemmTma use(tma);
    const Case c = cases()[0];
    Problem p(c);
    ASSERT_GT(p.plan(c).splits, 1) << "tma " << tma;
    ASSERT_TRUE(p.run(c));
    const std::vector<uint16_t> first = bits(p.out[0]);
    for (int run = 0; run < 20; ++run) {
      ASSERT_TRUE(p.run(c));
      ASSERT_EQ(bits(p.out[0]), first) << "eager run " << run << " tma " << tma;
    }
    cuda::Graph g;
    g.begin_capture();
    for (int i = 0; i < 3; ++i) p.run(c);
    g.end_capture();
    for (int replay = 0; replay < 3; ++replay) {
      copy_from_host_f32(p.out[0], Vf(size_t(p.out[0].numel()), 0.0f).data());
      g.replay();
      EXPECT_EQ(bits(p.out[0]), first) << "replay " << replay << " tma " << tma;
    }
  }
}

// set_decode_gemm_products: the decode GEMM takes only the products whose fusion is in the mask
// (the others decline, to cuBLASLt and their own norm and SwiGLU launches).
TEST(CudaDecodeGemm, ProductsMaskTakesOnlyItsFusions) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  struct AllAfter {
    ~AllAfter() { cuda::set_decode_gemm_products(cuda::kDecodeGemmAll); }
  } all_after;
  const Case c = cases()[0];
  Problem p(c);
  const cuda::DecodeProduct d{ptr(p.w[0]), nullptr, nullptr, ptr(p.out[0]), c.Ns[0] / 2};
  const cuda::DecodeFusion norm{ptr(p.x), 1e-6f, false}, glu{ptr(p.x), 1e-6f, true};  // x's row 0 as the norm's weights
  auto takes = [&](unsigned mask) {
    cuda::set_decode_gemm_products(mask);
    return std::vector<bool>{cuda::decode_linear_takes(&d, 1, ptr(p.x), c.M, c.K),
                             cuda::decode_linear_takes(&d, 1, ptr(p.x), c.M, c.K, norm),
                             cuda::decode_linear_takes(&d, 1, ptr(p.x), c.M, c.K, glu)};
  };
  EXPECT_EQ(takes(cuda::kDecodeGemmAll), (std::vector<bool>{true, true, true}));
  EXPECT_EQ(takes(cuda::kDecodeGemmPlain), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(takes(cuda::kDecodeGemmNorm), (std::vector<bool>{false, true, false}));
  EXPECT_EQ(takes(cuda::kDecodeGemmNormSwiglu), (std::vector<bool>{false, false, true}));
  cuda::set_decode_gemm_products(cuda::kDecodeGemmNormSwiglu);
  EXPECT_FALSE(p.run(c)) << "a plain product ran with only the SwiGLU fusion taken";
}

// ops::linear_forward runs it for a decode step's rows (the same bits), and declines to where it
// does not apply: K not a multiple of 8, more rows than kDecodeGemmMaxRows, an unaligned x, or
// cuda::set_decode_gemm(false).
TEST(CudaDecodeGemm, IsWhatTheLinearRunsAtDecodeRows) {
  REQUIRE_GPU();
  const DecodeGemmOn on;
  const Case c = cases()[0];
  Problem p(c);
  ASSERT_TRUE(p.run(c));
  const std::vector<uint16_t> direct = bits(p.out[0]);
  Tensor via = p.arena.alloc(DType::BF16, {c.M, c.Ns[0]});
  ops::linear_forward(via, p.x, p.w[0], {}, p.res[0]);
  EXPECT_EQ(bits(via), direct);

  cuda::DecodeProduct d{ptr(p.w[0]), nullptr, nullptr, ptr(via), c.Ns[0]};
  EXPECT_FALSE(cuda::decode_linear(&d, 1, ptr(p.x), c.M, c.K - 4)) << "K % 8 != 0";
  EXPECT_FALSE(cuda::decode_linear(&d, 1, ptr(p.x), cuda::kDecodeGemmMaxRows + 1, c.K)) << "too many rows";
  EXPECT_FALSE(cuda::decode_linear(&d, 1, ptr(p.x) + 1, 2, c.K - 8)) << "unaligned x";
  cuda::set_decode_gemm(false);  // the switch: off, the linear keeps cuBLASLt
  EXPECT_FALSE(cuda::decode_linear(&d, 1, ptr(p.x), c.M, c.K)) << "the kernel ran while switched off";
}

#endif  // R1_HAVE_CUDA
