#include "model/layer_plan.h"

#include "base/error.h"

namespace r1::model {

ModelPlan make_plan(const ModelConfig& c) {
  ModelPlan plan;
  plan.specs = param_specs(c);
  plan.total = total_params(plan.specs);
  // Each range runs from its first parameter to the next range's first (alignment padding included).
  auto offset_of = [&](const std::string& name) -> int64_t {
    for (const ParamSpec& s : plan.specs)
      if (s.name == name) return s.offset;
    fail("make_plan: no parameter '{}' in the layout", name);
  };
  const int64_t head_begin = offset_of("model.norm.weight");
  plan.layers.resize(size_t(c.num_hidden_layers));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string first = "model.layers." + std::to_string(l) + ".input_layernorm.weight";
    LayerPlan& lp = plan.layers[size_t(l)];
    lp.params.begin = offset_of(first);
    lp.attention = c.is_mla() ? AttentionKind::Latent : AttentionKind::GroupedQuery;
    lp.mlp = c.is_moe_layer(l) ? MlpKind::MixtureOfExperts : MlpKind::SwiGLU;
  }
  for (int l = 0; l < c.num_hidden_layers; ++l)
    plan.layers[size_t(l)].params.end = l + 1 < c.num_hidden_layers ? plan.layers[size_t(l) + 1].params.begin
                                                                     : head_begin;
  plan.embed = {0, plan.layers.empty() ? head_begin : plan.layers[0].params.begin};
  plan.head = {head_begin, plan.total};
  return plan;
}

}  // namespace r1::model
