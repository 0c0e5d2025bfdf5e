#pragma once
// Fully sharded weights (parallel.shard: full, ZeRO-3 / FSDP): each rank keeps only its shard of
// the fp32 weights (the same contiguous 1/N of the flat layout whose moments and gradients it
// holds, data_parallel.h), and the training passes gather one unit of weights (the embedding, a
// layer, the head) at a time into one buffer through model::WeightUnits: all-gather, point the
// model's views of that unit at the buffer, compute, release. The model's own weight buffer is
// freed while sharded; whole() brings the weights back on every rank for what needs them whole
// (loading a checkpoint, GRPO's rollouts and no-gradient passes, copying the reference) and takes
// the shard again after. Saving needs no gather (shard_files.cpp).
//
// CPU f32 only so far: there the fp32 master is the compute copy, so the shard is both. A GPU
// version would gather the bf16 compute copy (and keep the fp32 master shard apart), with the
// prefetch on its own stream.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "dist/comm.h"
#include "model/transformer.h"
#include "model/weight_units.h"
#include "tensor/tensor.h"

namespace r1::optim {

class ShardedWeights final : public model::WeightUnits {
 public:
  // counts: elements of the flat layout per rank, in rank order; this rank's shard starts at
  // `begin`. Takes this rank's shard of m's weights and frees m's weight buffer; or, for a model
  // built without weights (Transformer's allocate = false), reads the shard from `source`.
  ShardedWeights(model::Transformer& m, dist::Comm& comm, std::vector<int64_t> counts, int64_t begin,
                 const model::WeightSource& source = {});
  ~ShardedWeights() override;
  ShardedWeights(const ShardedWeights&) = delete;
  ShardedWeights& operator=(const ShardedWeights&) = delete;

  void acquire(model::WeightUnit u) override;
  void release(model::WeightUnit u) override;
  // A unit's backward writes its gradients into one zeroed buffer (the size of the largest unit)
  // bound to the model's gradient views; end_grads reduce-scatters it over the ranks (each rank's
  // part of the unit's ranges, in rank order) and adds this rank's part into its gradient shard.
  void begin_grads(model::WeightUnit u) override;
  void end_grads(model::WeightUnit u) override;

  // This rank's fp32 shard (what AdamW updates in place).
  Tensor shard() const;
  // This rank's shard of the gradients summed over the ranks, accumulated over a step's backwards
  // (the same range of the flat layout as shard()); zero_grad_shard() after the step, which also
  // frees the unit buffers until the next backward.
  Tensor grad_shard() const;
  void zero_grad_shard();
  // Bytes this rank holds for the weights: its shard and the one gather buffer.
  int64_t bytes() const { return int64_t(shard_.size() + gather_.size()); }
  // Bytes it holds for the gradients: their shard, and during a step the unit buffer and the
  // reduce-scatter's part of it.
  int64_t grad_bytes() const { return int64_t(grad_shard_.size() + grad_unit_.size() + grad_part_.size()); }
  // Collective: every rank gets the whole weights back in the model, runs f, and keeps only its
  // shard again (the model's buffer freed).
  void whole(const std::function<void()>& f);
  // Replaces this rank's shard with its range of `source` (resuming from a checkpoint): no rank
  // reads or holds more than its own shard.
  void load(const model::WeightSource& source);

 private:
  int64_t count() const;  // elements of this rank's shard
  // The flat ranges of a unit (model/weight_units.h).
  std::vector<model::FlatRange> ranges(model::WeightUnit u) const;
  // Points the views (the model's weights, or its gradients) of the parameters in `r` at base (the
  // range's first element), or at nothing (null base).
  void bind(std::vector<Tensor*>& views, model::Params& P, const model::FlatRange& r, float* base);
  // This rank's part of each rank's overlap with r: counts in rank order, and where this rank's
  // part starts in its shard (when it has one).
  std::vector<int64_t> parts(const model::FlatRange& r) const;
  int64_t offset_in_shard(const model::FlatRange& r) const { return std::max(r.begin, begin_) - begin_; }
  void take_shard();
  void bind_views();  // collects the model's (released) weight views

  model::Transformer& m_;
  dist::Comm& comm_;
  std::vector<int64_t> counts_;
  int64_t begin_ = 0;
  Buffer shard_, gather_;
  Buffer grad_shard_, grad_unit_, grad_part_;  // the unit buffers from a step's first backward to zero_grad_shard
  int64_t largest_ = 0;                         // elements of the largest unit (a tied head's with the embedding)
  std::vector<Tensor*> views_;       // the model's parameter views, in layout (specs) order
  std::vector<Tensor*> grad_views_;  // its gradient views, likewise
};

}  // namespace r1::optim
