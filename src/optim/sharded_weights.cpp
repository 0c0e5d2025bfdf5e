#include "optim/sharded_weights.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "base/log.h"

namespace r1::optim {

namespace {

// Elements of [r.begin, r.end) that rank q's shard [from, from + count) holds.
int64_t overlap(const model::FlatRange& r, int64_t from, int64_t count) {
  return std::max<int64_t>(0, std::min(r.end, from + count) - std::max(r.begin, from));
}

}  // namespace

ShardedWeights::ShardedWeights(model::Transformer& m, dist::Comm& comm, std::vector<int64_t> counts, int64_t begin,
                               const model::WeightSource& source)
    : m_(m), comm_(comm), counts_(std::move(counts)), begin_(begin) {
  R1_CHECK(m.device() == Device::CPU && m.compute_dtype() == DType::F32 && !m.has_lora() && !comm.on_device(),
           "parallel.shard: full runs on the CPU in f32 without LoRA so far (the GPU path is not written yet); "
           "use parallel.shard: gradients");
  const int64_t largest = model::largest_unit(m.plan(), m.config());
  gather_ = Buffer(size_t(largest) * sizeof(float));
  shard_ = Buffer(size_t(count()) * sizeof(float));
  if (m.weights_released()) {  // built without weights: the shard comes from the source alone
    R1_CHECK(bool(source), "parallel.shard: full: the model was built without weights and no source was given");
    load(source);
    bind_views();
    if (comm.rank() == 0)
      log::info("parallel.shard full: each of {} ranks read only its shard of the weights ({} of {} elements here)",
                comm.size(), counts_[0], m.plan().total);
  } else {
    take_shard();
  }
  // Gradients by unit: the model's buffer goes for good, its views are bound per unit.
  m_.unbind_grads();
  visit_params(m_.grads(), m_.config(), [&](Tensor& t, const std::string&, model::ParamShape) { grad_views_.push_back(&t); });
  largest_ = largest;
  grad_shard_ = Buffer(size_t(count()) * sizeof(float));
  grad_shard_.zero();
}

ShardedWeights::~ShardedWeights() = default;

int64_t ShardedWeights::count() const { return counts_[size_t(comm_.rank())]; }

Tensor ShardedWeights::shard() const {
  return Tensor(shard_.data(), DType::F32, {count()}, Device::CPU);
}

Tensor ShardedWeights::grad_shard() const {
  return Tensor(grad_shard_.data(), DType::F32, {count()}, Device::CPU);
}

void ShardedWeights::zero_grad_shard() {
  grad_shard_.zero();
  // The unit buffers live through a step's backwards only.
  grad_unit_ = Buffer();
  grad_part_ = Buffer();
}

void ShardedWeights::take_shard() {
  if (count() > 0) std::memcpy(shard_.data(), m_.params().flat.f32() + begin_, size_t(count()) * sizeof(float));
  m_.release_weights();
  bind_views();
}

void ShardedWeights::load(const model::WeightSource& source) {
  if (count() > 0) source(begin_, count(), static_cast<float*>(shard_.data()));
}

void ShardedWeights::bind_views() {
  // The views release_weights() left in place (their data null until a unit binds them).
  views_.clear();
  visit_params(m_.params(), m_.config(), [&](Tensor& t, const std::string&, model::ParamShape) { views_.push_back(&t); });
}

void ShardedWeights::whole(const std::function<void()>& f) {
  m_.restore_weights();
  Tensor flat = m_.params().flat;
  comm_.all_gather(static_cast<const float*>(shard_.data()), flat.data, counts_, dist::Type::F32);
  f();
  take_shard();
}

std::vector<model::FlatRange> ShardedWeights::ranges(model::WeightUnit u) const {
  return model::unit_ranges(m_.plan(), m_.config(), u);
}

void ShardedWeights::bind(std::vector<Tensor*>& views, model::Params& P, const model::FlatRange& r, float* base) {
  const std::vector<model::ParamSpec>& specs = m_.specs();
  // Specs are in offset order: the first at or after r.begin, then on while inside r.
  auto it = std::lower_bound(specs.begin(), specs.end(), r.begin,
                             [](const model::ParamSpec& s, int64_t at) { return s.offset < at; });
  for (; it != specs.end() && it->offset < r.end; ++it)
    views[size_t(it - specs.begin())]->data = base ? base + (it->offset - r.begin) : nullptr;
  if (r.begin == m_.plan().embed.begin && m_.config().tie_word_embeddings && !m_.config().has_score_head())
    P.lm_head.data = P.embed.data;  // the tied head is the embedding's memory
}

std::vector<int64_t> ShardedWeights::parts(const model::FlatRange& r) const {
  std::vector<int64_t> out(counts_.size());
  for (size_t q = 0, from = 0; q < counts_.size(); from += size_t(counts_[q]), ++q)
    out[q] = overlap(r, int64_t(from), counts_[q]);
  return out;
}

void ShardedWeights::acquire(model::WeightUnit u) {
  float* buf = static_cast<float*>(gather_.data());
  int64_t at = 0;
  for (const model::FlatRange& r : ranges(u)) {
    // Every rank's part of r, in rank order: the range, whole, at buf + at.
    const std::vector<int64_t> p = parts(r);
    const float* send =
        static_cast<const float*>(shard_.data()) + (p[size_t(comm_.rank())] > 0 ? offset_in_shard(r) : 0);
    comm_.all_gather(send, buf + at, p, dist::Type::F32);
    bind(views_, m_.params(), r, buf + at);
    at += r.size();
  }
}

void ShardedWeights::release(model::WeightUnit u) {
  // Views of a released unit point at nothing: a pass that reads a weight it did not acquire fails
  // at once instead of computing with another unit's values.
  for (const model::FlatRange& r : ranges(u)) bind(views_, m_.params(), r, nullptr);
}

void ShardedWeights::begin_grads(model::WeightUnit u) {
  if (grad_unit_.size() == 0) {
    grad_unit_ = Buffer(size_t(largest_) * sizeof(float));
    grad_part_ = Buffer(size_t(std::min(largest_, count())) * sizeof(float));
  }
  float* buf = static_cast<float*>(grad_unit_.data());
  int64_t at = 0;
  for (const model::FlatRange& r : ranges(u)) {  // a tied head's: the embedding's too
    std::fill(buf + at, buf + at + r.size(), 0.0f);
    bind(grad_views_, m_.grads(), r, buf + at);
    at += r.size();
  }
}

void ShardedWeights::end_grads(model::WeightUnit u) {
  const float* buf = static_cast<const float*>(grad_unit_.data());
  float* part = static_cast<float*>(grad_part_.data());
  float* acc = static_cast<float*>(grad_shard_.data());
  int64_t at = 0;
  for (const model::FlatRange& r : ranges(u)) {  // a tied head's: the embedding's too
    // The ranks' sums of r in rank order (dist/comm.h), this rank's part of them into its shard.
    const std::vector<int64_t> p = parts(r);
    const int64_t mine = p[size_t(comm_.rank())];
    comm_.reduce_scatter(buf + at, part, p, dist::Type::F32);
    float* dst = acc + offset_in_shard(r);
    for (int64_t i = 0; i < mine; ++i) dst[i] += part[i];
    bind(grad_views_, m_.grads(), r, nullptr);
    at += r.size();
  }
}

}  // namespace r1::optim
