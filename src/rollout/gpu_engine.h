#pragma once
// The rollout engine's GPU path: the paged KV cache (bf16), the per-sequence state (last token,
// position, count, stream step, stop) and the outputs stay on the device, and each decode step
// (forward over the cache through its block table, split-KV decode attention, f32 logits, sampling
// with Philox, append, stop check) is one CUDA graph replay per batch-size bucket; the block table
// is a device tensor the host rewrites in place, so the graphs stay valid as blocks move. The host
// looks every EngineConfig::sync_every steps (fewer when a sequence is about to reach its length
// limit) to finish sequences, apply stop strings and turn ends, admit waiting samples (continuous
// batching: each new prompt is prefilled once through the packed attention, the first tokens of
// all its samples drawn from its logits, its blocks shared by them), grant the blocks the next
// steps write (preempting the youngest sequences when the pool is short: they are recomputed
// later) and start device segments. The model's weights are read in place: after an optimizer
// step the next rollout uses them with no copy. Builds without CUDA fail at construction.
#include <memory>
#include <vector>

#include "model/kv_cache.h"
#include "rollout/engine.h"

namespace r1::rollout {

class Scheduler;

class GpuEngine {
 public:
  // The paged cache and its scheduler are the Engine's (they outlive this).
  GpuEngine(const model::Transformer& m, const EngineConfig& cfg, model::KVCache& cache, Scheduler& sched);
  ~GpuEngine();
  std::vector<Completion> generate(const std::vector<Request>& requests, const GenerateParams& params,
                                   const std::function<void(int64_t, int64_t)>& on_progress, GenerateStats& stats);
  // Frees the prefill forwards' scratch until the next generate. It grows to the longest forward of
  // a call: a preempted sequence's recompute prefills its whole prefix at once (32k tokens of a
  // 1.5B model: 2.2 GiB). The decode steps' buffers stay (the captured graphs read them).
  void release_scratch();
  // The device state (rollout/gpu_engine_impl.h, CUDA builds).
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace r1::rollout
