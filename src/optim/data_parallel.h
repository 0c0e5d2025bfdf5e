#pragma once
// Data-parallel training: how an optimizer step combines the ranks' gradients and updates the
// weights. Every rank back-propagates its share of the global batch with the loss normalised by
// the GLOBAL batch, so the sum of the ranks' gradients is the gradient of the whole batch; it holds
// the whole model, except at level full. step() then, by sharding level (recipe key parallel.shard, ZeRO's stages):
//   none (default): all-reduces the gradients and takes the same AdamW step on every rank
//                   (all-reduce results are bitwise the same on every rank, so the weights stay
//                   identical without ever being broadcast again);
//   optimizer:      (ZeRO-1) reduce-scatters them; each rank updates its 1/N shard of the fp32
//                   master weights with its 1/N shard of the AdamW moments, then all-gathers the
//                   weights (the moments, 2/3 of the training state, shrink N-fold);
//   gradients:      (ZeRO-2) as optimizer, and the full fp32 gradient buffer lives only while a
//                   step's micro-batches accumulate into it: after the reduce-scatter the rank keeps
//                   its 1/N shard alone (released until the next backward), so between steps (GRPO's
//                   rollouts, evaluation) a rank holds 1/N of the gradients instead of all of them.
//   full:           (ZeRO-3 / FSDP) as gradients, and each rank holds only its 1/N
//                   shard of the weights themselves (sharded_weights.h): the training passes
//                   gather one unit (embedding, layer, head) at a time through weight_units(), and
//                   the update writes the shard in place (nothing to gather after it). Every rank
//                   must run as many passes as the others (most_passes, TrainState::idle_pass);
//                   whatever needs the whole weights runs inside with_whole_weights.
// The gradient norm is the same sum in every mode (each shard's sum of squares, added in rank
// order), and the mpi comm adds floats in rank order in all_reduce and reduce_scatter alike
// (dist/comm.h), so on CPU ranks every level gives bitwise the same weights.
// With one rank every level is exactly AdamW + clip_and_step.
//
// Offload (DataParallelConfig::offload): the fp32 master weights move to pinned host memory and
// AdamW runs on the CPU (optimizer.h's OffloadConfig), so the GPU keeps the bf16 weights and the
// gradients only. The gradient norm and clipping stay on the GPU. Sharded, each rank updates its
// shard on its CPU, then the ranks all-gather the updated bf16 shards on the device and the fp32
// shards through the host comm.
//
// Overlap (device comms, replicated): arm(state) before the backward of an optimizer step's last
// micro-batch makes the backward report each layer's gradients as final; buckets of about
// bucket_bytes go out on the comm's stream while the backward computes the layers below. Buckets
// are fixed by the model layout, never by timing, so every rank issues the same collectives in the
// same order whether or not it was armed (a rank with no sequences in a mini-batch still takes part).
//
// Checkpoints hold the full optimizer state whatever the world size or sharding (level full writes
// them by shards, write_shards), so a run resumes at any world size and sharding level.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "optim/optimizer.h"

namespace r1::optim {

class ShardedWeights;

// How much of the training state each rank holds 1/N of (ZeRO stage 0-3); ordered, so a level
// shards everything the levels below it do.
enum class Shard : uint8_t { None, Optimizer, Gradients, Full };
// "none" | "optimizer" | "gradients" | "full"; anything else fails naming `what` (a recipe key).
Shard parse_shard(const std::string& s, const std::string& what);
const char* shard_name(Shard s);

struct DataParallelConfig {
  Shard shard = Shard::None;
  OffloadConfig offload;  // the optimizer on the CPU, its state in host memory (not with LoRA)
  // full, for a model built without weights (Transformer's allocate = false): where each rank
  // reads its shard, so no rank ever holds the whole weights (and no broadcast is needed: every
  // rank reads the same checkpoint, or draws the same seed).
  model::WeightSource source;
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
  // The level in effect: None with one rank (nothing to shard).
  Shard shard() const { return cfg_.shard; }
  // Bytes of training state this rank holds between steps: the fp32 weights (with their compute
  // copy), the AdamW moments, and the gradients (the full buffer, the shard, or both).
  struct HeldBytes {
    int64_t weights = 0, moments = 0, grads = 0;
    int64_t total() const { return weights + moments + grads; }
  };
  HeldBytes held_bytes() const;
  // full: what the training passes gather their weights through (set it as the TrainState's
  // weight_units); null at the other levels.
  model::WeightUnits* weight_units() const;
  // The most passes (forwards, each with its backward or not) any rank runs when this one runs
  // `mine`: collective at level full, where a rank with fewer runs TrainState::idle_pass for the
  // rest so that every rank takes part in every gather; `mine` otherwise.
  int64_t most_passes(int64_t mine) const;
  // Runs f with the model's whole weights in place on every rank (collective at level full, which
  // gathers them first and keeps only the shard again after; just f otherwise): checkpoints,
  // resuming, exporting the model.
  // writes: f changes the weights (loading a checkpoint): the fp32 weights are gathered and taken
  // back too; else (reading: rollouts, the reference) only the compute copy is gathered.
  void with_whole_weights(const std::function<void()>& f, bool writes = false) const;
  // The model's weights from the checkpoint in `dir` (resuming): at level full each rank reads only
  // its shard of the file; otherwise every rank loads them whole.
  void load_weights(const std::string& dir);
  // Level full writes checkpoints and the exported model without gathering: the files keep the
  // single-process format (any world size resumes from them), and every rank writes its own shard
  // of them in parallel (shard_files.cpp). Rank 0 first prepares them at their final size
  // (model.safetensors and config.json in model_dir; the AdamW state at optimizer_path unless it
  // is ""); then every rank calls write_shards (collective; rank 0 passes the paths, the others
  // anything), which writes and syncs this rank's range and returns when every rank has. The
  // model's weights are written in `dtype` (f32, or bf16 for an export: rounded as save_model
  // rounds them, so the file is byte for byte one process's); every rank passes the same.
  bool writes_shards() const { return sharded_ != nullptr; }
  void prepare_shard_files(const std::string& model_dir, const std::string& optimizer_path,
                           DType dtype = DType::F32) const;
  void write_shards(const std::string& model_dir, const std::string& optimizer_path, DType dtype = DType::F32) const;
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
  void load(const std::string& path, const std::vector<model::FlatMove>& moves = {});

 private:
  struct Range {
    int64_t begin = 0, end = 0;
  };
  void on_grads_ready(int64_t begin);
  // Every rank's fp32 master weights (and their compute copy) become rank 0's.
  void broadcast_weights();
  // Sharded: every rank's updated shard to every rank.
  void gather_shards(const model::Transformer::Trainable& t);
  UpdateResult step_replicated(double lr, double max_grad_norm, bool finite);
  UpdateResult step_sharded(double lr, double max_grad_norm, bool finite);
  bool sharded() const { return cfg_.shard >= Shard::Optimizer; }
  int64_t total_elements() const;  // of the flat layout (what the optimizer state covers)
  // The global gradient norm's square: each rank's shard of `grads` summed on its own, the shards'
  // sums added in rank order. `grads` is this rank's shard (sharded) or the whole reduced buffer.
  double global_sum_squares(const Tensor& grads) const;

  model::Transformer& m_;
  DataParallelConfig cfg_;
  dist::Comm* comm_;
  std::unique_ptr<AdamW> opt_;     // whole model, or this rank's shard (sharded)
  std::vector<Range> buckets_;     // backward order: highest offsets first
  size_t next_bucket_ = 0;         // buckets [0, next_bucket_) are reduced (or enqueued) this step
  model::TrainState* armed_ = nullptr;
  std::vector<int64_t> shard_counts_;  // elements per rank (every level: the norm's shards)
  int64_t shard_begin_ = 0;
  Buffer shard_grad_;
  std::unique_ptr<ShardedWeights> sharded_;  // full: this rank's shard of the weights
};

}  // namespace r1::optim
