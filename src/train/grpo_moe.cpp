#include "train/grpo_moe.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/error.h"
#include "tensor/device_memory.h"

namespace r1::train {

void check_moe_options(const MoeRlConfig& c, const model::Transformer& policy) {
  const model::ModelConfig& mc = policy.config();
  const bool moe = !model::unrecorded_routes(mc).empty();
  R1_CHECK(!c.routing_replay || moe,
           "train.moe.routing_replay: the model ({}) has no mixture-of-experts layers", mc.model_type);
  if (c.bias_update_speed == 0) return;
  R1_CHECK(moe && mc.is_mla(),
           "train.moe.bias_update_speed ({}): the model ({}) has no e_score_correction_bias to update "
           "(deepseek_v3 "
           "has)",
           c.bias_update_speed, mc.model_type);
  R1_CHECK(!policy.has_lora(),
           "train.moe.bias_update_speed ({}) with train.lora: the base weights (the bias among them) are "
           "frozen and "
           "not checkpointed; train without LoRA or set the speed to 0",
           c.bias_update_speed);
}

bool records_routes(const MoeRlConfig& c, const model::ModelConfig& m) {
  return (c.routing_replay || c.logp_gap_every > 0) && !model::unrecorded_routes(m).empty();
}

namespace {

// Adds |logp - sampler's| over the loss's model tokens of mb to sum and max; returns the tokens.
double add_gap(const std::vector<float>& logp, const MicroBatch& mb, const std::vector<int64_t>& rows,
               double& sum, double& max) {
  double tokens = 0;
  for (size_t i = 0; i < mb.size(); ++i) {
    const rollout::Completion& c = mb[i].seq->out;
    for (size_t t = 0; t < c.tokens.size(); ++t) {
      if (!rollout::is_model_token(c, t)) continue;
      const double d = std::abs(double(logp[size_t(rows[i]) + t]) - double(c.logprobs[t]));
      sum += d;
      max = std::max(max, d);
      tokens += 1;
    }
  }
  return tokens;
}

}  // namespace

LogpGap measure_logp_gap(const model::Transformer& policy, model::TrainState& state,
                         const std::vector<MiniBatch>& plan, float temperature) {
  LogpGap g;
  std::vector<int64_t> rows;
  for (const MiniBatch& mini : plan)
    for (const MicroBatch& mb : mini.micro) {
      model::Batch b = pack(mb, rows, /*replay=*/true);
      state.forward(policy, b, temperature, model::Backward::None);
      g.tokens += add_gap(state.logp_host(), mb, rows, g.replay_sum, g.replay_max);
      g.replayed += double(state.replay_counts().replayed);
      g.replaced += double(state.replay_counts().replaced);
      b.replay = {};
      state.forward(policy, b, temperature, model::Backward::None);
      add_gap(state.logp_host(), mb, rows, g.router_sum, g.router_max);
    }
  return g;
}

void all_reduce(dist::Comm& host, RouteStats& r) {
  if (host.size() == 1) return;
  std::vector<int64_t> flat{r.routed, r.replayed, r.replaced};
  for (const auto& l : r.expert_counts) flat.insert(flat.end(), l.begin(), l.end());
  host.all_reduce(flat.data(), int64_t(flat.size()), dist::Type::I64);
  r.routed = flat[0], r.replayed = flat[1], r.replaced = flat[2];
  size_t i = 3;
  for (auto& l : r.expert_counts)
    for (int64_t& n : l) n = flat[i++];
}

void update_score_bias(model::Transformer& m, const std::vector<std::vector<int64_t>>& counts, double speed) {
  model::Params& P = m.master();
  for (size_t l = 0; l < counts.size(); ++l) {
    const std::vector<int64_t>& load = counts[l];
    if (load.empty()) continue;
    Tensor bias = P.layers[l].moe.score_bias;
    R1_CHECK(!bias.empty() && bias.numel() == int64_t(load.size()),
             "update_score_bias: layer {} has {} expert loads but no e_score_correction_bias of that size", l,
             load.size());
    double mean = 0;
    for (int64_t n : load) mean += double(n) / double(load.size());
    std::vector<float> b = to_host_f32(bias);
    for (size_t e = 0; e < load.size(); ++e) {
      const double under = mean - double(load[e]);  // > 0: the expert is under-loaded, its bias rises
      b[e] += float(speed * double((under > 0) - (under < 0)));
    }
    copy_from_host_f32(bias, b.data());
  }
  m.refresh_compute_weights();
}

run::Scalars moe_metrics(const LogpGap& gap, const RouteStats& routes) {
  run::Scalars m;
  if (gap.tokens > 0) {
    m.insert(m.end(), {{"moe/logp_gap/replay", gap.replay_sum / gap.tokens},
                       {"moe/logp_gap/router", gap.router_sum / gap.tokens},
                       {"moe/logp_gap/replay_max", gap.replay_max},
                       {"moe/logp_gap/router_max", gap.router_max},
                       {"moe/route_mismatch", gap.replayed > 0 ? gap.replaced / gap.replayed : 0.0}});
  }
  for (size_t l = 0; l < routes.expert_counts.size(); ++l) {
    const std::vector<int64_t>& load = routes.expert_counts[l];
    double sum = 0, sq = 0, most = 0;
    for (int64_t n : load) sum += double(n), sq += double(n) * double(n), most = std::max(most, double(n));
    if (load.empty() || sum == 0) continue;
    const double E = double(load.size()), mean = sum / E;
    const std::string layer = "/layer_" + std::to_string(l);
    m.emplace_back("moe/load_max" + layer, most / mean);
    m.emplace_back("moe/load_cv" + layer, std::sqrt(std::max(0.0, sq / E - mean * mean)) / mean);
  }
  if (routes.routed > 0) m.emplace_back("moe/replayed_frac", double(routes.replayed) / double(routes.routed));
  return m;
}

}  // namespace r1::train
