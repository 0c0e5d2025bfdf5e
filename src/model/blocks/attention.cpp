#include "model/blocks/attention.h"

#include <cmath>

#include "base/error.h"
#include "kernels/invariance.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"

namespace r1::model {

namespace {

float softmax_scale(const ModelConfig& c) { return c.attention_scale(); }

// q, k, v of x: projected, per-head normed (qk_norm) and, with `rotate`, rotated, in heads layout;
// s keeps the norm's inputs and statistics.
void project_qkv(const Pass& p, const AttentionWeights& W, const Tensor& x, Tensor& q, Tensor& k, Tensor& v,
                 AttentionSaved* s, bool rotate) {
  const ModelConfig& c = *p.cfg;
  const int64_t T = p.T, NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const float eps = float(c.rms_norm_eps);
  q = p.keep(p.cd, {T, c.q_dim()});
  k = p.keep(p.cd, {T, c.kv_dim()});
  v = p.keep(p.cd, {T, c.kv_dim()});
  linear_blocks_forward(p, {&W.q, &W.k, &W.v}, x, {q, k, v},
                        {s ? &s->q_lin : nullptr, s ? &s->k_lin : nullptr, s ? &s->v_lin : nullptr});
  if (c.qk_norm) {
    const Tensor q_pre = q, k_pre = k;
    q = p.keep(p.cd, {T, c.q_dim()});
    k = p.keep(p.cd, {T, c.kv_dim()});
    const Tensor q_rstd = p.keep(DType::F32, {T * NH}), k_rstd = p.keep(DType::F32, {T * NKV});
    ops::rmsnorm_forward(q.reshape({T * NH, HD}), q_rstd, q_pre.reshape({T * NH, HD}), W.q_norm, eps);
    ops::rmsnorm_forward(k.reshape({T * NKV, HD}), k_rstd, k_pre.reshape({T * NKV, HD}), W.k_norm, eps);
    if (s) s->q_pre = q_pre, s->k_pre = k_pre, s->q_rstd = q_rstd, s->k_rstd = k_rstd;
  }
  q = q.reshape({T, NH, HD});
  k = k.reshape({T, NKV, HD});
  v = v.reshape({T, NKV, HD});
  if (!rotate) return;
  ops::rope_forward(q, p.pos, p.inv_freq);
  ops::rope_forward(k, p.pos, p.inv_freq);
}

// A decode step's q, k and v as one product: their weights and biases adjacent (the flat layout),
// no adapter taking part, and not the batch-invariant forward (whose products must be the
// trainer's, shape for shape).
std::optional<Linear> decode_qkv(const Pass& p, const AttentionWeights& W) {
  if (!p.cache || !p.cu_seqlens.empty() || ops::batch_invariant()) return std::nullopt;
  return packed_rows(p, {&W.q, &W.k, &W.v});
}

}  // namespace

bool attention_forward(const Pass& p, int layer, const AttentionWeights& W, const Tensor& x_in, Tensor out,
                       AttentionSaved* s, const Tensor& residual, const PreNorm& pre, const PostNorm& post) {
  R1_CHECK(!(s && (pre.pending() || post.asked())), "attention_forward: a fused norm while saving for the backward");
  const ModelConfig& c = *p.cfg;
  const int64_t T = p.T, NH = c.num_attention_heads;
  const float scale = softmax_scale(c);
  Tensor q, k, v;
  Tensor att = p.keep(p.cd, {T, NH, c.head_dim}), lse;
  if (const std::optional<Linear> qkv_w = s ? std::nullopt : decode_qkv(p, W)) {
    // One product for q, k and v, then (qk_norm,) RoPE and the cache write of its columns, and the
    // attention: one launch each, or RoPE, the write and the attention in one (a decode step).
    const Tensor &kc = p.cache->k_t[size_t(layer)], &vc = p.cache->v_t[size_t(layer)];
    Tensor qkv = p.scratch(p.cd, {T, c.q_dim() + 2 * c.kv_dim()});
    if (!pre.fused_product(p, qkv, x_in, qkv_w->w, qkv_w->b, false))
      ops::linear_forward(qkv, pre.normed(p, x_in), qkv_w->w, qkv_w->b);
    const float eps = float(c.rms_norm_eps);
    q = p.keep(p.cd, {T, NH, c.head_dim});
    if (p.one_token_per_slot) {  // a decode step: RoPE, the cache write and the attention in one
      ops::rope_qkv_attention_cached(att, q, qkv, kc, vc, p.cache->table, p.slots, p.pos, p.inv_freq, scale,
                                     p.workspace, W.q_norm, W.k_norm, eps);
    } else {
      ops::rope_qkv_cache_write(q, qkv, kc, vc, p.cache->table, p.slots, p.pos, p.inv_freq, W.q_norm, W.k_norm, eps);
      ops::attention_cached(att, q, kc, vc, p.cache->table, p.slots, p.pos, scale, p.workspace);
    }
    return post.product(p, W.o, att.reshape({T, c.q_dim()}), out, nullptr, residual);
  }
  // A cached forward rotates q and k and writes the cache in one op (bitwise the three it replaces).
  const Tensor x = pre.normed(p, x_in);
  project_qkv(p, W, x, q, k, v, s, /*rotate=*/p.cache == nullptr);
  if (p.cache) {
    const Tensor &kc = p.cache->k_t[size_t(layer)], &vc = p.cache->v_t[size_t(layer)];
    ops::rope_kv_cache_write(q, k, v, kc, vc, p.cache->table, p.slots, p.pos, p.inv_freq);
    // A fresh prefill attends within its own tokens: the packed (training) attention, the same
    // kernel the trainer's forward runs. Otherwise over the cache.
    if (!p.cu_seqlens.empty()) {
      ops::attention_forward(att, p.scratch(DType::F32, {T, NH}), q, k, v, p.cu_seqlens, scale);
    } else {
      ops::attention_cached(att, q, kc, vc, p.cache->table, p.slots, p.pos, scale, p.workspace);
    }
  } else {
    lse = p.keep(DType::F32, {T, NH});
    ops::attention_forward(att, lse, q, k, v, p.cu_seqlens, scale);
  }
  const bool normed = post.product(p, W.o, att.reshape({T, c.q_dim()}), out, s ? &s->o_lin : nullptr, residual);
  if (s) s->q = q, s->k = k, s->v = v, s->att = att, s->lse = lse;
  return normed;
}

void attention_backward(const Pass& p, const AttentionWeights& W, AttentionWeights& G, const AttentionSaved& s,
                        const Tensor& x, const Tensor& dout, Tensor dx) {
  const ModelConfig& c = *p.cfg;
  const int64_t T = p.T, NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  Tensor datt = p.zeros(p.cd, {T, NH, HD});
  linear_block_backward(p, W.o, G.o, s.o_lin, s.att.reshape({T, Q}), dout, datt.reshape({T, Q}));
  Tensor dq = p.zeros(p.cd, {T, NH, HD}), dk = p.zeros(p.cd, {T, NKV, HD}), dv = p.zeros(p.cd, {T, NKV, HD});
  ops::attention_backward(dq, dk, dv, datt, s.q, s.k, s.v, s.att, s.lse, p.cu_seqlens, softmax_scale(c));
  ops::rope_backward(dq, p.pos, p.inv_freq);
  ops::rope_backward(dk, p.pos, p.inv_freq);
  if (c.qk_norm) {
    Tensor dq_pre = p.zeros(p.cd, {T * NH, HD}), dk_pre = p.zeros(p.cd, {T * NKV, HD});
    ops::rmsnorm_backward(dq_pre, G.q_norm, dq.reshape({T * NH, HD}), s.q_pre.reshape({T * NH, HD}), W.q_norm,
                          s.q_rstd);
    ops::rmsnorm_backward(dk_pre, G.k_norm, dk.reshape({T * NKV, HD}), s.k_pre.reshape({T * NKV, HD}), W.k_norm,
                          s.k_rstd);
    dq = dq_pre;
    dk = dk_pre;
  }
  linear_block_backward(p, W.q, G.q, s.q_lin, x, dq.reshape({T, Q}), dx);
  linear_block_backward(p, W.k, G.k, s.k_lin, x, dk.reshape({T, KV}), dx);
  linear_block_backward(p, W.v, G.v, s.v_lin, x, dv.reshape({T, KV}), dx);
}

}  // namespace r1::model
