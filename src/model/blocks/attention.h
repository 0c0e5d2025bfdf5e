#pragma once
// Grouped-query self-attention (Qwen2, Llama 3, Qwen3): q/k/v projections (with biases: qwen2),
// per-head RMSNorm of q and k (qwen3), RoPE, causal attention within each packed sequence (or over
// the KV cache when decoding), the output projection. Architectures differ only in the config
// data that visit_attention reads.
#include <string>

#include "model/blocks/linear.h"
#include "model/blocks/norm.h"

namespace r1::model {

struct AttentionWeights {
  Linear q, k, v, o;      // (Q, C), (KV, C), (KV, C), (C, Q); q/k/v biases with attention_bias
  Tensor q_norm, k_norm;  // (HD); empty without qk_norm
};

// Every parameter of the block in layout order, with its HF name under the layer.
template <class W, class F>
void visit_attention(W& w, const ModelConfig& c, F&& f) {
  const int64_t C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), HD = c.head_dim;
  using S = std::string;
  // q, k and v's weights adjacent, then their biases: a decode step projects all three in one
  // product (packed_rows). Layout version 2; version 1 put each bias after its weight
  // (param_specs(c, 1), read by layout_moves).
  f(w.q.w, S("self_attn.q_proj.weight"), ParamShape{Q, C});
  f(w.k.w, S("self_attn.k_proj.weight"), ParamShape{KV, C});
  f(w.v.w, S("self_attn.v_proj.weight"), ParamShape{KV, C});
  if (c.attention_bias) {
    f(w.q.b, S("self_attn.q_proj.bias"), ParamShape{Q});
    f(w.k.b, S("self_attn.k_proj.bias"), ParamShape{KV});
    f(w.v.b, S("self_attn.v_proj.bias"), ParamShape{KV});
  }
  f(w.o.w, S("self_attn.o_proj.weight"), ParamShape{C, Q});
  if (c.qk_norm) {
    f(w.q_norm, S("self_attn.q_norm.weight"), ParamShape{HD});
    f(w.k_norm, S("self_attn.k_norm.weight"), ParamShape{HD});
  }
}

// Every linear of the block with its HF module name, input and output width (LoRA targets).
template <class W, class F>
void visit_attention_linears(W& w, const ModelConfig& c, F&& f) {
  const int64_t C = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim();
  f(w.q, "self_attn.q_proj", C, Q);
  f(w.k, "self_attn.k_proj", C, KV);
  f(w.v, "self_attn.v_proj", C, KV);
  f(w.o, "self_attn.o_proj", Q, C);
}

struct AttentionSaved {
  LinearSaved q_lin, k_lin, v_lin, o_lin;
  Tensor q_pre, k_pre, q_rstd, k_rstd;  // qk_norm: its inputs (T, NH|NKV, HD) and rstd (T * NH|NKV)
  Tensor q, k, v;                       // after bias, norm and RoPE: (T, NH, HD), (T, NKV, HD) x2
  Tensor att, lse;                      // (T, NH, HD), (T, NH) f32
};

// out (T, C) = the block over x (T, C) (+ residual (T, C), summed in o_proj's product). With
// p.cache, layer `layer`'s keys and values are written to the cache and the tokens attend over it
// (decoding); else within their packed sequences, and s (when saving) keeps what attention_backward
// reads. pre (not while saving): x is the residual stream before the block's RMSNorm; a decode
// step's q/k/v product takes the norm in (ops::rmsnorm_linear_forward) where a kernel does.
// post (not while saving): the next block's norm, which o_proj's product may write too: returns
// whether it did.
bool attention_forward(const Pass& p, int layer, const AttentionWeights& W, const Tensor& x, Tensor out,
                       AttentionSaved* s, const Tensor& residual = {}, const PreNorm& pre = {},
                       const PostNorm& post = {});
// From dout (T, C): dx (T, C) +=, and G's gradients +=. x is the forward's input.
void attention_backward(const Pass& p, const AttentionWeights& W, AttentionWeights& G, const AttentionSaved& s,
                        const Tensor& x, const Tensor& dout, Tensor dx);

}  // namespace r1::model
