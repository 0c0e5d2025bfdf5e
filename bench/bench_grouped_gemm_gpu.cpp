// The experts' grouped GEMMs alone (ops::grouped_linear_*, kernels/cuda/grouped_gemm.cu), each
// product timed apart, beside one dense cuBLASLt GEMM of the same size (ops::linear_forward of all R
// rows through one matrix: what the tensor cores give a single large product of those FLOPs):
//   forward  out (R, OUT) = inp (R, IN) @ W_e^T on each expert's rows
//   dinp     dinp (R, IN) += dout (R, OUT) @ W_e
//   dweight  dW_e (OUT, IN, f32) += dout_e^T @ inp_e
//   backward dinp and dweight in one call (what the MoE backward runs)
//   forward_backward  both calls (the peer's autograd step: 3x the forward's FLOPs)
//   dense    out (R, OUT) = inp @ W^T, one matrix
// for the gate/up shape (IN = C, OUT = I) and the down shape (IN = I, OUT = C) of a preset's experts,
// R = tokens x K rows routed to K distinct uniformly random experts per token. One JSON line per
// (matrix, product): milliseconds (median of --iters timed calls after 3 warm-up calls) and TFLOP/s
// (2 R IN OUT per product). The PyTorch peer: bench/peer/grouped_mm.py (torch._grouped_mm).
//   bench_grouped_gemm_gpu [--shape moonlight-16b-a3b|qwen3-30b-a3b] [--tokens 8192] [--iters 20]
#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_gpu_util.h"
#include "flags.h"
#include "kernels/ops.h"
#include "model/config.h"

using namespace r1;

namespace {

struct Args {
  std::string shape = "moonlight-16b-a3b";
  int tokens = 8192, iters = 20;
};

const bench::Flags kFlags("bench_grouped_gemm_gpu", "[--shape moonlight-16b-a3b|qwen3-30b-a3b] [--tokens N] [--iters N]");

Args parse(int argc, char** argv) {
  Args a;
  kFlags.read(argc, argv, {}, [&](const std::string& k, const std::string& v) {
    if (k == "--shape") a.shape = kFlags.one_of(k, v, {"moonlight-16b-a3b", "qwen3-30b-a3b"});
    else if (k == "--tokens") a.tokens = int(kFlags.whole(k, v, 1, 1 << 20));
    else if (k == "--iters") a.iters = int(kFlags.whole(k, v, 1, 1 << 20));
    else return false;
    return true;
  });
  return a;
}

// Offsets (E + 1) of tokens x K assignments, each token to K distinct uniformly random experts.
std::vector<int32_t> random_offsets(int64_t tokens, int64_t E, int64_t K, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> count(size_t(E), 0), off(size_t(E + 1), 0);
  std::vector<int64_t> pick;
  for (int64_t t = 0; t < tokens; ++t) {
    pick.clear();
    while (int64_t(pick.size()) < K) {
      const int64_t e = int64_t(rng.next_u32() % uint32_t(E));
      if (std::find(pick.begin(), pick.end(), e) == pick.end()) pick.push_back(e);
    }
    for (int64_t e : pick) ++count[size_t(e)];
  }
  for (int64_t e = 0; e < E; ++e) off[size_t(e + 1)] = off[size_t(e)] + count[size_t(e)];
  return off;
}

// Median milliseconds of `iters` calls of f, each synchronised (3 untimed calls first).
template <class F>
double median_ms(int iters, F&& f) {
  for (int i = 0; i < 3; ++i) f();
  bench::synchronize();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    bench::synchronize();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return bench::median(ms);
}

int run(const Args& a) {
  const model::ModelConfig c = model::preset_config(a.shape);
  const int64_t E = c.moe.num_experts, K = c.moe.num_experts_per_tok, C = c.hidden_size;
  const int64_t I = c.moe.moe_intermediate_size, R = int64_t(a.tokens) * K;
  const std::vector<int32_t> off = random_offsets(a.tokens, E, K, 7);
  Arena arena(0, Device::CUDA);
  struct Matrix {
    const char* name;
    int64_t in, out;
  };
  for (const Matrix m : {Matrix{"gate_up", C, I}, Matrix{"down", I, C}}) {
    arena.reset();
    const Tensor offsets = arena.alloc(DType::I32, {E + 1});
    copy_from_host(offsets, off.data());
    const Tensor inp = bench::random_tensor(arena, DType::BF16, {R, m.in}, 1, 1.0f);
    const Tensor dout = bench::random_tensor(arena, DType::BF16, {R, m.out}, 2, 1.0f);
    const Tensor w_all = bench::random_tensor(arena, DType::BF16, {E * m.out, m.in}, 3, 0.02f);
    const Tensor out = arena.alloc(DType::BF16, {R, m.out}), dinp = arena.zeros(DType::BF16, {R, m.in});
    const Tensor dw_all = arena.zeros(DType::F32, {E * m.out, m.in});
    const ops::Stacked w{w_all.rows(0, m.out), E, m.out * m.in}, dw{dw_all.rows(0, m.out), E, m.out * m.in};
    const Tensor dense_w = w_all.rows(0, m.out);
    const double flops = 2.0 * double(R) * double(m.in) * double(m.out);
    auto report = [&](const char* product, double ms, double times) {
      const nlohmann::json j = {{"bench", "r1-grouped"},  {"shape", a.shape},   {"matrix", m.name},
                                {"product", product},     {"rows", R},          {"in", m.in},
                                {"out", m.out},           {"experts", E},       {"ms", ms},
                                {"tflops", times * flops / ms * 1e-9},          {"gpu", bench::gpu_name()}};
      std::printf("%s\n", j.dump().c_str());
      std::fflush(stdout);
    };
    report("forward", median_ms(a.iters, [&] { ops::grouped_linear_forward(out, inp, w, offsets); }), 1);
    report("dinp", median_ms(a.iters, [&] { ops::grouped_linear_backward(dinp, ops::Stacked(), dout, inp, w, offsets); }), 1);
    report("dweight", median_ms(a.iters, [&] { ops::grouped_linear_backward(Tensor(), dw, dout, inp, w, offsets); }), 1);
    report("backward", median_ms(a.iters, [&] { ops::grouped_linear_backward(dinp, dw, dout, inp, w, offsets); }), 2);
    report("forward_backward", median_ms(a.iters, [&] {
             ops::grouped_linear_forward(out, inp, w, offsets);
             ops::grouped_linear_backward(dinp, dw, dout, inp, w, offsets);
           }), 3);
    report("dense", median_ms(a.iters, [&] { ops::linear_forward(out, inp, dense_w, Tensor()); }), 1);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  return bench::run_reporting_errors("bench_grouped_gemm_gpu", nlohmann::json{{"bench", "r1-grouped"}, {"shape", a.shape}},
                                     [&] { return run(a); });
}
