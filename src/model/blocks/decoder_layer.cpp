#include "model/blocks/decoder_layer.h"

#include "kernels/ops.h"

namespace r1::model {

void layer_forward(const Pass& p, int layer, const LayerWeights& W, const Tensor& x_in, Tensor x_out,
                   LayerSaved* s, const RouteIo* route) {
  const int64_t T = p.T, C = p.cfg->hidden_size;
  const Tensor ln1 = norm_forward(p, W.input_norm, x_in, s ? &s->ln1 : nullptr);
  // The residual stream: x_mid = x_in + attention, x_out = x_mid + MLP. Each block takes it: the
  // attention blocks and a dense MLP sum it in their output projection's GEMM (o_proj, down_proj:
  // no add kernel, one rounding), a mixture of experts in its shared experts' (or adds it).
  Tensor x_mid = p.keep(p.cd, {T, C});
  if (W.is_mla()) {
    mla_forward(p, layer, W.mla, ln1, x_mid, s ? &s->mla : nullptr, x_in);
  } else {
    attention_forward(p, layer, W.attn, ln1, x_mid, s ? &s->attn : nullptr, x_in);
  }
  const Tensor ln2 = norm_forward(p, W.post_norm, x_mid, s ? &s->ln2 : nullptr);
  if (W.is_moe()) {
    moe_forward(p, W.moe, ln2, x_out, s ? &s->moe : nullptr, route, x_mid);
  } else {
    mlp_forward(p, W.mlp, ln2, x_out, s ? &s->mlp : nullptr, x_mid);
  }
  if (s) s->x_in = x_in, s->x_mid = x_mid;
}

void layer_backward(const Pass& p, const LayerWeights& W, LayerWeights& G, const LayerSaved& s, Tensor dres) {
  const int64_t T = p.T, C = p.cfg->hidden_size;
  const Tensor ln2 = norm_output(p, W.post_norm, s.x_mid, s.ln2);
  Tensor dln2 = p.zeros(p.cd, {T, C});
  if (W.is_moe()) moe_backward(p, W.moe, G.moe, s.moe, ln2, dres, dln2);
  else mlp_backward(p, W.mlp, G.mlp, s.mlp, ln2, dres, dln2);
  norm_backward(p, W.post_norm, G.post_norm, s.ln2, s.x_mid, dln2, dres);
  const Tensor ln1 = norm_output(p, W.input_norm, s.x_in, s.ln1);
  Tensor dln1 = p.zeros(p.cd, {T, C});
  if (W.is_mla()) mla_backward(p, W.mla, G.mla, s.mla, ln1, dres, dln1);
  else attention_backward(p, W.attn, G.attn, s.attn, ln1, dres, dln1);
  norm_backward(p, W.input_norm, G.input_norm, s.ln1, s.x_in, dln1, dres);
}

}  // namespace r1::model
