#include "train/grpo_run.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/timer.h"
#include "data/jsonl_dataset.h"
#include "dist/world.h"
#include "model/checkpoint.h"
#include "reward/composite.h"
#include "tensor/device_memory.h"
#include "text/chat_template.h"
#include "text/hf_codec.h"
#include "train/grpo.h"
#include "train/grpo_partial.h"
#include "model/lora.h"
#include "model/memory_model.h"
#include "run/memory_preflight.h"
#include "run/metrics.h"
#include "run/report.h"
#include "run/run_dir.h"
#include "run/run_env.h"
#include "run/run_inputs.h"
#include "run/train_checkpoint.h"

namespace r1::train {

nlohmann::json grpo_recipe_defaults() {
  return {
      {"device", "cpu"},  // cpu | cuda: where the model, its training and its rollouts run
      {"model", run::model_section()},
      {"data", run::data_section()},
      {"reward", run::reward_section()},
      {"grpo",
       {{"prompts_per_step", 8}, {"group_size", 8}, {"max_prompt_tokens", 512}, {"max_completion_tokens", 512},
        {"temperature", 1.0}, {"top_p", 1.0}, {"top_k", 0}, {"rollout_batch", 64},
        {"scale_advantage_by_std", true}, {"clip_low", 0.2}, {"clip_high", 0.2}, {"kl_coef", 0.0},
        {"kl_estimator", "k3"}, {"kl_in_reward", false}, {"ref_refresh_steps", 0},
        {"loss_reduction", "seq_mean_token_mean"}, {"norm_constant", 0.0}, {"ppo_epochs", 1},
        {"mini_batches", 1}, {"micro_batch_tokens", 8192}, {"dynamic_sampling", false},
        {"dynamic_sampling_max_rounds", 4}, {"dynamic_sampling_filter", "math"}, {"mask_truncated", false},
        {"overlong_buffer", 0}, {"overlong_penalty", 1.0}, {"max_bad_steps", 3},
        {"old_logprobs", "sampler"},  // sampler | trainer: pi_old recomputed by the trainer's forward
        {"is_correction", "none"},    // none | tis | mis: sampler/trainer mismatch (needs old_logprobs: trainer)
        {"is_cap", 2.0},
        {"sampler_logprobs", "tempered"},  // tempered | sampled: of the distribution drawn from (top-k/top-p)
        {"partial_rollout_tokens", 0},   // > 0: new tokens per sequence per step; the unfinished carry on
        {"overprovision_prompts", 0}}},  // prompts in flight beyond prompts_per_step (partial rollouts)
      {"train",
       {{"steps", 100}, {"lr", 1e-6}, {"lr_schedule", "constant"}, {"warmup_steps", 0}, {"min_lr_ratio", 0.0},
        {"max_grad_norm", 1.0}, {"weight_decay", 0.0}, {"beta1", 0.9}, {"beta2", 0.999}, {"seed", 1},
        {"activation_checkpointing", "auto"},
        {"optimizer_offload", "auto"},  // auto | on | off: AdamW on the CPU, its state in host memory
        {"lora", run::lora_section()},
        {"moe", {{"routing_replay", false}, {"bias_update_speed", 0.0}, {"logp_gap_every", 1}}}}},
      {"run", run::run_section("grpo", {{"save_every", 50}, {"keep_last", 2}, {"samples_every", 1},
                                        {"checkpoint_contents", "full"}, {"export_dtype", "float32"}})},
      {"parallel", run::parallel_section()},
      {"env", run::env_section()},
      // The rollout engine's paged KV cache (rollout::EngineConfig): its pool takes this share of
      // the device's free memory when the trainer is built (the host's available memory on the
      // CPU), or kv_cache_tokens tokens when > 0, in blocks of kv_block_size tokens.
      {"rollout", {{"kv_memory_fraction", 0.5}, {"kv_cache_tokens", 0}, {"kv_block_size", 16},
                   {"ignore_eos", false},  // benchmarking: every completion runs to the length limit
                   {"exact_logprobs", false}}},  // the sampler's log-probs are the trainer's, bit for bit (CPU)
  };
}

namespace {

// The dynamic-sampling filter must be a part of every reward the run scores with (the spec and
// each route's), or the whole reward.
void check_filter(const run::Recipe& r, const std::string& filter) {
  if (filter == "reward") return;
  std::vector<std::pair<std::string, std::string>> specs = {{"reward.spec", r.get<std::string>("reward.spec")}};
  for (const std::string& route : r.get<std::vector<std::string>>("reward.routes"))
    specs.push_back({"reward.routes", route.substr(route.find('=') + 1)});
  for (const auto& [key, spec] : specs) {
    const std::vector<std::string> names = reward::reward_names(spec);
    R1_CHECK(std::find(names.begin(), names.end(), filter) != names.end(),
             "grpo.dynamic_sampling_filter '{}' is not a part of {} '{}' (parts: {}); name one of them, or 'reward'",
             filter, key, spec, fmt::join(names, ", "));
  }
}

// What a GRPO run holds, for the memory model: the policy (with its optimizer), a KL reference,
// the micro-batches, and the rollouts' paged KV pool: kv_cache_tokens, or the share
// rollout.kv_memory_fraction of what is free once the trainer holds its state (the preflight
// resolves it), at most rollout_batch sequences.
model::MemorySettings memory_settings(const GrpoConfig& g, const model::ModelConfig& mc, const model::LoraConfig& lora,
                                      Device device) {
  const rollout::EngineConfig ec = engine_config(g);
  model::MemorySettings s;
  s.device = device;
  s.lora_params = lora.enabled() ? model::total_params(model::lora_specs(mc, lora)) : 0;
  s.world = dist::world_size();
  s.shard = int(g.parallel.shard);
  s.reference = g.loss.kl_coef != 0.0 && !lora.enabled();
  s.recompute = device != Device::CPU;
  s.checkpoint = g.checkpointing == model::Checkpointing::On;
  s.checkpoint_auto = g.checkpointing == model::Checkpointing::Auto;
  s.sequence_tokens = ec.max_seq_len;
  s.train_tokens = std::max<int64_t>(g.micro_batch_tokens, s.sequence_tokens);  // a longer sequence goes alone
  s.kv_block_size = ec.kv_block_size;
  const int64_t blocks_per_sequence = (s.sequence_tokens + ec.kv_block_size - 1) / std::max(1, ec.kv_block_size);
  s.kv_tokens_max = int64_t(ec.max_batch) * blocks_per_sequence * ec.kv_block_size;
  s.kv_tokens = std::min(ec.kv_cache_tokens, s.kv_tokens_max);
  if (ec.kv_cache_tokens <= 0) s.kv_memory_fraction = ec.kv_memory_fraction;
  s.prefill_tokens = std::min<int64_t>(ec.prefill_tokens, int64_t(ec.max_batch) * s.sequence_tokens);
  return s;
}

// The reference of checkpoint `ck`: its reference/ when it has one. A weights-only checkpoint of a
// run whose reference never changes has none, and the reference built from the recipe is the one.
void load_reference(const run::ResumePoint& ck, const GrpoConfig& gc, model::Transformer& ref) {
  const std::string dir = fs::join(ck.path, "reference");
  const bool saved = fs::exists(fs::join(dir, "config.json"));
  if (saved || run::contents_of(ck) == run::CheckpointContents::Full) {
    model::load_weights(dir, ref);
    return;
  }
  R1_CHECK(gc.ref_refresh_steps == 0,
           "{} has no reference/ but grpo.ref_refresh_steps is {}: the refreshed reference is lost; resume "
           "with the recipe the checkpoint was written under",
           ck.path, gc.ref_refresh_steps);
}

}  // namespace

GrpoConfig grpo_config(const run::Recipe& r) {
  GrpoConfig g;
  g.prompts_per_step = r.get<int>("grpo.prompts_per_step");
  g.group_size = r.get<int>("grpo.group_size");
  g.max_prompt_tokens = r.get<int>("grpo.max_prompt_tokens");
  g.max_completion_tokens = r.get<int>("grpo.max_completion_tokens");
  g.temperature = float(r.get<double>("grpo.temperature"));
  g.top_p = float(r.get<double>("grpo.top_p"));
  g.top_k = r.get<int>("grpo.top_k");
  g.rollout_batch = r.get<int>("grpo.rollout_batch");
  g.kv_memory_fraction = r.get<double>("rollout.kv_memory_fraction");
  g.kv_cache_tokens = r.get<int64_t>("rollout.kv_cache_tokens");
  g.kv_block_size = r.get<int>("rollout.kv_block_size");
  g.ignore_eos = r.get<bool>("rollout.ignore_eos");
  g.exact_logprobs = r.get<bool>("rollout.exact_logprobs");
  g.scale_advantage_by_std = r.get<bool>("grpo.scale_advantage_by_std");
  g.loss.clip_low = r.get<double>("grpo.clip_low");
  g.loss.clip_high = r.get<double>("grpo.clip_high");
  g.loss.kl_coef = r.get<double>("grpo.kl_coef");
  g.loss.kl_estimator = parse_kl_estimator(r.get<std::string>("grpo.kl_estimator"));
  g.loss.reduction = parse_reduction(r.get<std::string>("grpo.loss_reduction"));
  g.loss.norm_constant = r.get<double>("grpo.norm_constant");
  g.kl_in_reward = r.get<bool>("grpo.kl_in_reward");
  g.ref_refresh_steps = r.get<int>("grpo.ref_refresh_steps");
  g.ppo_epochs = r.get<int>("grpo.ppo_epochs");
  g.mini_batches = r.get<int>("grpo.mini_batches");
  g.micro_batch_tokens = r.get<int>("grpo.micro_batch_tokens");
  g.dynamic_sampling = r.get<bool>("grpo.dynamic_sampling");
  g.dynamic_sampling_max_rounds = r.get<int>("grpo.dynamic_sampling_max_rounds");
  g.dynamic_sampling_filter = r.get<std::string>("grpo.dynamic_sampling_filter");
  g.mask_truncated = r.get<bool>("grpo.mask_truncated");
  g.overlong_buffer = r.get<int>("grpo.overlong_buffer");
  g.overlong_penalty = r.get<double>("grpo.overlong_penalty");
  g.max_bad_steps = r.get<int>("grpo.max_bad_steps");
  g.old_logprobs = parse_old_logprobs(r.get<std::string>("grpo.old_logprobs"));
  g.is_correction = parse_is_correction(r.get<std::string>("grpo.is_correction"));
  g.sampled_logprobs = parse_sampler_logprobs(r.get<std::string>("grpo.sampler_logprobs"));
  g.is_cap = r.get<double>("grpo.is_cap");
  g.partial_rollout_tokens = r.get<int>("grpo.partial_rollout_tokens");
  g.overprovision_prompts = r.get<int>("grpo.overprovision_prompts");
  g.lr = r.get<double>("train.lr");
  g.max_grad_norm = r.get<double>("train.max_grad_norm");
  g.schedule.kind = r.get<std::string>("train.lr_schedule");
  g.schedule.warmup_steps = r.get<int>("train.warmup_steps");
  g.schedule.min_lr_ratio = r.get<double>("train.min_lr_ratio");
  g.adamw.beta1 = float(r.get<double>("train.beta1"));
  g.adamw.beta2 = float(r.get<double>("train.beta2"));
  g.adamw.weight_decay = float(r.get<double>("train.weight_decay"));
  g.seed = uint64_t(r.get<int>("train.seed"));
  g.moe.routing_replay = r.get<bool>("train.moe.routing_replay");
  g.moe.bias_update_speed = r.get<double>("train.moe.bias_update_speed");
  g.moe.logp_gap_every = r.get<int>("train.moe.logp_gap_every");
  g.checkpointing = model::parse_checkpointing(r.get<std::string>("train.activation_checkpointing"),
                                               "recipe key 'train.activation_checkpointing'");
  g.parallel = run::parallel_config(r);
  const run::EnvSettings env = run::env_settings(r);
  g.max_turns = env.max_turns;
  g.tool_threads = env.threads;
  validate(g);
  if (g.dynamic_sampling) check_filter(r, g.dynamic_sampling_filter);
  return g;
}

std::string run_grpo(const run::Recipe& r, const GrpoRunOptions& opts) {
  // Everything that can be wrong with the inputs fails here, before any compute.
  const Device device = run::recipe_device(r);
  std::unique_ptr<text::Codec> codec = run::load_codec(r);
  std::vector<data::Problem> problems = run::load_problems(r);
  auto reward = run::make_recipe_reward(r);
  run::PromptRenderer render = run::make_renderer(r);
  const int64_t steps = r.get<int>("train.steps");
  GrpoConfig gc = grpo_config(r);
  const run::CheckpointContents contents = run::checkpoint_contents(r);
  run::export_dtype(r);  // checked before any compute, used at the end
  std::unique_ptr<env::Environment> environment = run::make_recipe_env(r, gc.seed);
  const model::ModelConfig mc = run::recipe_model_config(r, *codec);
  validate_for_model(gc, mc);
  const run::MemoryPlan memory =
      run::plan_memory(mc, memory_settings(gc, mc, run::lora_config(r), device), run::optimizer_offload(r),
                       run::free_device_memory(device), "lower grpo.rollout_batch or grpo.micro_batch_tokens",
                       run::free_host_memory_share(device));
  gc.parallel.offload.enabled = memory.offload;
  if (dist::is_root()) log::info("memory: {}", model::describe(memory.estimate));
  std::unique_ptr<model::Transformer> m =
      run::load_or_init_model(r, *codec, device, gc.seed, true, "model",
                              memory.offload ? model::MasterPlace::Host : model::MasterPlace::Device,
                              &gc.parallel.source);
  GrpoTrainer trainer(*m, *codec, *reward, problems, render, gc, steps);
  trainer.set_environment(environment.get());

  run::RunDir run(run::run_path(r));
  int64_t start = 0;
  std::optional<int64_t> resume_step;
  if (opts.resume) {
    const run::ResumePoint ck = run::resume_point(run);
    run::load_train_checkpoint(ck, *m, trainer.optimizer());
    if (trainer.reference()) load_reference(ck, gc, *trainer.reference());
    trainer.set_cursor(ck.state.at("cursor").get<int64_t>());
    if (ck.state.contains("partial_rollouts"))
      trainer.set_in_flight(in_flight_from_json(ck.state.at("partial_rollouts")));
    resume_step = ck.step;
    start = ck.step + 1;
  } else if (dist::is_root()) {
    run.write_config(r.to_yaml());
  }
  // Rank 0 writes the run directory; every rank computes and takes part in the checkpoints.
  std::optional<run::MetricsWriter> metrics;
  if (dist::is_root()) metrics.emplace(run.path(), resume_step);
  const int save_every = r.get<int>("run.save_every"), keep_last = r.get<int>("run.keep_last");
  const int samples_every = r.get<int>("run.samples_every");
  // The reference holds compute-dtype weights only, so its own dtype loses nothing. A weights-only
  // checkpoint leaves out a reference that never changes: resume rebuilds it from the recipe.
  auto save_reference = [&](const std::string& dir) {
    const model::Transformer* ref = trainer.reference();
    if (ref && (contents == run::CheckpointContents::Full || gc.ref_refresh_steps > 0))
      model::save_model(*ref, fs::join(dir, "reference"), ref->compute_dtype());
  };
  auto save = [&](int64_t step) {
    nlohmann::json state = {{"cursor", trainer.cursor()}};
    // Partial rollouts: the sequences in flight continue in the next step, so they are state.
    if (gc.partial_rollout_tokens > 0) state["partial_rollouts"] = in_flight_json(trainer.in_flight());
    run::save_train_checkpoint(run, step, *m, trainer.optimizer(), state, keep_last, contents, save_reference);
  };

  Progress bar("grpo", steps - start, "step");
  std::optional<StepStats> last;
  for (int64_t step = start; step < steps; ++step) {
    const StepStats st = trainer.step(step);
    last = st;
    // The checkpoint first, so the step's metrics carry its time (time/checkpoint, as verl's
    // timing_s/save_checkpoint); a step whose save failed is not in metrics.jsonl.
    const bool saving = (save_every > 0 && (step + 1) % save_every == 0) || step + 1 == steps;
    Timer save_time;
    if (saving) save(step);
    run::Scalars scalars = step_metrics(st);
    if (saving) scalars.emplace_back("time/checkpoint", save_time.seconds());
    if (metrics) metrics->log(step, scalars);
    if (metrics && samples_every > 0 && step % samples_every == 0) {  // rank 0's share of the samples
      std::vector<nlohmann::json> rows;
      for (const auto& s : trainer.last_samples()) {
        rows.push_back({{"problem", s.problem_id}, {"prompt", s.prompt}, {"completion", s.completion},
                        {"reward", s.reward}, {"details", s.details}});
        if (!s.turns.is_null()) rows.back()["turns"] = s.turns;
      }
      run.write_samples(step, rows);
    }
    bar.update(1, fmt::format("reward {:.3f} accuracy {:.2f} length {:.0f}", st.reward_mean, st.accuracy.value_or(0),
                              st.response_length_mean));
    run::stop_if_asked(opts, step);
  }
  bar.finish();
  run::export_trained_model(*m, trainer.optimizer(), r, run.file("model"));
  if (!dist::is_root()) return run.path();
  // The headline numbers: the last step's (a single step's reward is noisy; the report has the curves).
  nlohmann::json summary = {{"steps", steps}, {"model", run.file("model")}};
  if (last) {
    summary["reward/mean"] = last->reward_mean;
    summary["response_length/mean"] = last->response_length_mean;
    if (last->accuracy) summary["accuracy"] = *last->accuracy;
    if (last->format_rate) summary["format_rate"] = *last->format_rate;
    if (last->kl) summary["kl"] = *last->kl;
  }
  run::write_summary(run.path(), summary);
  log::info("model: {}; report: {}", run.file("model"), run::write_report(run.path()));
  return run.path();
}

}  // namespace r1::train
