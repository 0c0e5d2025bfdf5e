#include "model/memory_model.h"

#include <fmt/format.h>

#include <algorithm>

namespace r1::model {

namespace {
constexpr int64_t kF32 = 4;
// The CUDA context, cuBLASLt's workspace and the log-prob kernels' tile (4 * 2^24 bytes), rounded up.
constexpr int64_t kDeviceOverhead = int64_t(1) << 30;
}  // namespace

const char* activation_mode_name(ActivationMode m) {
  switch (m) {
    case ActivationMode::SaveAll: return "save all";
    case ActivationMode::RecomputeCheap: return "recompute norms and SwiGLU";
    case ActivationMode::CheckpointLayers: return "checkpoint layers";
  }
  return "?";
}

int64_t saved_bytes_per_token_layer(const ModelConfig& c, DType dt, ActivationMode mode) {
  const int64_t b = int64_t(dtype_size(dt)), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, Q = c.q_dim(), KV = c.kv_dim();
  if (mode == ActivationMode::CheckpointLayers) return C * b;  // the layer's input
  // The layer's output (the next one's input), the residual after attention, q, k, v, the attention
  // output, gate and up; f32 rstd of both norms and the attention's log-sum-exp.
  int64_t bytes = (2 * C + 2 * Q + 2 * KV + 2 * I) * b + (2 + NH) * kF32;
  if (c.qk_norm) bytes += (Q + KV) * b + (NH + NKV) * kF32;  // the per-head norms' inputs and rstd
  if (mode == ActivationMode::SaveAll) bytes += (2 * C + I) * b;  // both norm outputs, the SwiGLU product
  return bytes;
}

int64_t backward_bytes_per_token(const ModelConfig& c, DType dt, ActivationMode mode) {
  const int64_t b = int64_t(dtype_size(dt)), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, Q = c.q_dim(), KV = c.kv_dim();
  // Gradients of both norm outputs, of gate, up and the SwiGLU product, of the attention output,
  // q, k and v (and their pre-norm twins with qk_norm).
  int64_t bytes = (2 * C + 3 * I + 2 * Q + 2 * KV) * b;
  if (c.qk_norm) bytes += (Q + KV) * b;
  if (mode != ActivationMode::SaveAll) bytes += (2 * C + I) * b;  // the recomputed cheap activations
  // The GPU's flash backward keeps f32 accumulators in the kernels' scratch: D, dq, dk and dv per
  // query head.
  if (dt == DType::BF16) bytes += NH * kF32 + 3 * Q * kF32;
  // A checkpointed layer is recomputed whole before its backward.
  if (mode == ActivationMode::CheckpointLayers)
    bytes += saved_bytes_per_token_layer(c, dt, ActivationMode::RecomputeCheap);
  return bytes;
}

int64_t inference_bytes_per_token(const ModelConfig& c, DType dt) {
  const int64_t b = int64_t(dtype_size(dt)), C = c.hidden_size, I = c.intermediate_size;
  // The residual stream in and out, a norm output, q, k, v, the attention output, gate, up and
  // their product; the f32 log-sum-exp.
  return (3 * C + 2 * c.q_dim() + 2 * c.kv_dim() + 3 * I) * b + c.num_attention_heads * kF32;
}

int64_t kv_bytes_per_token(const ModelConfig& c, DType dt) {
  return 2 * int64_t(c.num_hidden_layers) * c.kv_dim() * int64_t(dtype_size(dt));
}

int64_t MemoryEstimate::peak() const {
  return persistent() + std::max({rollout, reference_pass, update}) + overhead;
}

MemoryEstimate estimate_memory(const ModelConfig& c, const MemorySettings& s) {
  const DType dt = s.device == Device::CPU ? DType::F32 : DType::BF16;
  const int64_t b = int64_t(dtype_size(dt)), N = c.num_parameters(), L = c.num_hidden_layers;
  const int64_t C = c.hidden_size;
  MemoryEstimate e;
  e.weights = N * b;
  e.overhead = s.device == Device::CPU ? 0 : kDeviceOverhead;
  if (s.trainable) {
    // What the optimizer updates: every weight, or the adapters (whose compute copy adds b each).
    const int64_t P = s.lora_params > 0 ? s.lora_params : N;
    if (s.lora_params > 0) e.weights += P * b;
    const int64_t shards = s.zero1 ? std::max(1, s.world) : 1;
    e.grads = P * kF32;
    const bool separate_master = dt != DType::F32;  // on the CPU the f32 weights are the master
    const bool offload = s.offload && s.lora_params == 0;
    const int64_t master = separate_master ? P * kF32 : 0, moments = 2 * P * kF32 / shards;
    (offload ? e.host_state : e.master) += master;
    (offload ? e.host_state : e.moments) += moments;
  }
  if (s.reference && s.lora_params == 0) e.reference = N * b;

  // Per phase. Beside the layers, a pass keeps per token the final norm's output, its gradient and
  // the residual stream's gradient (C each), f32 rstd, logp, lse, entropy and dlogp, and the i32
  // ids, positions, sequence starts and targets.
  const int64_t head = 3 * C * b + 9 * kF32;
  e.rollout = s.kv_tokens * kv_bytes_per_token(c, dt) + s.prefill_tokens * inference_bytes_per_token(c, dt);
  e.reference_pass = s.train_tokens * (inference_bytes_per_token(c, dt) + head);
  const int64_t saved = L * saved_bytes_per_token_layer(c, dt, s.activations) + C * b;  // + the embedding
  e.update = s.trainable ? s.train_tokens * (saved + head + backward_bytes_per_token(c, dt, s.activations)) : 0;
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
