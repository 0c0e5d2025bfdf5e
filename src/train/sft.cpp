#include "train/sft.h"

#include <algorithm>

#include "base/error.h"
#include "dist/world.h"
#include "model/train_state.h"

namespace r1::train {

namespace {

void check_sequence(const SftSequence& s) {
  R1_CHECK(!s.tokens.empty(), "sft: an empty sequence");
  R1_CHECK(s.loss_mask.size() == s.tokens.size(), "sft: a sequence of {} tokens has {} loss-mask entries",
           s.tokens.size(), s.loss_mask.size());
  R1_CHECK(!s.loss_mask[0], "sft: token 0 of a sequence cannot be a loss target (nothing precedes it)");
}

// The loss tokens of all of `batch`, each sequence checked first.
int64_t checked_loss_tokens(const std::vector<SftSequence>& batch) {
  int64_t tokens = 0;
  for (const auto& s : batch) {
    check_sequence(s);
    tokens += s.loss_tokens();
  }
  return tokens;
}

// One past the last sequence of the micro-batch that starts at `first`: consecutive sequences up to
// `budget` tokens, and at least one however long.
size_t micro_batch_end(const std::vector<SftSequence>& batch, size_t first, int64_t budget) {
  size_t last = first;
  for (int64_t tokens = 0; last < batch.size(); ++last) {
    const int64_t n = int64_t(batch[last].tokens.size());
    if (last > first && tokens + n > budget) break;
    tokens += n;
  }
  return last;
}

model::Batch pack(const std::vector<SftSequence>& batch, size_t first, size_t last) {
  std::vector<std::vector<int32_t>> seqs;
  for (size_t i = first; i < last; ++i) seqs.push_back(batch[i].tokens);
  return model::pack_sequences(seqs);
}

// Calls visit(row) for each loss token of batch[first, last) packed as `b`, in order: row t predicts
// token t+1, so loss token k of a sequence is scored at its row k-1.
template <typename Visit>
void for_each_loss_row(const std::vector<SftSequence>& batch, size_t first, size_t last,
                       const model::Batch& b, Visit visit) {
  for (size_t i = first; i < last; ++i) {
    const std::vector<uint8_t>& mask = batch[i].loss_mask;
    const int64_t start = b.cu_seqlens[i - first];
    for (size_t k = 1; k < mask.size(); ++k)
      if (mask[k]) visit(size_t(start + int64_t(k) - 1));
  }
}

// This rank's contiguous share [first, last) of n items (all of them without ranks).
std::pair<size_t, size_t> share(size_t n, const dist::Comm* ranks) {
  if (!ranks) return {0, n};
  const auto [begin, end] = ranks->share(int64_t(n));
  return {size_t(begin), size_t(end)};
}

}  // namespace

SftStepResult sft_step(model::Transformer& m, model::TrainState& state, optim::DataParallel& opt,
                       const std::vector<SftSequence>& batch, double lr, double max_grad_norm,
                       int64_t micro_batch_tokens) {
  SftStepResult res;
  res.tokens = checked_loss_tokens(batch);  // the whole batch's: every rank divides by it
  R1_CHECK(res.tokens > 0, "sft: the batch has no loss tokens");
  dist::Comm* ranks = opt.world_size() > 1 ? &dist::host_comm() : nullptr;
  const auto [begin, end] = share(batch.size(), ranks);
  m.zero_grads();
  for (size_t first = begin; first < end;) {
    const size_t last = std::min(end, micro_batch_end(batch, first, micro_batch_tokens));
    model::Batch b = pack(batch, first, last);
    res.packed_tokens += b.tokens();
    state.forward(m, b);
    const std::vector<float> logp = state.logp_host();
    std::vector<float> dlogp(size_t(b.tokens()), 0.0f);
    // The mean over the whole batch's loss tokens, so every micro-batch's gradients add up to it.
    for_each_loss_row(batch, first, last, b, [&](size_t row) {
      res.loss -= logp[row];
      dlogp[row] = -1.0f / float(res.tokens);
    });
    if (last == end) opt.arm(state);  // the step's last backward overlaps the gradient all-reduce
    state.backward(m, dlogp);
    first = last;
  }
  if (ranks) {
    double sums[2] = {res.loss, double(res.packed_tokens)};
    ranks->all_reduce(sums, 2, dist::Type::F64);
    res.loss = sums[0];
    res.packed_tokens = int64_t(sums[1]);
  }
  res.loss /= double(res.tokens);
  const optim::UpdateResult update = opt.step(lr, max_grad_norm);
  res.grad_norm = update.grad_norm;
  res.skipped = update.skipped;
  return res;
}

SftStepResult sft_step(model::Transformer& m, model::TrainState& state, optim::DataParallel& opt,
                       const std::vector<SftExample>& batch, double lr, double max_grad_norm,
                       int64_t micro_batch_tokens) {
  std::vector<SftSequence> seqs;
  seqs.reserve(batch.size());
  for (const auto& e : batch) {
    R1_CHECK(!e.prompt.empty() && !e.completion.empty(), "sft: an example has an empty prompt or completion");
    seqs.push_back(data::prompt_completion_sequence(e.prompt, e.completion));
  }
  return sft_step(m, state, opt, seqs, lr, max_grad_norm, micro_batch_tokens);
}

SftLoss sft_loss(const model::Transformer& m, model::TrainState& state, const std::vector<SftSequence>& data,
                 int64_t micro_batch_tokens, dist::Comm* ranks) {
  SftLoss out;
  out.tokens = checked_loss_tokens(data);
  R1_CHECK(out.tokens > 0, "sft: no loss tokens to evaluate");
  if (ranks && ranks->size() == 1) ranks = nullptr;
  const auto [begin, end] = share(data.size(), ranks);
  for (size_t first = begin; first < end;) {
    const size_t last = std::min(end, micro_batch_end(data, first, micro_batch_tokens));
    model::Batch b = pack(data, first, last);
    state.forward(m, b);
    const std::vector<float> logp = state.logp_host();
    for_each_loss_row(data, first, last, b, [&](size_t row) { out.loss -= logp[row]; });
    first = last;
  }
  if (ranks) out.loss = ranks->all_reduce_scalar(out.loss);
  out.loss /= double(out.tokens);
  return out;
}

}  // namespace r1::train
