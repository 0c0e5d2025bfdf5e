#include "train/grpo.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "base/error.h"
#include "base/log.h"
#include "base/rng.h"
#include "base/timer.h"

namespace r1::train {

double reflection_rate(const std::vector<std::string>& completions) {
  static const char* kWords[] = {"wait", "re-check", "recheck", "verify", "double-check", "let me check", "hmm"};
  if (completions.empty()) return 0;
  int hits = 0;
  for (const std::string& c : completions) {
    std::string lower(c.size(), ' ');
    std::transform(c.begin(), c.end(), lower.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    for (const char* w : kWords)
      if (lower.find(w) != std::string::npos) {
        ++hits;
        break;
      }
  }
  return double(hits) / double(completions.size());
}

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
      opt_(param_slices(policy), cfg_.adamw, policy.device()) {
  validate(cfg_);
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
  train::validate(cfg_.schedule);
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
  const model::ModelConfig& mc = policy_.config();
  const int G = cfg_.group_size;
  StepMetrics M;
  Timer t_step;
  double t_rollout = 0, t_reward = 0, t_train = 0;
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

  // Rollouts (more rounds only with dynamic sampling), rewards, overlong shaping.
  std::vector<std::vector<int32_t>> prompt_ids;
  prompt_ids.reserve(size_t(cfg_.prompts_per_step) * size_t(std::max(1, cfg_.dynamic_sampling_max_rounds)));
  std::vector<Sequence> seqs;
  std::vector<std::string> all_text;
  int64_t groups_kept = 0, groups_seen = 0, zero_var_groups = 0, too_long = 0, truncated = 0;
  std::map<std::string, double> component_sum;
  double reward_sum = 0;
  int64_t scored = 0;
  samples_.clear();
  const int rounds = cfg_.dynamic_sampling ? cfg_.dynamic_sampling_max_rounds : 1;
  for (int round = 0; round < rounds && groups_kept < cfg_.prompts_per_step; ++round) {
    std::vector<int64_t> idx = next_prompts(cfg_.prompts_per_step - groups_kept);
    std::vector<rollout::Request> reqs;
    std::vector<int64_t> req_problem;
    std::vector<std::string> req_text;
    for (int64_t i : idx) {
      std::string text = render_(train_[size_t(i)]);
      std::vector<int32_t> ids = codec_.encode(text);
      if (int64_t(ids.size()) > cfg_.max_prompt_tokens || ids.empty()) {
        ++too_long;
        continue;
      }
      prompt_ids.push_back(std::move(ids));
      reqs.push_back({prompt_ids.back(), G, train_[size_t(i)].id});
      req_problem.push_back(i);
      req_text.push_back(std::move(text));
    }
    if (reqs.empty()) continue;
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
      ++groups_seen;
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
        if (q.out.finish == rollout::FinishReason::Length) ++truncated;
        if (cfg_.mask_truncated && q.out.finish == rollout::FinishReason::Length) q.in_loss = false;
        if (cfg_.overlong_buffer > 0) {  // DAPO: linear penalty over the last overlong_buffer tokens
          const int64_t start = cfg_.max_completion_tokens - cfg_.overlong_buffer;
          if (len > start) q.reward -= cfg_.overlong_penalty * double(len - start) / double(cfg_.overlong_buffer);
        }
        reward_sum += results[k].reward;
        ++scored;
        // A composite reward reports each part under its name as {"reward": x, ...}.
        for (auto& [name, v] : results[k].details.items())
          if (v.is_object() && v.contains("reward") && v["reward"].is_number())
            component_sum[name] += v["reward"].get<double>();
        all_text.push_back(texts[k]);
        if (s < 2 && samples_.size() < 32)
          samples_.push_back({train_[size_t(q.problem)].id, req_text[p], texts[k], results[k].reward, results[k].details});
        mn = std::min(mn, q.reward);
        mx = std::max(mx, q.reward);
        group.push_back(std::move(q));
      }
      const bool zero_var = mx - mn < 1e-12;
      zero_var_groups += zero_var;
      if (cfg_.dynamic_sampling && zero_var) continue;
      if (groups_kept >= cfg_.prompts_per_step) continue;
      for (auto& q : group) seqs.push_back(std::move(q));
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
  double kl_reward_sum = 0;
  if (cfg_.kl_in_reward && ref_) {
    for (auto& s : seqs) {
      double kl = 0;
      for (size_t t = 0; t < s.out.tokens.size(); ++t) kl += double(s.out.logprobs[t]) - s.ref_logp[t];  // k1
      s.reward -= cfg_.loss.kl_coef * kl;
      kl_reward_sum += kl;
    }
  }
  std::vector<double> rewards;
  for (const auto& s : seqs) rewards.push_back(s.reward);
  if (!rewards.empty()) {
    std::vector<double> adv = group_advantages(rewards, G, cfg_.scale_advantage_by_std);
    for (size_t i = 0; i < seqs.size(); ++i) seqs[i].advantage = adv[i];
  }

  // Policy updates: ppo_epochs passes, each split into mini-batches (one optimizer step each),
  // each mini-batch accumulated over micro-batches.
  GrpoLossConfig lcfg = cfg_.loss;
  if (cfg_.kl_in_reward) lcfg.kl_coef = 0.0;
  if (lcfg.reduction == LossReduction::SeqMeanTokenSumNorm && lcfg.norm_constant <= 1.0)
    lcfg.norm_constant = cfg_.max_completion_tokens;
  const double lr = lr_at(cfg_.schedule, step);
  double loss_sum = 0, clip_sum = 0, kl_sum = 0, ent_sum = 0, grad_norm_sum = 0;
  int64_t loss_tokens = 0, ent_tokens = 0, updates = 0, skipped = 0;
  std::vector<Sequence*> trainable;
  for (auto* s : all)
    if (s->in_loss && !s->out.tokens.empty()) trainable.push_back(s);
  for (int epoch = 0; epoch < cfg_.ppo_epochs && !trainable.empty(); ++epoch) {
    const size_t per_mini = (trainable.size() + size_t(cfg_.mini_batches) - 1) / size_t(cfg_.mini_batches);
    for (size_t m0 = 0; m0 < trainable.size(); m0 += per_mini) {
      std::vector<Sequence*> mini(trainable.begin() + long(m0),
                                  trainable.begin() + long(std::min(trainable.size(), m0 + per_mini)));
      ReductionScale scale{int64_t(mini.size()), 0};
      for (auto* s : mini) scale.tokens += int64_t(s->out.tokens.size());
      policy_.zero_grads();
      bool finite_loss = true;
      for (const auto& mb : micro_batches(mini, cfg_.micro_batch_tokens)) {
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
              ent_sum += entropy[size_t(rows[i]) + t];
              ++ent_tokens;
            }
        }
        std::vector<float> dlogp;
        GrpoLossStats st = grpo_loss(logp, old, ref, spans, lcfg, scale, dlogp);
        finite_loss = finite_loss && std::isfinite(st.loss);
        loss_sum += st.loss;
        clip_sum += st.clip_frac;
        kl_sum += st.kl_sum;
        loss_tokens += st.tokens;
        state_.backward(policy_, dlogp);
      }
      const UpdateResult update = clip_and_step(opt_, policy_, lr, cfg_.max_grad_norm, finite_loss);
      if (update.skipped) {
        ++skipped;
        ++bad_steps_;
        log::warn("step {}: non-finite {}; update skipped ({} in a row)", step,
                  finite_loss ? "gradient norm" : "loss", bad_steps_);
        R1_CHECK(bad_steps_ < cfg_.max_bad_steps, "stopping: {} consecutive non-finite updates", bad_steps_);
        continue;
      }
      bad_steps_ = 0;
      grad_norm_sum += update.grad_norm;
      ++updates;
    }
  }
  policy_.zero_grads();
  t_train = tu.seconds();

  // Metrics.
  const double n = double(std::max<int64_t>(scored, 1));
  double mean_r = reward_sum / n, var = 0, len_sum = 0, len_max = 0;
  for (const auto& s : seqs) {
    len_sum += double(s.out.tokens.size());
    len_max = std::max(len_max, double(s.out.tokens.size()));
  }
  for (double r : rewards) var += (r - mean_r) * (r - mean_r);
  int64_t gen_tokens = 0;
  for (const auto& s : seqs) gen_tokens += int64_t(s.out.tokens.size());
  M["reward/mean"] = mean_r;
  M["reward/std"] = rewards.size() > 1 ? std::sqrt(var / double(rewards.size() - 1)) : 0.0;
  for (const auto& [k, v] : component_sum) M["reward/" + k] = v / n;
  if (component_sum.count("math")) M["accuracy"] = component_sum["math"] / n;
  if (component_sum.count("format")) M["format_rate"] = component_sum["format"] / n;
  M["response_length/mean"] = seqs.empty() ? 0.0 : len_sum / double(seqs.size());
  M["response_length/max"] = len_max;
  M["truncated_frac"] = double(truncated) / n;
  M["loss"] = updates ? loss_sum / double(cfg_.ppo_epochs) : 0.0;
  M["clip_fraction"] = loss_tokens ? clip_sum / double(loss_tokens) : 0.0;
  if (ref_) M["kl"] = cfg_.kl_in_reward ? kl_reward_sum / double(std::max<int64_t>(1, gen_tokens))
                                         : (loss_tokens ? kl_sum / double(loss_tokens) : 0.0);
  M["entropy"] = ent_tokens ? ent_sum / double(ent_tokens) : 0.0;
  M["grad_norm"] = updates ? grad_norm_sum / double(updates) : 0.0;
  M["lr"] = lr;
  M["updates"] = double(updates);
  M["skipped_updates"] = double(skipped);
  M["zero_variance_groups"] = groups_seen ? double(zero_var_groups) / double(groups_seen) : 0.0;
  M["groups"] = double(groups_kept);
  M["prompts_too_long"] = double(too_long);
  M["reflection_rate"] = reflection_rate(all_text);
  M["time/rollout"] = t_rollout;
  M["time/reward"] = t_reward;
  M["time/reference"] = t_reference;  // reference log-probs
  M["time/train"] = t_train;          // policy forward/backward and optimizer steps
  M["time/step"] = t_step.seconds();
  M["tokens_per_s"] = t_rollout > 0 ? double(gen_tokens) / t_rollout : 0.0;
  (void)mc;
  return M;
}

}  // namespace r1::train
