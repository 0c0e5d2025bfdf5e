#include "rollout/scheduler.h"

#include <algorithm>
#include <fstream>
#include <string>

#include "base/error.h"
#include "device/cuda_device.h"

namespace r1::rollout {

namespace {

// The host's available memory (MemAvailable), in bytes; 0 when unknown.
int64_t host_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

std::string gib(double bytes) { return fmt::format("{:.3g} GiB", bytes / double(1 << 30)); }

}  // namespace

model::KVLayout plan_kv_layout(const model::ModelConfig& c, DType dtype, Device device,
                               const EngineConfig& cfg) {
  R1_CHECK(cfg.kv_block_size > 0, "rollout: kv_block_size must be positive (got {})", cfg.kv_block_size);
  R1_CHECK(cfg.kv_memory_fraction > 0 && cfg.kv_memory_fraction <= 1,
           "rollout: kv_memory_fraction must be in (0, 1] (got {}; recipe key rollout.kv_memory_fraction)",
           cfg.kv_memory_fraction);
  R1_CHECK(cfg.kv_cache_tokens >= 0, "rollout: kv_cache_tokens must be >= 0 (got {})", cfg.kv_cache_tokens);
  const int64_t BS = cfg.kv_block_size, MB = (int64_t(cfg.max_seq_len) + BS - 1) / BS;
  const int64_t block_bytes = model::kv_bytes_per_token(c, dtype) * BS;
  const int64_t one_sequence = MB * block_bytes;
  int64_t budget = 0;  // blocks
  if (cfg.kv_cache_tokens > 0) {
    budget = cfg.kv_cache_tokens / BS;
    R1_CHECK(
        budget >= MB,
        "rollout: kv_cache_tokens = {} leaves no room for one sequence of max_seq_len = {} tokens (prompt + "
        "completion; {} blocks of {} tokens): {} bytes needed, {} bytes available",
        cfg.kv_cache_tokens, cfg.max_seq_len, MB, BS, one_sequence, budget * block_bytes);
  } else {
    const bool gpu = device == Device::CUDA;
    const int64_t free = gpu ? int64_t(cuda::memory_info().free) : host_available_bytes();
    const double allowed = cfg.kv_memory_fraction * double(free);
    budget = int64_t(allowed / double(block_bytes));
    R1_CHECK(
        budget >= MB,
        "rollout: kv_memory_fraction = {} of the {} bytes ({}) free on {} is {} bytes ({}), no room for one "
        "sequence of max_seq_len = {} tokens (prompt + completion), which needs {} bytes ({}: {} blocks of "
        "{} "
        "tokens, {} bytes per token); raise rollout.kv_memory_fraction or lower the sequence length",
        cfg.kv_memory_fraction, free, gib(double(free)), gpu ? "the GPU" : "the host", int64_t(allowed),
        gib(allowed), cfg.max_seq_len, one_sequence, gib(double(one_sequence)), MB, BS,
        model::kv_bytes_per_token(c, dtype));
  }
  // More blocks than max_batch full-length sequences can use would sit idle.
  const int64_t blocks = std::min(budget, int64_t(cfg.max_batch) * MB);
  return {1 + blocks, BS, int64_t(cfg.max_batch) + 1, MB};
}

Scheduler::Scheduler(model::KVCache& cache, int slots)
    : blocks_(cache), slots_(size_t(slots)), roomy_(blocks_.capacity() >= slots * cache.layout.max_blocks) {
  R1_CHECK(cache.layout.seqs > slots, "rollout: the block table has {} rows for {} slots and a spare",
           cache.layout.seqs, slots);
}

void Scheduler::begin(const std::vector<Request>& requests) {
  // Whatever a call that failed part-way left behind is let go.
  for (size_t si = 0; si < slots_.size(); ++si)
    if (slots_[si].active) finish(int64_t(si));
  while (!kept_.empty()) let_go(kept_.begin()->first);
  waiting_.clear();
  unadmitted_.clear();
  prompt_rows_.clear();
  for (size_t p = 0; p < requests.size(); ++p) {
    prompt_rows_.push_back(int64_t(requests[p].prompt.size()));
    unadmitted_[int64_t(p)] = requests[p].n;
    for (int s = 0; s < requests[p].n; ++s) waiting_.push_back({int64_t(p), s, -1});
  }
}

void Scheduler::keep_prompt(int64_t prompt, int64_t slot) {
  kept_[prompt] = blocks_.blocks(slot);
  blocks_.hold(kept_[prompt]);
}

void Scheduler::let_go(int64_t prompt) {
  auto it = kept_.find(prompt);
  if (it == kept_.end()) return;
  blocks_.drop(it->second);
  kept_.erase(it);
}

std::vector<Scheduler::Admitted> Scheduler::admit(
    const std::function<int64_t(int64_t, int64_t)>& prefix_rows) {
  std::vector<Admitted> out;
  int64_t active = std::count_if(slots_.begin(), slots_.end(), [](const SlotState& s) { return s.active; });
  for (size_t si = 0; si < slots_.size() && !waiting_.empty(); ++si) {
    SlotState& sl = slots_[si];
    if (sl.active) continue;
    const Waiting w = waiting_.front();
    const int64_t P = prompt_rows_[size_t(w.prompt)];
    Kind kind = Kind::Prefill;
    int64_t rows = P;
    if (w.age >= 0) {
      kind = Kind::Recompute;
      rows = prefix_rows(w.prompt, w.sample);
    } else if (kept_.count(w.prompt)) {
      kind = Kind::Shared;
    }
    // Headroom: in a pool that cannot hold every slot at full length, each active sequence may take
    // a block before the next look. Prompts kept for later samples give way to a sequence that does
    // not fit otherwise.
    const int64_t need = (kind == Kind::Shared ? 0 : blocks_.blocks_for(rows)) + (roomy_ ? 0 : active);
    while (need > blocks_.free_blocks()) {
      auto other =
          std::find_if(kept_.begin(), kept_.end(), [&](const auto& k) { return k.first != w.prompt; });
      if (other == kept_.end()) break;
      let_go(other->first);
    }
    if (need > blocks_.free_blocks()) break;
    waiting_.pop_front();
    const int64_t slot = int64_t(si);
    sl = {true, w.prompt, w.sample, w.age >= 0 ? w.age : next_age_++};
    ++active;
    if (kind == Kind::Shared) {
      blocks_.share(slot, kept_.at(w.prompt), P);
    } else {
      R1_CHECK(blocks_.reserve(slot, 0, rows), "rollout: KV blocks counted free were not");
    }
    if (kind != Kind::Recompute) {  // a first admission: later samples of the prompt share its blocks
      const int64_t left = --unadmitted_[w.prompt];
      if (kind == Kind::Prefill && left > 0) keep_prompt(w.prompt, slot);
      if (left == 0) let_go(w.prompt);
    }
    out.push_back({slot, w.prompt, w.sample, kind});
  }
  return out;
}

void Scheduler::preempt(int64_t slot) {
  SlotState& sl = slots_[size_t(slot)];
  blocks_.release(slot);
  sl.active = false;
  waiting_.push_front({sl.prompt, sl.sample, sl.age});
  ++preemptions_;
}

std::vector<int64_t> Scheduler::reserve(const std::vector<Need>& needs_in) {
  std::vector<Need> needs = needs_in;
  auto age = [&](const Need& n) { return slots_[size_t(n.slot)].age; };
  std::stable_sort(needs.begin(), needs.end(), [&](const Need& a, const Need& b) { return age(a) < age(b); });
  std::vector<int64_t> preempted;
  for (size_t i = 0; i < needs.size(); ++i) {
    const Need& n = needs[i];
    if (!slots_[size_t(n.slot)].active) continue;  // preempted for an older one
    while (!blocks_.reserve(n.slot, n.from, n.to)) {
      if (!kept_.empty()) {
        let_go(kept_.begin()->first);
        continue;
      }
      // The youngest sequence still running among those not yet granted (n itself at last).
      size_t victim = i;
      for (size_t j = i + 1; j < needs.size(); ++j)
        if (slots_[size_t(needs[j].slot)].active && age(needs[j]) > age(needs[victim])) victim = j;
      preempt(needs[victim].slot);
      preempted.push_back(needs[victim].slot);
      if (victim == i) break;
    }
  }
  return preempted;
}

void Scheduler::finish(int64_t slot) {
  blocks_.release(slot);
  slots_[size_t(slot)].active = false;
}

}  // namespace r1::rollout
