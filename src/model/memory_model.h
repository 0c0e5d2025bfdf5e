#pragma once
// The memory model: what a run holds on its device, per parameter and per token, for each mode
// (docs/MEMORY.md, "memory model", explains the numbers). Plain arithmetic on a ModelConfig, in one
// place: the start-up check (run/memory_preflight.h), the auto switches and the docs use it.
//
// Persistent (all phases): the compute weights, the gradients, the fp32 master copy and the AdamW
// moments (unless offloaded to host memory), a frozen KL reference. Per phase, freed before the
// next: the rollout's KV cache and prefill temporaries; the reference pass's one-layer temporaries;
// the update's saved activations and one layer's backward temporaries.
#include <cstdint>
#include <string>

#include "model/config.h"
#include "tensor/tensor.h"

namespace r1::model {

// How training keeps what the backward reads.
enum class ActivationMode : uint8_t {
  SaveAll,           // every activation saved (the CPU's default)
  RecomputeCheap,    // norm outputs and the SwiGLU product recomputed (CUDA's default)
  CheckpointLayers,  // only each layer's input saved, the layer recomputed in the backward
};
const char* activation_mode_name(ActivationMode m);

// Bytes per token, compute dtype `dt`:
// saved for the backward by one layer (the forward's activations that stay until the backward);
int64_t saved_bytes_per_token_layer(const ModelConfig& c, DType dt, ActivationMode mode);
// one layer's temporaries while its backward runs (gradients of its activations, recomputed
// values, the attention backward's f32 accumulators);
int64_t backward_bytes_per_token(const ModelConfig& c, DType dt, ActivationMode mode);
// one layer's temporaries in an inference forward (nothing saved: the reference pass, prefill);
int64_t inference_bytes_per_token(const ModelConfig& c, DType dt);
// the KV cache (keys and values of every layer).
int64_t kv_bytes_per_token(const ModelConfig& c, DType dt);

struct MemorySettings {
  Device device = Device::CUDA;  // CUDA computes in bf16, the CPU in f32
  bool trainable = true;         // gradients, master copy and optimizer state
  int64_t lora_params = 0;       // > 0: LoRA adapters of this many parameters over a frozen base
  bool offload = false;          // master copy and moments in host memory
  int world = 1;                 // ranks
  bool zero1 = false;            // moments (and offloaded master shards) split over the ranks
  bool reference = false;        // a second frozen copy of the weights (a KL reference, not LoRA)
  ActivationMode activations = ActivationMode::RecomputeCheap;
  int64_t sequence_tokens = 0;  // the longest sequence (prompt + completion); 0: unknown
  int64_t train_tokens = 0;    // tokens of the largest micro-batch
  int64_t kv_tokens = 0;       // KV cache rows the rollouts hold at once (slots x length)
  int64_t prefill_tokens = 0;  // tokens per prefill forward
};

// Bytes. The device peak is the persistent state plus the largest phase plus a fixed overhead.
struct MemoryEstimate {
  int64_t weights = 0, grads = 0, master = 0, moments = 0, reference = 0;  // persistent, on the device
  int64_t rollout = 0, reference_pass = 0, update = 0;                     // per phase, on the device
  int64_t overhead = 0;    // CUDA context, library workspaces, the kernels' fixed scratch
  int64_t host_state = 0;  // offloaded master copy and moments, in (pinned) host memory
  int64_t persistent() const { return weights + grads + master + moments + reference; }
  int64_t peak() const;
};

MemoryEstimate estimate_memory(const ModelConfig& c, const MemorySettings& s);
// "23.4 GiB = weights 14.2 + gradients 28.4 + ... (update phase 5.1 ...)", for messages and logs.
std::string describe(const MemoryEstimate& e);
std::string gib(int64_t bytes);  // "12.34 GiB"

}  // namespace r1::model
