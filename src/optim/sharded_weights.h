#pragma once
// Fully sharded weights (parallel.shard: full, ZeRO-3 / FSDP): each rank keeps only its shard of
// the fp32 weights (the same contiguous 1/N of the flat layout whose moments and gradients it
// holds, data_parallel.h), and on a GPU its shard of the bf16 compute copy beside it. The training
// passes gather one unit of compute weights (the embedding, a layer, the head) at a time into one
// buffer through model::WeightUnits: all-gather, point the model's views of that unit at the
// buffer, compute, release; and each unit's backward writes its gradients into one buffer that is
// reduce-scattered into the rank's gradient shard. The model's own weight, master and gradient
// buffers are freed while sharded; whole() brings the weights back on every rank for what needs
// them whole (GRPO's rollouts and no-gradient passes, copying the reference: the compute copy
// only; loading a checkpoint: the fp32 weights too) and takes the shard again after. Saving needs
// no gather (shard_files.cpp).
//
// On a GPU the collectives run on the comm's stream, ordered against the compute stream by its
// events (dist/comm.h: after_compute, before_compute). With the optimizer offloaded the fp32 shard
// is in pinned host memory, where AdamW updates it, and writes the compute shard on the device.
// Prefetch (FSDP's forward/backward prefetch): with two gather buffers, the pass's hint of the unit
// it acquires next starts that unit's gather into the other buffer right after the current unit's
// acquire, so on a GPU it runs on the comm's stream while the current unit computes; the next
// acquire then only makes the compute wait for it. On by default for device comms (host comms
// block: no overlap to win, one more buffer to hold); set_prefetch switches it.
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "dist/comm.h"
#include "model/transformer.h"
#include "model/weight_units.h"
#include "tensor/tensor.h"

namespace r1::optim {

class ShardedWeights final : public model::WeightUnits {
 public:
  // counts: elements of the flat layout per rank, in rank order; this rank's shard starts at
  // `begin`. Takes this rank's shard of m's weights and frees m's weight and gradient buffers; or,
  // for a model built without weights (Transformer's allocate = false), reads the shard from
  // `source`.
  ShardedWeights(model::Transformer& m, dist::Comm& comm, std::vector<int64_t> counts, int64_t begin,
                 const model::WeightSource& source = {});
  ~ShardedWeights() override;
  ShardedWeights(const ShardedWeights&) = delete;
  ShardedWeights& operator=(const ShardedWeights&) = delete;

  void acquire(model::WeightUnit u) override;
  void release(model::WeightUnit u) override;
  // Gathers `next` into the buffer the current unit does not use; the next acquire takes it from
  // there when it asks for `next` (any other unit is gathered anew: the prefetch serves only the
  // acquire that follows it, so no gathered copy outlives an update of the shard).
  void prefetch(model::WeightUnit next) override;
  void set_prefetch(bool on);
  bool prefetching() const { return prefetch_; }
  // Acquires served by a prefetch, and by a gather of their own, since construction.
  int64_t prefetched_acquires() const { return prefetched_; }
  int64_t gathered_acquires() const { return gathered_; }
  // A unit's backward writes its gradients into one zeroed buffer (the size of the largest unit)
  // bound to the model's gradient views; end_grads reduce-scatters it over the ranks (each rank's
  // part of the unit's ranges, in rank order) and adds this rank's part into its gradient shard.
  void begin_grads(model::WeightUnit u) override;
  void end_grads(model::WeightUnit u) override;

  // This rank's fp32 shard (what AdamW updates in place): on the model's device, or offloaded in
  // pinned host memory.
  Tensor shard() const;
  // Its shard of the compute copy (what the passes gather) when the model keeps one apart from the
  // fp32 weights (bf16 on a GPU); empty on the CPU, where shard() is both.
  Tensor compute_shard() const;
  // This rank's shard of the gradients summed over the ranks, accumulated over a step's backwards
  // (the same range of the flat layout as shard()); zero_grad_shard() after the step, which also
  // frees the unit buffers until the next backward.
  Tensor grad_shard() const;
  void zero_grad_shard();
  // Bytes this rank holds for the weights: its shards and the gather buffers (two when prefetching).
  int64_t bytes() const {
    return int64_t(shard_.size() + compute_shard_.size() + gather_[0].size() + gather_[1].size());
  }
  // Bytes it holds for the gradients: their shard, and during a step the unit buffer and the
  // reduce-scatter's part of it.
  int64_t grad_bytes() const { return int64_t(grad_shard_.size() + grad_unit_.size() + grad_part_.size()); }
  // Collective: every rank gets the whole weights back in the model, runs f, and keeps only its
  // shard again (the model's buffers freed). writes: f changes the weights (loading them), so the
  // fp32 weights are gathered too and their shard is taken back after; else only the compute copy.
  void whole(const std::function<void()>& f, bool writes);
  // Replaces this rank's shards with its range of `source` (resuming from a checkpoint): no rank
  // reads or holds more than its own shard (on a GPU staged through host memory, the compute shard
  // rounded from it).
  void load(const model::WeightSource& source);

 private:
  int64_t count() const;  // elements of this rank's shard
  // The flat ranges of a unit (model/weight_units.h).
  std::vector<model::FlatRange> ranges(model::WeightUnit u) const;
  // Points the views (the model's weights, or its gradients) of the parameters in `r` at base (the
  // range's first element, es bytes each), or at nothing (null base).
  void bind(std::vector<Tensor*>& views, model::Params& P, const model::FlatRange& r, char* base, size_t es);
  // Each rank's overlap with r, in rank order, and where this rank's part starts in its shard (when
  // it has one).
  std::vector<int64_t> parts(const model::FlatRange& r) const;
  int64_t offset_in_shard(const model::FlatRange& r) const { return std::max(r.begin, begin_) - begin_; }
  // Copies this rank's shards out of the model's whole weights (the fp32 ones only with `master`)
  // and frees them.
  void take_shard(bool master);
  void bind_views();  // collects the model's (released) weight views
  // All-gathers unit u's compute weights into gather buffer `slot` (queued on a device comm's stream
  // after the compute so far) and returns where each of its ranges starts there.
  void gather(model::WeightUnit u, int slot);
  void drop_prefetch() { pending_.reset(); }

  model::Transformer& m_;
  dist::Comm& comm_;
  std::vector<int64_t> counts_;
  int64_t begin_ = 0;
  Device device_;
  Device master_device_;  // where the fp32 shard lives (the host when the optimizer is offloaded)
  DType cd_;              // the compute dtype
  int64_t largest_ = 0;  // elements of the largest unit (a tied head's with the embedding)
  Buffer shard_, compute_shard_;
  Buffer gather_[2];  // the second one only while prefetching
  int slot_ = 0;      // the buffer the last acquire bound
  bool prefetch_ = false;
  std::optional<model::WeightUnit> pending_;  // the unit gathered ahead into buffer 1 - slot_
  int64_t prefetched_ = 0, gathered_ = 0;
  Buffer grad_shard_, grad_unit_, grad_part_;  // the unit buffers from a step's first backward to zero_grad_shard
  std::vector<Tensor*> views_;       // the model's parameter views, in layout (specs) order
  std::vector<Tensor*> grad_views_;  // its gradient views, likewise
};

}  // namespace r1::optim
