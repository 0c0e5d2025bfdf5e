#include "model/weight_units.h"

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

}  // namespace r1::model
