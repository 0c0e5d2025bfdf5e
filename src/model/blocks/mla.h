#pragma once
// Multi-head latent attention (DeepSeek-V3): queries through a low-rank projection (q_a_proj,
// q_a_layernorm, q_b_proj) or one q_proj; keys and values from a compressed latent
// (kv_a_proj_with_mqa -> kv_a_layernorm -> kv_b_proj) plus a rotary key part shared by all heads.
// Each head's q and k are [no-rope part (qk_nope_head_dim) | rope part (qk_rope_head_dim)]; the
// rope part is rotated in the interleaved layout (rope_interleave) or rotate_half's, and scaled by
// yarn's attention factor; values have v_head_dim. The softmax scale carries yarn's mscale.
// Decoding keeps full per-head keys and values in the paged KV cache (NH heads of qk_head_dim and
// of v_head_dim dims); the compressed latent cache is CUDA work (issue 22).
#include <string>

#include "model/blocks/linear.h"

namespace r1::model {

struct MlaWeights {
  Linear q_a;                 // (QR, C) with q_lora_rank; else empty
  Tensor q_a_norm;            // (QR) with q_lora_rank; else empty
  Linear q_b;                 // (NH * QK, QR) with q_lora_rank; else empty
  Linear q;                   // (NH * QK, C) without q_lora_rank; else empty
  Linear kv_a;                // (KVR + DR, C)
  Tensor kv_a_norm;           // (KVR)
  Linear kv_b;                // (NH * (DN + DV), KVR)
  Linear o;                   // (C, NH * DV)
};

// Every parameter of the block in the checkpoint's order, with its HF name under the layer.
template <class W, class F>
void visit_mla(W& w, const ModelConfig& c, F&& f) {
  const MlaConfig& m = c.mla;
  const int64_t C = c.hidden_size, NH = c.num_attention_heads, QK = m.qk_head_dim();
  if (m.q_lora_rank > 0) {
    f(w.q_a.w, std::string("self_attn.q_a_proj.weight"), ParamShape{m.q_lora_rank, C});
    f(w.q_a_norm, std::string("self_attn.q_a_layernorm.weight"), ParamShape{m.q_lora_rank});
    f(w.q_b.w, std::string("self_attn.q_b_proj.weight"), ParamShape{NH * QK, m.q_lora_rank});
  } else {
    f(w.q.w, std::string("self_attn.q_proj.weight"), ParamShape{NH * QK, C});
  }
  f(w.kv_a.w, std::string("self_attn.kv_a_proj_with_mqa.weight"), ParamShape{m.kv_lora_rank + m.qk_rope_head_dim, C});
  f(w.kv_a_norm, std::string("self_attn.kv_a_layernorm.weight"), ParamShape{m.kv_lora_rank});
  f(w.kv_b.w, std::string("self_attn.kv_b_proj.weight"),
    ParamShape{NH * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank});
  f(w.o.w, std::string("self_attn.o_proj.weight"), ParamShape{C, NH * m.v_head_dim});
}

// Every linear of the block with its HF module name, input and output width (LoRA targets).
template <class W, class F>
void visit_mla_linears(W& w, const ModelConfig& c, F&& f) {
  const MlaConfig& m = c.mla;
  const int64_t C = c.hidden_size, NH = c.num_attention_heads, QK = m.qk_head_dim();
  if (m.q_lora_rank > 0) {
    f(w.q_a, "self_attn.q_a_proj", C, m.q_lora_rank);
    f(w.q_b, "self_attn.q_b_proj", m.q_lora_rank, NH * QK);
  } else {
    f(w.q, "self_attn.q_proj", C, NH * QK);
  }
  f(w.kv_a, "self_attn.kv_a_proj_with_mqa", C, m.kv_lora_rank + m.qk_rope_head_dim);
  f(w.kv_b, "self_attn.kv_b_proj", m.kv_lora_rank, NH * (m.qk_nope_head_dim + m.v_head_dim));
  f(w.o, "self_attn.o_proj", NH * m.v_head_dim, C);
}

struct MlaSaved {
  LinearSaved q_a_lin, q_b_lin, q_lin, kv_a_lin, kv_b_lin, o_lin;
  Tensor qa, qa_n, qa_rstd;  // q_lora_rank: the low-rank query, normed, and its rstd
  Tensor ckv, c, c_n, c_rstd;  // (T, KVR + DR) the latent with the rope key, its latent part, normed, rstd
  Tensor q, k, v;            // (T, NH, QK) x2, (T, NH, DV): what the attention saw
  Tensor att, lse;           // (T, NH, DV), (T, NH)
};

// out (T, C) = the block over x (T, C) (+ residual (T, C), summed in o_proj's product). With
// p.cache: layer `layer`'s keys and values are written to the cache and the tokens attend over it
// (decoding); else within their packed sequences.
void mla_forward(const Pass& p, int layer, const MlaWeights& W, const Tensor& x, Tensor out, MlaSaved* s,
                 const Tensor& residual = {});
// From dout (T, C): dx (T, C) +=, and G's gradients +=. x is the forward's input.
void mla_backward(const Pass& p, const MlaWeights& W, MlaWeights& G, const MlaSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx);

}  // namespace r1::model
