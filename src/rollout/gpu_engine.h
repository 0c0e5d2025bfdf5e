#pragma once
// The rollout engine's GPU path: the KV cache (bf16), the per-sequence state (last token, position,
// count, stop) and the outputs stay on the device, and each decode step (forward over the cache,
// split-KV decode attention, f32 logits, sampling with Philox, append, stop check) is one CUDA graph
// replay per batch-size bucket. The host looks every EngineConfig::sync_every steps (fewer when a
// sequence is about to reach its length limit) to free finished slots, admit waiting samples
// (continuous batching: each new prompt is prefilled once through the packed attention, its first
// tokens drawn for all its samples, and its keys/values copied to their slots) and to apply stop
// strings. The model's weights are read in place: after an optimizer step the next rollout uses
// them with no copy. Builds without CUDA fail at construction.
#include <memory>
#include <vector>

#include "rollout/engine.h"

namespace r1::rollout {

class GpuEngine {
 public:
  GpuEngine(const model::Transformer& m, const EngineConfig& cfg);
  ~GpuEngine();
  std::vector<Completion> generate(const std::vector<Request>& requests, const GenerateParams& params,
                                   const std::function<void(int64_t, int64_t)>& on_progress, GenerateStats& stats);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1::rollout
