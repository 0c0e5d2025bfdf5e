#include "train/grpo_stats.h"

#include <algorithm>
#include <cmath>

#include "dist/named_sums.h"

namespace r1::train {

void StepSums::add_kept(const std::vector<Group>& kept) {
  for (const Group& g : kept)
    for (const Sequence& s : g.seqs) {
      sequences += 1;
      const double model_tokens = double(rollout::model_token_count(s.out));  // observations excluded
      gen_tokens += model_tokens;
      length_max = std::max(length_max, model_tokens);
      kept_reward_sum += s.reward;
      kept_reward_sq += s.reward * s.reward;
    }
}

void StepSums::add_rollout(const rollout::GenerateStats& before, const rollout::GenerateStats& after) {
  preemptions += double(after.preemptions - before.preemptions);
  decode_seqs += double(after.decode_seqs - before.decode_seqs);
  decode_steps += double(after.decode_steps - before.decode_steps);
  decode_capacity += double(after.decode_capacity - before.decode_capacity);
  kv_blocks = double(after.kv_blocks);
  kv_blocks_peak = std::max(kv_blocks_peak, double(after.kv_blocks_peak));
}

void StepSums::add_update(const UpdateStats& u) {
  loss_sum += u.loss_sum;
  clipped += u.clipped;
  kl_sum += u.kl_sum;
  loss_tokens += u.loss_tokens;
  entropy_sum += u.entropy_sum;
  entropy_tokens += u.entropy_tokens;
  micro_batches += double(u.micro_batches);
  checkpointed += double(u.checkpointed);
  clipped_first += u.clipped_first;
  tokens_first += u.tokens_first;
  routes.add(u.routes);
}

void StepSums::add_gap(const SamplerGap& g) {
  gap_sum += g.sum_abs;
  gap_tokens += double(g.tokens);
  gap_masked += double(g.masked);
  gap_weight_sum += g.weight_sum;
  gap_max = std::max(gap_max, g.max_abs);
}

void all_reduce(dist::Comm& host, StepSums& s) {
  if (host.size() == 1) return;
  double* summed[] = {&s.scored.completions,
                      &s.scored.score_sum,
                      &s.scored.truncated,
                      &s.scored.overlong_penalty_sum,
                      &s.scored.timeouts,
                      &s.scored.episodes,
                      &s.scored.tool_calls,
                      &s.scored.tool_errors,
                      &s.scored.turns,
                      &s.sequences,
                      &s.gen_tokens,
                      &s.kept_reward_sum,
                      &s.kept_reward_sq,
                      &s.kl_reward_sum,
                      &s.reflection_hits,
                      &s.loss_sum,
                      &s.clipped,
                      &s.kl_sum,
                      &s.loss_tokens,
                      &s.entropy_sum,
                      &s.entropy_tokens,
                      &s.clipped_first,
                      &s.tokens_first,
                      &s.gap_sum,
                      &s.gap_tokens,
                      &s.gap_masked,
                      &s.gap_weight_sum,
                      &s.preemptions,
                      &s.decode_seqs,
                      &s.decode_steps,
                      &s.decode_capacity,
                      &s.carried_seqs,
                      &s.carried_tokens,
                      &s.micro_batches,
                      &s.checkpointed,
                      &s.moe_gap.tokens,
                      &s.moe_gap.replay_sum,
                      &s.moe_gap.router_sum,
                      &s.moe_gap.replayed,
                      &s.moe_gap.replaced};
  double* maxed[] = {&s.length_max,      &s.t_rollout,          &s.t_reward,           &s.t_reference,
                     &s.t_train,         &s.gap_max,            &s.kv_blocks,          &s.kv_blocks_peak,
                     &s.activation_peak, &s.moe_gap.replay_max, &s.moe_gap.router_max, &s.mem_held,
                     &s.mem_rollout,     &s.mem_reference,      &s.mem_update,         &s.mem_host,
                     &s.version_lag_max};
  auto reduce = [&](auto& fields, dist::Op op) {
    std::vector<double> v;
    for (double* f : fields) v.push_back(*f);
    host.all_reduce(v.data(), int64_t(v.size()), dist::Type::F64, op);
    for (size_t i = 0; i < v.size(); ++i) *fields[i] = v[i];
  };
  reduce(summed, dist::Op::Sum);
  reduce(maxed, dist::Op::Max);
  dist::all_reduce_sums(host, s.scored.part_sums);  // a rank may lack a part another has
  all_reduce(host, s.routes);
}

StepStats summarize(const StepSums& sums, const GroupCounts& groups, const UpdateStats& update,
                    const GrpoConfig& cfg, double lr, bool has_reference, int ranks) {
  StepStats st;
  const double n = std::max(1.0, sums.scored.completions), kept = sums.sequences;
  st.reward_mean = sums.scored.score_sum / n;
  // Spread of the kept (shaped) rewards around the mean score of every sample.
  const double m = st.reward_mean;
  const double var = sums.kept_reward_sq - 2 * m * sums.kept_reward_sum + kept * m * m;
  st.reward_std = kept > 1 ? std::sqrt(std::max(0.0, var) / (kept - 1)) : 0.0;
  for (const auto& [name, v] : sums.scored.part_sums) st.reward_parts[name] = v / n;
  if (st.reward_parts.count("math")) st.accuracy = st.reward_parts.at("math");
  if (st.reward_parts.count("format")) st.format_rate = st.reward_parts.at("format");
  st.response_length_mean = kept > 0 ? sums.gen_tokens / kept : 0.0;
  st.response_length_max = sums.length_max;
  st.truncated_frac = sums.scored.truncated / n;
  st.reward_timeouts = int64_t(sums.scored.timeouts);
  if (cfg.overlong_buffer > 0) st.overlong_penalty = sums.scored.overlong_penalty_sum / n;
  st.reflection_rate = sums.reflection_hits / n;
  if (sums.scored.episodes > 0) {
    st.turns_per_episode = sums.scored.turns / sums.scored.episodes;
    st.tool_calls_per_episode = sums.scored.tool_calls / sums.scored.episodes;
    st.tool_error_rate = sums.scored.tool_calls > 0 ? sums.scored.tool_errors / sums.scored.tool_calls : 0.0;
  }

  st.loss = update.updates ? sums.loss_sum / double(cfg.ppo_epochs) : 0.0;
  st.clip_fraction = sums.loss_tokens > 0 ? sums.clipped / sums.loss_tokens : 0.0;
  if (has_reference)
    st.kl = cfg.kl_in_reward ? sums.kl_reward_sum / std::max(1.0, sums.gen_tokens)
                             : (sums.loss_tokens > 0 ? sums.kl_sum / sums.loss_tokens : 0.0);
  st.clip_fraction_first = sums.tokens_first > 0 ? sums.clipped_first / sums.tokens_first : 0.0;
  if (sums.gap_tokens > 0) {
    st.logp_gap_max = sums.gap_max;
    st.logp_gap_mean = sums.gap_sum / sums.gap_tokens;
  }
  if (cfg.old_logprobs == OldLogprobs::Trainer && sums.gap_tokens > 0) {
    st.is_corrected_frac = sums.gap_masked / sums.gap_tokens;
    st.is_weight_mean = sums.gap_weight_sum / sums.gap_tokens;
  }
  st.entropy = sums.entropy_tokens > 0 ? sums.entropy_sum / sums.entropy_tokens : 0.0;
  st.grad_norm = update.updates ? update.grad_norm_sum / double(update.updates) : 0.0;
  st.lr = lr;
  st.updates = update.updates;
  st.skipped_updates = update.skipped;
  st.epoch_loss = update.epoch_loss;
  st.micro_batches = int64_t(sums.micro_batches);
  st.checkpointed_micro_batches = int64_t(sums.checkpointed);
  st.activation_mib = sums.activation_peak / double(1 << 20);

  st.groups = groups.kept;
  st.prompts_too_long = groups.too_long;
  st.sampling_rounds = groups.rounds;
  st.zero_variance_groups = groups.scored ? double(groups.zero_variance) / double(groups.scored) : 0.0;
  st.filtered_groups = groups.scored ? double(groups.filtered) / double(groups.scored) : 0.0;
  st.batch_fill = double(groups.kept) / double(cfg.prompts_per_step);

  st.time_rollout = sums.t_rollout;
  st.time_reward = sums.t_reward;
  st.time_reference = sums.t_reference;
  st.time_train = sums.t_train;
  st.tokens_per_s = sums.t_rollout > 0 ? sums.gen_tokens / sums.t_rollout : 0.0;
  st.kv_blocks = int64_t(sums.kv_blocks);
  st.kv_blocks_peak = int64_t(sums.kv_blocks_peak);
  st.preemptions = int64_t(sums.preemptions);
  st.concurrency = sums.decode_steps > 0 ? sums.decode_seqs / sums.decode_steps : 0.0;
  st.occupancy = sums.decode_capacity > 0 ? sums.decode_seqs / sums.decode_capacity : 0.0;
  if (cfg.partial_rollout_tokens > 0) {
    st.carried_seqs = sums.carried_seqs;
    st.carried_tokens = sums.carried_tokens;
    st.version_lag_max = sums.version_lag_max;
  }
  st.memory_held = sums.mem_held;
  st.memory_rollout = sums.mem_rollout;
  st.memory_reference = sums.mem_reference;
  st.memory_update = sums.mem_update;
  st.memory_host = sums.mem_host;
  st.ranks = ranks;
  st.moe = moe_metrics(sums.moe_gap, sums.routes);
  return st;
}

run::Scalars step_metrics(const StepStats& s) {
  run::Scalars m = {{"reward/mean", s.reward_mean}, {"reward/std", s.reward_std}};
  for (const auto& [name, v] : s.reward_parts) m.emplace_back("reward/" + name, v);
  if (s.accuracy) m.emplace_back("accuracy", *s.accuracy);
  if (s.format_rate) m.emplace_back("format_rate", *s.format_rate);
  m.insert(m.end(), {{"response_length/mean", s.response_length_mean},
                     {"response_length/max", s.response_length_max},
                     {"truncated_frac", s.truncated_frac},
                     {"reward_timeouts", double(s.reward_timeouts)}});
  if (s.overlong_penalty) m.emplace_back("overlong_penalty", *s.overlong_penalty);
  if (s.turns_per_episode)
    m.insert(m.end(), {{"env/turns_per_episode", *s.turns_per_episode},
                       {"env/tool_calls_per_episode", *s.tool_calls_per_episode},
                       {"env/tool_error_rate", *s.tool_error_rate}});
  m.insert(m.end(), {{"loss", s.loss}, {"clip_fraction", s.clip_fraction}, {"clip_fraction_first", s.clip_fraction_first}});
  if (s.logp_gap_max) m.insert(m.end(), {{"logp_gap/max", *s.logp_gap_max}, {"logp_gap/mean", *s.logp_gap_mean}});
  if (s.is_corrected_frac)
    m.insert(m.end(), {{"is/corrected_frac", *s.is_corrected_frac}, {"is/weight_mean", *s.is_weight_mean}});
  if (s.kl) m.emplace_back("kl", *s.kl);
  m.insert(m.end(), {{"entropy", s.entropy},
                     {"grad_norm", s.grad_norm},
                     {"lr", s.lr},
                     {"updates", double(s.updates)},
                     {"skipped_updates", double(s.skipped_updates)},
                     {"micro_batches", double(s.micro_batches)},
                     {"checkpointed_micro_batches", double(s.checkpointed_micro_batches)},
                     {"memory/activations_mib", s.activation_mib},
                     {"zero_variance_groups", s.zero_variance_groups},
                     {"filtered_groups", s.filtered_groups},
                     {"groups", double(s.groups)},
                     {"batch_fill", s.batch_fill},
                     {"sampling_rounds", double(s.sampling_rounds)},
                     {"prompts_too_long", double(s.prompts_too_long)},
                     {"reflection_rate", s.reflection_rate},
                     {"time/rollout", s.time_rollout},
                     {"time/reward", s.time_reward},
                     {"time/reference", s.time_reference},
                     {"time/train", s.time_train},
                     {"time/step", s.time_step},
                     {"tokens_per_s", s.tokens_per_s},
                     {"rollout/kv_blocks", double(s.kv_blocks)},
                     {"rollout/kv_blocks_peak", double(s.kv_blocks_peak)},
                     {"rollout/preemptions", double(s.preemptions)},
                     {"rollout/concurrency", s.concurrency},
                     {"rollout/occupancy", s.occupancy}});
  if (s.carried_seqs)
    m.insert(m.end(), {{"partial/carried_seqs", *s.carried_seqs},
                       {"partial/carried_tokens", *s.carried_tokens},
                       {"partial/version_lag_max", *s.version_lag_max}});
  const double GiB = double(1 << 30);
  m.insert(m.end(), {{"memory/held_gib", s.memory_held / GiB},
                     {"memory/rollout_gib", s.memory_rollout / GiB},
                     {"memory/reference_gib", s.memory_reference / GiB},
                     {"memory/update_gib", s.memory_update / GiB},
                     {"memory/host_peak_gib", s.memory_host / GiB}});
  if (s.ranks > 1) m.emplace_back("ranks", double(s.ranks));
  m.insert(m.end(), s.moe.begin(), s.moe.end());
  return m;
}

}  // namespace r1::train
