#pragma once
// One decoder layer, pre-norm with residuals:
//   x_mid = x_in + attention(rmsnorm(x_in)),  x_out = x_mid + mlp(rmsnorm(x_mid)).
// The same function runs the training forward (saving what the backward reads), inference, and
// decoding over the KV cache (the attention block tells them apart by the pass).
#include "model/blocks/attention.h"
#include "model/blocks/mlp.h"
#include "model/blocks/norm.h"

namespace r1::model {

struct LayerWeights {
  Tensor input_norm;  // (C)
  AttentionWeights attn;
  Tensor post_norm;  // (C)
  MlpWeights mlp;
};

// Every parameter of the layer in layout order, with its HF name under "model.layers.N.".
template <class W, class F>
void visit_layer(W& w, const ModelConfig& c, F&& f) {
  f(w.input_norm, "input_layernorm.weight", ParamShape{c.hidden_size});
  visit_attention(w.attn, c, f);
  f(w.post_norm, "post_attention_layernorm.weight", ParamShape{c.hidden_size});
  visit_mlp(w.mlp, c, f);
}

// Every linear of the layer with its HF module name under "model.layers.N.", input and output width.
template <class W, class F>
void visit_layer_linears(W& w, const ModelConfig& c, F&& f) {
  visit_attention_linears(w.attn, c, f);
  visit_mlp_linears(w.mlp, c, f);
}

struct LayerSaved {
  Tensor x_in, x_mid;  // (T, C)
  NormSaved ln1, ln2;
  AttentionSaved attn;
  MlpSaved mlp;
};

// x_out (T, C) = the layer over x_in (T, C). x_out may be x_in itself when nothing is saved.
// Its temporaries come from p.temp (the caller rewinds it after the layer); s (when saving) keeps
// what layer_backward reads.
void layer_forward(const Pass& p, int layer, const LayerWeights& W, const Tensor& x_in, Tensor x_out,
                   LayerSaved* s);
// dres (T, C) holds d loss / d x_out on entry and d loss / d x_in on return (accumulated in
// place); G's gradients +=.
void layer_backward(const Pass& p, const LayerWeights& W, LayerWeights& G, const LayerSaved& s, Tensor dres);

}  // namespace r1::model
