#pragma once
// The memory model of the training activations (docs/MEMORY.md): the bytes a training forward over
// T tokens keeps for its backward, with and without per-layer checkpointing (train_state.h), counted
// from the tensors the blocks save, and the rule that turns checkpointing on when saving would not
// fit. Tests hold the prediction to the arenas' peaks on the CPU.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace r1::model {

// Bytes of a training forward and backward over T tokens in B sequences with the log-prob head.
// Exact, the mixture of experts included: its experts run as grouped linears over all R = T * K
// routed rows, so no tensor's size depends on the routing.
struct ActivationEstimate {
  // The activation arena without checkpointing: every layer's saved tensors, the L + 1 (T, C)
  // residual-stream tensors (each layer's input, and the last one's output), the batch's inputs,
  // the final norm and head outputs, and the gradients that run down the layers (dres, dlnf, dlogp).
  size_t saving = 0;
  // The same arena with checkpointing: all of the above but the layers' saved tensors, and each
  // mixture-of-experts layer's chosen experts (T, K) i32, which its recomputation replays. (A
  // Batch::replay takes those bytes too: checkpointing, the same ones; saving, on top.)
  size_t checkpointed = 0;
  // The largest one layer's saved tensors: checkpointing's recomputed layer (its own arena).
  size_t layer = 0;
};

// A LoRA adapter that takes part: its rank, and whether it is the experts' (one kind of every
// expert's adapters, listed once: their grouped linear sees all R routed rows).
struct AdapterShape {
  int64_t rank = 0;
  bool expert = false;
};

// What shapes the saved activations beside the config.
struct ActivationSetup {
  DType compute = DType::BF16;  // activations' dtype (statistics stay f32)
  bool recompute = true;        // norm outputs and the SwiGLU product recomputed (Recompute)
  std::vector<std::vector<AdapterShape>> adapters;  // per layer, its linears' adapters (empty: none)
};
// The setup of a pass over m: its compute dtype, and its adapters when `adapters` is on.
ActivationSetup activation_setup(const Transformer& m, bool recompute, bool adapters);

ActivationEstimate estimate_activations(const ModelConfig& c, const ActivationSetup& s, int64_t T, int64_t B);
inline ActivationEstimate estimate_activations(const Transformer& m, int64_t T, int64_t B, bool recompute,
                                               bool adapters) {
  return estimate_activations(m.config(), activation_setup(m, recompute, adapters), T, B);
}

// The bytes layer `l` saves for its backward over T tokens, its input excluded.
size_t layer_saved_bytes(const ModelConfig& c, int l, const ActivationSetup& s, int64_t T);

// Memory free for activations on `device`: cudaMemGetInfo's free bytes on CUDA; on the CPU the
// host's available memory (MemAvailable of /proc/meminfo).
size_t free_memory(Device device);

// Auto's rule: a forward checkpoints when saving every layer, plus one more layer's worth for the
// backward's temporaries, would exceed `budget` bytes.
bool checkpointing_needed(const ActivationEstimate& e, size_t budget);

}  // namespace r1::model
