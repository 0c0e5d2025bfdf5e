#include "train/grpo.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "base/error.h"
#include "base/log.h"
#include "base/rng.h"
#include "base/timer.h"
#include "dist/named_sums.h"
#include "dist/world.h"
#include "reward/reflection.h"

namespace r1::train {

namespace {

void validate(const GrpoConfig& c) {
  R1_CHECK(c.prompts_per_step >= 1, "grpo: prompts_per_step must be >= 1 (got {})", c.prompts_per_step);
  R1_CHECK(c.group_size >= 2, "grpo: group_size must be >= 2 for group-relative advantages (got {})", c.group_size);
  R1_CHECK(c.max_prompt_tokens >= 1 && c.max_completion_tokens >= 1, "grpo: token limits must be positive");
  R1_CHECK(c.ppo_epochs >= 1 && c.mini_batches >= 1 && c.micro_batch_tokens >= 1,
           "grpo: ppo_epochs, mini_batches and micro_batch_tokens must be >= 1");
  R1_CHECK(c.mini_batches <= c.prompts_per_step * c.group_size, "grpo: more mini-batches ({}) than sequences ({})",
           c.mini_batches, c.prompts_per_step * c.group_size);
  R1_CHECK(c.overlong_buffer >= 0 && c.overlong_buffer < c.max_completion_tokens,
           "grpo: overlong_buffer must be in [0, max_completion_tokens)");
}

// One rollout sequence: its prompt and completion, reward and advantage.
struct Sequence {
  int64_t problem = 0;
  const std::vector<int32_t>* prompt = nullptr;
  rollout::Completion out;
  double reward = 0, advantage = 0;
  std::vector<float> ref_logp;  // per completion token (when a reference model is used)
  bool in_loss = true;
};

// Packs sequences [first, last) and returns the batch plus each completion's first logp row.
model::Batch pack(const std::vector<Sequence*>& seqs, std::vector<int64_t>& comp_row) {
  std::vector<std::vector<int32_t>> toks;
  for (const Sequence* s : seqs) {
    toks.push_back(*s->prompt);
    toks.back().insert(toks.back().end(), s->out.tokens.begin(), s->out.tokens.end());
  }
  model::Batch b = model::pack_sequences(toks);
  comp_row.clear();
  for (size_t i = 0; i < seqs.size(); ++i) comp_row.push_back(b.cu_seqlens[i] + int64_t(seqs[i]->prompt->size()) - 1);
  return b;
}

// Micro-batches of whole sequences within a token budget (a sequence longer than the budget goes alone).
std::vector<std::vector<Sequence*>> micro_batches(const std::vector<Sequence*>& seqs, int64_t budget) {
  std::vector<std::vector<Sequence*>> out;
  int64_t tokens = 0;
  for (Sequence* s : seqs) {
    const int64_t n = int64_t(s->prompt->size() + s->out.tokens.size());
    if (out.empty() || (tokens + n > budget && !out.back().empty())) {
      out.emplace_back();
      tokens = 0;
    }
    out.back().push_back(s);
    tokens += n;
  }
  return out;
}

}  // namespace

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
      total_steps_(total_steps),
      dp_(policy, cfg_.adamw, cfg_.parallel) {
  validate(cfg_);
  R1_CHECK(cfg_.prompts_per_step % dp_.world_size() == 0,
           "grpo: prompts_per_step ({}) must be a multiple of the number of ranks ({}), so each rank rolls out as many groups",
           cfg_.prompts_per_step, dp_.world_size());
  R1_CHECK(!train_.empty(), "grpo: the training set is empty");
  R1_CHECK(codec_.vocab_size() <= policy_.config().vocab_size,
           "grpo: the tokenizer has {} ids but the model's vocabulary is {}", codec_.vocab_size(),
           policy_.config().vocab_size);
  if (cfg_.loss.kl_coef != 0.0) {
    // Frozen: compute weights only (bf16 on CUDA), no gradients, inference-memory forwards.
    ref_ = std::make_unique<model::Transformer>(policy_.config(), policy_.device(), /*trainable=*/false);
    model::copy_weights(*ref_, policy_);
  }
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

StepMetrics GrpoTrainer::step(int64_t step) {
  const int G = cfg_.group_size;
  const int ranks = dp_.world_size();
  dist::Comm& host = dist::host_comm();
  StepMetrics M;
  Timer t_step;
  // Sums over this rank's samples, reduced over the ranks for the metrics.
  std::map<std::string, double> S;
  double t_rollout = 0, t_reward = 0;
  if (ref_ && cfg_.ref_refresh_steps > 0 && step > 0 && step % cfg_.ref_refresh_steps == 0)
    model::copy_weights(*ref_, policy_);

  // GPU memory: the KV cache of the rollouts need not sit beside last step's activation arenas.
  if (policy_.device() != Device::CPU) {
    state_.release();
    ref_state_.release();
  }

  rollout::GenerateParams gp;
  gp.sampling = {cfg_.temperature, cfg_.top_p, cfg_.top_k, 0};
  {
    uint32_t r[4];  // a sampling seed per training step, from the run seed
    Philox::generate(cfg_.seed, 0xC0FFEE, uint64_t(step), r);
    gp.sampling.seed = (uint64_t(r[0]) << 32) | r[1];
  }
  gp.max_new_tokens = cfg_.max_completion_tokens;
  gp.stop_ids = codec_.eos_ids();
  rollout::EngineConfig ec{cfg_.rollout_batch, cfg_.max_prompt_tokens + cfg_.max_completion_tokens, 8192};

  // Rollouts (more rounds only with dynamic sampling), rewards, overlong shaping. Every rank draws
  // the same prompts; rank r rolls out and scores a contiguous block of them (whole groups), and a
  // sample's randomness depends on (seed, problem, sample) only, so the rollouts are those of a
  // single process. Which groups are kept is decided from every rank's outcome, identically.
  std::vector<std::vector<int32_t>> prompt_ids;
  prompt_ids.reserve(size_t(cfg_.prompts_per_step) * size_t(std::max(1, cfg_.dynamic_sampling_max_rounds)));
  std::vector<Sequence> seqs;
  std::vector<int64_t> seq_pos;  // each sequence's place in the global batch: kept group * G + sample
  std::vector<std::string> all_text;
  int64_t groups_kept = 0, groups_seen = 0, zero_var_groups = 0, too_long = 0;
  samples_.clear();
  const int rounds = cfg_.dynamic_sampling ? cfg_.dynamic_sampling_max_rounds : 1;
  for (int round = 0; round < rounds && groups_kept < cfg_.prompts_per_step; ++round) {
    const int64_t need = cfg_.prompts_per_step - groups_kept;
    const std::vector<int64_t> idx = next_prompts(need);
    const auto [lo, hi] = host.share(need);
    enum : int64_t { kTooLong = 1, kZeroVariance = 2, kUseful = 3 };
    std::vector<int64_t> status(size_t(need), 0);  // this rank's block filled in, then summed over ranks
    std::vector<rollout::Request> reqs;
    std::vector<int64_t> req_problem, req_slot;
    std::vector<std::string> req_text;
    for (int64_t j = lo; j < hi; ++j) {
      const int64_t i = idx[size_t(j)];
      std::string text = render_(train_[size_t(i)]);
      std::vector<int32_t> ids = codec_.encode(text);
      if (int64_t(ids.size()) > cfg_.max_prompt_tokens || ids.empty()) {
        status[size_t(j)] = kTooLong;
        continue;
      }
      prompt_ids.push_back(std::move(ids));
      reqs.push_back({prompt_ids.back(), G, train_[size_t(i)].id});
      req_problem.push_back(i);
      req_slot.push_back(j);
      req_text.push_back(std::move(text));
    }
    std::vector<std::vector<Sequence>> groups;
    if (!reqs.empty()) {
      Timer tr;
      rollout::Engine engine(policy_, ec);
      std::vector<rollout::Completion> outs = engine.generate(reqs, gp);
      t_rollout += tr.seconds();

      Timer tw;
      std::vector<reward::Sample> rs;
      std::vector<std::string> texts;
      for (const auto& c : outs) {
        std::vector<int32_t> body = c.tokens;
        if (c.finish == rollout::FinishReason::Stop && !body.empty()) body.pop_back();  // drop EOS
        texts.push_back(codec_.decode(body));
        const data::Problem& pb = train_[size_t(req_problem[size_t(c.prompt_index)])];
        rs.push_back({texts.back(), pb.answer, nullptr, req_text[size_t(c.prompt_index)], pb.type});
      }
      std::vector<reward::Result> results = reward::score_batch(reward_, rs);
      t_reward += tw.seconds();

      for (size_t p = 0; p < reqs.size(); ++p) {
        std::vector<Sequence> group;
        double mn = 1e300, mx = -1e300;
        for (int s = 0; s < G; ++s) {
          const size_t k = p * size_t(G) + size_t(s);
          Sequence q;
          q.problem = req_problem[p];
          q.prompt = &prompt_ids[prompt_ids.size() - reqs.size() + p];
          q.out = outs[k];
          q.reward = results[k].reward;
          const int64_t len = int64_t(q.out.tokens.size());
          if (q.out.finish == rollout::FinishReason::Length) S["truncated"] += 1;
          if (cfg_.mask_truncated && q.out.finish == rollout::FinishReason::Length) q.in_loss = false;
          if (cfg_.overlong_buffer > 0) {  // DAPO: linear penalty over the last overlong_buffer tokens
            const int64_t start = cfg_.max_completion_tokens - cfg_.overlong_buffer;
            if (len > start) q.reward -= cfg_.overlong_penalty * double(len - start) / double(cfg_.overlong_buffer);
          }
          S["reward_sum"] += results[k].reward;
          S["scored"] += 1;
          S["reward_timeouts"] += results[k].details.value("timed_out", false);  // killed at its deadline
          // A composite reward reports each part under its name as {"reward": x, ...}.
          for (auto& [name, v] : results[k].details.items())
            if (v.is_object() && v.contains("reward") && v["reward"].is_number())
              S["reward/" + name] += v["reward"].get<double>();
          all_text.push_back(texts[k]);
          if (s < 2 && samples_.size() < 32)
            samples_.push_back(
                {train_[size_t(q.problem)].id, req_text[p], texts[k], results[k].reward, results[k].details});
          mn = std::min(mn, q.reward);
          mx = std::max(mx, q.reward);
          group.push_back(std::move(q));
        }
        status[size_t(req_slot[p])] = mx - mn < 1e-12 ? kZeroVariance : kUseful;
        groups.push_back(std::move(group));
      }
    }
    if (ranks > 1) host.all_reduce(status.data(), need, dist::Type::I64);
    // Keep groups in draw order, as one process would: the first ones with a learning signal.
    size_t g = 0;
    for (int64_t j = 0; j < need; ++j) {
      if (status[size_t(j)] == kTooLong) {
        ++too_long;
        continue;
      }
      const bool mine = j >= lo && j < hi;
      std::vector<Sequence>* group = mine ? &groups[g++] : nullptr;
      ++groups_seen;
      const bool zero_var = status[size_t(j)] == kZeroVariance;
      zero_var_groups += zero_var;
      if ((cfg_.dynamic_sampling && zero_var) || groups_kept >= cfg_.prompts_per_step) continue;
      if (group)
        for (int s = 0; s < G; ++s) {
          seqs.push_back(std::move((*group)[size_t(s)]));
          seq_pos.push_back(groups_kept * G + s);
        }
      ++groups_kept;
    }
  }

  // Reference log-probs (KL in the loss or in the reward), once per sequence.
  Timer tt;
  std::vector<Sequence*> all;
  for (auto& s : seqs) all.push_back(&s);
  std::vector<int64_t> rows;
  if (ref_) {
    for (const auto& mb : micro_batches(all, cfg_.micro_batch_tokens)) {
      model::Batch b = pack(mb, rows);
      ref_state_.forward(*ref_, b, cfg_.temperature);
      const std::vector<float> lp = ref_state_.logp_host();
      for (size_t i = 0; i < mb.size(); ++i)
        mb[i]->ref_logp.assign(lp.begin() + rows[i], lp.begin() + rows[i] + int64_t(mb[i]->out.tokens.size()));
    }
  }
  const double t_reference = tt.seconds();
  Timer tu;
  if (cfg_.kl_in_reward && ref_) {
    for (auto& s : seqs) {
      double kl = 0;
      for (size_t t = 0; t < s.out.tokens.size(); ++t) kl += double(s.out.logprobs[t]) - s.ref_logp[t];  // k1
      s.reward -= cfg_.loss.kl_coef * kl;
      S["kl_reward_sum"] += kl;
    }
  }
  std::vector<double> rewards;
  for (const auto& s : seqs) rewards.push_back(s.reward);
  if (!rewards.empty()) {  // this rank's groups are whole
    std::vector<double> adv = group_advantages(rewards, G, cfg_.scale_advantage_by_std);
    for (size_t i = 0; i < seqs.size(); ++i) seqs[i].advantage = adv[i];
  }

  // The global batch's layout: which sequences train and their lengths, so that every rank cuts
  // the same mini-batches and normalises by the same (global) counts.
  std::vector<int64_t> train_len(size_t(groups_kept * G), 0);  // tokens + 1 if in the loss, else 0
  for (size_t i = 0; i < seqs.size(); ++i)
    if (seqs[i].in_loss && !seqs[i].out.tokens.empty())
      train_len[size_t(seq_pos[i])] = int64_t(seqs[i].out.tokens.size()) + 1;
  if (ranks > 1) host.all_reduce(train_len.data(), int64_t(train_len.size()), dist::Type::I64);
  std::vector<int64_t> train_index(train_len.size(), -1);  // place among the training sequences
  int64_t n_train = 0;
  for (size_t p = 0; p < train_len.size(); ++p)
    if (train_len[p] > 0) train_index[p] = n_train++;
  std::vector<int64_t> prefix_tokens(size_t(n_train) + 1, 0);
  for (size_t p = 0; p < train_len.size(); ++p)
    if (train_len[p] > 0) prefix_tokens[size_t(train_index[p]) + 1] = prefix_tokens[size_t(train_index[p])] + train_len[p] - 1;

  // Policy updates: ppo_epochs passes, each split into mini-batches (one optimizer step each),
  // each mini-batch accumulated over micro-batches.
  GrpoLossConfig lcfg = cfg_.loss;
  if (cfg_.kl_in_reward) lcfg.kl_coef = 0.0;
  if (lcfg.reduction == LossReduction::SeqMeanTokenSumNorm && lcfg.norm_constant <= 1.0)
    lcfg.norm_constant = cfg_.max_completion_tokens;
  const double lr = optim::lr_at(cfg_.schedule, step);
  double grad_norm_sum = 0;
  int64_t updates = 0, skipped = 0;
  policy_.zero_grads();
  for (int epoch = 0; epoch < cfg_.ppo_epochs && n_train > 0; ++epoch) {
    const int64_t per_mini = (n_train + cfg_.mini_batches - 1) / cfg_.mini_batches;
    for (int64_t m0 = 0; m0 < n_train; m0 += per_mini) {
      const int64_t m1 = std::min(n_train, m0 + per_mini);
      std::vector<Sequence*> mini;  // this rank's part of the mini-batch
      for (size_t i = 0; i < seqs.size(); ++i) {
        const int64_t t = train_index[size_t(seq_pos[i])];
        if (t >= m0 && t < m1) mini.push_back(&seqs[i]);
      }
      const ReductionScale scale{m1 - m0, prefix_tokens[size_t(m1)] - prefix_tokens[size_t(m0)]};
      bool finite_loss = true;
      const auto mbs = micro_batches(mini, cfg_.micro_batch_tokens);
      for (size_t k = 0; k < mbs.size(); ++k) {
        const auto& mb = mbs[k];
        model::Batch b = pack(mb, rows);
        state_.forward(policy_, b, cfg_.temperature);
        std::vector<float> logp = state_.logp_host();
        std::vector<float> entropy;
        if (epoch == 0) entropy = state_.entropy_host();
        std::vector<float> old(logp.size(), 0.0f), ref;
        if (lcfg.kl_coef != 0.0) ref.assign(logp.size(), 0.0f);
        std::vector<SeqSpan> spans;
        for (size_t i = 0; i < mb.size(); ++i) {
          const auto& c = mb[i]->out;
          for (size_t t = 0; t < c.tokens.size(); ++t) {
            old[size_t(rows[i]) + t] = c.logprobs[t];  // the sampler's log-probs: same kernels, same weights
            if (!ref.empty()) ref[size_t(rows[i]) + t] = mb[i]->ref_logp[t];
          }
          spans.push_back({rows[i], int64_t(c.tokens.size()), mb[i]->advantage});
          if (epoch == 0)
            for (size_t t = 0; t < c.tokens.size(); ++t) {
              S["entropy_sum"] += entropy[size_t(rows[i]) + t];
              S["entropy_tokens"] += 1;
            }
        }
        std::vector<float> dlogp;
        GrpoLossStats st = grpo_loss(logp, old, ref, spans, lcfg, scale, dlogp);
        finite_loss = finite_loss && std::isfinite(st.loss);
        S["loss_sum"] += st.loss;
        S["clip_sum"] += st.clip_frac;
        S["kl_sum"] += st.kl_sum;
        S["loss_tokens"] += double(st.tokens);
        if (k + 1 == mbs.size()) dp_.arm(state_);  // the last backward of the step overlaps the all-reduce
        state_.backward(policy_, dlogp);
      }
      const optim::UpdateResult update = dp_.step(lr, cfg_.max_grad_norm, finite_loss);
      if (update.skipped) {  // the same decision on every rank
        ++skipped;
        ++bad_steps_;
        log::warn("step {}: non-finite gradient norm or loss; update skipped ({} in a row)", step, bad_steps_);
        R1_CHECK(bad_steps_ < cfg_.max_bad_steps, "stopping: {} consecutive non-finite updates", bad_steps_);
        continue;
      }
      bad_steps_ = 0;
      grad_norm_sum += update.grad_norm;
      ++updates;
    }
  }
  policy_.zero_grads();
  const double t_train = tu.seconds();

  // Metrics over the whole global batch.
  int64_t gen_tokens = 0;
  double len_max = 0;
  for (const auto& s : seqs) {
    gen_tokens += int64_t(s.out.tokens.size());
    len_max = std::max(len_max, double(s.out.tokens.size()));
    S["kept_reward_sum"] += s.reward;
    S["kept_reward_sq"] += s.reward * s.reward;
  }
  S["gen_tokens"] += double(gen_tokens);
  S["sequences"] += double(seqs.size());
  S["reflection_hits"] += std::round(reward::reflection_rate(all_text) * double(all_text.size()));
  double peaks[5] = {len_max, t_rollout, t_reward, t_reference, t_train};
  if (ranks > 1) {
    dist::all_reduce_sums(host, S);
    host.all_reduce(peaks, 5, dist::Type::F64, dist::Op::Max);
  }
  auto sum = [&](const char* k) { return S.count(k) ? S.at(k) : 0.0; };
  const double n = std::max(1.0, sum("scored")), kept = sum("sequences");
  const double mean_r = sum("reward_sum") / n;
  // sum over kept sequences of (r - mean_r)^2, mean_r being the mean over every scored sample
  const double var = sum("kept_reward_sq") - 2 * mean_r * sum("kept_reward_sum") + kept * mean_r * mean_r;
  const double loss_tokens = sum("loss_tokens"), all_gen = sum("gen_tokens");
  M["reward/mean"] = mean_r;
  M["reward/std"] = kept > 1 ? std::sqrt(std::max(0.0, var) / (kept - 1)) : 0.0;
  for (const auto& [k, v] : S)
    if (k.rfind("reward/", 0) == 0) M[k] = v / n;
  if (S.count("reward/math")) M["accuracy"] = S.at("reward/math") / n;
  if (S.count("reward/format")) M["format_rate"] = S.at("reward/format") / n;
  M["response_length/mean"] = kept > 0 ? all_gen / kept : 0.0;
  M["response_length/max"] = peaks[0];
  M["truncated_frac"] = sum("truncated") / n;
  M["reward_timeouts"] = sum("reward_timeouts");  // rewards killed at their deadline (scored 0)
  M["loss"] = updates ? sum("loss_sum") / double(cfg_.ppo_epochs) : 0.0;
  M["clip_fraction"] = loss_tokens > 0 ? sum("clip_sum") / loss_tokens : 0.0;
  if (ref_) M["kl"] = cfg_.kl_in_reward ? sum("kl_reward_sum") / std::max(1.0, all_gen)
                                         : (loss_tokens > 0 ? sum("kl_sum") / loss_tokens : 0.0);
  M["entropy"] = sum("entropy_tokens") > 0 ? sum("entropy_sum") / sum("entropy_tokens") : 0.0;
  M["grad_norm"] = updates ? grad_norm_sum / double(updates) : 0.0;
  M["lr"] = lr;
  M["updates"] = double(updates);
  M["skipped_updates"] = double(skipped);
  M["zero_variance_groups"] = groups_seen ? double(zero_var_groups) / double(groups_seen) : 0.0;
  M["groups"] = double(groups_kept);
  M["prompts_too_long"] = double(too_long);
  M["reflection_rate"] = sum("reflection_hits") / n;
  M["time/rollout"] = peaks[1];    // the slowest rank's
  M["time/reward"] = peaks[2];
  M["time/reference"] = peaks[3];  // reference log-probs
  M["time/train"] = peaks[4];      // policy forward/backward and optimizer steps
  M["time/step"] = t_step.seconds();
  M["tokens_per_s"] = peaks[1] > 0 ? all_gen / peaks[1] : 0.0;  // rollout tokens of all ranks
  if (ranks > 1) M["ranks"] = ranks;
  return M;
}

}  // namespace r1::train
