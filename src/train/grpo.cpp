#include "train/grpo.h"
#include "train/grpo_offpolicy.h"
#include "train/grpo_partial.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/host_memory.h"
#include "base/log.h"
#include "base/rng.h"
#include "base/timer.h"
#include "dist/world.h"
#include "env/episodes.h"
#include "kernels/ops.h"
#include "tensor/device_memory.h"
#include "reward/reflection.h"

namespace r1::train {

GrpoTrainer::GrpoTrainer(model::Transformer& policy, const text::Codec& codec, const reward::Reward& reward,
                         std::vector<data::Problem> train_set,
                         std::function<std::string(const data::Problem&)> render_prompt, GrpoConfig cfg,
                         int64_t total_steps)
    : policy_(policy),
      codec_(codec),
      reward_(reward),
      train_(std::move(train_set)),
      render_(std::move(render_prompt)),
      cfg_(std::move(cfg)),
      invariant_(cfg_.exact_logprobs),
      total_steps_(total_steps),
      dp_(policy, cfg_.adamw, cfg_.parallel) {
  validate(cfg_);
  R1_CHECK(!cfg_.exact_logprobs || !policy_.has_lora() || policy_.lora().dropout == 0.0,
           "rollout.exact_logprobs needs train.lora.dropout: 0 (the training forward's dropout masks are not the "
           "sampler's)");
  R1_CHECK(cfg_.prompts_per_step % dp_.world_size() == 0,
           "grpo.prompts_per_step ({}) must be a multiple of the number of ranks ({}), so each rank rolls "
           "out as many groups",
           cfg_.prompts_per_step, dp_.world_size());
  R1_CHECK(!train_.empty(), "grpo: the training set is empty");
  R1_CHECK(codec_.vocab_size() <= policy_.config().vocab_size,
           "grpo: the tokenizer has {} ids but the model's vocabulary is {}", codec_.vocab_size(),
           policy_.config().vocab_size);
  if (cfg_.loss.kl_coef != 0.0 && policy_.has_lora()) {
    // LoRA trains adapters over a frozen base: the base itself is the reference (the adapters off
    // in the reference pass), with no second copy of the weights.
    R1_CHECK(cfg_.ref_refresh_steps == 0,
             "grpo.ref_refresh_steps ({}) with train.lora: the reference is the frozen base model (the "
             "adapters off), which never changes; refreshing it to the policy would need a second, "
             "merged copy. Set grpo.ref_refresh_steps=0 or train without LoRA",
             cfg_.ref_refresh_steps);
    base_reference_ = true;
    ref_state_.adapters = false;
  } else if (cfg_.loss.kl_coef != 0.0) {
    // Frozen: compute weights only (bf16 on CUDA), no gradients, inference-memory forwards.
    ref_ = std::make_unique<model::Transformer>(policy_.config(), policy_.device(), /*trainable=*/false);
    dp_.with_whole_weights([&] { model::copy_weights(*ref_, policy_); });
  }
  check_moe_options(cfg_.moe, policy_);
  if (cfg_.partial_rollout_tokens > 0) {
    R1_CHECK(
        dp_.world_size() == 1,
        "grpo.partial_rollout_tokens ({}) with {} ranks: partial rollouts run in one process only (the ranks "
        "would have to agree on groups finished at different steps)",
        cfg_.partial_rollout_tokens, dp_.world_size());
    R1_CHECK(
        !records_routes(cfg_.moe, policy_.config()),
        "grpo.partial_rollout_tokens with train.moe.routing_replay: a carried sequence's routes are not kept "
        "across steps; turn one of them off");
  }
  // parallel.shard: full: the update's passes gather the policy's weights unit by unit; the
  // rollouts and the no-gradient passes run on the whole weights (step()).
  state_.weight_units = dp_.weight_units();
  R1_CHECK(!state_.weight_units || cfg_.moe.bias_update_speed == 0,
           "moe.bias_update_speed writes the routers' biases into the whole weights after each step, which "
           "parallel.shard: full does not hold; use parallel.shard: gradients");
  // Last, so its pool is sized from the memory the weights, optimizer and reference leave free; a
  // size that cannot hold one sequence fails here, before any compute. On CUDA the pool's memory
  // is resident only while rollouts run (step(): each phase frees what it used).
  engine_ = std::make_unique<rollout::Engine>(policy_, engine_config(cfg_));
  engine_->release_kv_memory();
  state_.dropout_seed = cfg_.seed;  // LoRA dropout masks: fixed by (seed, step, epoch, batch)
  state_.checkpointing = cfg_.checkpointing;
  if (cfg_.schedule.total_steps <= 1) cfg_.schedule.total_steps = std::max<int64_t>(1, total_steps_);
  cfg_.schedule.lr = cfg_.lr;
  optim::validate(cfg_.schedule);
}

std::vector<int64_t> GrpoTrainer::next_prompts(int64_t n) {
  // A fresh permutation of the training set every epoch, fixed by (seed, epoch).
  const int64_t N = int64_t(train_.size());
  std::vector<int64_t> out;
  std::vector<int64_t> perm;
  int64_t perm_epoch = -1;
  for (int64_t i = 0; i < n; ++i, ++cursor_) {
    const int64_t epoch = cursor_ / N;
    if (epoch != perm_epoch) {
      perm = permutation(N, cfg_.seed, 1000 + uint64_t(epoch));
      perm_epoch = epoch;
    }
    out.push_back(perm[size_t(cursor_ % N)]);
  }
  return out;
}

void GrpoTrainer::set_environment(const env::Environment* env) {
  R1_CHECK(
      !env || cfg_.partial_rollout_tokens == 0,
      "grpo.partial_rollout_tokens ({}) with an environment (env.*): multi-turn episodes are not carried "
      "across steps; set grpo.partial_rollout_tokens=0",
      cfg_.partial_rollout_tokens);
  env_ = env;
}

void GrpoTrainer::set_in_flight(std::vector<Group> groups) {
  for (Group& g : groups) {
    R1_CHECK(
        g.problem >= 0 && g.problem < int64_t(train_.size()) && int64_t(g.seqs.size()) == cfg_.group_size,
        "checkpoint state: a group in flight names problem {} of {} with {} samples (grpo.group_size {}); "
        "resume with the data and recipe the checkpoint was written with",
        g.problem, train_.size(), g.seqs.size(), cfg_.group_size);
    g.prompt_text = render_(train_[size_t(g.problem)]);
    for (Sequence& s : g.seqs)
      if (rollout_done(s, cfg_.max_completion_tokens)) s.text = env::model_text(s.out, codec_);
  }
  in_flight_ = std::move(groups);
}

void GrpoTrainer::keep_samples(const std::vector<Group>& groups) {
  for (const Group& g : groups)
    for (size_t s = 0; s < std::min<size_t>(2, g.seqs.size()) && samples_.size() < 32; ++s)
      samples_.push_back({train_[size_t(g.problem)].id, g.prompt_text, g.seqs[s].text, g.seqs[s].score,
                          g.seqs[s].details,
                          env_ ? env::trajectory_turns(g.seqs[s].out, codec_) : nlohmann::json()});
}

namespace {

// Each slot of a round's draw, as the rank that scored it saw it; summed over the ranks.
constexpr int64_t kTooLong = 1, kScored = 2, kZeroVariance = 4, kFiltered = 8;

std::vector<int64_t> slot_verdicts(const std::vector<Group>& groups, const std::vector<int64_t>& too_long,
                                   int64_t slots, bool dynamic_sampling, dist::Comm& host) {
  std::vector<int64_t> status(size_t(slots), 0);
  for (int64_t slot : too_long) status[size_t(slot)] = kTooLong;
  for (const Group& g : groups) {
    const GroupVerdict v = judge_group(g, dynamic_sampling);
    status[size_t(g.slot)] = kScored | (v.zero_variance ? kZeroVariance : 0) | (v.filtered ? kFiltered : 0);
  }
  if (host.size() > 1) host.all_reduce(status.data(), slots, dist::Type::I64);
  return status;
}

}  // namespace

std::vector<Group> GrpoTrainer::sample_and_score(const std::vector<PromptDraw>& draws, uint64_t seed,
                                                 std::vector<int64_t>& too_long, StepSums& sums,
                                                 std::vector<std::string>& texts) {
  std::vector<Group> groups =
      render_prompts(draws, train_, render_, codec_, cfg_.max_prompt_tokens, too_long);
  Timer t_rollout;
  const rollout::GenerateStats before = engine_->stats();
  sample_groups(*engine_, codec_, train_, cfg_, seed, groups, env_);
  sums.t_rollout += t_rollout.seconds();
  sums.add_rollout(before, engine_->stats());
  Timer t_reward;
  sums.scored.add(score_groups(groups, reward_, train_, cfg_));
  sums.t_reward += t_reward.seconds();
  for (const Group& g : groups)
    for (const Sequence& s : g.seqs) texts.push_back(s.text);
  keep_samples(groups);
  return groups;
}

GrpoTrainer::Collected GrpoTrainer::collect(int64_t step, StepSums& sums) {
  // Every rank draws the same prompts; rank r rolls out and scores a contiguous block of them
  // (whole groups), and a sample's randomness depends on (seed, problem, sample) only, so the
  // rollouts are those of a single process. Which groups are kept is decided from every rank's
  // verdicts, identically, in draw order.
  dist::Comm& host = dist::host_comm();
  const int64_t P = cfg_.prompts_per_step;
  const int rounds = cfg_.dynamic_sampling ? cfg_.dynamic_sampling_max_rounds : 1;
  Collected c;
  std::vector<std::string> texts;
  samples_.clear();
  for (int round = 0; round < rounds && c.counts.kept < P; ++round) {
    ++c.counts.rounds;
    const int64_t need = P - c.counts.kept;
    const std::vector<int64_t> drawn = next_prompts(need);
    const auto [lo, hi] = host.share(need);
    std::vector<PromptDraw> mine;
    for (int64_t j = lo; j < hi; ++j) mine.push_back({j, drawn[size_t(j)]});
    std::vector<int64_t> too_long;
    std::vector<Group> groups = sample_and_score(mine, sampling_seed(cfg_.seed, step), too_long, sums, texts);
    const std::vector<int64_t> status = slot_verdicts(groups, too_long, need, cfg_.dynamic_sampling, host);
    size_t next_mine = 0;  // `groups` holds this rank's scored slots, in slot order
    for (int64_t j = 0; j < need; ++j) {
      const int64_t st = status[size_t(j)];
      if (st & kTooLong) {
        ++c.counts.too_long;
        continue;
      }
      Group* g = j >= lo && j < hi ? &groups[next_mine++] : nullptr;
      ++c.counts.scored;
      c.counts.zero_variance += (st & kZeroVariance) != 0;
      if (st & kFiltered) {
        ++c.counts.filtered;
        continue;
      }
      if (g) {
        g->kept_index = c.counts.kept;
        c.kept.push_back(std::move(*g));
      }
      ++c.counts.kept;
    }
  }
  sums.reflection_hits = std::round(reward::reflection_rate(texts) * double(texts.size()));
  if (cfg_.dynamic_sampling && c.counts.kept < P && dist::is_root())
    log::warn(
        "step {}: dynamic sampling filled {} of {} groups in {} rounds (grpo.dynamic_sampling_max_rounds); "
        "{} of {} scored groups had no spread in '{}'. Training on the {} kept",
        step, c.counts.kept, P, c.counts.rounds, c.counts.filtered, c.counts.scored,
        cfg_.dynamic_sampling_filter, c.counts.kept);
  return c;
}

GrpoTrainer::Collected GrpoTrainer::collect_partial(int64_t step, StepSums& sums) {
  const int64_t P = cfg_.prompts_per_step;
  Collected c;
  c.counts.rounds = 1;
  samples_.clear();
  // New prompts take the places of the groups trained on, to keep P + overprovision in flight.
  const int64_t fresh = std::max<int64_t>(0, P + cfg_.overprovision_prompts - int64_t(in_flight_.size()));
  const int64_t first_draw = cursor_;
  const std::vector<int64_t> drawn = next_prompts(fresh);
  std::vector<PromptDraw> draws;
  for (int64_t j = 0; j < fresh; ++j) draws.push_back({first_draw + j, drawn[size_t(j)]});
  std::vector<int64_t> too_long;
  for (Group& g : render_prompts(draws, train_, render_, codec_, cfg_.max_prompt_tokens, too_long)) {
    g.draw = g.slot;
    in_flight_.push_back(std::move(g));
  }
  c.counts.too_long = int64_t(too_long.size());
  Timer t_rollout;
  const rollout::GenerateStats before = engine_->stats();
  roll_segment(*engine_, codec_, train_, cfg_, sampling_seed(cfg_.seed, step), step, in_flight_);
  sums.t_rollout += t_rollout.seconds();
  sums.add_rollout(before, engine_->stats());
  std::vector<std::string> texts;
  while (c.counts.kept < P) {  // more when dynamic sampling drops some
    std::vector<Group> done = take_finished(in_flight_, P - c.counts.kept, cfg_.max_completion_tokens);
    if (done.empty()) break;
    Timer t_reward;
    sums.scored.add(score_groups(done, reward_, train_, cfg_));
    sums.t_reward += t_reward.seconds();
    for (const Group& g : done)
      for (const Sequence& s : g.seqs) texts.push_back(s.text);
    keep_samples(done);
    for (Group& g : done) {
      const GroupVerdict v = judge_group(g, cfg_.dynamic_sampling);
      ++c.counts.scored;
      c.counts.zero_variance += v.zero_variance;
      if (v.filtered) {
        ++c.counts.filtered;
        continue;
      }
      g.kept_index = c.counts.kept++;
      c.kept.push_back(std::move(g));
    }
  }
  const Carried carry = carried(in_flight_, cfg_.max_completion_tokens);
  sums.carried_seqs = carry.seqs;
  sums.carried_tokens = carry.tokens;
  sums.version_lag_max = double(max_version_lag(c.kept, step));
  sums.reflection_hits = std::round(reward::reflection_rate(texts) * double(texts.size()));
  return c;
}

namespace {

// Each phase starts from the persistent state alone: what the previous phase used is freed first
// (activation arenas, the kernels' scratch; the rollout engine frees its KV cache as it ends), so
// the rollouts' KV cache never sits beside the training activations. Records the bytes held at the
// start (the largest start) and the phase's peak.
struct PhaseMemory {
  Device device;
  StepSums& sums;
  void start(std::initializer_list<model::TrainState*> release) {
    for (model::TrainState* s : release) s->release();
    ops::release_workspace();
    reset_memory_peak(device);
    sums.mem_held = std::max(sums.mem_held, double(memory_use(device).now));
  }
  void end(double& peak) { peak = std::max(peak, double(memory_use(device).peak)); }
};

}  // namespace

StepStats GrpoTrainer::step(int64_t step) {
  Timer t_step;
  dist::Comm& host = dist::host_comm();
  StepSums sums;
  PhaseMemory memory{policy_.device(), sums};
  const bool partial = cfg_.partial_rollout_tokens > 0;
  Collected batch;
  std::vector<MiniBatch> plan;
  const MoeRlConfig& moe = cfg_.moe;
  Timer t_reference;
  // Everything before the update reads the policy's whole weights: at level full they are gathered
  // for it (each rank holds them whole for the rollouts, as the rollout engine's copy) and the
  // no-gradient passes read them in place (no unit-by-unit gathers, whose counts would differ).
  model::WeightUnits* units = state_.weight_units;
  state_.weight_units = nullptr;
  dp_.with_whole_weights([&] {
    if (ref_ && cfg_.ref_refresh_steps > 0 && step > 0 && step % cfg_.ref_refresh_steps == 0)
      model::copy_weights(*ref_, policy_);
    memory.start({&state_, &ref_state_});
    engine_->reset_kv_peak();
    batch = partial ? collect_partial(step, sums) : collect(step, sums);  // sample -> score -> filter/refill
    memory.end(sums.mem_rollout);
    // GPU memory: the KV cache pool is given back to the training step (and taken again, at the
    // same address, by the next rollout); the CPU path's scratch too.
    engine_->release_kv_memory();
    plan = plan_mini_batches(batch.kept, batch.counts.kept, cfg_.group_size, cfg_.mini_batches,
                             cfg_.micro_batch_tokens, host);
    if (moe.logp_gap_every > 0 && step % moe.logp_gap_every == 0 && records_routes(moe, policy_.config()))
      sums.moe_gap = measure_logp_gap(policy_, state_, plan, cfg_.temperature);  // before the update
    t_reference.reset();
    memory.start({});
    if (has_reference())
      reference_logprobs(ref_ ? *ref_ : policy_, ref_state_, plan, batch.kept, cfg_.kl_in_reward,
                         cfg_.micro_batch_tokens, cfg_.temperature, moe.routing_replay);
    memory.end(sums.mem_reference);
    sums.t_reference = t_reference.seconds();
    memory.start({&ref_state_});
    if (cfg_.old_logprobs == OldLogprobs::Trainer) {  // pi_old by the trainer's forward, as the update's first
      state_.dropout_step = uint64_t(step) * uint64_t(cfg_.ppo_epochs);  // same LoRA dropout masks as epoch 0
      trainer_old_logprobs(policy_, state_, plan, cfg_.temperature, moe.routing_replay);
      if (partial) keep_sampler_pi_old(batch.kept, step);  // older policies' tokens: their sampler's pi_old
      sums.add_gap(correct_sampler_mismatch(batch.kept, cfg_.is_correction, cfg_.is_cap));
    }
  });
  state_.weight_units = units;
  Timer t_train;
  if (cfg_.kl_in_reward) sums.kl_reward_sum = apply_kl_penalty(batch.kept, cfg_.loss.kl_coef);
  assign_advantages(batch.kept, cfg_.scale_advantage_by_std);
  const double lr = optim::lr_at(cfg_.schedule, step);
  const UpdateStats update = update_policy(policy_, state_, dp_, plan, cfg_, lr, step, bad_steps_);
  memory.end(sums.mem_update);
  sums.mem_host = double(peak_resident_bytes());
  sums.t_train = t_train.seconds();
  sums.activation_peak = double(state_.peak_bytes());

  // record
  sums.add_kept(batch.kept);
  sums.add_update(update);
  // pi_old by the sampler: the gap is the first update's (its mini-batch ran before any optimizer
  // step, so the trainer's log-probs there are the sampler's policy's). Partial rollouts' carried
  // tokens came from older policies, where a gap is no mismatch.
  if (cfg_.old_logprobs == OldLogprobs::Sampler && !partial) sums.add_gap(update.gap_first);
  all_reduce(host, sums);
  if (moe.bias_update_speed > 0) update_score_bias(policy_, sums.routes.expert_counts, moe.bias_update_speed);
  StepStats st = summarize(sums, batch.counts, update, cfg_, lr, has_reference(), dp_.world_size());
  st.time_step = t_step.seconds();
  return st;
}

}  // namespace r1::train
