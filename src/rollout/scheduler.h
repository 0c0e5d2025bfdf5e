#pragma once
// Continuous batching over the paged KV cache, shared by the CPU and GPU engines: which waiting
// sequences enter free slots (a slot is a row of the block table), which prompts are prefilled
// (once per group: the other samples share its blocks), which blocks a sequence takes as it grows,
// and, when the pool is full, which sequences are preempted: the youngest (latest admitted) give
// their blocks back and wait at the front of the queue, to be resumed by recomputing their prefix
// (prompt and tokens so far). Their random streams follow (prompt, sample, step), so a preempted
// sequence draws what it would have drawn.
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <vector>

#include "model/kv_cache.h"
#include "rollout/engine.h"
#include "rollout/kv_blocks.h"

namespace r1::rollout {

// The pool of a KV cache for `m` with EngineConfig cfg: cfg.max_batch sequences of cfg.max_seq_len
// rows at most, in blocks of cfg.kv_block_size, as many as kv_cache_tokens (when set) or
// kv_memory_fraction of the device's free memory allow (CUDA: free device memory; CPU: the host's
// available memory). One row of the block table per slot and one spare (padding rows). Fails,
// before anything is allocated, when it leaves no room for one sequence of max_seq_len tokens,
// with the bytes needed and available.
model::KVLayout plan_kv_layout(const model::ModelConfig& c, DType dtype, Device device,
                               const EngineConfig& cfg);

class Scheduler {
 public:
  // Slots [0, slots) of the cache's block table; the cache must have a row more (the spare).
  Scheduler(model::KVCache& cache, int slots);

  // What a free slot was given.
  enum class Kind {
    Prefill,    // the first sample of its prompt: blocks for the prompt; the engine prefills it here
    Shared,     // another sample of a prompt whose blocks are held: shares them, computes nothing
    Recompute,  // a preempted sequence: blocks for its prefix; the engine recomputes it
  };
  struct Admitted {
    int64_t slot, prompt, sample;
    Kind kind;
  };
  // A generate call: every sample of every request waits, in order (what an earlier call that
  // failed part-way still held is released first).
  void begin(const std::vector<Request>& requests);
  bool waiting() const { return !waiting_.empty(); }
  // Moves waiting sequences into free slots, in order, while the pool has their blocks and a block
  // of headroom for each active sequence. prefix_rows(prompt, sample): the rows a preempted
  // sequence's recompute fills (its prompt and completion so far).
  std::vector<Admitted> admit(const std::function<int64_t(int64_t, int64_t)>& prefix_rows);

  // Sequence `slot` writes rows [from, to) next: it must hold rows [0, to) and own the blocks of
  // [from, to).
  struct Need {
    int64_t slot, from, to;
  };
  // Grants every need, oldest sequence first. When the pool runs out it first lets go of the
  // prompts kept for later samples, then preempts the youngest sequence among `needs` (possibly the
  // one asking): its blocks are released, its slot freed, and it waits at the front of the queue.
  // Returns the preempted slots; the engine parks their state until they are admitted again.
  std::vector<int64_t> reserve(const std::vector<Need>& needs);
  // A sequence ended: its slot and blocks are free.
  void finish(int64_t slot);
  // Uploads the block table's changes (before a forward reads it).
  void sync() { blocks_.sync(); }

  KvBlocks& blocks() { return blocks_; }
  int64_t preemptions() const { return preemptions_; }
  bool active(int64_t slot) const { return slots_[size_t(slot)].active; }

 private:
  struct SlotState {
    bool active = false;
    int64_t prompt = -1, sample = -1, age = -1;
  };
  struct Waiting {
    int64_t prompt, sample, age;  // age -1: never admitted
  };
  // The prompt blocks kept for samples of `prompt` not admitted yet.
  void keep_prompt(int64_t prompt, int64_t slot);
  void let_go(int64_t prompt);
  void preempt(int64_t slot);

  KvBlocks blocks_;
  std::vector<SlotState> slots_;
  std::deque<Waiting> waiting_;
  std::map<int64_t, std::vector<int32_t>> kept_;  // prompt -> its blocks, held for its later samples
  std::map<int64_t, int64_t> unadmitted_;         // prompt -> samples never admitted
  std::vector<int64_t> prompt_rows_;              // per request
  int64_t next_age_ = 0, preemptions_ = 0;
  bool roomy_;  // the pool holds every slot at full length: admitting never leads to a preemption
};

}  // namespace r1::rollout
