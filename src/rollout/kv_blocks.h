#pragma once
// The paged KV cache's blocks, on the host: which blocks are free, how many holders each has, and
// each sequence's blocks (its row of the block table, uploaded to the cache by sync()). A prompt's
// blocks are shared by the samples of its group (one more holder each, never copied); a sequence
// about to write into a shared block first gets its own copy of it (copy-on-write: only a prompt's
// last, partial block is ever written by several sequences). Block 0 is never handed out: table
// entries a sequence does not hold, and the engine's padding rows, point at it.
#include <cstdint>
#include <vector>

#include "model/kv_cache.h"

namespace r1::rollout {

class KvBlocks {
 public:
  explicit KvBlocks(model::KVCache& cache);

  int64_t block_size() const { return cache_.layout.block_size; }
  int64_t blocks_for(int64_t rows) const { return (rows + block_size() - 1) / block_size(); }
  int64_t capacity() const { return int64_t(holders_.size()) - 1; }  // block 0 is not handed out
  int64_t free_blocks() const { return int64_t(free_.size()); }
  int64_t used() const { return capacity() - free_blocks(); }
  int64_t peak() const { return peak_; }
  void reset_peak() { peak_ = used(); }
  int holders(int32_t block) const { return holders_[size_t(block)]; }
  const std::vector<int32_t>& blocks(int64_t seq) const { return seqs_[size_t(seq)]; }

  // Sequence `seq` (holding nothing) takes the first blocks_for(rows) blocks of `from`, shared.
  void share(int64_t seq, const std::vector<int32_t>& from, int64_t rows);
  // New blocks `seq` needs to hold rows [0, to) and to own the blocks of rows [from, to).
  int64_t needed(int64_t seq, int64_t from, int64_t to) const;
  // Grows `seq` to rows [0, to) and makes the blocks of rows [from, to) its own (a shared one is
  // replaced by a copy). False, with nothing changed, when fewer than needed() blocks are free.
  bool reserve(int64_t seq, int64_t from, int64_t to);
  // `seq` lets go of all its blocks.
  void release(int64_t seq);
  // Holders outside the sequences (a prompt kept for samples not admitted yet).
  void hold(const std::vector<int32_t>& blocks);
  void drop(const std::vector<int32_t>& blocks);

  // Uploads the table rows changed since the last sync (one copy of the changed range).
  void sync();

 private:
  int32_t take();
  void drop_one(int32_t block);
  void touch(int64_t seq);

  model::KVCache& cache_;
  std::vector<int> holders_;                // per block
  std::vector<int32_t> free_;               // a stack: the last freed block is reused first
  std::vector<std::vector<int32_t>> seqs_;  // per table row
  std::vector<int32_t> table_;              // host copy of the block table (S, MB)
  int64_t dirty_lo_ = -1, dirty_hi_ = -1;   // table rows changed since the last sync
  int64_t peak_ = 0;
};

}  // namespace r1::rollout
