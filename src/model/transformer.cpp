#include "model/transformer.h"

#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/ops.h"

namespace r1::model {

Batch pack_sequences(const std::vector<std::vector<int32_t>>& seqs) {
  Batch b;
  b.cu_seqlens.push_back(0);
  for (const auto& s : seqs) {
    R1_CHECK(!s.empty(), "pack_sequences: sequence {} is empty", b.sequences());
    for (size_t i = 0; i < s.size(); ++i) {
      b.ids.push_back(s[i]);
      b.positions.push_back(int32_t(i));
      b.targets.push_back(i + 1 < s.size() ? s[i + 1] : -1);
    }
    b.cu_seqlens.push_back(int32_t(b.ids.size()));
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// Transformer

Transformer::Transformer(ModelConfig cfg) : cfg_(std::move(cfg)), specs_(param_specs(cfg_)) {
  const int64_t n = total_params(specs_);
  weights_ = Buffer(size_t(n) * sizeof(float));
  gradients_ = Buffer(size_t(n) * sizeof(float));
  weights_.zero();
  gradients_.zero();
  params_ = bind_params(cfg_, specs_, static_cast<float*>(weights_.data()));
  grads_ = bind_params(cfg_, specs_, static_cast<float*>(gradients_.data()));
  inv_freq_ = cfg_.rope_inv_freq();
  inv_freq_t_ = Tensor::f32(inv_freq_.data(), {int64_t(inv_freq_.size())});
}

void Transformer::zero_grads() { gradients_.zero(); }

void Transformer::init_random(uint64_t seed, float std) {
  float* base = params_.flat.f32();
  for (size_t i = 0; i < specs_.size(); ++i) {
    const ParamSpec& s = specs_[i];
    float* p = base + s.offset;
    const bool is_norm = s.name.find("norm") != std::string::npos;
    const bool is_bias = s.name.size() > 5 && s.name.compare(s.name.size() - 5, 5, ".bias") == 0;
    Rng rng(seed, i);  // one stream per tensor: adding a tensor does not shift the others
    for (int64_t j = 0; j < s.numel(); ++j) p[j] = is_norm ? 1.0f : is_bias ? 0.0f : std * rng.normal();
  }
}

// ---------------------------------------------------------------------------------------------
// Training forward / backward

namespace {

Tensor copy_i32(Arena& a, const std::vector<int32_t>& v) {
  Tensor t = a.alloc_i32({int64_t(v.size())});
  std::memcpy(t.data, v.data(), v.size() * sizeof(int32_t));
  return t;
}

Tensor heads(const Tensor& t, int64_t T, int64_t H, int64_t HD) { return t.reshape({T, H, HD}); }

}  // namespace

Tensor TrainState::forward(const Transformer& m, const Batch& batch, float temperature) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  const int64_t T = batch.tokens(), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  const float scale = 1.0f / std::sqrt(float(HD));
  R1_CHECK(T > 0, "forward: empty batch");
  R1_CHECK(batch.positions.size() == size_t(T) && batch.targets.size() == size_t(T),
           "forward: batch has {} ids but {} positions and {} targets", T, batch.positions.size(),
           batch.targets.size());
  for (int32_t p : batch.positions)
    R1_CHECK(p >= 0 && (c.max_position_embeddings <= 0 || p < c.max_position_embeddings),
             "forward: position {} is beyond max_position_embeddings {}", p, c.max_position_embeddings);

  arena_.reset();
  batch_ = &batch;
  temperature_ = temperature;
  ids_ = copy_i32(arena_, batch.ids);
  pos_ = copy_i32(arena_, batch.positions);
  cu_ = copy_i32(arena_, batch.cu_seqlens);
  targets_ = copy_i32(arena_, batch.targets);

  acts_.assign(size_t(c.num_hidden_layers), {});
  Tensor x = arena_.alloc_f32({T, C});
  ops::embedding_forward(x, ids_, P.embed);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerParams& W = P.layers[size_t(l)];
    LayerActivations& A = acts_[size_t(l)];
    A.x_in = x;
    A.ln1 = arena_.alloc_f32({T, C});
    A.ln1_rstd = arena_.alloc_f32({T});
    ops::rmsnorm_forward(A.ln1, A.ln1_rstd, A.x_in, W.input_norm, float(c.rms_norm_eps));

    Tensor q = arena_.alloc_f32({T, Q}), k = arena_.alloc_f32({T, KV});
    A.v = arena_.alloc_f32({T, KV});
    ops::linear_forward(q, A.ln1, W.q_w, W.q_b);
    ops::linear_forward(k, A.ln1, W.k_w, W.k_b);
    ops::linear_forward(A.v, A.ln1, W.v_w, W.v_b);
    if (c.qk_norm) {
      A.q_pre = q;
      A.k_pre = k;
      q = arena_.alloc_f32({T, Q});
      k = arena_.alloc_f32({T, KV});
      A.q_rstd = arena_.alloc_f32({T * NH});
      A.k_rstd = arena_.alloc_f32({T * NKV});
      ops::rmsnorm_forward(q.reshape({T * NH, HD}), A.q_rstd, A.q_pre.reshape({T * NH, HD}), W.q_norm,
                           float(c.rms_norm_eps));
      ops::rmsnorm_forward(k.reshape({T * NKV, HD}), A.k_rstd, A.k_pre.reshape({T * NKV, HD}), W.k_norm,
                           float(c.rms_norm_eps));
    }
    A.q = heads(q, T, NH, HD);
    A.k = heads(k, T, NKV, HD);
    A.v = heads(A.v, T, NKV, HD);
    ops::rope_forward(A.q, pos_, m.rope_inv_freq());
    ops::rope_forward(A.k, pos_, m.rope_inv_freq());

    A.att = arena_.alloc_f32({T, NH, HD});
    A.lse = arena_.alloc_f32({T, NH});
    ops::attention_forward(A.att, A.lse, A.q, A.k, A.v, cu_, scale);

    A.x_mid = arena_.alloc_f32({T, C});
    ops::linear_forward(A.x_mid, A.att.reshape({T, Q}), W.o_w, {});
    ops::add(A.x_mid, A.x_mid, A.x_in);
    A.ln2 = arena_.alloc_f32({T, C});
    A.ln2_rstd = arena_.alloc_f32({T});
    ops::rmsnorm_forward(A.ln2, A.ln2_rstd, A.x_mid, W.post_norm, float(c.rms_norm_eps));

    A.gate = arena_.alloc_f32({T, I});
    A.up = arena_.alloc_f32({T, I});
    A.act = arena_.alloc_f32({T, I});
    ops::linear_forward(A.gate, A.ln2, W.gate_w, {});
    ops::linear_forward(A.up, A.ln2, W.up_w, {});
    ops::swiglu_forward(A.act, A.gate, A.up);
    x = arena_.alloc_f32({T, C});
    ops::linear_forward(x, A.act, W.down_w, {});
    ops::add(x, x, A.x_mid);
  }
  x_final = x;
  lnf = arena_.alloc_f32({T, C});
  lnf_rstd = arena_.alloc_f32({T});
  ops::rmsnorm_forward(lnf, lnf_rstd, x_final, P.final_norm, float(c.rms_norm_eps));
  logp_ = arena_.alloc_f32({T});
  lse_ = arena_.alloc_f32({T});
  entropy_ = arena_.alloc_f32({T});
  ops::token_logprobs_forward(logp_, lse_, entropy_, lnf, P.lm_head, targets_, temperature, vocab_chunk);
  return logp_;
}

void TrainState::backward(Transformer& m, const std::vector<float>& dlogp_in) {
  R1_CHECK(batch_ != nullptr, "backward called before forward");
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  Params& G = m.grads();
  const int64_t T = batch_->tokens(), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  const float scale = 1.0f / std::sqrt(float(HD));
  R1_CHECK(dlogp_in.size() == size_t(T), "backward: dlogp has {} entries for {} tokens", dlogp_in.size(), T);

  // Gradients that live across layers go after the saved activations; per-layer temporaries go
  // in scratch_, reset for every layer.
  Tensor dlogp = arena_.alloc_f32({T});
  std::memcpy(dlogp.data, dlogp_in.data(), size_t(T) * sizeof(float));
  Tensor dlnf = arena_.zeros_f32({T, C});
  ops::token_logprobs_backward(dlnf, G.lm_head, dlogp, lnf, P.lm_head, targets_, lse_, temperature_,
                               vocab_chunk);
  // dres carries d loss / d residual stream down through the layers, accumulated in place.
  Tensor dres = arena_.zeros_f32({T, C});
  ops::rmsnorm_backward(dres, G.final_norm, dlnf, x_final, P.final_norm, lnf_rstd);

  for (int l = c.num_hidden_layers - 1; l >= 0; --l) {
    const LayerParams& W = P.layers[size_t(l)];
    LayerParams& GW = G.layers[size_t(l)];
    const LayerActivations& A = acts_[size_t(l)];
    Arena& s = scratch_;
    s.reset();
    // MLP: x_out = x_mid + down(silu(gate(ln2)) * up(ln2))
    Tensor dact = s.zeros_f32({T, I}), dgate = s.zeros_f32({T, I}), dup = s.zeros_f32({T, I});
    ops::linear_backward(dact, GW.down_w, {}, dres, A.act, W.down_w);
    ops::swiglu_backward(dgate, dup, dact, A.gate, A.up);
    Tensor dln2 = s.zeros_f32({T, C});
    ops::linear_backward(dln2, GW.gate_w, {}, dgate, A.ln2, W.gate_w);
    ops::linear_backward(dln2, GW.up_w, {}, dup, A.ln2, W.up_w);
    ops::rmsnorm_backward(dres, GW.post_norm, dln2, A.x_mid, W.post_norm, A.ln2_rstd);
    // Attention: x_mid = x_in + o(attn(rope(norm(q(ln1))), rope(norm(k(ln1))), v(ln1)))
    Tensor datt = s.zeros_f32({T, NH, HD});
    ops::linear_backward(datt.reshape({T, Q}), GW.o_w, {}, dres, A.att.reshape({T, Q}), W.o_w);
    Tensor dq = s.zeros_f32({T, NH, HD}), dk = s.zeros_f32({T, NKV, HD}), dv = s.zeros_f32({T, NKV, HD});
    ops::attention_backward(dq, dk, dv, datt, A.q, A.k, A.v, A.att, A.lse, cu_, scale);
    ops::rope_backward(dq, pos_, m.rope_inv_freq());
    ops::rope_backward(dk, pos_, m.rope_inv_freq());
    if (c.qk_norm) {
      Tensor dq_pre = s.zeros_f32({T * NH, HD}), dk_pre = s.zeros_f32({T * NKV, HD});
      ops::rmsnorm_backward(dq_pre, GW.q_norm, dq.reshape({T * NH, HD}), A.q_pre.reshape({T * NH, HD}),
                            W.q_norm, A.q_rstd);
      ops::rmsnorm_backward(dk_pre, GW.k_norm, dk.reshape({T * NKV, HD}), A.k_pre.reshape({T * NKV, HD}),
                            W.k_norm, A.k_rstd);
      dq = dq_pre;
      dk = dk_pre;
    }
    Tensor dln1 = s.zeros_f32({T, C});
    ops::linear_backward(dln1, GW.q_w, GW.q_b, dq.reshape({T, Q}), A.ln1, W.q_w);
    ops::linear_backward(dln1, GW.k_w, GW.k_b, dk.reshape({T, KV}), A.ln1, W.k_w);
    ops::linear_backward(dln1, GW.v_w, GW.v_b, dv.reshape({T, KV}), A.ln1, W.v_w);
    ops::rmsnorm_backward(dres, GW.input_norm, dln1, A.x_in, W.input_norm, A.ln1_rstd);
  }
  ops::embedding_backward(G.embed, dres, ids_);
}

// ---------------------------------------------------------------------------------------------
// Generation

KVCache::KVCache(const ModelConfig& c, int64_t slots_, int64_t max_len_) : slots(slots_), max_len(max_len_) {
  R1_CHECK(slots > 0 && max_len > 0, "KV cache needs slots > 0 and max_len > 0 (got {}, {})", slots, max_len);
  const int64_t NKV = c.num_key_value_heads, HD = c.head_dim;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    k.emplace_back(size_t(slots * max_len * NKV * HD) * sizeof(float));
    v.emplace_back(size_t(slots * max_len * NKV * HD) * sizeof(float));
    k_t.emplace_back(k.back().data(), DType::F32, std::initializer_list<int64_t>{slots, max_len, NKV, HD});
    v_t.emplace_back(v.back().data(), DType::F32, std::initializer_list<int64_t>{slots, max_len, NKV, HD});
  }
}

Tensor forward_cached(const Transformer& m, KVCache& cache, const std::vector<int32_t>& ids,
                      const std::vector<int32_t>& slots, const std::vector<int32_t>& pos,
                      const std::vector<int32_t>& logit_rows, Arena& a) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  const int64_t T = int64_t(ids.size()), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim(), R = int64_t(logit_rows.size());
  const float eps = float(c.rms_norm_eps), scale = 1.0f / std::sqrt(float(HD));
  R1_CHECK(T > 0, "forward_cached: no tokens");
  R1_CHECK(slots.size() == ids.size() && pos.size() == ids.size(),
           "forward_cached: {} ids, {} slots, {} positions", T, slots.size(), pos.size());
  for (int64_t t = 0; t < T; ++t) {
    R1_CHECK(slots[size_t(t)] >= 0 && slots[size_t(t)] < cache.slots, "forward_cached: slot {} out of range [0, {})",
             slots[size_t(t)], cache.slots);
    R1_CHECK(pos[size_t(t)] >= 0 && pos[size_t(t)] < cache.max_len,
             "forward_cached: position {} does not fit the KV cache of length {}", pos[size_t(t)], cache.max_len);
  }
  for (int32_t r : logit_rows) R1_CHECK(r >= 0 && r < T, "forward_cached: logit row {} out of range", r);

  Tensor ids_t = copy_i32(a, ids), slots_t = copy_i32(a, slots), pos_t = copy_i32(a, pos);
  Tensor x = a.alloc_f32({T, C}), h = a.alloc_f32({T, C}), rstd = a.alloc_f32({T});
  Tensor q = a.alloc_f32({T, Q}), k = a.alloc_f32({T, KV}), v = a.alloc_f32({T, KV});
  Tensor qn = a.alloc_f32({T, Q}), kn = a.alloc_f32({T, KV}), hrstd = a.alloc_f32({T * NH});
  Tensor att = a.alloc_f32({T, NH, HD}), tmp = a.alloc_f32({T, C});
  Tensor gate = a.alloc_f32({T, I}), up = a.alloc_f32({T, I}), act = a.alloc_f32({T, I});
  ops::embedding_forward(x, ids_t, P.embed);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerParams& W = P.layers[size_t(l)];
    ops::rmsnorm_forward(h, rstd, x, W.input_norm, eps);
    ops::linear_forward(q, h, W.q_w, W.q_b);
    ops::linear_forward(k, h, W.k_w, W.k_b);
    ops::linear_forward(v, h, W.v_w, W.v_b);
    Tensor qh = q, kh = k;
    if (c.qk_norm) {
      ops::rmsnorm_forward(qn.reshape({T * NH, HD}), hrstd, q.reshape({T * NH, HD}), W.q_norm, eps);
      ops::rmsnorm_forward(kn.reshape({T * NKV, HD}), hrstd.rows(0, T * NKV), k.reshape({T * NKV, HD}),
                           W.k_norm, eps);
      qh = qn;
      kh = kn;
    }
    qh = heads(qh, T, NH, HD);
    kh = heads(kh, T, NKV, HD);
    ops::rope_forward(qh, pos_t, m.rope_inv_freq());
    ops::rope_forward(kh, pos_t, m.rope_inv_freq());
    ops::kv_cache_write(cache.k_t[size_t(l)], cache.v_t[size_t(l)], kh, heads(v, T, NKV, HD), slots_t, pos_t);
    ops::attention_cached(att, qh, cache.k_t[size_t(l)], cache.v_t[size_t(l)], slots_t, pos_t, scale);
    ops::linear_forward(tmp, att.reshape({T, Q}), W.o_w, {});
    ops::add(x, x, tmp);
    ops::rmsnorm_forward(h, rstd, x, W.post_norm, eps);
    ops::linear_forward(gate, h, W.gate_w, {});
    ops::linear_forward(up, h, W.up_w, {});
    ops::swiglu_forward(act, gate, up);
    ops::linear_forward(tmp, act, W.down_w, {});
    ops::add(x, x, tmp);
  }
  Tensor last = a.alloc_f32({R, C}), last_normed = a.alloc_f32({R, C}), last_rstd = a.alloc_f32({R});
  for (int64_t r = 0; r < R; ++r)
    std::memcpy(last.f32() + r * C, x.f32() + int64_t(logit_rows[size_t(r)]) * C, size_t(C) * sizeof(float));
  ops::rmsnorm_forward(last_normed, last_rstd, last, P.final_norm, eps);
  Tensor logits = a.alloc_f32({R, int64_t(c.vocab_size)});
  ops::linear_forward(logits, last_normed, P.lm_head, {});
  return logits;
}

}  // namespace r1::model
