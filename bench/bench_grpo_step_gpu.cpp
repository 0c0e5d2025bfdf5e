// One whole GRPO step on the GPU, the twin of bench/peer/torch_grpo_step.py: the real trainer
// (train/grpo.h) on a random Qwen2.5 model, 64 prompts x 8 samples of up to 1024 new tokens,
// math + format rule rewards, a frozen reference with the k3 KL term, one optimizer step. Prompts
// are addition problems padded to --prompt-len bytes under the byte-level codec; the random model
// almost never samples its end-of-sequence id, so completions run to the limit.
//
//   build/bench/bench_grpo_step_gpu [--shape 0.5b] [--prompts 64] [--group 8] [--prompt-len 128]
//                                   [--new 1024] [--steps 2] [--micro-batch-tokens 8192]
//                                   [--rollout-batch N] [--lora-rank R] [--offload off|on]
//                                   [--checkpointing auto|on|off] [--kv-fraction F] [--exact off|on|split]
//                                   [--gemm-ref-rows N]
// --decode-gemm on: a decode step's linears on the decode GEMM instead of cuBLASLt (A/B).
// --exact: rollout.exact_logprobs; --gemm-ref-rows N: its GEMMs' one algorithm per product chosen at
// N rows (0: each shape's own; default cuda::kInvariantGemmRows).
// A long tail: --vocab 257 keeps the byte codec's ids only, so a random model samples its end-of-
// sequence id about once per 257 tokens: lengths are geometric (mean about 257), capped at --new,
// and a step waits for its few longest samples. rollout_occupancy is the GPU's busy share then
// (sequences in flight over the batch's capacity, averaged over the decode steps); --partial-tokens N
// (grpo.partial_rollout_tokens) and --overprovision N (grpo.overprovision_prompts) are the options
// that remove the idle tail.
// --shape: 10m or a Qwen2.5 size (0.5b 1.5b 3b 7b 14b 32b). --lora-rank R > 0 trains LoRA adapters
// (alpha 2R, every linear) over a frozen bf16 base, whose KL reference is the base itself (no copy).
// Prints one JSON line per step: wall time split into rollout / reward / reference log-probs /
// update (policy forward + backward + AdamW), generated tokens, and the device memory peak (sampled
// every 20 ms, as cudaMemGetInfo sees it). Step 0 includes one-time work
// (CUDA graph capture, GEMM plans, arena growth); later steps are the steady state.
// Under mpirun (one GPU per rank) --prompts is the global batch, split over the ranks, and the
// trainer all-reduces gradients with NCCL; rank 0 prints, with the tokens per second per GPU that
// the scaling efficiency compares:
//   mpirun -np 2 build/bench/bench_grpo_step_gpu --prompts 128   against   ... --prompts 64
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/timer.h"
#include "bench_gpu_util.h"
#include "flags.h"
#include "data/arithmetic.h"
#include "dist/world.h"
#include "model/config.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "reward/composite.h"
#include "tensor/device_memory.h"
#include "text/codec.h"
#include "train/grpo.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

using namespace r1;

namespace {

struct Args {
  std::string shape = "0.5b";
  int prompts = 64, group = 8, prompt_len = 128, new_tokens = 1024, steps = 2, micro_batch_tokens = 8192;
  int rollout_batch = 0;  // 0: prompts x group (every sample in flight at once)
  int lora_rank = 0;
  bool offload = false;                // the optimizer on the CPU (train.optimizer_offload: on)
  std::string checkpointing = "auto";  // train.activation_checkpointing
  double kv_fraction = 0.5;            // rollout.kv_memory_fraction
  bool exact = false;                  // rollout.exact_logprobs (the batch-invariant forward)
  bool exact_split = false;            // ... with the attention in fixed key splits
  long gemm_ref_rows = -1;             // -1: the default policy
  int vocab = 0;                       // 0: the preset's; else the embedding and head rows
  int partial_tokens = 0;              // grpo.partial_rollout_tokens
  int overprovision = 0;               // grpo.overprovision_prompts
  bool decode_gemm = false;            // a decode step's linears on the decode GEMM (A/B; else cuBLASLt)
};

const bench::Flags kFlags(
    "bench_grpo_step_gpu",
    "[--shape 10m|0.5b|1.5b|3b|7b|14b|32b] [--prompts N] [--group G] [--prompt-len N] [--new N] [--steps N] "
    "[--micro-batch-tokens N] [--rollout-batch N] [--lora-rank R] [--offload off|on] [--checkpointing auto|on|off] "
    "[--kv-fraction F] [--exact off|on|split] [--gemm-ref-rows N] [--vocab N] [--partial-tokens N] "
    "[--overprovision N] [--decode-gemm on|off]");

Args parse(int argc, char** argv) {
  Args a;
  constexpr long kMax = 1L << 30;
  kFlags.read(argc, argv, {}, [&](const std::string& k, const std::string& v) {
    auto count = [&](long lo) { return int(kFlags.whole(k, v, lo, kMax)); };
    if (k == "--shape") a.shape = v;
    else if (k == "--exact") {
      const std::string e = kFlags.one_of(k, v, {"off", "on", "split"});
      a.exact = e != "off";
      a.exact_split = e == "split";
    }
    else if (k == "--decode-gemm") a.decode_gemm = kFlags.one_of(k, v, {"on", "off"}) == "on";
    else if (k == "--offload") a.offload = kFlags.one_of(k, v, {"on", "off"}) == "on";
    else if (k == "--checkpointing") a.checkpointing = kFlags.one_of(k, v, {"auto", "on", "off"});
    else if (k == "--kv-fraction") {
      a.kv_fraction = kFlags.real(k, v, 0, 1);
      if (a.kv_fraction == 0) kFlags.fail("--kv-fraction must be in (0, 1]");
    }
    else if (k == "--gemm-ref-rows") a.gemm_ref_rows = kFlags.whole(k, v, 0, kMax);
    else if (k == "--overprovision") a.overprovision = count(0);
    else if (k == "--prompts") a.prompts = count(1);
    else if (k == "--group") a.group = count(1);
    else if (k == "--prompt-len") a.prompt_len = count(1);
    else if (k == "--new") a.new_tokens = count(1);
    else if (k == "--steps") a.steps = count(1);
    else if (k == "--micro-batch-tokens") a.micro_batch_tokens = count(1);
    else if (k == "--rollout-batch") a.rollout_batch = count(1);
    else if (k == "--lora-rank") a.lora_rank = count(1);
    else if (k == "--vocab") a.vocab = count(1);
    else if (k == "--partial-tokens") a.partial_tokens = count(1);
    else return false;
    return true;
  });
  const std::vector<std::string> shapes = {"10m", "0.5b", "1.5b", "3b", "7b", "14b", "32b"};
  if (std::find(shapes.begin(), shapes.end(), a.shape) == shapes.end())
    kFlags.fail("--shape must be one of 10m 0.5b 1.5b 3b 7b 14b 32b");
  return a;
}

int run_steps(const Args& a) {
  std::string why;
  if (!device_usable(Device::CUDA, &why)) {
    std::printf("bench_grpo_step_gpu: no usable CUDA device (%s); nothing to measure\n", why.c_str());
    return 0;
  }
  const double used0 = bench::device_used_mib();
  model::ModelConfig cfg = model::preset_config(a.shape == "10m" ? "10m" : "qwen2.5-" + a.shape);
  if (a.vocab > 0) cfg.vocab_size = a.vocab;
  // The peak of device memory in use, sampled while the steps run.
  std::atomic<bool> done{false};
  std::atomic<double> peak{0};
  std::thread sampler([&] {
    while (!done) {
      peak = std::max(peak.load(), bench::device_used_mib() - used0);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  struct Join {
    std::atomic<bool>& done;
    std::thread& t;
    ~Join() {
      done = true;
      t.join();
    }
  } join{done, sampler};
  const bool lora = a.lora_rank > 0;
  // LoRA: a frozen bf16 base. --offload: the fp32 master copy in pinned host memory.
  model::Transformer m(cfg, Device::CUDA, /*trainable=*/!lora, std::nullopt,
                       a.offload ? model::MasterPlace::Host : model::MasterPlace::Device);
  bench::init_uniform(m, 1);
  if (lora) {
    model::LoraConfig lc;
    lc.rank = a.lora_rank;
    lc.alpha = 2.0 * a.lora_rank;
    lc.targets = {"all-linear"};
    m.add_lora(lc, 2);
  }
  const int64_t trainable = lora ? model::total_params(m.adapter_specs()) : model::total_params(m.specs());
  const double after_init = bench::device_used_mib() - used0;
  text::ByteCodec codec;
  std::vector<data::Problem> problems = data::addition_problems(int64_t(a.prompts) * a.steps, 4, 7);
  const int pad = a.prompt_len;
  auto render = [pad](const data::Problem& p) {
    std::string s = "Add the numbers and put the sum in <answer></answer>: " + p.question + "=";
    s.resize(size_t(pad), ' ');
    return s;
  };
  auto reward = reward::make_reward("math+format:0.1");
  train::GrpoConfig gc;
  gc.prompts_per_step = a.prompts;
  gc.group_size = a.group;
  gc.max_prompt_tokens = a.prompt_len;
  gc.max_completion_tokens = a.new_tokens;
  gc.rollout_batch = a.rollout_batch > 0 ? a.rollout_batch : a.prompts * a.group;
  gc.loss.kl_coef = 0.04;  // a frozen reference and the k3 KL term
  gc.micro_batch_tokens = a.micro_batch_tokens;
  gc.lr = 1e-6;
  gc.schedule.kind = "constant";
  gc.parallel.offload.enabled = a.offload;
  gc.checkpointing = model::parse_checkpointing(a.checkpointing, "--checkpointing");
  gc.kv_memory_fraction = a.kv_fraction;
  gc.exact_logprobs = a.exact;
  gc.partial_rollout_tokens = a.partial_tokens;
  gc.overprovision_prompts = a.overprovision;
#ifdef R1_HAVE_CUDA
  cuda::set_exact_attention_split(a.exact_split);
  cuda::set_decode_gemm(a.decode_gemm);
  if (a.gemm_ref_rows >= 0) cuda::set_invariant_gemm_policy(a.gemm_ref_rows);
#endif
  train::GrpoTrainer trainer(m, codec, *reward, problems, render, gc, a.steps);
  for (int step = 0; step < a.steps; ++step) {
    const train::StepStats mt = trainer.step(step);
    const double gen = mt.response_length_mean * a.prompts * a.group;
    const int ranks = dist::world_size();
    if (!dist::is_root()) continue;
    nlohmann::json out = {{"bench", "r1-grpo-step"},
                          {"shape", a.shape},
                          {"step", step},
                          {"prompts", a.prompts},
                          {"group", a.group},
                          {"prompt_len", a.prompt_len},
                          {"new_tokens", a.new_tokens},
                          {"generated_tokens", gen},
                          {"rollout_s", mt.time_rollout},
                          {"reward_s", mt.time_reward},
                          {"reference_s", mt.time_reference},
                          {"update_s", mt.time_train},
                          {"step_s", mt.time_step},
                          {"rollout_tok_s", mt.tokens_per_s},
                          {"rollout_concurrency", mt.concurrency},
                          {"rollout_occupancy", mt.occupancy},
                          {"response_length_mean", mt.response_length_mean},
                          {"response_length_max", mt.response_length_max},
                          {"truncated_frac", mt.truncated_frac},
                          {"vocab", cfg.vocab_size},
                          {"partial_tokens", a.partial_tokens},
                          {"decode_gemm", a.decode_gemm},
                          {"overprovision", a.overprovision},
                          {"kv_blocks", mt.kv_blocks},
                          {"kv_blocks_peak", mt.kv_blocks_peak},
                          {"preemptions", mt.preemptions},
                          {"reward_mean", mt.reward_mean},
                          {"kl", mt.kl.value_or(0)},
                          {"exact", a.exact_split ? "split" : a.exact ? "on" : "off"},
                          {"gemm_ref_rows", a.gemm_ref_rows},
                          {"logp_gap_max", mt.logp_gap_max.value_or(-1)},
                          {"logp_gap_mean", mt.logp_gap_mean.value_or(-1)},
                          {"clip_fraction_first", mt.clip_fraction_first},
                          {"ranks", ranks},
                          {"step_tok_s_per_gpu", gen / mt.time_step / ranks},
                          {"device_used_mib", bench::device_used_mib() - used0},
                          {"device_peak_mib", peak.load()},
                          {"offload", a.offload},
                          {"checkpointing", a.checkpointing},
                          {"memory_held_gib", mt.memory_held / double(1 << 30)},
                          {"memory_rollout_gib", mt.memory_rollout / double(1 << 30)},
                          {"memory_reference_gib", mt.memory_reference / double(1 << 30)},
                          {"memory_update_gib", mt.memory_update / double(1 << 30)},
                          {"host_peak_gib", mt.memory_host / double(1 << 30)},
                          {"weights_mib", after_init},
                          {"lora_rank", a.lora_rank},
                          {"rollout_batch", gc.rollout_batch},
                          {"trainable_params", trainable},
                          {"params", model::total_params(m.specs())},
                          {"gpu", bench::gpu_name()}};
    std::printf("%s\n", out.dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  const Args a = parse(argc, argv);
  struct Finalize {
    ~Finalize() { dist::finalize(); }
  } finalize;
  return bench::run_reporting_errors("bench_grpo_step_gpu", nlohmann::json{{"bench", "r1-grpo-step"}, {"shape", a.shape}}, [&] { return run_steps(a); });
}
