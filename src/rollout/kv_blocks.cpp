#include "rollout/kv_blocks.h"

#include <algorithm>

#include "base/error.h"

namespace r1::rollout {

KvBlocks::KvBlocks(model::KVCache& cache)
    : cache_(cache),
      holders_(size_t(cache.layout.blocks), 0),
      seqs_(size_t(cache.layout.seqs)),
      table_(size_t(cache.layout.seqs * cache.layout.max_blocks), 0) {
  R1_CHECK(cache.layout.blocks >= 2, "KV cache: {} blocks leave none to hand out (block 0 is reserved)",
           cache.layout.blocks);
  holders_[0] = 1;  // never free
  for (int32_t b = int32_t(cache.layout.blocks) - 1; b >= 1; --b) free_.push_back(b);
  dirty_lo_ = 0, dirty_hi_ = cache.layout.seqs;  // the cache's table may hold another layout's entries
}

int32_t KvBlocks::take() {
  R1_CHECK(!free_.empty(), "KV cache: no free block (a caller skipped needed())");
  const int32_t b = free_.back();
  free_.pop_back();
  holders_[size_t(b)] = 1;
  peak_ = std::max(peak_, used());
  return b;
}

void KvBlocks::drop_one(int32_t b) {
  R1_CHECK(b > 0 && holders_[size_t(b)] > 0, "KV cache: block {} dropped more often than held", b);
  if (--holders_[size_t(b)] == 0) free_.push_back(b);
}

void KvBlocks::touch(int64_t seq) {
  const std::vector<int32_t>& bl = seqs_[size_t(seq)];
  const int64_t MB = cache_.layout.max_blocks;
  int32_t* row = table_.data() + seq * MB;
  std::fill(row, row + MB, 0);
  std::copy(bl.begin(), bl.end(), row);
  dirty_lo_ = dirty_lo_ < 0 ? seq : std::min(dirty_lo_, seq);
  dirty_hi_ = std::max(dirty_hi_, seq + 1);
}

void KvBlocks::share(int64_t seq, const std::vector<int32_t>& from, int64_t rows) {
  std::vector<int32_t>& bl = seqs_[size_t(seq)];
  R1_CHECK(bl.empty(), "KV cache: sequence {} shares a prefix while holding blocks", seq);
  const int64_t n = blocks_for(rows);
  R1_CHECK(n <= int64_t(from.size()), "KV cache: {} rows need {} blocks, the prefix has {}", rows, n,
           from.size());
  bl.assign(from.begin(), from.begin() + n);
  for (int32_t b : bl) ++holders_[size_t(b)];
  touch(seq);
}

int64_t KvBlocks::needed(int64_t seq, int64_t from, int64_t to) const {
  const std::vector<int32_t>& bl = seqs_[size_t(seq)];
  const int64_t held = int64_t(bl.size());
  int64_t n = std::max<int64_t>(0, blocks_for(to) - held);
  if (from < to)  // the shared blocks among those rows [from, to) touch
    for (int64_t i = from / block_size(); i < std::min(held, blocks_for(to)); ++i)
      n += holders_[size_t(bl[size_t(i)])] > 1;
  return n;
}

bool KvBlocks::reserve(int64_t seq, int64_t from, int64_t to) {
  R1_CHECK(to <= cache_.max_len(), "KV cache: sequence {} needs {} rows, the cache holds {} per sequence",
           seq, to, cache_.max_len());
  const int64_t n = needed(seq, from, to);
  if (n > free_blocks()) return false;
  if (n == 0) return true;
  std::vector<int32_t>& bl = seqs_[size_t(seq)];
  const int64_t last = from < to ? std::min<int64_t>(int64_t(bl.size()), blocks_for(to)) : 0;
  for (int64_t i = from / block_size(); i < last; ++i) {
    int32_t& b = bl[size_t(i)];
    if (holders_[size_t(b)] == 1) continue;
    const int32_t own = take();
    cache_.copy_block(b, own);
    drop_one(b);
    b = own;
  }
  while (int64_t(bl.size()) < blocks_for(to)) bl.push_back(take());
  touch(seq);
  return true;
}

void KvBlocks::release(int64_t seq) {
  std::vector<int32_t>& bl = seqs_[size_t(seq)];
  if (bl.empty()) return;
  for (int32_t b : bl) drop_one(b);
  bl.clear();
  touch(seq);
}

void KvBlocks::hold(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) ++holders_[size_t(b)];
}

void KvBlocks::drop(const std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) drop_one(b);
}

void KvBlocks::sync() {
  if (dirty_lo_ < 0) return;
  const int64_t MB = cache_.layout.max_blocks;
  cache_.set_table_rows(dirty_lo_, dirty_hi_ - dirty_lo_, table_.data() + dirty_lo_ * MB);
  dirty_lo_ = dirty_hi_ = -1;
}

}  // namespace r1::rollout
