// GPU training step throughput, the twin of bench/peer/torch_train_step.py: a random Qwen2.5 model
// (bf16 compute weights, fp32 master weights, gradients and AdamW moments), N random sequences
// packed into one batch, forward -> mean next-token cross-entropy -> backward -> clip (1.0) -> AdamW.
//
//   build/bench/bench_train_gpu --shape 0.5b|1.5b [--seqs 8] [--len 1024] [--warmup 3] [--steps 10]
//                               [--profile] [--reference] [--device cuda|cpu]
// Prints one JSON line: median step time (host clock around each step, synchronised), tok/s, MFU,
// device memory. --profile: one more step under the per-op profiler, as a table after the JSON.
// --reference: also holds a frozen bf16 reference model and runs its forward each step (a GRPO
// step's memory: policy + reference + optimizer). `--shape 10m --device cpu` is a smoke test of the
// step itself on machines without a GPU.
//
// FLOPs per step (the same formula in torch_train_step.py):
//   flops = 6 * T * N_mm + 12 * n_layers * n_heads * head_dim * sum_b(L_b^2 / 2)
// T tokens; N_mm the weights that enter a matmul (per layer q, k, v, o, gate, up, down; plus the
// lm_head V x C, counted although tied); no embedding lookup, norms or biases. The attention term:
// QK^T and PV (2 matmuls, 2 FLOP per multiply-add, head_dim deep) over the causal half of each
// L_b x L_b score matrix, x3 for forward + backward. MFU = flops / step time / 989 TFLOP/s (H100
// SXM dense bf16 spec); mfu_790 against the ~790 TFLOP/s bf16 GEMM rate measured on the H100.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "base/timer.h"
#include "model/config.h"
#include "model/params.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "tensor/device_memory.h"
#include "optim/optimizer.h"
#include "bench_gpu_util.h"
#include "flags.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_context.h"
#include "device/cuda_device.h"
#include "kernels/cuda/profiler.h"
#endif

using namespace r1;

namespace {

constexpr double kPeakSpec = 989e12, kPeakMeasured = 790e12;

bool moe_shape(const std::string& s) { return s == "moonlight-16b-a3b" || s == "qwen3-30b-a3b"; }

struct Args {
  std::string shape = "0.5b";
  Device device = Device::CUDA;
  int seqs = 8, len = 1024, warmup = 3, steps = 10;
  int layers = 0;  // > 0: the shape cut to its first `layers` layers (a 16B MoE's full step does not fit)
  bool profile = false, reference = false;
};

const bench::Flags kFlags("bench_train_gpu",
                          "[--shape 0.5b|1.5b|moonlight-16b-a3b|qwen3-30b-a3b|10m] [--layers N] [--seqs N] [--len L] "
                          "[--warmup N] [--steps N] [--profile] [--reference] [--device cuda|cpu]");

Args parse(int argc, char** argv) {
  Args a;
  kFlags.read(argc, argv, {"--profile", "--reference"}, [&](const std::string& k, const std::string& v) {
    auto number = [&] { return int(kFlags.whole(k, v, k == "--warmup" ? 0 : 1, 1L << 30)); };
    if (k == "--shape") a.shape = v;
    else if (k == "--seqs") a.seqs = number();
    else if (k == "--layers") a.layers = number();
    else if (k == "--len") a.len = number();
    else if (k == "--warmup") a.warmup = number();
    else if (k == "--steps") a.steps = number();
    else if (k == "--profile") a.profile = true;
    else if (k == "--reference") a.reference = true;
    else if (k == "--device") a.device = kFlags.one_of(k, v, {"cuda", "cpu"}) == "cpu" ? Device::CPU : Device::CUDA;
    else return false;
    return true;
  });
  if (a.shape != "0.5b" && a.shape != "1.5b" && a.shape != "10m" && !moe_shape(a.shape))
    kFlags.fail("--shape must be 0.5b, 1.5b, moonlight-16b-a3b, qwen3-30b-a3b or 10m");
  if (a.len < 2) kFlags.fail("--len must be at least 2");
  return a;
}

double step_flops(const model::ModelConfig& c, const std::vector<int>& lengths) {
  double attn = 0, tokens = 0;
  for (int L : lengths) {
    attn += double(L) * L / 2;
    tokens += L;
  }
  // QK^T over the q/k head dim and PV over the value head dim (MLA: 192 and 128; else head_dim).
  const double qk = c.is_mla() ? c.mla.qk_nope_head_dim + c.mla.qk_rope_head_dim : c.head_dim;
  const double v = c.is_mla() ? c.mla.v_head_dim : c.head_dim;
  return 6.0 * tokens * double(bench::matmul_params(c)) + 6.0 * c.num_hidden_layers * c.num_attention_heads * (qk + v) * attn;
}

using bench::device_used_mib;
using bench::gpu_name;
using bench::init_uniform;
using bench::synchronize;

// Runs one step under the per-op profiler; prints its table and adds it to `out`.
template <class Step>
void profile_step(Step&& step, double unprofiled_ms, nlohmann::json& out) {
#ifdef R1_HAVE_CUDA
  cuda::profiler_reset();
  cuda::profiler_enable(true);
  Timer t;
  step();
  const double profiled_ms = t.seconds() * 1e3;
  cuda::profiler_enable(false);
  auto rows = cuda::profiler_report();
  std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.total_ms > y.total_ms; });
  double total = 0;
  for (const auto& r : rows) total += r.total_ms;
  nlohmann::json prof = nlohmann::json::array();
  for (const auto& r : rows) prof.push_back({r.name, r.calls, r.total_ms});
  out["profile"] = prof;
  out["profile_ms"] = total;
  std::printf("%s\n", out.dump().c_str());
  std::printf(
      "per-op GPU time, one profiled step: %.1f ms in ops (the step: %.1f ms profiled, %.1f ms unprofiled)\n",
      total, profiled_ms, unprofiled_ms);
  std::printf("%-36s %7s %10s %7s %9s\n", "op", "calls", "ms", "%ops", "ms/call");
  for (const auto& r : rows)
    std::printf("%-36s %7lld %10.3f %6.1f%% %9.4f\n", r.name.c_str(), (long long)r.calls, r.total_ms,
                100 * r.total_ms / std::max(total, 1e-9), r.total_ms / double(std::max<int64_t>(r.calls, 1)));
#else
  (void)step, (void)unprofiled_ms;
  std::printf("%s\n", out.dump().c_str());
#endif
}

int run(const Args& a) {
  std::string why;
  if (!device_usable(a.device, &why)) {
    std::printf("bench_train_gpu: no usable CUDA device (%s); nothing to measure\n", why.c_str());
    return 0;
  }
  const bool gpu = a.device == Device::CUDA;
  const double used0 = gpu ? device_used_mib() : 0;  // the runtime's context exists now; nothing of ours yet
  model::ModelConfig cfg =
      model::preset_config(a.shape == "10m" || moe_shape(a.shape) ? a.shape : "qwen2.5-" + a.shape);
  if (a.layers > 0) model::override_config(cfg, "num_hidden_layers", std::to_string(a.layers));
  model::Transformer m(cfg, a.device);
  init_uniform(m, 1);
  optim::AdamW opt(optim::param_slices(m), optim::AdamWConfig{}, m.device());
  model::TrainState state;

  // A frozen reference (what GRPO's KL term needs) and its inference state.
  std::optional<model::Transformer> ref;
  model::TrainState ref_state;
  if (a.reference) {
    ref.emplace(cfg, a.device, /*trainable=*/false);
    model::copy_weights(*ref, m);
  }

  Rng rng(2);
  std::vector<std::vector<int32_t>> seqs(size_t(a.seqs), std::vector<int32_t>(size_t(a.len)));
  for (auto& s : seqs)
    for (auto& x : s) x = int32_t(rng.next_u32() % uint32_t(cfg.vocab_size));
  const model::Batch batch = model::pack_sequences(seqs);
  int64_t targets = 0;
  for (int32_t t : batch.targets) targets += t >= 0;
  std::vector<float> dlogp(size_t(batch.tokens()), 0.0f);
  for (size_t t = 0; t < dlogp.size(); ++t)
    if (batch.targets[t] >= 0) dlogp[t] = -1.0f / float(targets);

  double loss = 0, grad_norm = 0, used_peak = 0;
  auto step = [&] {
    if (ref) ref_state.forward(*ref, batch);
    state.forward(m, batch);
    const std::vector<float> logp = state.logp_host();
    loss = 0;
    for (size_t t = 0; t < logp.size(); ++t)
      if (batch.targets[t] >= 0) loss -= logp[t];
    loss /= double(targets);
    m.zero_grads();
    state.backward(m, dlogp);
    const optim::ClipResult clip = optim::clip_grad_norm(m.grads().flat, 1.0);
    grad_norm = clip.norm;
    optim::optimizer_step(opt, m, 1e-5f, clip.scale);
    if (!gpu) return;
    synchronize();
    // Our buffers are grow-only (arenas keep their peak), so after a step is the step's peak.
    used_peak = std::max(used_peak, device_used_mib() - used0);
  };

  for (int i = 0; i < a.warmup; ++i) step();
  std::vector<double> ms;
  for (int i = 0; i < a.steps; ++i) {
    Timer t;
    step();
    ms.push_back(t.seconds() * 1e3);
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double med = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                       : (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]) / 2;
  const double flops = step_flops(cfg, std::vector<int>(size_t(a.seqs), a.len));
  const double n = double(cfg.num_parameters()), mib = 1 << 20;
  const double sec = med / 1e3;

  nlohmann::json out = {
      {"bench", "r1"},
      {"mode", !gpu          ? "fp32-cpu"
               : a.reference ? "amp+ref"
                             : "amp"},
      {"shape", a.shape},
      {"layers", cfg.num_hidden_layers},
      {"seqs", a.seqs},
      {"len", a.len},
      {"steps", a.steps},
      {"warmup", a.warmup},
      {"step_ms", med},
      {"step_ms_min", sorted.front()},
      {"step_ms_max", sorted.back()},
      {"tok_s", double(batch.tokens()) / sec},
      {"tflops", flops / sec / 1e12},
      {"mfu", flops / sec / kPeakSpec},
      {"mfu_790", flops / sec / kPeakMeasured},
      {"flops_per_step", flops},
      {"matmul_params", bench::matmul_params(cfg)},
      {"params", cfg.num_parameters()},
      // Device memory we took (cudaMemGetInfo: used after the worst step - used before the model),
      // and its known parts: bf16 weights, fp32 master + grads, fp32 AdamW moments, activations.
      {"device_used_mib", used_peak},
      {"weights_mib", n * (2 + 4 + 4) / mib},
      {"adam_mib", n * 8 / mib},
      {"reference_mib", a.reference ? n * 2 / mib : 0.0},
      {"activations_mib", double(state.activation_bytes()) / mib},
      {"loss", loss},
      {"grad_norm", grad_norm},
      {"gpu", gpu ? gpu_name() : "cpu"}};

  if (a.profile && gpu) {
    profile_step(step, med, out);
  } else {
    std::printf("%s\n", out.dump().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  return bench::run_reporting_errors("bench_train_gpu", nlohmann::json{{"bench", "r1"}, {"shape", a.shape}}, [&] { return run(a); });
}
