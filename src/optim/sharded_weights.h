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
  // `begin`. Takes this rank's shard of m's weights and frees m's weight buffer.
  ShardedWeights(model::Transformer& m, dist::Comm& comm, std::vector<int64_t> counts, int64_t begin);
  ~ShardedWeights() override;
  ShardedWeights(const ShardedWeights&) = delete;
  ShardedWeights& operator=(const ShardedWeights&) = delete;

  void acquire(model::WeightUnit u) override;
  void release(model::WeightUnit u) override;

  // This rank's fp32 shard (what AdamW updates in place).
  Tensor shard() const;
  // Bytes this rank holds for the weights: its shard and the one gather buffer.
  int64_t bytes() const { return int64_t(shard_.size() + gather_.size()); }
  // Collective: every rank gets the whole weights back in the model, runs f, and keeps only its
  // shard again (the model's buffer freed).
  void whole(const std::function<void()>& f);

 private:
  // The flat ranges of a unit: one, or for the head of a tied model also the embedding (the
  // lm_head's weights).
  std::vector<model::FlatRange> ranges(model::WeightUnit u) const;
  // Points the model's views of the parameters in `r` at base (the range's first element), or at
  // nothing (null base).
  void bind(const model::FlatRange& r, float* base);
  void take_shard();

  model::Transformer& m_;
  dist::Comm& comm_;
  std::vector<int64_t> counts_;
  int64_t begin_ = 0;
  Buffer shard_, gather_;
  std::vector<Tensor*> views_;  // the model's parameter views, in layout (specs) order
};

}  // namespace r1::optim
