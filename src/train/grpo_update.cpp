#include "train/grpo_update.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/log.h"
#include "train/micro_batches.h"

namespace r1::train {

model::Batch pack(const MicroBatch& seqs, std::vector<int64_t>& comp_row, bool replay) {
  std::vector<std::vector<int32_t>> toks;
  for (const SeqRef& s : seqs) {
    toks.push_back(s.group->prompt);
    toks.back().insert(toks.back().end(), s.seq->out.tokens.begin(), s.seq->out.tokens.end());
  }
  model::Batch b = model::pack_sequences(toks);
  for (size_t i = 0; i < seqs.size() && replay; ++i) {
    const model::ExpertRoutes& r = seqs[i].seq->out.routes;
    R1_CHECK(!r.empty() && r.tokens() == int64_t(toks[i].size()),
             "GRPO routing replay: a sequence of {} tokens has {} recorded expert routes", toks[i].size(),
             r.tokens());
    model::append_routes(b.replay, r);
  }
  comp_row.clear();
  for (size_t i = 0; i < seqs.size(); ++i)
    comp_row.push_back(b.cu_seqlens[i] + int64_t(seqs[i].group->prompt.size()) - 1);
  return b;
}

std::vector<MicroBatch> micro_batches(const std::vector<SeqRef>& seqs, int64_t budget) {
  std::vector<int64_t> lengths;
  for (const SeqRef& s : seqs) lengths.push_back(int64_t(s.group->prompt.size() + s.seq->out.tokens.size()));
  std::vector<MicroBatch> out;
  for (const std::vector<size_t>& group : balanced_micro_batches(lengths, budget)) {
    out.emplace_back();
    for (size_t i : group) out.back().push_back(seqs[i]);
  }
  return out;
}

std::vector<MiniBatch> plan_mini_batches(std::vector<Group>& kept, int64_t total_groups, int group_size,
                                         int mini_batches, int64_t micro_batch_tokens, dist::Comm& host) {
  // Each global position (kept group * G + sample) gets its completion length + 1 if it trains, 0
  // if not; summed over the ranks (each position is one rank's), every rank sees the same layout.
  const int64_t G = group_size;
  std::vector<int64_t> train_len(size_t(total_groups * G), 0);
  for (const Group& g : kept)
    for (int64_t s = 0; s < G; ++s)
      if (g.seqs[size_t(s)].in_loss)
        train_len[size_t(g.kept_index * G + s)] = rollout::model_token_count(g.seqs[size_t(s)].out) + 1;
  if (host.size() > 1) host.all_reduce(train_len.data(), int64_t(train_len.size()), dist::Type::I64);
  std::vector<int64_t> train_index(train_len.size(), -1), tokens_before(1, 0);
  int64_t n_train = 0;
  for (size_t p = 0; p < train_len.size(); ++p)
    if (train_len[p] > 0) {
      train_index[p] = n_train++;
      tokens_before.push_back(tokens_before.back() + train_len[p] - 1);
    }
  std::vector<MiniBatch> plan;
  if (n_train == 0) return plan;
  const int64_t per_mini = (n_train + mini_batches - 1) / mini_batches;
  for (int64_t m0 = 0; m0 < n_train; m0 += per_mini) {
    const int64_t m1 = std::min(n_train, m0 + per_mini);
    std::vector<SeqRef> mine;  // this rank's part, in global order (kept groups are in order)
    for (Group& g : kept)
      for (int64_t s = 0; s < G; ++s) {
        const int64_t t = train_index[size_t(g.kept_index * G + s)];
        if (t >= m0 && t < m1) mine.push_back({&g, &g.seqs[size_t(s)]});
      }
    MiniBatch mb;
    mb.micro = micro_batches(mine, micro_batch_tokens);
    mb.scale = {m1 - m0, tokens_before[size_t(m1)] - tokens_before[size_t(m0)]};
    plan.push_back(std::move(mb));
  }
  return plan;
}

namespace {

void reference_forward(const model::Transformer& ref, model::TrainState& state, const MicroBatch& mb,
                       float temperature, bool replay) {
  std::vector<int64_t> rows;
  const model::Batch b = pack(mb, rows, replay);
  state.forward(ref, b, temperature, model::Backward::None);
  const std::vector<float> lp = state.logp_host();
  for (size_t i = 0; i < mb.size(); ++i) {
    const auto first = lp.begin() + rows[i];
    mb[i].seq->ref_logp.assign(first, first + int64_t(mb[i].seq->out.tokens.size()));
  }
}

}  // namespace

void reference_logprobs(const model::Transformer& ref, model::TrainState& state,
                        const std::vector<MiniBatch>& plan, std::vector<Group>& kept, bool masked_too,
                        int64_t micro_batch_tokens, float temperature, bool replay) {
  for (const MiniBatch& mini : plan)
    for (const MicroBatch& mb : mini.micro) reference_forward(ref, state, mb, temperature, replay);
  if (!masked_too) return;
  std::vector<SeqRef> rest;
  for (Group& g : kept)
    for (Sequence& s : g.seqs)
      if (!s.in_loss && !s.out.tokens.empty()) rest.push_back({&g, &s});
  for (const MicroBatch& mb : micro_batches(rest, micro_batch_tokens))
    reference_forward(ref, state, mb, temperature, replay);
}

double apply_kl_penalty(std::vector<Group>& kept, double kl_coef) {
  double total = 0;
  for (Group& g : kept)
    for (Sequence& s : g.seqs) {
      R1_CHECK(s.ref_logp.size() == s.out.tokens.size(),
               "apply_kl_penalty: {} reference log-probs for {} tokens", s.ref_logp.size(),
               s.out.tokens.size());
      double kl = 0;
      for (size_t t = 0; t < s.out.tokens.size(); ++t)
        if (rollout::is_model_token(s.out, t)) kl += double(s.out.logprobs[t]) - s.ref_logp[t];  // k1
      s.reward -= kl_coef * kl;
      total += kl;
    }
  return total;
}

RouteStats RouteStats::zero(const model::ModelConfig& c) {
  RouteStats r;
  r.expert_counts.resize(size_t(c.num_hidden_layers));
  for (int l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l)) r.expert_counts[size_t(l)].assign(size_t(c.moe.num_experts), 0);
  return r;
}

void RouteStats::add(const model::TrainState& state) {
  const model::TrainState::ReplayCounts& r = state.replay_counts();
  add(RouteStats{state.expert_counts(), r.routed, r.replayed, r.replaced});
}

void RouteStats::add(const RouteStats& o) {
  expert_counts.resize(std::max(expert_counts.size(), o.expert_counts.size()));
  for (size_t l = 0; l < o.expert_counts.size(); ++l) {
    expert_counts[l].resize(std::max(expert_counts[l].size(), o.expert_counts[l].size()), 0);
    for (size_t e = 0; e < o.expert_counts[l].size(); ++e) expert_counts[l][e] += o.expert_counts[l][e];
  }
  routed += o.routed;
  replayed += o.replayed;
  replaced += o.replaced;
}

void assign_advantages(std::vector<Group>& kept, bool scale_by_std) {
  for (Group& g : kept) {
    std::vector<double> rewards;
    for (const Sequence& s : g.seqs) rewards.push_back(s.reward);
    const std::vector<double> adv = group_advantages(rewards, int(rewards.size()), scale_by_std);
    for (size_t i = 0; i < g.seqs.size(); ++i) g.seqs[i].advantage = adv[i];
  }
}

MiniBatchStats accumulate_gradients(model::Transformer& policy, model::TrainState& state, const MiniBatch& mb,
                                    const GrpoLossConfig& loss, float temperature, bool want_entropy,
                                    optim::DataParallel* dp, bool replay, Progress* progress) {
  MiniBatchStats st;
  std::vector<int64_t> rows;
  // parallel.shard: full: every rank runs as many passes as the rank with the most micro-batches
  // (idle ones for the rest), so that each unit's gather has every rank in it.
  const int64_t passes = dp ? dp->most_passes(int64_t(mb.micro.size())) : int64_t(mb.micro.size());
  for (size_t k = 0; k < mb.micro.size(); ++k) {
    const MicroBatch& micro = mb.micro[k];
    const model::Batch b = pack(micro, rows, replay);
    state.forward(policy, b, temperature);
    st.routes.add(state);
    st.checkpointed += state.checkpointed() ? 1 : 0;
    const std::vector<float> logp = state.logp_host();
    std::vector<float> entropy;
    if (want_entropy) entropy = state.entropy_host();
    std::vector<float> old(logp.size(), 0.0f), ref;
    if (loss.kl_coef != 0.0) ref.assign(logp.size(), 0.0f);
    std::vector<SeqSpan> spans;
    for (size_t i = 0; i < micro.size(); ++i) {
      const Sequence& s = *micro[i].seq;
      const size_t row = size_t(rows[i]), n = s.out.tokens.size();
      const std::vector<float>& pi_old = s.old_logp.empty() ? s.out.logprobs : s.old_logp;  // sampler's or trainer's
      std::copy(pi_old.begin(), pi_old.end(), old.begin() + int64_t(row));
      if (!ref.empty()) {
        R1_CHECK(s.ref_logp.size() == n,
                 "GRPO update: KL in the loss but no reference log-probs for a sequence");
        std::copy(s.ref_logp.begin(), s.ref_logp.end(), ref.begin() + int64_t(row));
      }
      R1_CHECK(s.out.from_model.empty() || s.out.from_model.size() == n,
               "GRPO update: a model-token mask of {} entries for {} tokens", s.out.from_model.size(), n);
      R1_CHECK(s.is_weight.empty() || s.is_weight.size() == n, "GRPO update: {} correction weights for {} tokens",
               s.is_weight.size(), n);
      spans.push_back({int64_t(row), int64_t(n), s.advantage, s.out.from_model.empty() ? nullptr : s.out.from_model.data(),
                       s.is_weight.empty() ? nullptr : s.is_weight.data()});
      for (size_t t = 0; t < n && want_entropy; ++t)
        if (rollout::is_model_token(s.out, t)) st.entropy_sum += entropy[row + t];
      for (size_t t = 0; t < n && want_entropy && s.old_logp.empty(); ++t) {
        if (!rollout::is_model_token(s.out, t)) continue;
        const double d = std::abs(double(logp[row + t]) - double(s.out.logprobs[t]));
        st.gap.max_abs = std::max(st.gap.max_abs, d);
        st.gap.sum_abs += d;
        st.gap.weight_sum += 1.0;
        ++st.gap.tokens;
      }
    }
    std::vector<float> dlogp;
    const GrpoLossStats ls = grpo_loss(logp, old, ref, spans, loss, mb.scale, dlogp);
    st.finite = st.finite && std::isfinite(ls.loss);
    st.loss += ls.loss;
    st.clipped += ls.clip_frac;
    st.kl_sum += ls.kl_sum;
    st.tokens += ls.tokens;
    if (dp && k + 1 == mb.micro.size()) dp->arm(state);
    state.backward(policy, dlogp);
    if (progress) progress->update(1);
  }
  for (int64_t k = int64_t(mb.micro.size()); k < passes; ++k) state.idle_pass(policy);
  return st;
}

UpdateStats update_policy(model::Transformer& policy, model::TrainState& state, optim::DataParallel& dp,
                          const std::vector<MiniBatch>& plan, const GrpoConfig& cfg, double lr, int64_t step,
                          int& bad_steps) {
  const GrpoLossConfig loss = update_loss_config(cfg);
  UpdateStats u;
  u.routes = RouteStats::zero(policy.config());
  policy.zero_grads();
  // A progress line when the update runs long (a 7B step's 128 micro-batches of 8.7k tokens: 132 s).
  int64_t micro_total = 0;
  for (const MiniBatch& mb : plan) micro_total += int64_t(mb.micro.size());
  Progress bar("update", micro_total * cfg.ppo_epochs, "micro-batch");
  bar.quiet_for(10.0);
  for (int epoch = 0; epoch < cfg.ppo_epochs && !plan.empty(); ++epoch) {
    double epoch_loss = 0;
    state.dropout_step = uint64_t(step) * uint64_t(cfg.ppo_epochs) + uint64_t(epoch);  // LoRA dropout
    for (const MiniBatch& mb : plan) {
      const bool first_pass = epoch == 0;
      const MiniBatchStats st = accumulate_gradients(policy, state, mb, loss, cfg.temperature, first_pass,
                                                     &dp, cfg.moe.routing_replay, &bar);
      u.loss_sum += st.loss;
      u.clipped += st.clipped;
      u.kl_sum += st.kl_sum;
      u.loss_tokens += double(st.tokens);
      if (first_pass && &mb == &plan.front()) {
        u.clipped_first = st.clipped, u.tokens_first = double(st.tokens);
        u.gap_first = st.gap;
      }
      u.micro_batches += int64_t(mb.micro.size());
      u.checkpointed += st.checkpointed;
      if (first_pass) {
        u.entropy_sum += st.entropy_sum;
        u.entropy_tokens += double(st.tokens);
        u.routes.add(st.routes);
      }
      epoch_loss += st.loss;
      const optim::UpdateResult r = dp.step(lr, cfg.max_grad_norm, st.finite);
      if (r.skipped) {  // the same decision on every rank
        ++u.skipped;
        ++bad_steps;
        log::warn("step {}: non-finite gradient norm or loss; update skipped ({} in a row)", step, bad_steps);
        R1_CHECK(bad_steps < cfg.max_bad_steps, "stopping: {} consecutive non-finite updates", bad_steps);
        continue;
      }
      bad_steps = 0;
      u.grad_norm_sum += r.grad_norm;
      ++u.updates;
    }
    u.epoch_loss.push_back(epoch_loss);
  }
  bar.finish();
  policy.zero_grads();
  return u;
}

}  // namespace r1::train
