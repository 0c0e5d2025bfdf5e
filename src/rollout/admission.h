#pragma once
// Continuous batching, shared by the CPU and GPU engines: which waiting samples enter free KV-cache
// slots, which prompts need a prefill, and which slots copy a prompt's rows from another slot.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "rollout/engine.h"

namespace r1::rollout {

// What admission reads and writes of a slot; each engine's slot type derives from it.
struct SlotBase {
  bool active = false;
  int64_t prompt = -1, sample = -1, flat = -1;
  int32_t prompt_len = 0;
  int64_t holds_prompt = -1;  // rows [0, prompt_len) hold this prompt's keys/values
};

using Waiting = std::deque<std::pair<int64_t, int64_t>>;  // (prompt, sample)

// Moves waiting samples into free slots (in order) and returns their indices. A slot that already
// holds the prompt's rows keeps them; otherwise they are copied at once from a slot that holds them
// (copy_prefix(src, dst, rows)), before this round's prefills can overwrite it; otherwise the first
// slot of each new prompt goes to `to_prefill`. first[p]: request p's first flat sample index.
template <class Slot, class CopyPrefix>
std::vector<int64_t> admit_waiting(std::vector<Slot>& slots, Waiting& waiting, const std::vector<Request>& requests,
                                   const std::vector<int64_t>& first, std::vector<int64_t>& to_prefill,
                                   CopyPrefix&& copy_prefix) {
  std::vector<int64_t> admitted;
  for (size_t si = 0; si < slots.size() && !waiting.empty(); ++si) {
    Slot& sl = slots[si];
    if (sl.active) continue;
    auto [p, s] = waiting.front();
    waiting.pop_front();
    sl.active = true;
    sl.prompt = p;
    sl.sample = s;
    sl.flat = first[size_t(p)] + s;
    sl.prompt_len = int32_t(requests[size_t(p)].prompt.size());
    admitted.push_back(int64_t(si));
    if (sl.holds_prompt == p) continue;
    sl.holds_prompt = -1;
    auto holder = std::find_if(slots.begin(), slots.end(), [&](const Slot& o) { return o.holds_prompt == p; });
    if (holder != slots.end()) {
      copy_prefix(int64_t(holder - slots.begin()), int64_t(si), sl.prompt_len);
      sl.holds_prompt = p;
      continue;
    }
    const bool pending = std::any_of(to_prefill.begin(), to_prefill.end(),
                                     [&](int64_t x) { return slots[size_t(x)].prompt == p; });
    if (!pending) to_prefill.push_back(int64_t(si));
  }
  return admitted;
}

// After the prefills: an admitted slot whose prompt was prefilled this round in another slot copies
// its rows from there.
template <class Slot, class CopyPrefix>
void take_prefilled_rows(std::vector<Slot>& slots, int64_t si, CopyPrefix&& copy_prefix) {
  Slot& sl = slots[size_t(si)];
  if (sl.holds_prompt == sl.prompt) return;
  for (size_t o = 0; o < slots.size(); ++o)
    if (slots[o].holds_prompt == sl.prompt) {
      copy_prefix(int64_t(o), si, sl.prompt_len);
      break;
    }
  sl.holds_prompt = sl.prompt;
}

// The tokens of one prefill forward: whole prompts of the slots to_prefill[begin, end), as many as
// fit `budget` tokens (at least one). rows: each prompt's last token (its logits row).
struct PrefillChunk {
  std::vector<int32_t> ids, slots, pos, rows;
  size_t end = 0;
};
template <class Slot>
PrefillChunk prefill_chunk(const std::vector<Slot>& slots, const std::vector<int64_t>& to_prefill, size_t begin,
                           const std::vector<Request>& requests, int64_t budget) {
  PrefillChunk c;
  c.end = begin;
  while (c.end < to_prefill.size()) {
    const Slot& sl = slots[size_t(to_prefill[c.end])];
    if (c.end > begin && int64_t(c.ids.size()) + sl.prompt_len > budget) break;
    const auto& pr = requests[size_t(sl.prompt)].prompt;
    for (int32_t t = 0; t < sl.prompt_len; ++t) {
      c.ids.push_back(pr[size_t(t)]);
      c.slots.push_back(int32_t(to_prefill[c.end]));
      c.pos.push_back(t);
    }
    c.rows.push_back(int32_t(c.ids.size()) - 1);
    ++c.end;
  }
  return c;
}

}  // namespace r1::rollout
