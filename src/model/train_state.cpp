// The training forward and backward (TrainState), written once for every device: the layers are
// the blocks of blocks/decoder_layer.h; tensors come from arenas on the model's device in its
// compute dtype, host inputs are uploaded, and the only host reads are explicit copies.
#include <cmath>

#include "base/error.h"
#include "kernels/ops.h"
#include "model/activation_memory.h"
#include "model/train_state.h"
#include "tensor/device_memory.h"

namespace r1::model {

namespace {

bool resolve(Recompute r, Device d) { return r == Recompute::On || (r == Recompute::Auto && d != Device::CPU); }

// Of the memory free for activations, what Auto lets them take: the rest is for the backward's
// temporaries beyond one layer, the head's vocabulary chunks, and fragmentation.
constexpr double kAutoBudgetShare = 0.9;

}  // namespace

Checkpointing parse_checkpointing(const std::string& s, const std::string& what) {
  if (s == "auto") return Checkpointing::Auto;
  if (s == "on") return Checkpointing::On;
  if (s == "off") return Checkpointing::Off;
  fail("{} must be auto, on or off (got '{}')", what, s);
}

Tensor TrainState::forward(const Transformer& m, const Batch& batch, float temperature, Backward then) {
  R1_CHECK(!m.config().has_score_head(),
           "forward: the model is a sequence classifier (num_labels = {}) with no lm_head; use score_forward",
           m.config().num_labels);
  forward_trunk(m, batch, then);  // leaves the head's weights acquired
  const int64_t T = batch.tokens();
  temperature_ = temperature;
  head_ = Head::LogProbs;
  logp_ = arena_.alloc_f32({T});
  lse_ = arena_.alloc_f32({T});
  entropy_ = arena_.alloc_f32({T});
  ops::token_logprobs_forward(logp_, lse_, entropy_, lnf, m.params().lm_head, targets_, temperature, vocab_chunk);
  release({UnitKind::Head, -1});
  return logp_;
}

void TrainState::acquire(WeightUnit u, WeightUnit next) {
  if (!weight_units) return;
  weight_units->acquire(u);
  if (!(next == u)) weight_units->prefetch(next);  // `next` is u itself when nothing follows
}

void TrainState::release(WeightUnit u) {
  if (weight_units) weight_units->release(u);
}

void TrainState::begin_grads(WeightUnit u) {
  if (weight_units) weight_units->begin_grads(u);
}

void TrainState::end_grads(WeightUnit u) {
  if (weight_units) weight_units->end_grads(u);
}

void TrainState::idle_pass(const Transformer& m, Backward then) {
  if (!weight_units) return;
  const int L = m.config().num_hidden_layers;
  const bool backward = m.trainable() && then == Backward::Follows;
  const std::vector<WeightUnit> units = pass_units(L, backward);
  const size_t forward_units = size_t(L) + 2;  // Embed, the layers, Head; the backward's follow
  for (size_t i = 0; i < units.size(); ++i) {
    acquire(units[i], i + 1 < units.size() ? units[i + 1] : units[i]);
    if (i >= forward_units) {  // a backward's unit hands on its (zero) gradients as the others do
      begin_grads(units[i]);
      end_grads(units[i]);
    }
    release(units[i]);
  }
  if (backward) {
    begin_grads({UnitKind::Embed, -1});
    end_grads({UnitKind::Embed, -1});
  }
}

Pass TrainState::pass(const Transformer& m, Arena* saved) {
  Pass p;
  p.cfg = &m.config();
  p.cd = m.compute_dtype();
  p.T = batch_->tokens();
  p.pos = pos_;
  p.cu_seqlens = cu_;
  p.inv_freq = m.rope_inv_freq();
  p.saved = saved;
  p.temp = &scratch_;
  p.recompute = recompute_;
  p.adapters = adapters;
  if (m.has_lora()) {
    p.lora_scale = m.lora().scale();
    p.lora_dropout = dropout ? float(m.lora().dropout) : 0.0f;
    p.dropout_seed = dropout_seed;
    // Each micro-batch its own masks, fixed by the trainer's step and the batch's tokens, so a
    // resumed run draws what the uninterrupted one drew.
    uint64_t h = 1469598103934665603ull ^ (dropout_step * 0x9E3779B97F4A7C15ull);
    for (int32_t id : batch_->ids) h = (h ^ uint32_t(id)) * 1099511628211ull;
    p.dropout_step = h;
  }
  return p;
}

std::vector<Tensor> TrainState::upload_replay(const ModelConfig& c, const ExpertRoutes& r, int64_t T) {
  std::vector<Tensor> out(size_t(c.num_hidden_layers));
  if (r.empty()) return out;
  const ExpertRoutes want = unrecorded_routes(c);
  R1_CHECK(r.k == want.k && r.layers == want.layers && r.tokens() == T,
           "forward: Batch::replay has {} rows of {} experts for {} MoE layers; the batch has {} tokens and "
           "the model {} MoE layers of {} experts per token",
           r.tokens(), r.k, r.layers.size(), T, want.layers.size(), want.k);
  for (size_t i = 0; i < r.layers.size(); ++i) {
    R1_CHECK(int64_t(r.experts[i].size()) == T * r.k,
             "forward: Batch::replay layer {} has {} entries, not {}", r.layers[i], r.experts[i].size(),
             T * r.k);
    out[size_t(r.layers[i])] = upload_i32(arena_, r.experts[i]).reshape({T, r.k});
  }
  return out;
}

void TrainState::forward_trunk(const Transformer& m, const Batch& batch, Backward then) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  const int64_t T = batch.tokens(), C = c.hidden_size;
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
    layer_ = Arena(0, m.device());
    scratch_ = Arena(0, m.device());
  }
  arena_.reset();
  layer_.reset();
  scratch_.reset();
  model_ = &m;
  batch_ = &batch;
  saved_ = m.trainable() && then == Backward::Follows;
  recompute_ = resolve(recompute, m.device());
  checkpoint_ = saved_ && wants_checkpoint(m);
  ids_ = upload_i32(arena_, batch.ids);
  pos_ = upload_i32(arena_, batch.positions);
  cu_ = upload_i32(arena_, batch.cu_seqlens);
  targets_ = upload_i32(arena_, batch.targets);

  // Saving, each layer's output is kept as the next one's saved input; without a backward the
  // residual stream stays in one buffer that every layer updates in place. Checkpointing, the
  // outputs are kept and everything else the layer would save goes to its scratch (still a saving
  // pass, so LoRA dropout draws the masks the recomputation will draw again).
  const Pass p = pass(m, !saved_ ? nullptr : checkpoint_ ? &scratch_ : &arena_);
  acts_.assign(saved_ ? size_t(c.num_hidden_layers) : 0, {});
  Tensor x = arena_.alloc(cd, {T, C});
  const int L = c.num_hidden_layers;
  acquire({UnitKind::Embed, -1}, L > 0 ? WeightUnit{UnitKind::Layer, 0} : WeightUnit{UnitKind::Head, -1});
  ops::embedding_forward(x, ids_, P.embed);
  release({UnitKind::Embed, -1});
  expert_counts_.assign(size_t(c.num_hidden_layers), {});
  replay_counts_ = {};
  replay_ = upload_replay(c, batch.replay, T);
  for (int l = 0; l < L; ++l) {
    scratch_.reset();
    acquire({UnitKind::Layer, l}, l + 1 < L ? WeightUnit{UnitKind::Layer, l + 1} : WeightUnit{UnitKind::Head, -1});
    Tensor out = saved_ ? arena_.alloc(cd, {T, C}) : x;
    RouteIo route;
    std::vector<int32_t> chosen;
    const bool moe = P.layers[size_t(l)].is_moe();
    if (moe) {
      expert_counts_[size_t(l)].assign(size_t(c.moe.num_experts), 0);
      replay_counts_.routed += T;
      route = {replay_[size_t(l)], &expert_counts_[size_t(l)], checkpoint_ ? &chosen : nullptr,
               &replay_counts_.replayed, &replay_counts_.replaced};
    }
    LayerSaved* s = saved_ && !checkpoint_ ? &acts_[size_t(l)] : nullptr;
    layer_forward(p, l, P.layers[size_t(l)], x, out, s, &route);
    if (checkpoint_) acts_[size_t(l)].x_in = x;
    if (checkpoint_ && moe) keep_forward_routes(l, chosen, T, c.moe.num_experts_per_tok);
    release({UnitKind::Layer, l});
    x = out;
  }
  x_final = x;
  // The head's weights stay acquired for the caller's head (forward, score_forward).
  acquire({UnitKind::Head, -1}, {UnitKind::Head, -1});
  lnf = arena_.alloc(cd, {T, C});
  lnf_rstd = arena_.alloc_f32({T});
  ops::rmsnorm_forward(lnf, lnf_rstd, x_final, P.final_norm, float(c.rms_norm_eps));
}

bool TrainState::wants_checkpoint(const Transformer& m) const {
  if (checkpointing != Checkpointing::Auto) return checkpointing == Checkpointing::On;
  const int64_t T = batch_->tokens();
  const ActivationEstimate e = estimate_activations(m, T, batch_->sequences(), recompute_, adapters);
  // What the arenas already hold is theirs to reuse.
  const size_t budget =
      memory_budget > 0
          ? memory_budget
          : size_t(kAutoBudgetShare * double(free_memory(m.device()) + arena_.peak() + layer_.peak()));
  if (!checkpointing_needed(e, budget)) return false;
  // Device memory is a hard limit (host memory can swap): fail here, naming the sizes, rather
  // than out of memory deep in a kernel.
  const size_t least = e.checkpointed + 2 * e.layer;  // the layer, and about as much for its backward
  R1_CHECK(least <= budget || (m.device() == Device::CPU && memory_budget == 0),
           "training forward of {} tokens: its activations need {:.2f} GiB even with per-layer "
           "checkpointing ({:.2f} GiB saving every layer), but {:.2f} GiB is available for them; "
           "use shorter micro-batches (micro_batch_tokens) or shorter sequences",
           T, double(least) / double(1 << 30), double(e.saving) / double(1 << 30), double(budget) / double(1 << 30));
  return true;
}

void TrainState::keep_forward_routes(int l, const std::vector<int32_t>& chosen, int64_t T, int64_t K) {
  Tensor& r = replay_[size_t(l)];
  if (r.empty()) r = upload_i32(arena_, chosen).reshape({T, K});  // a replay's rows are overwritten in place
  else devmem::copy(r.data, r.device, chosen.data(), Device::CPU, r.nbytes());
}

void TrainState::recompute_layer(const Transformer& m, int l, LayerSaved& s) {
  layer_.reset();
  scratch_.reset();
  const Tensor& x_in = acts_[size_t(l)].x_in;
  Tensor out = scratch_.alloc(m.compute_dtype(), {x_in.shape[0], x_in.shape[1]});  // not needed again
  // The forward's experts again, every row (replayed or the router's), so the recomputation
  // cannot route differently; its loads and replay counts were taken in the forward.
  RouteIo route;
  route.replay = replay_[size_t(l)];
  layer_forward(pass(m, &layer_), l, m.params().layers[size_t(l)], x_in, out, &s, &route);
  scratch_.reset();  // what the backward reads is in layer_ (or is x_in)
}

namespace {
// cuBLASLt may have no algorithm for a GEMM with a single output column (or reject its unaligned
// leading dimension), so the (NL, C) score head runs as NP = NL rounded up to 16 rows, zero-padded.
int64_t padded_labels(int64_t NL) { return (NL + 15) / 16 * 16; }
}  // namespace

std::vector<float> TrainState::score_forward(const Transformer& m, const Batch& batch, Backward then) {
  const ModelConfig& c = m.config();
  R1_CHECK(c.has_score_head(), "score_forward: the model has no score head (a causal LM: num_labels = 0)");
  forward_trunk(m, batch, then);
  const int64_t T = batch.tokens(), C = c.hidden_size, NL = c.num_labels, NP = padded_labels(NL);
  head_ = Head::Score;
  score_w_ = arena_.zeros(m.compute_dtype(), {NP, C});
  copy_tensor(score_w_.rows(0, NL), m.params().score);
  release({UnitKind::Head, -1});
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
  R1_CHECK(m.trainable(), "score_backward: the model was created with trainable = false");
  R1_CHECK(saved_, "score_backward: the last score_forward saved nothing (Backward::None)");
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
  R1_CHECK(!m.grads_unbound() || weight_units, "score_backward: the model's gradients are sharded by unit "
           "(parallel.shard: full) and this pass has no weight_units to bind them");
  acquire({UnitKind::Head, -1}, {UnitKind::Layer, int(c.num_hidden_layers) - 1});  // backward_trunk's final norm
  begin_grads({UnitKind::Head, -1});
  ops::linear_backward(dlnf, dw, {}, dout, lnf, score_w_);
  ops::add_inplace(m.grads().score, dw.rows(0, NL));  // the padding rows' gradients are dropped
  backward_trunk(m, dlnf);
}

void TrainState::release() {
  const Device d = arena_.device();
  arena_ = Arena(0, d);
  layer_ = Arena(0, d);
  scratch_ = Arena(0, d);
  model_ = nullptr;
  batch_ = nullptr;
  acts_.clear();
  replay_.clear();
  ids_ = pos_ = cu_ = targets_ = x_final = lnf = lnf_rstd = logp_ = lse_ = entropy_ = score_w_ = Tensor();
}

std::vector<float> TrainState::logp_host() const { return to_host_f32(logp_); }
std::vector<float> TrainState::entropy_host() const { return to_host_f32(entropy_); }

void TrainState::backward(Transformer& m, const std::vector<float>& dlogp_in) {
  R1_CHECK(batch_ != nullptr && model_ == &m && head_ == Head::LogProbs,
           "backward: no forward of this model to go back through");
  R1_CHECK(m.trainable(), "backward: the model was created with trainable = false");
  R1_CHECK(saved_, "backward: the last forward saved nothing (Backward::None)");
  const int64_t T = batch_->tokens(), C = m.config().hidden_size;
  R1_CHECK(dlogp_in.size() == size_t(T), "backward: dlogp has {} entries for {} tokens", dlogp_in.size(), T);

  // Gradients that live across layers go after the saved activations; per-layer temporaries go
  // in scratch_, reset for every layer.
  Tensor dlogp = arena_.alloc_f32({T});
  copy_from_host(dlogp, dlogp_in.data());
  Tensor dlnf = arena_.zeros(m.compute_dtype(), {T, C});
  R1_CHECK(!m.grads_unbound() || weight_units, "backward: the model's gradients are sharded by unit "
           "(parallel.shard: full) and this pass has no weight_units to bind them");
  acquire({UnitKind::Head, -1}, {UnitKind::Layer, int(m.config().num_hidden_layers) - 1});
  begin_grads({UnitKind::Head, -1});
  ops::token_logprobs_backward(dlnf, m.grads().lm_head, dlogp, lnf, m.params().lm_head, targets_, lse_,
                               temperature_, vocab_chunk);
  backward_trunk(m, dlnf);
}

void TrainState::backward_trunk(Transformer& m, const Tensor& dlnf) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  Params& G = m.grads();
  const ModelPlan& plan = m.plan();
  // dres carries d loss / d residual stream down through the layers, accumulated in place.
  Tensor dres = arena_.zeros(m.compute_dtype(), {batch_->tokens(), int64_t(c.hidden_size)});
  ops::rmsnorm_backward(dres, G.final_norm, dlnf, x_final, P.final_norm, lnf_rstd);
  end_grads({UnitKind::Head, -1});  // begun by the caller (backward, score_backward)
  release({UnitKind::Head, -1});    // acquired by the caller
  // From the final norm up (the head included) the gradients are done.
  if (on_grads_final) on_grads_final(plan.head.begin);
  const Pass p = pass(m, checkpoint_ ? &layer_ : &arena_);
  LayerSaved recomputed;
  for (int l = c.num_hidden_layers - 1; l >= 0; --l) {
    scratch_.reset();
    // One acquire serves the recomputation and the backward of the layer.
    acquire({UnitKind::Layer, l}, l > 0 ? WeightUnit{UnitKind::Layer, l - 1} : WeightUnit{UnitKind::Layer, l});
    if (checkpoint_) recompute_layer(m, l, recomputed);
    const LayerSaved& s = checkpoint_ ? recomputed : acts_[size_t(l)];
    begin_grads({UnitKind::Layer, l});
    layer_backward(p, P.layers[size_t(l)], G.layers[size_t(l)], s, dres);
    end_grads({UnitKind::Layer, l});
    release({UnitKind::Layer, l});
    if (on_grads_final) on_grads_final(plan.layers[size_t(l)].params.begin);
  }
  begin_grads({UnitKind::Embed, -1});
  if (!G.embed.empty()) ops::embedding_backward(G.embed, dres, ids_);  // frozen under LoRA
  end_grads({UnitKind::Embed, -1});
  if (on_grads_final) on_grads_final(0);
}

}  // namespace r1::model
