#include "model/weight_units.h"

#include <algorithm>

namespace r1::model {

std::vector<WeightUnit> pass_units(int num_layers, bool backward) {
  std::vector<WeightUnit> units = {{UnitKind::Embed, -1}};
  for (int l = 0; l < num_layers; ++l) units.push_back({UnitKind::Layer, l});
  units.push_back({UnitKind::Head, -1});
  if (!backward) return units;
  units.push_back({UnitKind::Head, -1});
  for (int l = num_layers - 1; l >= 0; --l) units.push_back({UnitKind::Layer, l});
  return units;
}

namespace {
bool tied_head(const ModelConfig& c) { return c.tie_word_embeddings && !c.has_score_head(); }
}  // namespace

std::vector<FlatRange> unit_ranges(const ModelPlan& plan, const ModelConfig& c, WeightUnit u) {
  switch (u.kind) {
    case UnitKind::Embed: return {plan.embed};
    case UnitKind::Layer: return {plan.layers.at(size_t(u.layer)).params};
    case UnitKind::Head: return tied_head(c) ? std::vector<FlatRange>{plan.head, plan.embed} : std::vector<FlatRange>{plan.head};
  }
  return {};
}

int64_t largest_unit(const ModelPlan& plan, const ModelConfig& c) {
  int64_t largest = tied_head(c) ? plan.embed.size() + plan.head.size() : std::max(plan.embed.size(), plan.head.size());
  for (const LayerPlan& l : plan.layers) largest = std::max(largest, l.params.size());
  return largest;
}

}  // namespace r1::model
