#include "train/micro_batches.h"

#include <algorithm>
#include <numeric>

#include "base/error.h"

namespace r1::train {

namespace {

// Longest first, each sequence into the least loaded of k bins (the lowest on a tie); empty when
// one does not fit within the budget.
std::vector<std::vector<size_t>> pack_into(const std::vector<int64_t>& lengths,
                                           const std::vector<size_t>& order, int64_t budget, size_t k) {
  std::vector<std::vector<size_t>> bins(k);
  std::vector<int64_t> load(k, 0);
  for (size_t i : order) {
    const size_t b = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    if (load[b] + lengths[i] > budget) return {};
    bins[b].push_back(i);
    load[b] += lengths[i];
  }
  return bins;
}

}  // namespace

std::vector<std::vector<size_t>> balanced_micro_batches(const std::vector<int64_t>& lengths, int64_t budget) {
  R1_CHECK(budget > 0, "micro-batches: the token budget must be positive (got {})", budget);
  std::vector<std::vector<size_t>> out;
  std::vector<size_t> fitting;  // the rest go alone
  int64_t total = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    R1_CHECK(lengths[i] > 0, "micro-batches: sequence {} is empty", i);
    if (lengths[i] > budget) {
      out.push_back({i});
    } else {
      fitting.push_back(i);
      total += lengths[i];
    }
  }
  if (!fitting.empty()) {
    std::vector<size_t> order = fitting;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
    // ceil(total / budget) bins at the least; one more each time the lengths do not pack (at most
    // one bin per sequence, which always does).
    for (size_t k = size_t((total + budget - 1) / budget);; ++k) {
      std::vector<std::vector<size_t>> bins = pack_into(lengths, order, budget, k);
      if (bins.empty()) continue;
      for (auto& bin : bins) {
        std::sort(bin.begin(), bin.end());
        out.push_back(std::move(bin));
      }
      break;
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.front() < b.front(); });
  return out;
}

}  // namespace r1::train
