#pragma once
// Routing replay: the experts each token of a mixture-of-experts model was sent to, per MoE layer,
// recorded where the sampler ran the model (forward_cached) and replayed in the training forwards
// (Batch::replay), so the trainer computes with the sampler's experts (train.moe.routing_replay).
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace r1::model {

// A row of -1: the token's experts were not recorded (a token never fed to the sampler, e.g. a
// completion's last); in a replay the router chooses for it.
inline constexpr int32_t kUnrouted = -1;

struct ExpertRoutes {
  int64_t k = 0;            // experts per token (num_experts_per_tok)
  std::vector<int> layers;  // the model's MoE layers, ascending
  // Per MoE layer: (N, k) i32 row-major, the same N tokens in each.
  std::vector<std::vector<int32_t>> experts;
  bool empty() const { return layers.empty(); }
  int64_t tokens() const { return experts.empty() ? 0 : int64_t(experts[0].size()) / k; }
};

// The routes of `tokens` tokens of a model of config c, every row unrecorded (no layers when the
// model has no MoE layer).
ExpertRoutes unrecorded_routes(const ModelConfig& c, int64_t tokens = 0);
// Row `row` of dst becomes row t of src (the same model's); dst grows with unrecorded rows to hold
// it (an empty dst takes src's layers first).
void copy_route_row(ExpertRoutes& dst, int64_t row, const ExpertRoutes& src, int64_t t);
// Whether row `row` of r holds experts (not beyond its rows, not unrecorded).
bool route_row_recorded(const ExpertRoutes& r, int64_t row);
// dst's rows, then src's (the same model's; an empty dst becomes src).
void append_routes(ExpertRoutes& dst, const ExpertRoutes& src);
// dst grows with unrecorded rows to `tokens` rows (never shrinks).
void pad_routes(ExpertRoutes& dst, int64_t tokens);

}  // namespace r1::model
