// GPU rollout throughput, the twin of bench/peer/hf_generate.py: a random Qwen2.5 model (bf16),
// P random prompts of --prompt-len tokens, each sampled once for exactly --new tokens (no stop
// ids, so every sequence runs to the limit), through the rollout engine (rollout/gpu_engine.h).
//
//   build/bench/bench_rollout_gpu --shape 0.5b|1.5b|3b|7b|llama-3.1-8b|moonlight-16b-a3b|qwen3-30b-a3b [--prompts 64] [--prompt-len 128] [--new 1024]
//                                 [--max-batch P] [--sync-every 16] [--temperature 1] [--top-p 1]
//                                 [--context N] [--kv-fraction F] [--kv-tokens N] [--kv-block N]
//                                 [--with-training-state] [--profile] [--attention tensor|simt]
//                                 [--decode-gemm on|tma|off] [--decode-gemm-products plain,norm,glu]
//                                 [--exact off|on|split] [--gemm-ref-rows N]
//                                 [--trace N] [--attention-splits S] [--sampler-blocks 1|2|4] [--ncu-window]
//                                 [--fused-rope on|off] [--linear-norm off|S|S,W]
// Prints one JSON line. One untimed generate of a few tokens first (CUDA graph capture, GEMM plans).
//
// The paged KV cache: its pool takes --kv-fraction of the free GPU memory (default 0.9, the
// engine's), or --kv-tokens tokens, in blocks of --kv-block tokens (16), never more than
// --max-batch sequences of --context tokens can use. The JSON line says how the pool served the
// run: its blocks and the most in use at once, the sequences preempted (and recomputed), and the
// mean number of sequences in flight per decode step (concurrency). A pool smaller than the
// batch's need (e.g. 256 x 8k responses with --kv-tokens below 256 x 8.3k) shows preemption.
//
// Roofline of a decode step: it must read every weight that enters a matmul (bf16; the embedding
// table only once, as the tied lm_head; of a mixture-of-experts layer, the experts the batch's
// tokens are routed to: bench_gpu_util.h's decode_weight_params) and, per sequence, the cached
// keys and values of every position (MLA: its latent row) once. bytes(step) / bandwidth is the shortest time a step can take; bandwidth is
// measured here (a device-to-device copy: bytes read + written over time). roofline_frac = that
// time / the measured mean decode step (sampling, stops and everything else included).
//
// --profile: afterwards, one decode step's forward run eagerly under the per-op profiler (rows at
// the middle of the generation), as a table after the JSON.
// --trace N: afterwards, N more decode steps of the same prompts, extended so that the steps run
// around the timed run's mean position (prompt_len + new / 2), with every kernel timed by the GPU
// (CUPTI: kernel_trace.h), and a second JSON line, "r1-rollout-kernels": per decode step, the
// kernels the step's CUDA graph ran (launches, µs, share), their sum, and the gaps between them
// (launch latency). The timed run above is not traced.
// --ncu-window: for Nsight Compute's hardware counters (bench/gpu.sh's R1_GPU_BENCH=ncu runs
// `ncu --profile-from-start off --launch-count K`): no timed run; after the warm-up, decode steps
// at the timed run's mean position as --trace runs them, with the CUDA profiler started after
// their first sync_every steps (cudaProfilerStart) and stopped after the next sync_every, so ncu
// profiles steady decode steps' graph kernels and nothing of the prefill.
// --fused-rope off: a decode step's RoPE + cache write and attention as two launches instead of one
// (ops::rope_qkv_attention_cached's fallback; cuda::set_decode_rope_fused; A/B).
// --attention simt: bf16 decode attention on the CUDA-core kernel instead of the tensor cores (A/B).
// --decode-gemm on: a decode step's linears on the decode GEMM instead of cuBLASLt (A/B; off, the
// library's default, is cuBLASLt). tma: the same on its TMA + wgmma kernel, the fused norms and
// SwiGLU included (cuda::set_decode_gemm_tma). --decode-gemm-products plain,norm,glu: only the
// products with these fusions on it (none, the RMSNorm, the RMSNorm and SwiGLU; default all).
// --sampler-blocks N: blocks a row's untruncated draw takes, 1, 2 or 4 (default 0: the library's
// choice: 4 while a wave at one block an SM holds them, 2 while one at two blocks an SM does;
// cuda::set_sampling_blocks_per_row).
// --attention-splits S: the decode attention's key splits fixed at S (default 0: the library's
// choice by waves, decode_split.h's best_splits; a sweep of S shows what that choice leaves).
// --linear-norm S: a decode step's o_proj and down_proj products write the next norm too, their K
// split S ways (1-8; default 0: the library's rule; off: the products and norms apart:
// cuda::set_linear_norm_splits). S,W: down_proj (K wider than the output) in W ways, o_proj in S.
// --exact on|split: rollout.exact_logprobs (the batch-invariant forward: kernels/invariance.h), the
// attention in one pass or in fixed key splits; --gemm-ref-rows N: its GEMMs' one algorithm per
// product chosen at N rows (0: each shape's own; default cuda::kInvariantGemmRows). For the cost
// of exactness, beside --exact off in the same run; --profile then profiles the exact forward.
// --context: tokens per KV-cache slot (default prompt + new).
// --with-training-state: also holds what GRPO keeps through its rollouts (trainable policy with
// fp32 master weights and gradients, AdamW moments, a frozen bf16 reference), to show the KV cache
// fits beside it; reports the device memory in use at the end.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/rng.h"
#include "base/timer.h"
#include "bench_gpu_util.h"
#include "flags.h"
#include "kernel_trace.h"
#ifdef R1_HAVE_CUDA
#include <cuda_profiler_api.h>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/profiler.h"
#include "kernels/sampling.h"
#endif
#include "model/config.h"
#include "model/transformer.h"
#include "kernels/invariance.h"
#include "model/kv_cache.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "optim/optimizer.h"

using namespace r1;

namespace {

// Shapes that are presets by their own name (the others are Qwen2.5 sizes).
bool named_shape(const std::string& s) {
  return s == "10m" || s == "llama-3.1-8b" || s == "moonlight-16b-a3b" || s == "qwen3-30b-a3b";
}

struct Args {
  std::string shape = "0.5b";
  int prompts = 64, prompt_len = 128, new_tokens = 1024, max_batch = 0, sync_every = 16, context = 0;
  float temperature = 1.0f, top_p = 1.0f;
  double kv_fraction = 0.9;
  int64_t kv_tokens = 0;
  int kv_block = 16;
  bool training_state = false, profile = false;
  int trace = 0;                     // decode steps to trace kernel by kernel (0: none)
  bool ncu_window = false;           // only the profiler-bracketed steps for ncu, no timed run
  std::string attention = "tensor";  // the bf16 decode attention kernel: tensor | simt (A/B)
  std::string fused_rope = "on";     // RoPE + cache write inside the decode attention (A/B)
  std::string decode_gemm = "off";   // a decode step's linears on cuBLASLt, or the decode GEMM (A/B)
  unsigned decode_gemm_products = cuda::kDecodeGemmAll;  // --decode-gemm-products plain,norm,glu
  std::string exact = "off";         // off | on | split
  int attention_splits = 0;          // 0: the library's choice
  int linear_norm = 0;               // 0: the library's rule, -1 off
  int linear_norm_wide = 0;          // down_proj's own fixed split (0: as linear_norm)
  int sampler_blocks = 0;            // 0: the library's choice
  int64_t gemm_ref_rows = -1;        // -1: the default policy
};

const bench::Flags kFlags(
    "bench_rollout_gpu",
    "[--shape 0.5b|1.5b|3b|7b|llama-3.1-8b|moonlight-16b-a3b|qwen3-30b-a3b|10m] [--prompts N] [--prompt-len N] "
    "[--new N] [--max-batch N] [--sync-every N] [--temperature T] [--top-p P] [--context N] [--kv-fraction F] "
    "[--kv-tokens N] [--kv-block N] [--with-training-state] [--profile] [--attention tensor|simt] "
    "[--decode-gemm on|tma|off] [--decode-gemm-products plain,norm,glu] [--exact off|on|split] [--gemm-ref-rows N] "
    "[--trace N] [--attention-splits S] [--sampler-blocks 1|2|4] [--ncu-window] [--fused-rope on|off] "
    "[--linear-norm off|S|S,W]");

Args parse(int argc, char** argv) {
  Args a;
  constexpr long kMax = 1L << 30;
  kFlags.read(argc, argv, {"--with-training-state", "--profile", "--ncu-window"},
              [&](const std::string& k, const std::string& v) {
    auto count = [&] { return int(kFlags.whole(k, v, 0, kMax)); };
    if (k == "--shape") a.shape = v;
    else if (k == "--prompts") a.prompts = count();
    else if (k == "--prompt-len") a.prompt_len = count();
    else if (k == "--new") a.new_tokens = count();
    else if (k == "--max-batch") a.max_batch = count();
    else if (k == "--sync-every") a.sync_every = count();
    else if (k == "--context") a.context = count();
    else if (k == "--temperature") a.temperature = float(kFlags.real(k, v, 0, 1e6));
    else if (k == "--top-p") a.top_p = float(kFlags.real(k, v, 0, 1));
    else if (k == "--kv-fraction") a.kv_fraction = kFlags.real(k, v, 0, 1);
    else if (k == "--kv-tokens") a.kv_tokens = kFlags.whole(k, v, 0, 1L << 40);
    else if (k == "--kv-block") a.kv_block = count();
    else if (k == "--with-training-state") a.training_state = true;
    else if (k == "--profile") a.profile = true;
    else if (k == "--attention") a.attention = kFlags.one_of(k, v, {"tensor", "simt"});
    else if (k == "--decode-gemm") a.decode_gemm = kFlags.one_of(k, v, {"on", "tma", "off"});
    else if (k == "--decode-gemm-products") {
      a.decode_gemm_products = 0;
      for (const std::string& part : kFlags.list(k, v)) {
        const std::string p = kFlags.one_of(k, part, {"plain", "norm", "glu"});
        a.decode_gemm_products |= p == "plain" ? cuda::kDecodeGemmPlain
                                  : p == "norm" ? cuda::kDecodeGemmNorm
                                                : cuda::kDecodeGemmNormSwiglu;
      }
    }
    else if (k == "--exact") a.exact = kFlags.one_of(k, v, {"off", "on", "split"});
    else if (k == "--gemm-ref-rows") a.gemm_ref_rows = kFlags.whole(k, v, 0, kMax);
    else if (k == "--trace") a.trace = count();
    else if (k == "--attention-splits") a.attention_splits = int(kFlags.whole(k, v, 0, 64));
    else if (k == "--sampler-blocks") a.sampler_blocks = int(kFlags.whole(k, v, 0, 4));
    else if (k == "--linear-norm") {  // off, S or S,W
      const size_t comma = v.find(',');
      a.linear_norm = v == "off" ? -1 : int(kFlags.whole(k, v.substr(0, comma), 0, 8));
      if (comma != std::string::npos) a.linear_norm_wide = int(kFlags.whole(k, v.substr(comma + 1), 1, 8));
    }
    else if (k == "--ncu-window") a.ncu_window = true;
    else if (k == "--fused-rope") a.fused_rope = kFlags.one_of(k, v, {"on", "off"});
    else return false;
    return true;
  });
  if (!named_shape(a.shape) && a.shape != "0.5b" && a.shape != "1.5b" && a.shape != "3b" && a.shape != "7b")
    kFlags.fail("--shape must be 0.5b, 1.5b, 3b, 7b (Qwen2.5), llama-3.1-8b, moonlight-16b-a3b, qwen3-30b-a3b or 10m");
  if (a.sampler_blocks == 3) kFlags.fail("--sampler-blocks must be 0, 1, 2 or 4");
  if (a.prompts < 1 || a.prompt_len < 1 || a.new_tokens < 2) kFlags.fail("--prompts, --prompt-len >= 1, --new >= 2");
  if (a.max_batch == 0) a.max_batch = a.prompts;
  if (a.context == 0) a.context = a.prompt_len + a.new_tokens;
  if (a.context < a.prompt_len + a.new_tokens) kFlags.fail("--context must hold --prompt-len + --new tokens");
  return a;
}


// The requests extended so that `steps` decode steps run around the timed run's mean position
// (prompt_len + new_tokens / 2 on average): their attention reads what a mean step of the timed
// run reads. Returns the position the steps start from.
int at_mean_position(std::vector<rollout::Request>& reqs, int steps, const Args& a) {
  const int extra = std::max(0, a.new_tokens / 2 - steps / 2);
  Rng rng(7);
  for (rollout::Request& r : reqs)
    for (int k = 0; k < extra; ++k) r.prompt.push_back(r.prompt[size_t(rng.next_u32() % r.prompt.size())]);
  return a.prompt_len + extra;
}

// --trace: the kernels of a.trace decode steps, timed by the GPU, as one JSON line.
void trace_decode_kernels(rollout::Engine& engine, const std::vector<rollout::Request>& reqs,
                          rollout::GenerateParams gp, const Args& a) {
#ifdef R1_HAVE_CUPTI
  gp.max_new_tokens = std::min(a.trace + 1, a.new_tokens);
  std::vector<rollout::Request> at_mean = reqs;
  const int from = at_mean_position(at_mean, gp.max_new_tokens, a);
  const rollout::GenerateStats s0 = engine.stats();
  std::vector<bench::KernelRecord> kernels;
  {
    bench::KernelTrace trace;
    engine.generate(at_mean, gp);
    bench::synchronize();
    kernels = trace.stop();
  }
  const rollout::GenerateStats s1 = engine.stats();
  const double steps = double(s1.decode_steps - s0.decode_steps);
  const double step_ms = (s1.decode_seconds - s0.decode_seconds) / std::max(steps, 1.0) * 1e3;
  nlohmann::json j = {{"bench", "r1-rollout-kernels"}, {"shape", a.shape}, {"prompts", a.prompts},
                      {"decode_step_ms_traced", step_ms}, {"traced_from_position", from},
                      {"gpu", bench::gpu_name()}};
  j.update(bench::graph_kernel_summary(kernels, std::max(steps, 1.0)));
  std::printf("%s\n", j.dump().c_str());
#else
  (void)engine, (void)reqs, (void)gp, (void)a;
  std::printf("bench_rollout_gpu: --trace needs CUPTI (CUDA::cupti at build time); not traced\n");
#endif
}

// --ncu-window: 3 x sync_every decode steps at the mean position; the CUDA profiler is on for the
// middle sync_every of them (the engine's on_decoded runs at each host look), so the prefill and
// the first steps are not profiled. One JSON line says where the window ran.
void ncu_window(rollout::Engine& engine, const std::vector<rollout::Request>& reqs, rollout::GenerateParams gp,
                const Args& a) {
#ifdef R1_HAVE_CUDA
  gp.max_new_tokens = std::min(3 * a.sync_every + 1, a.new_tokens);
  std::vector<rollout::Request> at_mean = reqs;
  const int from = at_mean_position(at_mean, gp.max_new_tokens, a);
  int looks = 0;
  gp.on_decoded = [&](int64_t) {
    ++looks;
    if (looks == 1) CUDA_CHECK(cudaProfilerStart());
    if (looks == 2) CUDA_CHECK(cudaProfilerStop());
  };
  engine.generate(at_mean, gp);
  bench::synchronize();
  if (looks == 1) CUDA_CHECK(cudaProfilerStop());
  nlohmann::json j = {{"bench", "r1-rollout-ncu-window"}, {"shape", a.shape}, {"prompts", a.prompts},
                      {"from_position", from}, {"profiled_after_steps", a.sync_every},
                      {"host_looks", looks}, {"gpu", bench::gpu_name()}};
  std::printf("%s\n", j.dump().c_str());
#else
  (void)engine, (void)reqs, (void)gp, (void)a;
#endif
}

// One decode step's forward (rows sequences at position `at`), eager, under the per-op profiler.
void profile_decode_forward(const model::Transformer& m, double rows, int at, int context) {
#ifdef R1_HAVE_CUDA
  const int R = int(rows);
  model::KVCache cache(m, R, context);
  Arena arena(0, Device::CUDA);
  std::vector<int32_t> ids(size_t(R), 1), pos(size_t(R), at), slots, logit_rows;
  for (int r = 0; r < R; ++r) slots.push_back(r);
  logit_rows = slots;
  auto step = [&] {
    arena.reset();
    model::forward_cached(m, cache, ids, slots, pos, logit_rows, arena, DType::F32);
  };
  step();
  cuda::synchronize();
  cuda::profiler_reset();
  cuda::profiler_enable(true);
  for (int i = 0; i < 5; ++i) step();
  cuda::profiler_enable(false);
  auto report = cuda::profiler_report();
  std::sort(report.begin(), report.end(), [](const auto& x, const auto& y) { return x.total_ms > y.total_ms; });
  double total = 0;
  for (const auto& r : report) total += r.total_ms;
  std::printf("decode forward, %d rows at position %d: %.3f ms of op time per step (eager, profiled)\n", R, at,
              total / 5);
  std::printf("%-36s %7s %10s %7s %9s\n", "op", "calls", "ms/step", "%ops", "us/call");
  for (const auto& r : report)
    std::printf("%-36s %7lld %10.4f %6.1f%% %9.2f\n", r.name.c_str(), (long long)r.calls / 5, r.total_ms / 5,
                100 * r.total_ms / std::max(total, 1e-9), 1e3 * r.total_ms / double(std::max<int64_t>(r.calls, 1)));
#else
  (void)m, (void)rows, (void)at, (void)context;
#endif
}

int run(const Args& a) {
  std::string why;
  if (!device_usable(Device::CUDA, &why)) {
    std::printf("bench_rollout_gpu: no usable CUDA device (%s); nothing to measure\n", why.c_str());
    return 0;
  }
#ifdef R1_HAVE_CUDA
  cuda::set_decode_attention_tensor_cores(a.attention == "tensor");
  cuda::set_decode_gemm(a.decode_gemm != "off");
  cuda::set_decode_gemm_tma(a.decode_gemm == "tma");
  cuda::set_decode_gemm_products(a.decode_gemm_products);
  cuda::set_decode_rope_fused(a.fused_rope == "on");
  cuda::set_decode_attention_splits(a.attention_splits);
  cuda::set_linear_norm_splits(a.linear_norm, a.linear_norm_wide);
  cuda::set_sampling_blocks_per_row(a.sampler_blocks);
  cuda::set_exact_attention_split(a.exact == "split");
  if (a.gemm_ref_rows >= 0) cuda::set_invariant_gemm_policy(a.gemm_ref_rows);
#endif
  ops::BatchInvariantScope invariant(a.exact != "off");  // before the engine, as GRPO sets it
  const double used0 = bench::device_used_mib();
  const model::ModelConfig cfg = model::preset_config(named_shape(a.shape) ? a.shape : "qwen2.5-" + a.shape);
  model::Transformer m(cfg, Device::CUDA, /*trainable=*/a.training_state);
  bench::init_uniform(m, 1);
  std::optional<model::Transformer> ref;
  std::unique_ptr<optim::AdamW> opt;
  if (a.training_state) {
    opt = std::make_unique<optim::AdamW>(optim::param_slices(m), optim::AdamWConfig{}, Device::CUDA);
    ref.emplace(cfg, Device::CUDA, /*trainable=*/false);
    model::copy_weights(*ref, m);
  }
  const double bw = bench::measured_bandwidth();

  Rng rng(3);
  std::vector<rollout::Request> reqs(size_t(a.prompts));
  for (int i = 0; i < a.prompts; ++i) {
    const uint32_t ids = uint32_t(std::min<int64_t>(150000, cfg.vocab_size));
    for (int t = 0; t < a.prompt_len; ++t) reqs[size_t(i)].prompt.push_back(int32_t(rng.next_u32() % ids));
    reqs[size_t(i)].id = i;
  }
  rollout::GenerateParams gp;
  gp.sampling = {a.temperature, a.top_p, 0, 42};
  gp.exact_logprobs = a.exact != "off";
  rollout::EngineConfig ec{a.max_batch, a.context, 8192, a.sync_every};
  ec.kv_memory_fraction = a.kv_fraction;
  ec.kv_cache_tokens = a.kv_tokens;
  ec.kv_block_size = a.kv_block;
  rollout::Engine engine(m, ec);
  gp.max_new_tokens = 2 * a.sync_every;  // warm-up: captures the batch's graph
  engine.generate(reqs, gp);
  if (a.ncu_window) {
    ncu_window(engine, reqs, gp, a);
    return 0;
  }
  const rollout::GenerateStats s0 = engine.stats();
  gp.max_new_tokens = a.new_tokens;
  engine.reset_kv_peak();
  Timer t;
  const std::vector<rollout::Completion> outs = engine.generate(reqs, gp);
  const double seconds = t.seconds();
  const rollout::GenerateStats s1 = engine.stats();
  int64_t generated = 0;
  for (const auto& o : outs) generated += int64_t(o.tokens.size());

  const double steps = double(s1.decode_steps - s0.decode_steps);
  const double decode_s = s1.decode_seconds - s0.decode_seconds, prefill_s = s1.prefill_seconds - s0.prefill_seconds;
  const double step_ms = decode_s / std::max(steps, 1.0) * 1e3;
  // Bytes a step must read: the matmul weights, and each sequence's cached keys and values. Decode
  // step k (0-based) of a sequence reads prompt_len + 1 + k positions.
  const double rows = std::min(a.prompts, a.max_batch);
  const double weight_bytes = 2.0 * double(bench::decode_weight_params(cfg, int64_t(rows)));
  const double kv_per_pos = double(model::kv_bytes_per_token(cfg, DType::BF16));  // MLA: the latent row
  const double n = a.new_tokens - 1;  // decode steps per sequence (the first token comes from the prefill)
  const double mean_positions = (a.prompt_len + 1) + (n - 1) / 2;
  // Sequences in flight per step, measured (fewer than rows when the KV pool preempts).
  const double concurrency = double(s1.decode_seqs - s0.decode_seqs) / std::max(steps, 1.0);
  const double kv_bytes = std::min(rows, concurrency) * mean_positions * kv_per_pos;
  const double roofline_ms = (weight_bytes + kv_bytes) / bw * 1e3;

  nlohmann::json out = {{"bench", "r1-rollout"},
                        {"shape", a.shape},
                        {"prompts", a.prompts},
                        {"prompt_len", a.prompt_len},
                        {"new_tokens", a.new_tokens},
                        {"max_batch", a.max_batch},
                        {"sync_every", a.sync_every},
                        {"temperature", a.temperature},
                        {"top_p", a.top_p},
                        {"seconds", seconds},
                        {"generated_tokens", generated},
                        {"tok_s", double(generated) / seconds},
                        {"prefill_s", prefill_s},
                        {"decode_s", decode_s},
                        {"decode_steps", steps},
                        {"decode_step_ms", step_ms},
                        {"decode_tok_s", double(s1.generated_tokens - s0.generated_tokens) / std::max(decode_s, 1e-9)},
                        {"host_syncs", s1.host_syncs - s0.host_syncs},
                        {"graph_captures", s1.graph_captures},
                        {"weight_bytes", weight_bytes},
                        {"kv_bytes_mean", kv_bytes},
                        {"bandwidth_gbs", bw / 1e9},
                        {"roofline_step_ms", roofline_ms},
                        {"roofline_frac", roofline_ms / step_ms},
                        {"attention", a.attention},
                        {"decode_gemm", a.decode_gemm},
                        {"decode_gemm_products", a.decode_gemm_products},
                        {"fused_rope", a.fused_rope},
                        {"attention_splits", a.attention_splits},
                        {"linear_norm", a.linear_norm},
                        {"linear_norm_wide", a.linear_norm_wide},
                        {"sampler_blocks", a.sampler_blocks},
                        {"exact", a.exact},
                        {"gemm_ref_rows", a.gemm_ref_rows},
                        {"training_state", a.training_state},
                        {"context", a.context},
                        {"kv_cache_mib", double(s1.kv_blocks * s1.kv_block_size) * kv_per_pos / (1 << 20)},
                        {"kv_block_size", s1.kv_block_size},
                        {"kv_blocks", s1.kv_blocks},
                        {"kv_blocks_peak", s1.kv_blocks_peak},
                        {"kv_peak_frac", double(s1.kv_blocks_peak) / double(std::max<int64_t>(s1.kv_blocks, 1))},
                        {"preemptions", s1.preemptions - s0.preemptions},
                        {"concurrency", concurrency},
                        {"recomputed_tokens", (s1.prefill_tokens - s0.prefill_tokens) - (s1.prompt_tokens - s0.prompt_tokens)},
                        {"device_used_mib", bench::device_used_mib() - used0},
                        {"gpu", bench::gpu_name()}};
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
  if (a.trace > 0) trace_decode_kernels(engine, reqs, gp, a);
  if (a.profile) profile_decode_forward(m, rows, a.prompt_len + a.new_tokens / 2, a.context);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  return bench::run_reporting_errors("bench_rollout_gpu", nlohmann::json{{"bench", "r1-rollout"}, {"shape", a.shape}, {"prompts", a.prompts}}, [&] { return run(a); });
}
