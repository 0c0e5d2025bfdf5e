#include "train/grpo_config.h"

#include <cmath>

#include "base/error.h"

namespace r1::train {

namespace {

void at_least(const char* key, double v, double lo) {
  R1_CHECK(std::isfinite(v) && v >= lo, "{} must be >= {}, got {}", key, lo, v);
}

void below_one(const char* key, double v) {
  R1_CHECK(std::isfinite(v) && v >= 0 && v < 1, "{} must be in [0, 1), got {}", key, v);
}

void validate_sampling(const GrpoConfig& c) {
  at_least("grpo.prompts_per_step", c.prompts_per_step, 1);
  R1_CHECK(c.group_size >= 2, "grpo.group_size must be >= 2 for group-relative advantages, got {}",
           c.group_size);
  at_least("grpo.max_prompt_tokens", c.max_prompt_tokens, 1);
  at_least("grpo.max_completion_tokens", c.max_completion_tokens, 1);
  // The loss's log-probs are taken at the sampling temperature: 0 (greedy) has none.
  R1_CHECK(std::isfinite(c.temperature) && c.temperature > 0, "grpo.temperature must be > 0, got {}",
           c.temperature);
  R1_CHECK(std::isfinite(c.top_p) && c.top_p > 0 && c.top_p <= 1, "grpo.top_p must be in (0, 1], got {}",
           c.top_p);
  at_least("grpo.top_k", c.top_k, 0);
  at_least("env.max_turns", c.max_turns, 0);
  at_least("env.threads", c.tool_threads, 1);
  at_least("grpo.rollout_batch", c.rollout_batch, 1);
  R1_CHECK(std::isfinite(c.kv_memory_fraction) && c.kv_memory_fraction > 0 && c.kv_memory_fraction <= 1,
           "rollout.kv_memory_fraction must be in (0, 1], got {}", c.kv_memory_fraction);
  at_least("rollout.kv_cache_tokens", double(c.kv_cache_tokens), 0);
  at_least("rollout.kv_block_size", c.kv_block_size, 1);
  at_least("grpo.partial_rollout_tokens (0: off)", c.partial_rollout_tokens, 0);
  at_least("grpo.overprovision_prompts", c.overprovision_prompts, 0);
  R1_CHECK(c.overprovision_prompts == 0 || c.partial_rollout_tokens > 0,
           "grpo.overprovision_prompts ({}) needs grpo.partial_rollout_tokens > 0: without a per-step budget "
           "every group runs to its end within the step, so the extra prompts would save nothing",
           c.overprovision_prompts);
}

void validate_loss(const GrpoConfig& c) {
  const GrpoLossConfig& l = c.loss;
  below_one("grpo.clip_low", l.clip_low);  // the ratio's floor, 1 - clip_low, stays positive
  at_least("grpo.clip_high", l.clip_high, 0);
  // Clip-higher (DAPO) widens the upper bound only; a narrower one is a swapped pair.
  R1_CHECK(l.clip_low <= l.clip_high, "grpo.clip_low ({}) must be <= grpo.clip_high ({})", l.clip_low,
           l.clip_high);
  at_least("grpo.kl_coef", l.kl_coef, 0);
  R1_CHECK(!c.kl_in_reward || l.kl_coef > 0,
           "grpo.kl_in_reward is set but grpo.kl_coef is 0: no KL would be applied");
  at_least("grpo.ref_refresh_steps", c.ref_refresh_steps, 0);
  R1_CHECK(c.ref_refresh_steps == 0 || l.kl_coef > 0,
           "grpo.ref_refresh_steps is {} but grpo.kl_coef is 0: there is no reference model to refresh",
           c.ref_refresh_steps);
  at_least("grpo.norm_constant", l.norm_constant, 0);
  R1_CHECK(l.norm_constant == 0 || l.reduction == LossReduction::SeqMeanTokenSumNorm,
           "grpo.norm_constant ({}) applies only to grpo.loss_reduction seq_mean_token_sum_norm, not {}",
           l.norm_constant, reduction_name(l.reduction));
}

void validate_updates(const GrpoConfig& c) {
  at_least("grpo.ppo_epochs", c.ppo_epochs, 1);
  at_least("grpo.mini_batches", c.mini_batches, 1);
  R1_CHECK(c.mini_batches <= c.prompts_per_step * c.group_size,
           "grpo.mini_batches ({}) exceeds the sequences of a step (prompts_per_step x group_size = {})",
           c.mini_batches, c.prompts_per_step * c.group_size);
  at_least("grpo.micro_batch_tokens", c.micro_batch_tokens, 1);
  at_least("grpo.max_bad_steps", c.max_bad_steps, 1);
  R1_CHECK(c.is_correction == IsCorrection::None || c.old_logprobs == OldLogprobs::Trainer,
           "grpo.is_correction needs grpo.old_logprobs: trainer (the correction weighs the trainer's pi_old against "
           "the sampler's)");
  R1_CHECK(!c.sampled_logprobs || c.old_logprobs == OldLogprobs::Trainer,
           "grpo.sampler_logprobs: sampled needs grpo.old_logprobs: trainer (as pi_old, the truncated "
           "distribution's log-probs would put the truncation into every ratio)");
  R1_CHECK(!c.sampled_logprobs || c.partial_rollout_tokens == 0,
           "grpo.sampler_logprobs: sampled cannot be used with grpo.partial_rollout_tokens (carried tokens "
           "keep the sampler's log-probs as pi_old)");
  R1_CHECK(!c.exact_logprobs || !c.sampled_logprobs,
           "rollout.exact_logprobs reports the trainer's tempered log-probs; grpo.sampler_logprobs: sampled asks "
           "for the truncated distribution's (use one or the other)");
  R1_CHECK(std::isfinite(c.is_cap) && c.is_cap > 1.0, "grpo.is_cap must be > 1, got {}", c.is_cap);
  at_least("train.lr", c.lr, 0);
  at_least("train.max_grad_norm (0: no clipping)", c.max_grad_norm, 0);
  below_one("train.beta1", c.adamw.beta1);
  below_one("train.beta2", c.adamw.beta2);
  at_least("train.weight_decay", c.adamw.weight_decay, 0);
}

void validate_shaping(const GrpoConfig& c) {
  R1_CHECK(c.dynamic_sampling_max_rounds >= 1,
           "grpo.dynamic_sampling_max_rounds must be >= 1 (rollout rounds a step may spend filling its "
           "batch), got {}",
           c.dynamic_sampling_max_rounds);
  R1_CHECK(!c.dynamic_sampling_filter.empty(),
           "grpo.dynamic_sampling_filter is empty (a reward part, or 'reward')");
  R1_CHECK(c.overlong_buffer >= 0 && c.overlong_buffer < c.max_completion_tokens,
           "grpo.overlong_buffer must be in [0, grpo.max_completion_tokens = {}), got {}",
           c.max_completion_tokens, c.overlong_buffer);
  at_least("grpo.overlong_penalty", c.overlong_penalty, 0);
}

void validate_moe(const GrpoConfig& c) {
  at_least("train.moe.bias_update_speed", c.moe.bias_update_speed, 0);
  at_least("train.moe.logp_gap_every", c.moe.logp_gap_every, 0);
}

}  // namespace

OldLogprobs parse_old_logprobs(const std::string& s) {
  if (s == "sampler") return OldLogprobs::Sampler;
  if (s == "trainer") return OldLogprobs::Trainer;
  fail("grpo.old_logprobs must be sampler or trainer, got '{}'", s);
}

bool parse_sampler_logprobs(const std::string& s) {
  if (s == "tempered") return false;
  if (s == "sampled") return true;
  fail("grpo.sampler_logprobs must be tempered or sampled, got '{}'", s);
}

IsCorrection parse_is_correction(const std::string& s) {
  if (s == "none") return IsCorrection::None;
  if (s == "tis") return IsCorrection::Tis;
  if (s == "mis") return IsCorrection::Mis;
  fail("grpo.is_correction must be none, tis or mis, got '{}'", s);
}

void validate(const GrpoConfig& c) {
  validate_sampling(c);
  validate_loss(c);
  validate_updates(c);
  validate_shaping(c);
  validate_moe(c);
}

void validate_for_model(const GrpoConfig& c, const model::ModelConfig& mc) {
  R1_CHECK(!c.exact_logprobs || !mc.is_mla(),
           "rollout.exact_logprobs does not support MLA models ({}): decoding attends over the latent cache in the "
           "absorbed form, a different product from the training forward's",
           mc.model_type);
  const int64_t longest = int64_t(c.max_prompt_tokens) + c.max_completion_tokens, limit = mc.max_position_embeddings;
  R1_CHECK(limit <= 0 || longest <= limit,
           "grpo.max_prompt_tokens + grpo.max_completion_tokens = {} + {} = {} exceeds the model's "
           "max_position_embeddings ({}): such a sequence cannot be trained; lower grpo.max_completion_tokens to {} "
           "or less",
           c.max_prompt_tokens, c.max_completion_tokens, longest, limit, limit - c.max_prompt_tokens);
}

GrpoLossConfig update_loss_config(const GrpoConfig& c) {
  GrpoLossConfig l = c.loss;
  if (c.kl_in_reward) l.kl_coef = 0.0;  // the penalty is already in the rewards
  if (l.reduction == LossReduction::SeqMeanTokenSumNorm && l.norm_constant == 0.0)
    l.norm_constant = c.max_completion_tokens;
  return l;
}

rollout::EngineConfig engine_config(const GrpoConfig& c) {
  rollout::EngineConfig e;
  e.max_batch = c.rollout_batch;
  e.max_seq_len = c.max_prompt_tokens + c.max_completion_tokens;
  e.prefill_tokens = 8192;
  e.kv_memory_fraction = c.kv_memory_fraction;
  e.kv_cache_tokens = c.kv_cache_tokens;
  e.kv_block_size = c.kv_block_size;
  return e;
}

}  // namespace r1::train
