#pragma once
// Mixture-of-experts models in GRPO (recipe keys train.moe.*, GrpoConfig::moe):
//   routing replay   the trainer's forwards use the experts the sampler chose (grpo_update.h pack);
//   log-prob gap     how far the trainer's log-probs are from the sampler's, with and without replay;
//   load balance     per MoE layer, how evenly the tokens spread over the experts;
//   bias update      DeepSeek-V3's auxiliary-loss-free balancing, as an option during RL.
#include <cstdint>
#include <vector>

#include "dist/comm.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "run/metrics.h"
#include "train/grpo_config.h"
#include "train/grpo_update.h"

namespace r1::train {

// The recipe's train.moe settings against the model: replay and the bias update need MoE layers,
// the bias update DeepSeek-V3's e_score_correction_bias and all weights trained (not LoRA, whose
// checkpoints hold only the adapters). Errors name the key.
void check_moe_options(const MoeRlConfig& c, const model::Transformer& policy);

// Whether the rollouts record the sampler's experts (Completion::routes): a MoE model that replays
// them or measures the log-prob gap.
bool records_routes(const MoeRlConfig& c, const model::ModelConfig& m);

// |logp_trainer - logp_sampler| over the loss's model tokens, summed (one rank's; reduced over the
// ranks by all_reduce in grpo_stats.h), with the sampler's experts replayed and with the router's
// own choice; and in the replayed forward, the token-layers replayed and those whose sampler
// experts differ from the trainer router's choice.
struct LogpGap {
  double tokens = 0, replay_sum = 0, router_sum = 0, replayed = 0, replaced = 0;
  double replay_max = 0, router_max = 0;
};

// The gap of the policy (before this step's update) over the plan's sequences: two forwards each.
LogpGap measure_logp_gap(const model::Transformer& policy, model::TrainState& state,
                         const std::vector<MiniBatch>& plan, float temperature);

// Sums the counts over the ranks of `host`.
void all_reduce(dist::Comm& host, RouteStats& r);

// DeepSeek-V3's rule after a step: e_score_correction_bias[e] += speed * sign(mean load - load[e])
// in each MoE layer, loads being the tokens sent to each expert (counts, per layer).
void update_score_bias(model::Transformer& m, const std::vector<std::vector<int64_t>>& counts, double speed);

// The MoE metrics: moe/logp_gap/{replay,router}[_max] and moe/route_mismatch (when measured),
// moe/replayed_frac (the update's token-layers replayed), and per MoE layer N
// moe/load_max/layer_N (busiest expert's load / mean load) and moe/load_cv/layer_N (std / mean).
run::Scalars moe_metrics(const LogpGap& gap, const RouteStats& routes);

}  // namespace r1::train
