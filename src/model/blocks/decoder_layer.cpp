#include "model/blocks/decoder_layer.h"

#include "base/error.h"
#include "kernels/ops.h"

namespace r1::model {

bool layer_forward(const Pass& p, int layer, const LayerWeights& W, const Tensor& x_in, Tensor x_out,
                   LayerSaved* s, const RouteIo* route, const NormChain& chain) {
  const int64_t T = p.T, C = p.cfg->hidden_size;
  R1_CHECK(!s || (chain.in_normed.empty() && chain.next_weight.empty()), "layer_forward: a norm chain while saving");
  // A cached forward (rollouts: nothing saved) hands a dense block its input before the norm, for
  // the block to fuse the norm into its first product where a kernel takes the pair (a decode step
  // on the decode GEMM: ops::rmsnorm_linear_forward); otherwise the norm runs here, or in the block.
  // Its dense blocks' output projections may instead write the next block's norm (PostNorm: o_proj
  // the post-attention norm, down_proj the next layer's input norm, chain).
  const bool fuse = !s && p.cache != nullptr;
  const bool fuse_attention = fuse && !W.is_mla(), fuse_mlp = fuse && !W.is_moe();
  const bool given = !chain.in_normed.empty();
  const Tensor ln1 = given            ? chain.in_normed
                     : fuse_attention ? x_in
                                      : norm_forward(p, W.input_norm, x_in, s ? &s->ln1 : nullptr);
  // The residual stream: x_mid = x_in + attention, x_out = x_mid + MLP. Each block takes it: the
  // attention blocks and a dense MLP sum it in their output projection's GEMM (o_proj, down_proj:
  // no add kernel, one rounding), a mixture of experts in its shared experts' (or adds it).
  Tensor x_mid = p.keep(p.cd, {T, C});
  const PostNorm post_attention =
      fuse_mlp && fuse_attention ? PostNorm{W.post_norm, p.scratch(p.cd, {T, C})} : PostNorm{};
  bool ln2_done = false;
  if (W.is_mla()) {
    mla_forward(p, layer, W.mla, ln1, x_mid, s ? &s->mla : nullptr, x_in);
  } else {
    ln2_done = attention_forward(p, layer, W.attn, ln1, x_mid, s ? &s->attn : nullptr, x_in,
                                 {fuse_attention && !given ? W.input_norm : Tensor()}, post_attention);
  }
  const Tensor ln2 = ln2_done   ? post_attention.normed
                     : fuse_mlp ? x_mid
                                : norm_forward(p, W.post_norm, x_mid, s ? &s->ln2 : nullptr);
  bool out_normed = false;
  if (W.is_moe()) {
    moe_forward(p, W.moe, ln2, x_out, s ? &s->moe : nullptr, route, x_mid);
  } else {
    out_normed = mlp_forward(p, W.mlp, ln2, x_out, s ? &s->mlp : nullptr, x_mid,
                             {fuse_mlp && !ln2_done ? W.post_norm : Tensor()},
                             {fuse_mlp ? chain.next_weight : Tensor(), chain.next_normed});
  }
  if (s) s->x_in = x_in, s->x_mid = x_mid;
  return out_normed;
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
