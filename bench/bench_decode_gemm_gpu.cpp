// A decode step's projections alone, r1's decode GEMM (kernels/cuda/decode_gemm.cu) beside the
// cuBLASLt GEMM the linear took before it (the same call ops::linear_forward makes for more rows),
// for each dense preset's layer products at M = the sequences in flight:
//   qkv      q, k, v of one x (with Qwen2's biases): one decode launch, three cuBLASLt products, and
//            one cuBLASLt product of the packed (Q + 2 KV, C) weights (what a decode step runs:
//            blocks/attention.cpp's decode_qkv; "cublas_one_us")
//   o        o_proj with the residual summed in
//   gate_up  gate and up as one (2I, C) matrix
//   down     down_proj with the residual summed in
// Each timed launch reads weights no earlier launch left in L2 (the calls cycle through copies
// of the matrices worth at least 512 MiB, as a decode step's layers do), inside a CUDA graph (as the
// engine replays a step). bytes = weights + x + out (+ residual); GB/s and the fraction of the
// measured device-to-device copy bandwidth (the rollout roofline's denominator, bench_rollout_gpu).
// One JSON line per (shape, rows, product): microseconds per launch (median of 5 replays), with the
// plan (warps, splits) the decode GEMM chose. --sweep: then one line more per plan (warps from 4 to
// cuda::decode_gemm_max_warps(), 1-8 splits), each timed the same way (the data the planner's cost
// model is checked against).
// --tma: the decode GEMM's rows are its TMA + wgmma kernel (every product here: none has a fusion).
// --fused: for q/k/v and gate/up, one line more ("r1-decode-gemm-fused"): the product with the
// RMSNorm before it (and gate/up's SwiGLU after it) fused, against the RMSNorm, cuBLASLt and SwiGLU
// launches the decode step runs without the decode GEMM.
// --split-k 1,2,4: for each product, one line more per split S ("r1-split-k"): cuBLASLt's product
// with K in S slices into f32 partials (cuda::gemm_split_k, what ops::linear_rmsnorm_forward runs
// before its finish), the packed weights for q/k/v; S where K does not cut into 16-byte-aligned
// slices is skipped.
//   bench_decode_gemm_gpu [--shape qwen2.5-0.5b,...] [--rows 1,16,64,128,256] [--product gate_up,...] [--sweep] [--tma] [--fused] [--split-k 1,2]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/error.h"
#include "bench_gpu_util.h"
#include "flags.h"
#include "model/config.h"

#ifdef R1_HAVE_CUDA
#include "device/graph.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#endif

using namespace r1;

namespace {

struct Args {
  std::vector<std::string> shapes = bench::kDecodeShapes;
  std::vector<int64_t> rows = {1, 16, 64, 128, 256};
  std::vector<std::string> products;  // --product: these alone (all when empty)
  bool sweep = false;
  bool tma = false;  // --tma: the TMA + wgmma kernel (cuda::set_decode_gemm_tma) for the products it takes
  bool fused = false;  // --fused: also the fused products of a decode step against the launches they replace
  std::vector<int> split_k;  // --split-k: cuBLASLt's product with K in these slices, f32 partials
};

const bench::Flags kFlags("bench_decode_gemm_gpu",
                          "[--shape a,b] [--rows 1,64] [--product qkv,o,gate_up,down] [--sweep] [--tma] [--fused] "
                          "[--split-k 1,2]");

Args parse(int argc, char** argv) {
  Args a;
  kFlags.read(argc, argv, {"--sweep", "--tma", "--fused"}, [&](const std::string& k, const std::string& v) {
    if (k == "--sweep") a.sweep = true;
    else if (k == "--tma") a.tma = true;
    else if (k == "--fused") a.fused = true;
    else if (k == "--shape") a.shapes = kFlags.list(k, v);
    else if (k == "--product") {
      a.products.clear();
      for (const std::string& x : kFlags.list(k, v)) a.products.push_back(kFlags.one_of(k, x, {"qkv", "o", "gate_up", "down"}));
    }
    else if (k == "--split-k") {
      const std::vector<long> n = kFlags.wholes(k, v, 1, 16);
      a.split_k.assign(n.begin(), n.end());
    }
    else if (k == "--rows") {
      const std::vector<long> n = kFlags.wholes(k, v, 1, 4096);
      a.rows.assign(n.begin(), n.end());
    }
    else return false;
    return true;
  });
  return a;
}

#ifdef R1_HAVE_CUDA

struct Product {
  const char* name;
  std::vector<int64_t> Ns;  // one x, these outputs
  int64_t K;
  bool bias, residual;
};

std::vector<Product> products(const model::ModelConfig& c) {
  const int64_t C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size;
  return {{"qkv", {Q, KV, KV}, C, c.attention_bias, false},
          {"o", {C}, Q, false, true},
          {"gate_up", {2 * I}, C, false, false},
          {"down", {C}, I, false, true}};
}

// Microseconds per launch of `launch(copy)` over the copies, in a graph, median of 5 replays.
template <class F>
double graph_us(int copies, int launches, F&& launch) {
  for (int i = 0; i < copies; ++i) launch(i);  // eager first: plans, kernel attributes
  bench::synchronize();
  cuda::Graph g;
  g.begin_capture();
  for (int i = 0; i < launches; ++i) launch(i % copies);
  g.end_capture();
  g.replay();
  bench::synchronize();
  std::vector<double> us;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    g.replay();
    bench::synchronize();
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / launches);
  }
  return bench::median(us);
}

int run(const Args& a) {
  cuda::set_decode_gemm(true);  // the kernel is off by default; this benchmark times it beside cuBLASLt
  cuda::set_decode_gemm_tma(a.tma);
  const double bw = bench::measured_bandwidth();
  for (const std::string& shape : a.shapes) {
    const model::ModelConfig c = model::preset_config(shape);
    for (const Product& p : products(c)) {
      if (!a.products.empty() && std::find(a.products.begin(), a.products.end(), p.name) == a.products.end())
        continue;
      int64_t n_total = 0;
      for (int64_t n : p.Ns) n_total += n;
      const double w_bytes = 2.0 * double(n_total) * double(p.K);
      const int copies = int(std::clamp<double>(std::ceil(double(512 << 20) / w_bytes), 2, 64));
      const int launches = std::max(copies, 32);
      const int64_t max_rows = *std::max_element(a.rows.begin(), a.rows.end());
      Arena arena(0, Device::CUDA);
      std::vector<std::vector<Tensor>> w(static_cast<size_t>(copies)), b(static_cast<size_t>(copies));
      for (int i = 0; i < copies; ++i)
        for (size_t s = 0; s < p.Ns.size(); ++s) {
          const uint64_t seed = uint64_t(i) * 8 + s;
          w[size_t(i)].push_back(bench::random_tensor(arena, DType::BF16, {p.Ns[s], p.K}, 10 + seed, 0.02f));
          if (p.bias) b[size_t(i)].push_back(bench::random_tensor(arena, DType::BF16, {p.Ns[s]}, 500 + seed, 0.02f));
        }
      // The packed (sum of N, K) weights and biases, one per copy, when the product has several parts.
      const bool parts = p.Ns.size() > 1;
      std::vector<Tensor> wp, bp;
      for (int i = 0; parts && i < copies; ++i) {
        wp.push_back(bench::random_tensor(arena, DType::BF16, {n_total, p.K}, 900 + uint64_t(i), 0.02f));
        if (p.bias) bp.push_back(bench::random_tensor(arena, DType::BF16, {n_total}, 950 + uint64_t(i), 0.02f));
      }
      const Tensor x = bench::random_tensor(arena, DType::BF16, {max_rows, p.K}, 1, 1.0f);
      const Tensor out_packed = parts ? arena.alloc(DType::BF16, {max_rows, n_total}) : Tensor();
      std::vector<Tensor> out, res;
      for (int64_t n : p.Ns) {
        out.push_back(arena.alloc(DType::BF16, {max_rows, n}));
        res.push_back(bench::random_tensor(arena, DType::BF16, {max_rows, n}, 2, 1.0f));
      }
      // --fused: the norm's weights, the normalized x, its rstd and SwiGLU's output
      const Tensor gamma = bench::random_tensor(arena, DType::BF16, {p.K}, 3, 1.0f);
      const Tensor xn = arena.alloc(DType::BF16, {max_rows, p.K}), rstd = arena.alloc(DType::F32, {max_rows});
      const Tensor act = arena.alloc(DType::BF16, {max_rows, std::max<int64_t>(p.Ns[0] / 2, 1)});
      auto bf = [](const Tensor& t) { return t.empty() ? nullptr : static_cast<bf16*>(t.data); };
      int max_split = 0;  // --split-k: the partials of its widest split
      for (const int S : a.split_k) max_split = std::max(max_split, S);
      const Tensor partials = max_split > 0 ? arena.alloc(DType::F32, {max_split * max_rows, n_total}) : Tensor();
      for (int64_t M : a.rows) {
        auto ours = [&](int i) {
          cuda::DecodeProduct d[cuda::kMaxDecodeSegments];
          for (size_t s = 0; s < p.Ns.size(); ++s)
            d[s] = {bf(w[size_t(i)][s]), p.bias ? bf(b[size_t(i)][s]) : nullptr, p.residual ? bf(res[s]) : nullptr,
                    bf(out[s]), p.Ns[s]};
          if (!cuda::decode_linear(d, int(p.Ns.size()), bf(x), M, p.K)) throw Error("decode_linear declined");
        };
        auto theirs = [&](int i) {
          for (size_t s = 0; s < p.Ns.size(); ++s)
            cuda::gemm(false, true, M, p.Ns[s], p.K, 1.0f, bf(x), p.K, bf(w[size_t(i)][s]), p.K,
                       p.residual ? 1.0f : 0.0f, bf(out[s]), p.Ns[s], p.bias ? bf(b[size_t(i)][s]) : nullptr,
                       cuda::GemmOrder::Any, p.residual ? bf(res[s]) : nullptr);
        };
        auto packed = [&](int i) {
          cuda::gemm(false, true, M, n_total, p.K, 1.0f, bf(x), p.K, bf(wp[size_t(i)]), p.K, 0.0f, bf(out_packed),
                     n_total, p.bias ? bf(bp[size_t(i)]) : nullptr, cuda::GemmOrder::Any, nullptr);
        };
        const double us_ours = graph_us(copies, launches, ours), us_cublas = graph_us(copies, launches, theirs);
        const double us_one = parts ? graph_us(copies, launches, packed) : us_cublas;
        const double bytes = w_bytes + 2.0 * double(M) * double(p.K) + 2.0 * double(M) * double(n_total) *
                                                                          (p.residual ? 2.0 : 1.0);
        cuda::DecodeProduct d[cuda::kMaxDecodeSegments];
        for (size_t s = 0; s < p.Ns.size(); ++s) d[s] = {bf(w[0][s]), nullptr, nullptr, bf(out[s]), p.Ns[s]};
        const cuda::DecodeGemmPlan plan = cuda::decode_gemm_plan(d, int(p.Ns.size()), M, p.K);
        const nlohmann::json j = {{"bench", "r1-decode-gemm"},
                                  {"shape", shape},
                                  {"product", p.name},
                                  {"rows", M},
                                  {"n", n_total},
                                  {"k", p.K},
                                  {"splits", plan.splits},
                                  {"warps", plan.warps},
                                  {"column_tiles", plan.column_tiles},
                                  {"r1_us", us_ours},
                                  {"cublas_us", us_cublas},
                                  {"speedup", us_cublas / us_ours},
                                  {"r1_gbs", bytes / us_ours * 1e-3},
                                  {"cublas_gbs", bytes / us_cublas * 1e-3},
                                  {"r1_frac", bytes / us_ours * 1e6 / bw},
                                  {"cublas_frac", bytes / us_cublas * 1e6 / bw},
                                  {"cublas_one_us", us_one},
                                  {"cublas_one_frac", bytes / us_one * 1e6 / bw},
                                  {"bandwidth_gbs", bw / 1e9},
                                  {"gpu", bench::gpu_name()}};
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
        if (a.fused && (p.name == std::string("qkv") || p.name == std::string("gate_up"))) {
          // The decode step's fused products against what they replace (the engine's path with the
          // decode GEMM off): RMSNorm then q/k/v (one packed product), and RMSNorm then [gate; up]
          // then SwiGLU. The same copies of the weights as above.
          const bool glu = p.name == std::string("gate_up");
          const int64_t I = p.Ns[0] / 2;
          const cuda::DecodeFusion f{bf(gamma), 1e-6f, glu};
          // Copy i's fused products into d; their count.
          auto fused_products = [&](int i, cuda::DecodeProduct (&d)[cuda::kMaxDecodeSegments]) {
            if (glu) d[0] = {bf(w[size_t(i)][0]), nullptr, nullptr, bf(act), I};
            for (size_t s = 0; !glu && s < p.Ns.size(); ++s)
              d[s] = {bf(w[size_t(i)][s]), p.bias ? bf(b[size_t(i)][s]) : nullptr, nullptr, bf(out[s]), p.Ns[s]};
            return glu ? 1 : int(p.Ns.size());
          };
          auto ours_fused = [&](int i) {
            cuda::DecodeProduct d[cuda::kMaxDecodeSegments];
            if (!cuda::decode_linear(d, fused_products(i, d), bf(x), M, p.K, f))
              throw Error("decode_linear declined the fusion");
          };
          auto theirs_fused = [&](int i) {
            cuda::rmsnorm_forward(bf(xn), static_cast<float*>(rstd.data), bf(x), bf(gamma), M, p.K, 1e-6f);
            if (glu) {
              cuda::gemm(false, true, M, p.Ns[0], p.K, 1.0f, bf(xn), p.K, bf(w[size_t(i)][0]), p.K, 0.0f, bf(out[0]),
                         p.Ns[0], nullptr, cuda::GemmOrder::Any, nullptr);
              cuda::swiglu_forward(bf(act), bf(out[0]), bf(out[0]) + I, M, I, 2 * I);
            } else {
              cuda::gemm(false, true, M, n_total, p.K, 1.0f, bf(xn), p.K, bf(wp[size_t(i)]), p.K, 0.0f,
                         bf(out_packed), n_total, p.bias ? bf(bp[size_t(i)]) : nullptr, cuda::GemmOrder::Any, nullptr);
            }
          };
          const double us_fused = graph_us(copies, launches, ours_fused);
          const double us_unfused = graph_us(copies, launches, theirs_fused);
          cuda::DecodeProduct d[cuda::kMaxDecodeSegments];
          const cuda::DecodeGemmPlan fp = cuda::decode_gemm_plan(d, fused_products(0, d), M, p.K, f);
          const nlohmann::json fj = {{"bench", "r1-decode-gemm-fused"}, {"shape", shape}, {"product", p.name},
                                     {"rows", M}, {"fusion", glu ? "norm+swiglu" : "norm"}, {"warps", fp.warps},
                                     {"splits", fp.splits}, {"r1_us", us_fused}, {"r1_plain_us", us_ours},
                                     {"cublas_us", us_unfused}, {"speedup", us_unfused / us_fused},
                                     {"gpu", bench::gpu_name()}};
          std::printf("%s\n", fj.dump().c_str());
          std::fflush(stdout);
        }
        for (const int S : a.split_k) {
          if (p.K % (8 * S) != 0) continue;
          const double us = graph_us(copies, launches, [&](int i) {
            const bf16* wi = parts ? bf(wp[size_t(i)]) : bf(w[size_t(i)][0]);
            if (!cuda::gemm_split_k(M, n_total, p.K, S, bf(x), p.K, wi, p.K, static_cast<float*>(partials.data)))
              throw Error("gemm_split_k declined");
          });
          const nlohmann::json kj = {{"bench", "r1-split-k"}, {"shape", shape}, {"product", p.name}, {"rows", M},
                                     {"splits", S}, {"us", us}, {"frac", w_bytes / us * 1e6 / bw},
                                     {"cublas_one_us", us_one}};
          std::printf("%s\n", kj.dump().c_str());
        }
        for (int warps = 4; a.sweep && warps <= cuda::decode_gemm_max_warps(); ++warps)
          for (int splits = 1; splits <= 8; ++splits) {
            const cuda::DecodeGemmPlan forced{warps, splits, 0};
            const double us = graph_us(copies, launches, [&](int i) {
              cuda::DecodeProduct e[cuda::kMaxDecodeSegments];
              for (size_t s = 0; s < p.Ns.size(); ++s)
                e[s] = {bf(w[size_t(i)][s]), p.bias ? bf(b[size_t(i)][s]) : nullptr,
                        p.residual ? bf(res[s]) : nullptr, bf(out[s]), p.Ns[s]};
              if (!cuda::decode_linear_planned(e, int(p.Ns.size()), bf(x), M, p.K, forced))
                throw Error("decode_linear_planned declined");
            });
            const nlohmann::json sj = {{"bench", "r1-decode-gemm-plan"}, {"shape", shape}, {"product", p.name},
                                       {"rows", M}, {"warps", warps}, {"splits", splits},
                                       {"chosen", warps == plan.warps && splits == plan.splits},
                                       {"us", us}, {"frac", bytes / us * 1e6 / bw}, {"cublas_us", us_cublas}};
            std::printf("%s\n", sj.dump().c_str());
          }
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

#else
int run(const Args&) {
  std::fprintf(stderr, "bench_decode_gemm_gpu: built without CUDA\n");
  return 1;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  return bench::run_reporting_errors("bench_decode_gemm_gpu", {{"bench", "r1-decode-gemm"}}, [&] { return run(a); });
}
