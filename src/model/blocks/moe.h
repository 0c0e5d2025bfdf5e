#pragma once
// The mixture-of-experts MLP block (qwen3_moe, deepseek_v3): a router picks K of E SwiGLU experts
// per token (kernels/ops.h MoeRouting: softmax top-k for Qwen3-MoE; sigmoid scores with
// e_score_correction_bias and group-limited choice for DeepSeek-V3), the tokens are grouped by
// expert, each expert runs over its rows, and the outputs are summed with the routing weights;
// DeepSeek-V3 adds shared experts that every token runs. The gradient reaches the router through
// the chosen experts' weights.
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/ops.h"
#include "model/blocks/mlp.h"

namespace r1::model {

struct MoeWeights {
  Tensor router;      // (E, C) mlp.gate.weight
  Tensor score_bias;  // (E) mlp.gate.e_score_correction_bias (deepseek_v3): the choice only, never trained
  std::vector<MlpWeights> experts;  // E of width moe_intermediate_size
  MlpWeights shared;                // deepseek_v3 with n_shared_experts > 0; else empty
};

// Every parameter of the block in the checkpoint's order, with its HF name under the layer.
template <class W, class F>
void visit_moe(W& w, const ModelConfig& c, F&& f) {
  const int64_t C = c.hidden_size, E = c.moe.num_experts, I = c.moe.moe_intermediate_size;
  w.experts.resize(size_t(E));
  auto experts = [&] {
    for (int64_t e = 0; e < E; ++e)
      visit_swiglu(w.experts[size_t(e)], "mlp.experts." + std::to_string(e) + ".", C, I, f);
  };
  if (!c.is_mla()) {  // Qwen3MoeSparseMoeBlock: gate, experts
    f(w.router, std::string("mlp.gate.weight"), ParamShape{E, C});
    experts();
    return;
  }
  experts();  // DeepseekV3MoE: experts, gate (with its bias buffer), shared_experts
  f(w.router, std::string("mlp.gate.weight"), ParamShape{E, C});
  f(w.score_bias, std::string("mlp.gate.e_score_correction_bias"), ParamShape{E});
  if (c.moe.n_shared_experts > 0)
    visit_swiglu(w.shared, "mlp.shared_experts.", C, int64_t(c.moe.n_shared_experts) * I, f);
}

// Every expert linear with its HF module name, input and output width (LoRA targets; not the router).
template <class W, class F>
void visit_moe_linears(W& w, const ModelConfig& c, F&& f) {
  const int64_t C = c.hidden_size, E = c.moe.num_experts, I = c.moe.moe_intermediate_size;
  if constexpr (!std::is_const_v<W>) w.experts.resize(size_t(E));  // a fresh probe (lora_specs)
  for (int64_t e = 0; e < int64_t(w.experts.size()); ++e)
    visit_swiglu_linears(w.experts[size_t(e)], "mlp.experts." + std::to_string(e) + ".", C, I, f);
  if (c.is_mla() && c.moe.n_shared_experts > 0)
    visit_swiglu_linears(w.shared, "mlp.shared_experts.", C, int64_t(c.moe.n_shared_experts) * I, f);
}

// The router of a config.
ops::MoeRouting moe_routing(const ModelConfig& c);

struct MoeSaved {
  Tensor logits;            // (T, E) router logits
  Tensor experts, weights;  // (T, K) i32 chosen experts, f32 their weights
  Tensor order, tokens;     // (R) i32: the assignments grouped by expert (ops::moe_permute)
  Tensor offsets;           // (E + 1) i32 on the device: expert e's rows are [offsets[e], offsets[e+1])
  Tensor xs, ys;            // (R, C) the experts' inputs and outputs, grouped
  MlpSaved experts_mlp;     // the experts' grouped SwiGLU over xs
  MlpSaved shared;
};

// The experts' weights (or gradients) of one layer as grouped linears over the rows `offsets` groups:
// each kind (gate, up, down; their adapters) is E matrices at a constant stride in the model's
// layout, which this checks (and that either every expert has an adapter on a kind or none has).
GroupedMlpWeights grouped_experts(const std::vector<MlpWeights>& experts, const Tensor& offsets);

// What a pass tells a mixture-of-experts layer about its routing, and learns from it.
struct RouteIo {
  // Routing replay: (T, K) i32 on the device, a row of experts is used instead of the router's
  // choice, a row of -1 is routed (ops::moe_route_forward). The weights are still the router's
  // scores of those experts, so the router's gradient flows through them as without replay.
  Tensor replay;
  std::vector<int64_t>* counts = nullptr;  // (E) += the tokens sent to each expert (load balance)
  std::vector<int32_t>* chosen = nullptr;  // host: set to the experts used, (T, K) (recording)
  // With a replay: += the replayed tokens, and those whose replayed experts differ (as a set) from
  // the router's own choice.
  int64_t* replayed = nullptr;
  int64_t* replaced = nullptr;
  // Recording on the device (decoding; KVCache::route_t): the experts used go to each token's row of
  // this (NB, BS, 1, K) i32 pool, through the pass's block table, slots and positions.
  Tensor record;
};

// out (T, C) = the block over x (T, C) (+ residual (T, C): summed in the shared experts' down_proj
// product when there are shared experts, else added); s (when saving) keeps what moe_backward reads.
void moe_forward(const Pass& p, const MoeWeights& W, const Tensor& x, Tensor out, MoeSaved* s,
                 const RouteIo* io = nullptr, const Tensor& residual = {});
// From dout (T, C): dx (T, C) +=, and G's gradients += (the router's through the routing weights).
void moe_backward(const Pass& p, const MoeWeights& W, MoeWeights& G, const MoeSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx);

}  // namespace r1::model
