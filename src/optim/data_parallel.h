#pragma once
// Data-parallel training: how an optimizer step combines the ranks' gradients and updates the
// weights. Every rank holds the whole model and back-propagates its share of the global batch with
// the loss normalised by the GLOBAL batch, so the sum of the ranks' gradients is the gradient of
// the whole batch. step() then
//   replicated (default): all-reduces the gradients and takes the same AdamW step on every rank
//                         (all-reduce results are bitwise the same on every rank, so the weights
//                         stay identical without ever being broadcast again);
//   zero1:                reduce-scatters them; each rank updates its 1/N shard of the fp32 master
//                         weights with its 1/N shard of the AdamW moments, then all-gathers the
//                         weights (the moments, 2/3 of the training state, shrink N-fold).
// With one rank both are exactly AdamW + clip_and_step.
//
// Offload (DataParallelConfig::offload): the fp32 master weights move to pinned host memory and
// AdamW runs on the CPU (optimizer.h's OffloadConfig), so the GPU keeps the bf16 weights and the
// gradients only. The gradient norm and clipping stay on the GPU. With zero1 each rank updates its
// shard on its CPU, then the ranks all-gather the updated bf16 shards on the device and the fp32
// shards through the host comm.
//
// Overlap (device comms, replicated): arm(state) before the backward of an optimizer step's last
// micro-batch makes the backward report each layer's gradients as final; buckets of about
// bucket_bytes go out on the comm's stream while the backward computes the layers below. Buckets
// are fixed by the model layout, never by timing, so every rank issues the same collectives in the
// same order whether or not it was armed (a rank with no sequences in a mini-batch still takes part).
//
// Checkpoints hold the full optimizer state whatever the world size or sharding, so a run resumes
// at any world size (and with zero1 on or off).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "optim/optimizer.h"

namespace r1::optim {

struct DataParallelConfig {
  bool zero1 = false;
  OffloadConfig offload;  // the optimizer on the CPU, its state in host memory (not with LoRA)
  int64_t bucket_bytes = int64_t(25) << 20;  // PyTorch DDP's default bucket
  bool overlap = true;                       // device comms only
};

class DataParallel {
 public:
  // m's gradients are combined over `comm` (default: dist::device_comm(m.device()) in a job of
  // several ranks, the single comm otherwise); the loss flags go through dist::host_comm().
  // Broadcasts rank 0's weights so every rank starts the same, whatever it loaded or drew.
  DataParallel(model::Transformer& m, AdamWConfig adamw, DataParallelConfig cfg = {}, dist::Comm* comm = nullptr);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int rank() const { return comm_->rank(); }
  int world_size() const { return comm_->size(); }
  bool zero1() const { return cfg_.zero1; }
  const AdamW& adamw() const { return *opt_; }

  // The next backward through `state` starts the gradient all-reduce bucket by bucket as layers
  // finish (device comms, replicated mode; otherwise nothing). Call it before the backward of an
  // optimizer step's last micro-batch, after the earlier ones.
  void arm(model::TrainState& state);
  // Combines the gradients over the ranks, clips them to max_grad_norm (the global norm), updates
  // the weights unless the norm or any rank's loss is non-finite, and zeroes the gradients.
  UpdateResult step(double lr, double max_grad_norm, bool finite_loss = true);

  int64_t steps_taken() const;
  // The full optimizer state in AdamW's file format. Collective: every rank calls it; rank 0 writes.
  void save(const std::string& path) const;
  // Every rank reads the full state and keeps its part.
  void load(const std::string& path);

 private:
  struct Range {
    int64_t begin = 0, end = 0;
  };
  void on_grads_ready(int64_t begin);
  // Every rank's fp32 master weights (and their compute copy) become rank 0's.
  void broadcast_weights();
  // zero1: every rank's updated shard to every rank.
  void gather_shards(const model::Transformer::Trainable& t);
  UpdateResult step_replicated(double lr, double max_grad_norm, bool finite);
  UpdateResult step_zero1(double lr, double max_grad_norm, bool finite);

  model::Transformer& m_;
  DataParallelConfig cfg_;
  dist::Comm* comm_;
  std::unique_ptr<AdamW> opt_;     // whole model, or this rank's shard (zero1)
  std::vector<Range> buckets_;     // backward order: highest offsets first
  size_t next_bucket_ = 0;         // buckets [0, next_bucket_) are reduced (or enqueued) this step
  model::TrainState* armed_ = nullptr;
  std::vector<int64_t> shard_counts_;  // zero1: elements per rank
  int64_t shard_begin_ = 0;
  Buffer shard_grad_;
};

}  // namespace r1::optim
