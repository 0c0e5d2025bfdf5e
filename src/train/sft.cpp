#include "train/sft.h"

#include <algorithm>

#include "base/error.h"
#include "dist/world.h"
#include "model/train_state.h"
#include "train/micro_batches.h"

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

// The micro-batches of batch[begin, end): token-balanced (train/micro_batches.h), as indices into
// `batch`, each ascending.
std::vector<std::vector<size_t>> micro_batches(const std::vector<SftSequence>& batch, size_t begin, size_t end,
                                               int64_t budget) {
  std::vector<int64_t> lengths;
  for (size_t i = begin; i < end; ++i) lengths.push_back(int64_t(batch[i].tokens.size()));
  std::vector<std::vector<size_t>> groups = balanced_micro_batches(lengths, budget);
  for (auto& g : groups)
    for (size_t& i : g) i += begin;
  return groups;
}

model::Batch pack(const std::vector<SftSequence>& batch, const std::vector<size_t>& micro) {
  std::vector<std::vector<int32_t>> seqs;
  for (size_t i : micro) seqs.push_back(batch[i].tokens);
  return model::pack_sequences(seqs);
}

// Calls visit(row) for each loss token of the sequences `micro` of `batch` packed as `b`, in order:
// row t predicts token t+1, so loss token k of a sequence is scored at its row k-1.
template <typename Visit>
void for_each_loss_row(const std::vector<SftSequence>& batch, const std::vector<size_t>& micro,
                       const model::Batch& b, Visit visit) {
  for (size_t j = 0; j < micro.size(); ++j) {
    const std::vector<uint8_t>& mask = batch[micro[j]].loss_mask;
    const int64_t start = b.cu_seqlens[j];
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
  const std::vector<std::vector<size_t>> micro = micro_batches(batch, begin, end, micro_batch_tokens);
  // Fully sharded weights: every rank takes part in every pass's gathers, so one with fewer
  // micro-batches runs idle passes for the rest (agreed before any pass's collectives).
  const int64_t passes = opt.most_passes(int64_t(micro.size()));
  for (size_t k = 0; k < micro.size(); ++k) {
    model::Batch b = pack(batch, micro[k]);
    res.packed_tokens += b.tokens();
    state.forward(m, b);
    res.micro_batches += 1;
    res.checkpointed += state.checkpointed() ? 1 : 0;
    const std::vector<float> logp = state.logp_host();
    std::vector<float> dlogp(size_t(b.tokens()), 0.0f);
    // The mean over the whole batch's loss tokens, so every micro-batch's gradients add up to it.
    for_each_loss_row(batch, micro[k], b, [&](size_t row) {
      res.loss -= logp[row];
      dlogp[row] = -1.0f / float(res.tokens);
    });
    if (k + 1 == micro.size()) opt.arm(state);  // the step's last backward overlaps the gradient all-reduce
    state.backward(m, dlogp);
  }
  for (int64_t k = int64_t(micro.size()); k < passes; ++k) state.idle_pass(m);
  res.idle_passes = passes - int64_t(micro.size());
  if (ranks) {
    double sums[3] = {res.loss, double(res.packed_tokens), double(res.idle_passes)};
    ranks->all_reduce(sums, 3, dist::Type::F64);
    res.loss = sums[0];
    res.packed_tokens = int64_t(sums[1]);
    res.idle_passes = int64_t(sums[2]);
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
  const std::vector<std::vector<size_t>> micros = micro_batches(data, begin, end, micro_batch_tokens);
  // Fully sharded weights (the state gathers them): as many passes as the rank with the most,
  // agreed before any pass's collectives.
  const int64_t passes = state.weight_units && ranks
                             ? ranks->all_reduce_scalar(int64_t(micros.size()), dist::Op::Max)
                             : int64_t(micros.size());
  for (const std::vector<size_t>& micro : micros) {
    model::Batch b = pack(data, micro);
    state.forward(m, b, 1.0f, model::Backward::None);
    const std::vector<float> logp = state.logp_host();
    for_each_loss_row(data, micro, b, [&](size_t row) { out.loss -= logp[row]; });
  }
  for (int64_t k = int64_t(micros.size()); k < passes; ++k) state.idle_pass(m, model::Backward::None);
  if (ranks) out.loss = ranks->all_reduce_scalar(out.loss);
  out.loss /= double(out.tokens);
  return out;
}

}  // namespace r1::train
