#include "model/blocks/mla.h"

#include "kernels/ops.h"
#include "model/kv_cache.h"

namespace r1::model {

namespace {

struct Dims {
  int64_t T, NH, DN, DR, DV, QK, KVR, QR;
};

Dims dims(const Pass& p) {
  const ModelConfig& c = *p.cfg;
  const MlaConfig& m = c.mla;
  return {p.T, c.num_attention_heads, m.qk_nope_head_dim, m.qk_rope_head_dim, m.v_head_dim, m.qk_head_dim(),
          m.kv_lora_rank, m.q_lora_rank};
}

// The rope part x (T, H, DR) rotated (or, backward, its gradient mapped back) in the checkpoint's
// layout, with yarn's factor on cos and sin (a scale that commutes with the rotation).
void rotate(const Pass& p, Tensor x, bool backward) {
  const ModelConfig& c = *p.cfg;
  const float af = c.rope_attention_factor();
  if (c.mla.rope_interleave) {
    backward ? ops::rope_interleaved_backward(x, p.pos, p.inv_freq) : ops::rope_interleaved_forward(x, p.pos, p.inv_freq);
  } else {
    backward ? ops::rope_backward(x, p.pos, p.inv_freq) : ops::rope_forward(x, p.pos, p.inv_freq);
  }
  if (af != 1.0f) ops::scale_inplace(x, af);
}

// Columns [col, col + DR) of each row of x (N, W) rotated in place (N = T * H rows, H per token).
void rotate_columns(const Pass& p, Tensor x, int64_t col, int64_t DR, bool backward) {
  const int64_t N = x.shape[0], H = N / p.T;
  Tensor part = p.scratch(p.cd, {N, DR});
  ops::copy_columns(part, 0, x, col, DR);
  rotate(p, part.reshape({p.T, H, DR}), backward);
  ops::copy_columns(x, col, part, 0, DR);
}

// The rows of the latent cache, [normed latent | rotated rope key] (T, 1, KVR + DR), written at the
// tokens' rows: what every head's keys and values are made from.
void write_latent(const Pass& p, int layer, const Tensor& c_n, const Tensor& kpe) {
  const Dims d = dims(p);
  Tensor rows = p.scratch(p.cd, {d.T, d.KVR + d.DR});
  ops::copy_columns(rows, 0, c_n, 0, d.KVR);
  ops::copy_columns(rows, d.KVR, kpe, 0, d.DR);
  ops::kv_cache_write(p.cache->k_t[size_t(layer)], {}, rows.reshape({d.T, 1, d.KVR + d.DR}), {}, p.cache->table,
                      p.slots, p.pos);
}

// Decoding over the latent cache in the absorbed form (DeepSeek-V2, section 2.1.2). Head h's key
// no-rope part is W_UK_h c and its value W_UV_h c (W_UK_h, W_UV_h: its rows of kv_b), so
// q_nope . k_nope = (q_nope W_UK_h) . c and the head's output is W_UV_h (sum_j p_j c_j). The heads
// attend as one kv head over the cached rows [c | k_rope] with queries [q_nope W_UK_h | q_rope],
// the values being the rows' first KVR columns, at the same softmax scale; each head's latent
// output then goes up through W_UV_h. The cache holds KVR + DR numbers per token and layer instead
// of NH * (QK + DV). Every head at once each way (a batched product over the heads' strided views):
// a handful of launches per layer whatever NH, as a decode step (a captured graph) wants.
void attend_latent(const Pass& p, int layer, const MlaWeights& W, const Tensor& q, Tensor att, float scale) {
  const Dims d = dims(p);
  const int64_t T = d.T, N = T * d.NH, HL = d.KVR + d.DR, KV = d.DN + d.DV;
  const Tensor wkv = effective_weight(p, W.kv_b);  // (NH * (DN + DV), KVR), the adapter merged
  Tensor ql = p.scratch(p.cd, {T, d.NH, HL}), ol = p.scratch(p.cd, {T, d.NH, d.KVR});
  // Head h's matrices: its columns of the (T, NH * width) rows, and its rows of wkv.
  auto heads = [&](const Tensor& x, int64_t rows, int64_t cols, int64_t ld, int64_t stride) {
    return ops::Batched{x, d.NH, rows, cols, ld, stride};
  };
  // ql[:, h] = [q_nope_h W_UK_h | q_rope_h]; W_UK_h = rows [h KV, h KV + DN) of wkv, (DN, KVR).
  ops::copy_columns(ql.reshape({N, HL}), d.KVR, q.reshape({N, d.QK}), d.DN, d.DR);
  ops::batched_matmul(heads(ql, T, d.KVR, d.NH * HL, HL), heads(q, T, d.DN, d.NH * d.QK, d.QK),
                      heads(wkv, d.DN, d.KVR, d.KVR, KV * d.KVR), false);
  ops::attention_cached(ol, ql, p.cache->k_t[size_t(layer)], {}, p.cache->table, p.slots, p.pos, scale,
                        p.workspace);
  // att[:, h] = ol[:, h] W_UV_h^T; W_UV_h = rows [h KV + DN, (h + 1) KV) of wkv, (DV, KVR).
  ops::batched_matmul(heads(att, T, d.DV, d.NH * d.DV, d.DV), heads(ol, T, d.KVR, d.NH * d.KVR, d.KVR),
                      heads(wkv.rows(d.DN, d.NH * KV), d.DV, d.KVR, d.KVR, KV * d.KVR), true);
}

}  // namespace

void mla_forward(const Pass& p, int layer, const MlaWeights& W, const Tensor& x, Tensor out, MlaSaved* s,
                 const Tensor& residual) {
  const ModelConfig& c = *p.cfg;
  const Dims d = dims(p);
  const int64_t T = d.T, N = T * d.NH;
  const float eps = float(c.rms_norm_eps);
  MlaSaved local;
  MlaSaved& m = s ? *s : local;
  // Queries: [no-rope | rope] per head, the rope part rotated in place.
  m.q = p.keep(p.cd, {T, d.NH * d.QK});
  if (d.QR > 0) {
    m.qa = p.keep(p.cd, {T, d.QR});
    m.qa_n = p.keep(p.cd, {T, d.QR});
    m.qa_rstd = p.keep(DType::F32, {T});
    linear_block_forward(p, W.q_a, x, m.qa, &m.q_a_lin);
    ops::rmsnorm_forward(m.qa_n, m.qa_rstd, m.qa, W.q_a_norm, eps);
    linear_block_forward(p, W.q_b, m.qa_n, m.q, &m.q_b_lin);
  } else {
    linear_block_forward(p, W.q, x, m.q, &m.q_lin);
  }
  rotate_columns(p, m.q.reshape({N, d.QK}), d.DN, d.DR, false);
  // Keys and values from the normed latent; the rope key, shared by every head, from the rest.
  m.ckv = p.keep(p.cd, {T, d.KVR + d.DR});
  linear_block_forward(p, W.kv_a, x, m.ckv, &m.kv_a_lin);
  m.c = p.keep(p.cd, {T, d.KVR});
  ops::copy_columns(m.c, 0, m.ckv, 0, d.KVR);
  m.c_n = p.keep(p.cd, {T, d.KVR});
  m.c_rstd = p.keep(DType::F32, {T});
  ops::rmsnorm_forward(m.c_n, m.c_rstd, m.c, W.kv_a_norm, eps);
  Tensor kpe = p.scratch(p.cd, {T, d.DR});
  ops::copy_columns(kpe, 0, m.ckv, d.KVR, d.DR);
  rotate(p, kpe.reshape({T, 1, d.DR}), false);
  m.att = p.keep(p.cd, {T, d.NH, d.DV});
  const float scale = c.attention_scale();
  if (p.cache) write_latent(p, layer, m.c_n, kpe);
  if (p.cache && p.cu_seqlens.empty()) {  // decoding, or a prefill chunk after cached rows
    attend_latent(p, layer, W, m.q.reshape({T, d.NH, d.QK}), m.att, scale);
  } else {  // training, or a fresh prefill (the packed attention, as the trainer runs it)
    Tensor kv = p.scratch(p.cd, {N, d.DN + d.DV});
    linear_block_forward(p, W.kv_b, m.c_n, kv.reshape({T, d.NH * (d.DN + d.DV)}), &m.kv_b_lin);
    m.k = p.keep(p.cd, {N, d.QK});
    ops::copy_columns(m.k, 0, kv, 0, d.DN);
    const Tensor k_rows = m.k.reshape({T, d.NH * d.QK});
    for (int64_t h = 0; h < d.NH; ++h) ops::copy_columns(k_rows, h * d.QK + d.DN, kpe, 0, d.DR);
    m.v = p.keep(p.cd, {N, d.DV});
    ops::copy_columns(m.v, 0, kv, d.DN, d.DV);
    m.q = m.q.reshape({T, d.NH, d.QK});
    m.k = m.k.reshape({T, d.NH, d.QK});
    m.v = m.v.reshape({T, d.NH, d.DV});
    m.lse = p.keep(DType::F32, {T, d.NH});
    ops::attention_forward(m.att, m.lse, m.q, m.k, m.v, p.cu_seqlens, scale);
  }
  linear_block_forward(p, W.o, m.att.reshape({T, d.NH * d.DV}), out, &m.o_lin, residual);
}

void mla_backward(const Pass& p, const MlaWeights& W, MlaWeights& G, const MlaSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx) {
  const ModelConfig& c = *p.cfg;
  const Dims d = dims(p);
  const int64_t T = d.T, N = T * d.NH;
  Tensor datt = p.zeros(p.cd, {T, d.NH, d.DV});
  linear_block_backward(p, W.o, G.o, s.o_lin, s.att.reshape({T, d.NH * d.DV}), dout, datt.reshape({T, d.NH * d.DV}));
  Tensor dq = p.zeros(p.cd, {T, d.NH, d.QK}), dk = p.zeros(p.cd, {T, d.NH, d.QK});
  Tensor dv = p.zeros(p.cd, {T, d.NH, d.DV});
  ops::attention_backward(dq, dk, dv, datt, s.q, s.k, s.v, s.att, s.lse, p.cu_seqlens, c.attention_scale());
  // Keys and values back to the latent and the rope key.
  Tensor dkv = p.zeros(p.cd, {N, d.DN + d.DV});
  ops::copy_columns(dkv, 0, dk.reshape({N, d.QK}), 0, d.DN, true);
  ops::copy_columns(dkv, d.DN, dv.reshape({N, d.DV}), 0, d.DV, true);
  Tensor dkpe = p.zeros(p.cd, {T, d.DR});
  const Tensor dk_rows = dk.reshape({T, d.NH * d.QK});
  for (int64_t h = 0; h < d.NH; ++h) ops::copy_columns(dkpe, 0, dk_rows, h * d.QK + d.DN, d.DR, true);
  rotate(p, dkpe.reshape({T, 1, d.DR}), true);
  Tensor dckv = p.zeros(p.cd, {T, d.KVR + d.DR});
  ops::copy_columns(dckv, d.KVR, dkpe, 0, d.DR, true);
  Tensor dc_n = p.zeros(p.cd, {T, d.KVR}), dc = p.zeros(p.cd, {T, d.KVR});
  linear_block_backward(p, W.kv_b, G.kv_b, s.kv_b_lin, s.c_n, dkv.reshape({T, d.NH * (d.DN + d.DV)}), dc_n);
  ops::rmsnorm_backward(dc, G.kv_a_norm, dc_n, s.c, W.kv_a_norm, s.c_rstd);
  ops::copy_columns(dckv, 0, dc, 0, d.KVR, true);
  linear_block_backward(p, W.kv_a, G.kv_a, s.kv_a_lin, x, dckv, dx);
  // Queries.
  rotate_columns(p, dq.reshape({N, d.QK}), d.DN, d.DR, true);
  const Tensor dq2 = dq.reshape({T, d.NH * d.QK});
  if (d.QR > 0) {
    Tensor dqa_n = p.zeros(p.cd, {T, d.QR}), dqa = p.zeros(p.cd, {T, d.QR});
    linear_block_backward(p, W.q_b, G.q_b, s.q_b_lin, s.qa_n, dq2, dqa_n);
    ops::rmsnorm_backward(dqa, G.q_a_norm, dqa_n, s.qa, W.q_a_norm, s.qa_rstd);
    linear_block_backward(p, W.q_a, G.q_a, s.q_a_lin, x, dqa, dx);
  } else {
    linear_block_backward(p, W.q, G.q, s.q_lin, x, dq2, dx);
  }
}

}  // namespace r1::model
