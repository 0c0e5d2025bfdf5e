#include "model/memory_model.h"

#include <fmt/format.h>

#include <algorithm>

#include "model/activation_memory.h"
#include "model/kv_cache.h"
#include "model/layer_plan.h"
#include "model/params.h"
#include "model/weight_units.h"

namespace r1::model {

namespace {
constexpr int64_t kF32 = 4;
// The CUDA context, cuBLASLt's workspace and the log-prob kernels' tile (4 * 2^24 bytes), rounded up.
constexpr int64_t kDeviceOverhead = int64_t(1) << 30;
}  // namespace

namespace {

// Elements per token of the widest layer's tensors, by kind: the attention's (q, k, v as the
// kernels see them, its output, and MLA's low-rank latents), the feed-forward's hidden width (a
// dense SwiGLU's I; a MoE layer's K routed experts and its shared ones) and a MoE layer's grouped
// copies of its input and output (K rows of C each) with its router logits.
struct LayerWidths {
  int64_t q = 0, k = 0, v = 0, att = 0, latent = 0, ffn = 0, routed = 0;
};

LayerWidths widest_layer(const ModelConfig& c) {
  LayerWidths w;
  if (c.is_mla()) {
    const MlaConfig& m = c.mla;
    const int64_t NH = c.num_attention_heads;
    w.q = w.k = NH * m.qk_head_dim();
    w.v = w.att = NH * m.v_head_dim;
    // The low-rank query (normed), the latent with the rope key (normed), and the latent's
    // up-projection to per-head keys and values before they are split (blocks/mla.cpp).
    w.latent = 2 * int64_t(m.q_lora_rank) + 3 * int64_t(m.kv_lora_rank) + 2 * int64_t(m.qk_rope_head_dim) +
               NH * (int64_t(m.qk_nope_head_dim) + m.v_head_dim);
  } else {
    w.q = w.att = c.q_dim();
    w.k = w.v = c.kv_dim();
  }
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    if (!c.is_moe_layer(l)) {
      w.ffn = std::max<int64_t>(w.ffn, c.intermediate_size);
      continue;
    }
    const MoeConfig& e = c.moe;
    const int64_t shared = c.is_mla() ? e.n_shared_experts : 0;
    w.ffn = std::max<int64_t>(w.ffn, (int64_t(e.num_experts_per_tok) + shared) * e.moe_intermediate_size);
    w.routed = std::max<int64_t>(w.routed, 2 * int64_t(e.num_experts_per_tok) * c.hidden_size + e.num_experts);
  }
  return w;
}

}  // namespace

int64_t backward_bytes_per_token(const ModelConfig& c, DType dt, bool recompute) {
  const int64_t b = int64_t(dtype_size(dt)), C = c.hidden_size, NH = c.num_attention_heads;
  const LayerWidths w = widest_layer(c);
  // Gradients of both norm outputs, of gate, up and the SwiGLU product, of the attention output,
  // q, k and v (and their pre-norm twins with qk_norm; MLA's latents), a MoE layer's grouped rows.
  int64_t bytes = (2 * C + 3 * w.ffn + w.att + w.q + w.k + w.v + w.latent + w.routed) * b;
  if (c.qk_norm) bytes += (w.q + w.k) * b;
  if (w.routed > 0) bytes += C * b + int64_t(c.moe.num_experts_per_tok) * kF32;  // MoE: dx's routed part, dweights
  if (recompute) bytes += (2 * C + w.ffn) * b;  // the recomputed norm outputs and SwiGLU product
  // The GPU's flash backward keeps f32 accumulators in the kernels' scratch: D, dq, dk and dv per
  // query head.
  if (dt == DType::BF16) bytes += NH * kF32 + (2 * w.q + w.att) * kF32;
  return bytes;
}

int64_t inference_bytes_per_token(const ModelConfig& c, DType dt) {
  const int64_t b = int64_t(dtype_size(dt)), C = c.hidden_size;
  const LayerWidths w = widest_layer(c);
  // The residual stream in and out, a norm output, q, k, v, the attention output, gate, up and
  // their product (MLA's latents, a MoE layer's grouped rows); the f32 log-sum-exp.
  return (3 * C + w.q + w.k + w.v + w.att + w.latent + w.routed + 3 * w.ffn) * b + c.num_attention_heads * kF32;
}

int64_t MemoryEstimate::peak() const {
  return persistent() + std::max({rollout, reference_pass, update}) + overhead;
}

MemoryEstimate estimate_memory(const ModelConfig& c, const MemorySettings& s) {
  const DType dt = s.device == Device::CPU ? DType::F32 : DType::BF16;
  const int64_t b = int64_t(dtype_size(dt)), N = c.num_parameters(), C = c.hidden_size;
  MemoryEstimate e;
  e.weights = N * b;
  e.overhead = s.device == Device::CPU ? 0 : kDeviceOverhead;
  const int W = std::max(1, s.world), level = W > 1 ? s.shard : 0;  // one rank shards nothing
  const int64_t Nw = shard_counts(N, W).back();                     // the largest rank's shard
  // The largest unit the full level gathers (a layer, the embedding or the head).
  const int64_t unit = largest_unit(make_plan(c), c);
  int64_t whole_weights = 0;  // gathered for the rollout and reference phases (full)
  if (level >= 3) {
    // The shard and the gather buffer; on a GPU two, the next unit's prefetched into the second
    // while the current one computes (optim/sharded_weights.h).
    e.weights = (Nw + (s.device == Device::CPU ? 1 : 2) * unit) * b;
    whole_weights = N * b;
  }
  int64_t update_grads = 0;  // the update phase's gradient buffers beyond the persistent ones
  if (s.trainable) {
    // What the optimizer updates: every weight, or the adapters (whose compute copy adds b each).
    const bool lora = s.lora_params > 0;
    const int64_t P = lora ? s.lora_params : N, Pw = level >= 1 ? shard_counts(P, W).back() : P;
    if (lora) e.weights += P * b;
    // Gradients: whole (LoRA's adapters' always), and with optimizer the reduce-scattered shard
    // beside them; with gradients and full only the shard between steps. The update phase holds
    // more: gradients the whole buffer again, full a unit buffer and its reduce-scatter part.
    e.grads = (level <= 1 || lora) ? (P + (level >= 1 ? Pw : 0)) * kF32 : Pw * kF32;
    if (!lora && level == 2) update_grads = (N - Nw) * kF32;
    if (!lora && level >= 3) update_grads = (unit + std::min(unit, Nw)) * kF32;
    const bool separate_master = dt != DType::F32;  // on the CPU the f32 weights are the master
    const bool offload = s.offload && !lora;
    const int64_t master = separate_master ? (level >= 3 ? Pw : P) * kF32 : 0, moments = 2 * Pw * kF32;
    (offload ? e.host_state : e.master) += master;
    (offload ? e.host_state : e.moments) += moments;
  }
  if (s.reference && s.lora_params == 0) e.reference = N * b;

  // Per phase. The update: the training arenas (activation_memory.h: the saved activations, or the
  // layers' inputs and one recomputed layer when checkpointing) and one layer's backward
  // temporaries. The reference pass: one layer's temporaries and the head's per-token state.
  const int64_t B = s.sequence_tokens > 0 ? std::max<int64_t>(1, s.train_tokens / s.sequence_tokens) : 1;
  const ActivationEstimate act = estimate_activations(c, {dt, s.recompute, {}}, s.train_tokens, B);
  const int64_t arenas = int64_t(s.checkpoint ? act.checkpointed + act.layer : act.saving);
  e.update = s.trainable ? arenas + s.train_tokens * backward_bytes_per_token(c, dt, s.recompute) + update_grads : 0;
  const int64_t head = 3 * C * b + 9 * kF32;  // final norm, two (T, C) gradients; f32 and i32 per token
  e.reference_pass = s.train_tokens * (inference_bytes_per_token(c, dt) + head) + whole_weights;
  // The rollouts' largest forward: a prefill of prefill_tokens, or a preempted sequence's recompute,
  // which prefills its whole prefix at once (up to sequence_tokens).
  const int64_t prefill = s.prefill_tokens > 0 ? std::max(s.prefill_tokens, s.sequence_tokens) : 0;
  e.rollout = s.kv_tokens * kv_bytes_per_token(c, dt) + prefill * inference_bytes_per_token(c, dt) + whole_weights;
  return e;
}

std::string gib(int64_t bytes) { return fmt::format("{:.2f} GiB", double(bytes) / double(int64_t(1) << 30)); }

std::string describe(const MemoryEstimate& e) {
  std::string s = fmt::format("{} = weights {}", gib(e.peak()), gib(e.weights));
  auto part = [&](const char* name, int64_t v) {
    if (v > 0) s += fmt::format(" + {} {}", name, gib(v));
  };
  part("gradients", e.grads);
  part("fp32 master", e.master);
  part("AdamW moments", e.moments);
  part("KL reference", e.reference);
  const int64_t phase = std::max({e.rollout, e.reference_pass, e.update});
  const char* which = phase == e.update ? "update" : phase == e.rollout ? "rollout" : "reference";
  s += fmt::format(" + the largest phase ({}) {}", which, gib(phase));
  part("CUDA context and workspaces", e.overhead);
  if (e.host_state > 0) s += fmt::format("; in host memory: {}", gib(e.host_state));
  return s;
}

}  // namespace r1::model
