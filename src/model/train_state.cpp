// The training forward and backward (TrainState), written once for every device: tensors come
// from arenas on the model's device in its compute dtype, host inputs are uploaded, and the only
// host reads are explicit copies (logp_host, entropy_host).
#include <cmath>

#include "base/error.h"
#include "kernels/ops.h"
#include "model/transformer.h"
#include "tensor/device_memory.h"

namespace r1::model {

namespace {

Tensor upload_i32(Arena& a, const std::vector<int32_t>& v) {
  Tensor t = a.alloc_i32({int64_t(v.size())});
  copy_from_host(t, v.data());
  return t;
}

Tensor heads(const Tensor& t, int64_t T, int64_t H, int64_t HD) { return t.reshape({T, H, HD}); }

bool resolve(Recompute r, Device d) { return r == Recompute::On || (r == Recompute::Auto && d != Device::CPU); }

}  // namespace

Tensor TrainState::forward(const Transformer& m, const Batch& batch, float temperature) {
  R1_CHECK(!m.params().lm_head.empty(),
           "forward: the model is a sequence classifier (num_labels = {}) with no lm_head; use score_forward",
           m.config().num_labels);
  forward_trunk(m, batch);
  const int64_t T = batch.tokens();
  temperature_ = temperature;
  head_ = Head::LogProbs;
  logp_ = arena_.alloc_f32({T});
  lse_ = arena_.alloc_f32({T});
  entropy_ = arena_.alloc_f32({T});
  ops::token_logprobs_forward(logp_, lse_, entropy_, lnf, m.params().lm_head, targets_, temperature, vocab_chunk);
  return logp_;
}

void TrainState::forward_trunk(const Transformer& m, const Batch& batch) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  const int64_t T = batch.tokens(), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  const float scale = 1.0f / std::sqrt(float(HD)), eps = float(c.rms_norm_eps);
  R1_CHECK(T > 0, "forward: empty batch");
  R1_CHECK(batch.positions.size() == size_t(T) && batch.targets.size() == size_t(T),
           "forward: batch has {} ids but {} positions and {} targets", T, batch.positions.size(),
           batch.targets.size());
  for (int32_t p : batch.positions)
    R1_CHECK(p >= 0 && (c.max_position_embeddings <= 0 || p < c.max_position_embeddings),
             "forward: position {} is beyond max_position_embeddings {}", p, c.max_position_embeddings);

  const DType cd = m.compute_dtype();
  if (arena_.device() != m.device()) {
    arena_ = Arena(0, m.device());
    scratch_ = Arena(0, m.device());
  }
  arena_.reset();
  scratch_.reset();
  model_ = &m;
  batch_ = &batch;
  saved_ = m.trainable();
  recompute_ = resolve(recompute, m.device());
  ids_ = upload_i32(arena_, batch.ids);
  pos_ = upload_i32(arena_, batch.positions);
  cu_ = upload_i32(arena_, batch.cu_seqlens);
  targets_ = upload_i32(arena_, batch.targets);

  // keep(): what the backward reads (arena_); temp(): per-layer scratch. Without a backward
  // everything is temporary but the residual stream, which alternates between two buffers.
  auto keep = [&](DType t, std::initializer_list<int64_t> dims) {
    return saved_ ? arena_.alloc(t, dims) : scratch_.alloc(t, dims);
  };
  auto temp = [&](DType t, std::initializer_list<int64_t> dims) { return scratch_.alloc(t, dims); };
  auto cheap = [&](DType t, std::initializer_list<int64_t> dims) {
    return recompute_ ? temp(t, dims) : keep(t, dims);
  };
  Tensor stream[2];
  if (!saved_) stream[0] = arena_.alloc(cd, {T, C}), stream[1] = arena_.alloc(cd, {T, C});

  acts_.assign(size_t(c.num_hidden_layers), {});
  Tensor x = saved_ ? arena_.alloc(cd, {T, C}) : stream[1];
  ops::embedding_forward(x, ids_, P.embed);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerParams& W = P.layers[size_t(l)];
    LayerActivations& A = acts_[size_t(l)];
    scratch_.reset();
    A.x_in = x;
    Tensor ln1 = cheap(cd, {T, C});
    A.ln1_rstd = keep(DType::F32, {T});
    ops::rmsnorm_forward(ln1, A.ln1_rstd, A.x_in, W.input_norm, eps);

    Tensor q = keep(cd, {T, Q}), k = keep(cd, {T, KV});
    A.v = keep(cd, {T, KV});
    ops::linear_forward(q, ln1, W.q_w, W.q_b);
    ops::linear_forward(k, ln1, W.k_w, W.k_b);
    ops::linear_forward(A.v, ln1, W.v_w, W.v_b);
    if (c.qk_norm) {
      A.q_pre = q;
      A.k_pre = k;
      q = keep(cd, {T, Q});
      k = keep(cd, {T, KV});
      A.q_rstd = keep(DType::F32, {T * NH});
      A.k_rstd = keep(DType::F32, {T * NKV});
      ops::rmsnorm_forward(q.reshape({T * NH, HD}), A.q_rstd, A.q_pre.reshape({T * NH, HD}), W.q_norm, eps);
      ops::rmsnorm_forward(k.reshape({T * NKV, HD}), A.k_rstd, A.k_pre.reshape({T * NKV, HD}), W.k_norm, eps);
    }
    A.q = heads(q, T, NH, HD);
    A.k = heads(k, T, NKV, HD);
    A.v = heads(A.v, T, NKV, HD);
    ops::rope_forward(A.q, pos_, m.rope_inv_freq());
    ops::rope_forward(A.k, pos_, m.rope_inv_freq());

    A.att = keep(cd, {T, NH, HD});
    A.lse = keep(DType::F32, {T, NH});
    ops::attention_forward(A.att, A.lse, A.q, A.k, A.v, cu_, scale);

    A.x_mid = keep(cd, {T, C});
    ops::linear_forward(A.x_mid, A.att.reshape({T, Q}), W.o_w, {});
    ops::add(A.x_mid, A.x_mid, A.x_in);
    Tensor ln2 = cheap(cd, {T, C});
    A.ln2_rstd = keep(DType::F32, {T});
    ops::rmsnorm_forward(ln2, A.ln2_rstd, A.x_mid, W.post_norm, eps);

    A.gate = keep(cd, {T, I});
    A.up = keep(cd, {T, I});
    Tensor act = cheap(cd, {T, I});
    ops::linear_forward(A.gate, ln2, W.gate_w, {});
    ops::linear_forward(A.up, ln2, W.up_w, {});
    ops::swiglu_forward(act, A.gate, A.up);
    x = saved_ ? arena_.alloc(cd, {T, C}) : stream[l % 2];
    ops::linear_forward(x, act, W.down_w, {});
    ops::add(x, x, A.x_mid);
    if (saved_ && !recompute_) A.ln1 = ln1, A.ln2 = ln2, A.act = act;
  }
  if (!saved_) acts_.clear();  // they pointed into scratch
  x_final = x;
  lnf = arena_.alloc(cd, {T, C});
  lnf_rstd = arena_.alloc_f32({T});
  ops::rmsnorm_forward(lnf, lnf_rstd, x_final, P.final_norm, eps);
}

namespace {
// cuBLASLt may have no algorithm for a GEMM with a single output column (or reject its unaligned
// leading dimension), so the (NL, C) score head runs as NP = NL rounded up to 16 rows, zero-padded.
int64_t padded_labels(int64_t NL) { return (NL + 15) / 16 * 16; }
}  // namespace

std::vector<float> TrainState::score_forward(const Transformer& m, const Batch& batch) {
  const ModelConfig& c = m.config();
  R1_CHECK(c.has_score_head(), "score_forward: the model has no score head (a causal LM: num_labels = 0)");
  forward_trunk(m, batch);
  const int64_t T = batch.tokens(), C = c.hidden_size, NL = c.num_labels, NP = padded_labels(NL);
  head_ = Head::Score;
  score_w_ = arena_.zeros(m.compute_dtype(), {NP, C});
  copy_tensor(score_w_.rows(0, NL), m.params().score);
  Tensor padded = arena_.alloc_f32({T, NP});  // f32 even from bf16 operands: scores stay unrounded
  ops::linear_forward(padded, lnf, score_w_, {});
  const std::vector<float> all = to_host_f32(padded);
  std::vector<float> scores(size_t(T * NL));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < NL; ++j) scores[size_t(t * NL + j)] = all[size_t(t * NP + j)];
  return scores;
}

void TrainState::score_backward(Transformer& m, const std::vector<float>& dscore) {
  R1_CHECK(batch_ != nullptr && model_ == &m && head_ == Head::Score,
           "score_backward: no score_forward of this model to go back through");
  R1_CHECK(m.trainable() && saved_, "score_backward: the model was created with trainable = false");
  const ModelConfig& c = m.config();
  const int64_t T = batch_->tokens(), C = c.hidden_size, NL = c.num_labels, NP = padded_labels(NL);
  R1_CHECK(dscore.size() == size_t(T * NL), "score_backward: dscore has {} entries for {} tokens x {} labels",
           dscore.size(), T, NL);
  std::vector<float> host(size_t(T * NP), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < NL; ++j) host[size_t(t * NP + j)] = dscore[size_t(t * NL + j)];
  Tensor dout = arena_.alloc(m.compute_dtype(), {T, NP});
  copy_from_host_f32(dout, host.data());
  Tensor dlnf = arena_.zeros(m.compute_dtype(), {T, C});
  Tensor dw = arena_.zeros_f32({NP, C});
  ops::linear_backward(dlnf, dw, {}, dout, lnf, score_w_);
  ops::add_inplace(m.grads().score, dw.rows(0, NL));  // the padding rows' gradients are dropped
  backward_trunk(m, dlnf);
}

void TrainState::release() {
  const Device d = arena_.device();
  arena_ = Arena(0, d);
  scratch_ = Arena(0, d);
  model_ = nullptr;
  batch_ = nullptr;
  acts_.clear();
  ids_ = pos_ = cu_ = targets_ = x_final = lnf = lnf_rstd = logp_ = lse_ = entropy_ = score_w_ = Tensor();
}

std::vector<float> TrainState::logp_host() const { return to_host_f32(logp_); }
std::vector<float> TrainState::entropy_host() const { return to_host_f32(entropy_); }

void TrainState::backward(Transformer& m, const std::vector<float>& dlogp_in) {
  R1_CHECK(batch_ != nullptr && model_ == &m && head_ == Head::LogProbs,
           "backward: no forward of this model to go back through");
  R1_CHECK(m.trainable() && saved_, "backward: the model was created with trainable = false");
  const int64_t T = batch_->tokens(), C = m.config().hidden_size;
  R1_CHECK(dlogp_in.size() == size_t(T), "backward: dlogp has {} entries for {} tokens", dlogp_in.size(), T);

  // Gradients that live across layers go after the saved activations; per-layer temporaries go
  // in scratch_, reset for every layer.
  Tensor dlogp = arena_.alloc_f32({T});
  copy_from_host(dlogp, dlogp_in.data());
  Tensor dlnf = arena_.zeros(m.compute_dtype(), {T, C});
  ops::token_logprobs_backward(dlnf, m.grads().lm_head, dlogp, lnf, m.params().lm_head, targets_, lse_,
                               temperature_, vocab_chunk);
  backward_trunk(m, dlnf);
}

void TrainState::backward_trunk(Transformer& m, const Tensor& dlnf) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  Params& G = m.grads();
  const DType cd = m.compute_dtype();
  const int64_t T = batch_->tokens(), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  const float scale = 1.0f / std::sqrt(float(HD)), eps = float(c.rms_norm_eps);
  // dres carries d loss / d residual stream down through the layers, accumulated in place.
  Tensor dres = arena_.zeros(cd, {T, C});
  ops::rmsnorm_backward(dres, G.final_norm, dlnf, x_final, P.final_norm, lnf_rstd);
  // Offsets of grads in the flat buffer; from the final norm up (the head included) they are done.
  auto offset = [&](const Tensor& g) { return int64_t(static_cast<const float*>(g.data) - G.flat.f32()); };
  if (on_grads_final) on_grads_final(offset(G.final_norm));

  for (int l = c.num_hidden_layers - 1; l >= 0; --l) {
    const LayerParams& W = P.layers[size_t(l)];
    LayerParams& GW = G.layers[size_t(l)];
    const LayerActivations& A = acts_[size_t(l)];
    Arena& s = scratch_;
    s.reset();
    // Recomputed activations: the forward's ops on the forward's inputs, so bitwise the same.
    Tensor ln1 = A.ln1, ln2 = A.ln2, act = A.act;
    if (recompute_) {
      ln2 = s.alloc(cd, {T, C});
      ops::rmsnorm_forward(ln2, s.alloc_f32({T}), A.x_mid, W.post_norm, eps);
      act = s.alloc(cd, {T, I});
      ops::swiglu_forward(act, A.gate, A.up);
    }
    // MLP: x_out = x_mid + down(silu(gate(ln2)) * up(ln2))
    Tensor dact = s.zeros(cd, {T, I}), dgate = s.zeros(cd, {T, I}), dup = s.zeros(cd, {T, I});
    ops::linear_backward(dact, GW.down_w, {}, dres, act, W.down_w);
    ops::swiglu_backward(dgate, dup, dact, A.gate, A.up);
    Tensor dln2 = s.zeros(cd, {T, C});
    ops::linear_backward(dln2, GW.gate_w, {}, dgate, ln2, W.gate_w);
    ops::linear_backward(dln2, GW.up_w, {}, dup, ln2, W.up_w);
    ops::rmsnorm_backward(dres, GW.post_norm, dln2, A.x_mid, W.post_norm, A.ln2_rstd);
    // Attention: x_mid = x_in + o(attn(rope(norm(q(ln1))), rope(norm(k(ln1))), v(ln1)))
    Tensor datt = s.zeros(cd, {T, NH, HD});
    ops::linear_backward(datt.reshape({T, Q}), GW.o_w, {}, dres, A.att.reshape({T, Q}), W.o_w);
    Tensor dq = s.zeros(cd, {T, NH, HD}), dk = s.zeros(cd, {T, NKV, HD}), dv = s.zeros(cd, {T, NKV, HD});
    ops::attention_backward(dq, dk, dv, datt, A.q, A.k, A.v, A.att, A.lse, cu_, scale);
    ops::rope_backward(dq, pos_, m.rope_inv_freq());
    ops::rope_backward(dk, pos_, m.rope_inv_freq());
    if (c.qk_norm) {
      Tensor dq_pre = s.zeros(cd, {T * NH, HD}), dk_pre = s.zeros(cd, {T * NKV, HD});
      ops::rmsnorm_backward(dq_pre, GW.q_norm, dq.reshape({T * NH, HD}), A.q_pre.reshape({T * NH, HD}),
                            W.q_norm, A.q_rstd);
      ops::rmsnorm_backward(dk_pre, GW.k_norm, dk.reshape({T * NKV, HD}), A.k_pre.reshape({T * NKV, HD}),
                            W.k_norm, A.k_rstd);
      dq = dq_pre;
      dk = dk_pre;
    }
    if (recompute_) {
      ln1 = s.alloc(cd, {T, C});
      ops::rmsnorm_forward(ln1, s.alloc_f32({T}), A.x_in, W.input_norm, eps);
    }
    Tensor dln1 = s.zeros(cd, {T, C});
    ops::linear_backward(dln1, GW.q_w, GW.q_b, dq.reshape({T, Q}), ln1, W.q_w);
    ops::linear_backward(dln1, GW.k_w, GW.k_b, dk.reshape({T, KV}), ln1, W.k_w);
    ops::linear_backward(dln1, GW.v_w, GW.v_b, dv.reshape({T, KV}), ln1, W.v_w);
    ops::rmsnorm_backward(dres, GW.input_norm, dln1, A.x_in, W.input_norm, A.ln1_rstd);
    if (on_grads_final) on_grads_final(offset(GW.input_norm));  // a layer's first parameter
  }
  ops::embedding_backward(G.embed, dres, ids_);
  if (on_grads_final) on_grads_final(0);
}

}  // namespace r1::model
