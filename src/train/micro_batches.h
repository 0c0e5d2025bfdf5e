#pragma once
// Token-balanced micro-batches for gradient accumulation. A step's sequences are split into as few
// micro-batches as the token budget allows (more only when the lengths do not pack), with their
// tokens as even as the lengths allow, rather than filling each in turn (which leaves the last one
// short, and a step's activation peak set by the fullest). A sequence longer than the budget gets a
// micro-batch of its own: it still trains, its forward checkpointing when saving would not fit
// (model/train_state.h). The split changes only the order in which gradients are summed: the
// trainers normalise each sequence's loss by the whole batch's counts.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace r1::train {

// Indices into `lengths` (tokens per sequence), grouped into micro-batches: each group's indices
// ascending, the groups ordered by their first index, every index in exactly one group. Groups of
// more than one sequence hold at most `budget` tokens.
std::vector<std::vector<size_t>> balanced_micro_batches(const std::vector<int64_t>& lengths, int64_t budget);

}  // namespace r1::train
