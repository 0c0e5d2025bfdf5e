#pragma once
// One decoder layer, pre-norm with residuals:
//   x_mid = x_in + attention(rmsnorm(x_in)),  x_out = x_mid + mlp(rmsnorm(x_mid)).
// The attention is grouped-query (attention.h) or multi-head latent (mla.h, deepseek_v3); the MLP
// dense SwiGLU (mlp.h) or a mixture of experts (moe.h), per layer (ModelConfig::is_moe_layer).
// The same function runs the training forward (saving what the backward reads), inference, and
// decoding over the KV cache (the attention block tells them apart by the pass).
#include "model/blocks/attention.h"
#include "model/blocks/mla.h"
#include "model/blocks/mlp.h"
#include "model/blocks/moe.h"
#include "model/blocks/norm.h"

namespace r1::model {

// One of each pair of blocks is bound (the other's tensors stay empty).
struct LayerWeights {
  Tensor input_norm;  // (C)
  AttentionWeights attn;  // grouped-query attention
  MlaWeights mla;         // multi-head latent attention
  Tensor post_norm;  // (C)
  MlpWeights mlp;  // a dense MLP
  MoeWeights moe;  // a mixture of experts
  bool is_mla() const { return !mla.kv_a.w.empty(); }
  bool is_moe() const { return !moe.router.empty(); }
};

// Every parameter of layer `layer` in layout order, with its HF name under "model.layers.N.".
template <class W, class F>
void visit_layer(W& w, const ModelConfig& c, int layer, F&& f) {
  f(w.input_norm, std::string("input_layernorm.weight"), ParamShape{c.hidden_size});
  if (c.is_mla()) visit_mla(w.mla, c, f);
  else visit_attention(w.attn, c, f);
  f(w.post_norm, std::string("post_attention_layernorm.weight"), ParamShape{c.hidden_size});
  if (c.is_moe_layer(layer)) visit_moe(w.moe, c, f);
  else visit_mlp(w.mlp, c, f);
}

// Every linear of layer `layer` with its HF module name under "model.layers.N.", input and output
// width (the LoRA targets; a MoE router is not one).
template <class W, class F>
void visit_layer_linears(W& w, const ModelConfig& c, int layer, F&& f) {
  if (c.is_mla()) visit_mla_linears(w.mla, c, f);
  else visit_attention_linears(w.attn, c, f);
  if (c.is_moe_layer(layer)) visit_moe_linears(w.moe, c, f);
  else visit_mlp_linears(w.mlp, c, f);
}

struct LayerSaved {
  Tensor x_in, x_mid;  // (T, C)
  NormSaved ln1, ln2;
  AttentionSaved attn;
  MlaSaved mla;
  MlpSaved mlp;
  MoeSaved moe;
};

// A cached forward's norms across layers (nothing saved): each layer's last product may also write
// the next layer's input norm (a decode step: ops::linear_rmsnorm_forward), so no layer but the first
// runs its input norm alone.
struct NormChain {
  Tensor in_normed;    // (T, C): x_in already normed with the layer's input norm; empty: not
  Tensor next_weight;  // the norm after the layer (the next layer's input norm, or the final norm); empty: none
  Tensor next_normed;  // (T, C): where that norm of x_out goes (may be in_normed: it is read first)
};

// x_out (T, C) = the layer over x_in (T, C). x_out may be x_in itself when nothing is saved.
// Its temporaries come from p.temp (the caller rewinds it after the layer); s (when saving) keeps
// what layer_backward reads.
// route (optional, MoE layers): what the layer's routing replays, counts and records (moe.h).
// chain (optional, not while saving): returns whether chain.next_normed was written.
bool layer_forward(const Pass& p, int layer, const LayerWeights& W, const Tensor& x_in, Tensor x_out,
                   LayerSaved* s, const RouteIo* route = nullptr, const NormChain& chain = {});
// dres (T, C) holds d loss / d x_out on entry and d loss / d x_in on return (accumulated in
// place); G's gradients +=.
void layer_backward(const Pass& p, const LayerWeights& W, LayerWeights& G, const LayerSaved& s, Tensor dres);

}  // namespace r1::model
