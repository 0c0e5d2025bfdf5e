#pragma once
// The memory model of a run: what it holds on its device, per parameter and per token, for each
// mode (docs/MEMORY.md, "The memory model"). Plain arithmetic on a ModelConfig, in one place: the
// start-up check (run/memory_preflight.h), train.optimizer_offload's auto and the docs use it. The
// training activations are activation_memory.h's count (estimate_activations).
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

// Bytes per token, compute dtype `dt`:
// one layer's temporaries while its backward runs (gradients of its activations, the recomputed
// cheap ones, the GPU attention backward's f32 accumulators), beside the saved activations;
int64_t backward_bytes_per_token(const ModelConfig& c, DType dt, bool recompute);
// one layer's temporaries in an inference forward (nothing saved: the reference pass, prefill).
// (The KV cache's bytes per token: kv_cache.h's kv_bytes_per_token.)
int64_t inference_bytes_per_token(const ModelConfig& c, DType dt);

struct MemorySettings {
  Device device = Device::CUDA;  // CUDA computes in bf16, the CPU in f32
  bool trainable = true;         // gradients, master copy and optimizer state
  int64_t lora_params = 0;       // > 0: LoRA adapters of this many parameters over a frozen base
  bool offload = false;          // master copy and moments in host memory
  int world = 1;                 // ranks
  // parallel.shard's level (optim::Shard, in its order): 0 none; 1 optimizer (the moments split
  // over the ranks); 2 gradients (and the gradients, whole only while a step's backwards run);
  // 3 full (and the weights, gathered a unit at a time, whole for the rollout and reference
  // phases; the gradients written a unit at a time). Each rank's figures are the largest rank's.
  int shard = 0;
  bool reference = false;        // a second frozen copy of the weights (a KL reference, not LoRA)
  bool recompute = true;         // norm outputs and the SwiGLU product recomputed in the backward
  bool checkpoint = false;       // per-layer activation checkpointing
  bool checkpoint_auto = false;  // checkpointing when saving would not fit (run/memory_preflight.h)
  int64_t sequence_tokens = 0;   // the longest sequence (prompt + completion); 0: unknown
  int64_t train_tokens = 0;      // tokens of the largest micro-batch
  // The rollouts' paged KV pool (rollout/scheduler.h: plan_kv_layout), in tokens: a fixed size
  // (rollout.kv_cache_tokens), or, with kv_memory_fraction > 0, that share of the device memory
  // free beside the persistent state when the trainer is built (run/memory_preflight.h resolves
  // it into kv_tokens); never more than kv_tokens_max (max_batch sequences), in blocks of
  // kv_block_size tokens.
  int64_t kv_tokens = 0;
  double kv_memory_fraction = 0;
  int64_t kv_tokens_max = 0;     // 0: no cap
  int64_t kv_block_size = 16;
  int64_t prefill_tokens = 0;    // tokens per prefill forward (a recompute's forward: up to sequence_tokens)
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
// "23.40 GiB = weights 14.20 GiB + gradients ... + the largest phase (update) ...", for messages.
std::string describe(const MemoryEstimate& e);
std::string gib(int64_t bytes);  // "12.34 GiB"

}  // namespace r1::model
