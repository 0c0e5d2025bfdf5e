#include "optim/sharded_weights.h"

#include <algorithm>

#include "base/error.h"
#include "base/log.h"
#include "dist/world.h"
#include "kernels/ops.h"
#include "tensor/device_memory.h"

namespace r1::optim {

namespace {

// Elements of [r.begin, r.end) that rank q's shard [from, from + count) holds.
int64_t overlap(const model::FlatRange& r, int64_t from, int64_t count) {
  return std::max<int64_t>(0, std::min(r.end, from + count) - std::max(r.begin, from));
}

std::vector<int64_t> times(std::vector<int64_t> v, int64_t k) {
  for (int64_t& x : v) x *= k;
  return v;
}

}  // namespace

ShardedWeights::ShardedWeights(model::Transformer& m, dist::Comm& comm, std::vector<int64_t> counts, int64_t begin,
                               const model::WeightSource& source)
    : m_(m), comm_(comm), counts_(std::move(counts)), begin_(begin), device_(m.device()), cd_(m.compute_dtype()) {
  R1_CHECK(!m.has_lora(), "parallel.shard: full shards every weight; LoRA's frozen base is not sharded yet (use "
           "parallel.shard: gradients with LoRA)");
  R1_CHECK(comm.size() == 1 || comm.on_device() == (device_ != Device::CPU),
           "parallel.shard: full: a {} comm cannot gather weights on {}", comm.backend(), device_name(device_));
  // The fp32 shard lives where the model's fp32 weights do: on the device, or with the optimizer
  // offloaded in pinned host memory (AdamW updates it on the CPU).
  master_device_ = m.separate_master() ? m.master().flat.device : device_;
  largest_ = model::largest_unit(m.plan(), m.config());
  const int64_t count = counts_[size_t(comm.rank())];
  gather_[0] = Buffer(size_t(largest_) * dtype_size(cd_), device_);
  set_prefetch(comm.on_device());
  shard_ = master_device_ == device_ ? Buffer(size_t(count) * sizeof(float), device_)
                                     : Buffer::pinned(size_t(count) * sizeof(float));
  if (m.separate_master()) compute_shard_ = Buffer(size_t(count) * dtype_size(cd_), device_);
  if (m.weights_released()) {  // built without weights: the shard comes from the source alone
    R1_CHECK(bool(source), "parallel.shard: full: the model was built without weights and no source was given");
    load(source);
    bind_views();
    if (comm.rank() == 0)
      log::info("parallel.shard full: each of {} ranks read only its shard of the weights ({} of {} elements here)",
                comm.size(), counts_[0], m.plan().total);
  } else {
    take_shard(true);
  }
  // Gradients by unit: the model's buffer goes for good, its views are bound per unit.
  m_.unbind_grads();
  visit_params(m_.grads(), m_.config(), [&](Tensor& t, const std::string&, model::ParamShape) { grad_views_.push_back(&t); });
  grad_shard_ = Buffer(size_t(count) * sizeof(float), device_);
  grad_shard_.zero();
}

ShardedWeights::~ShardedWeights() = default;

int64_t ShardedWeights::count() const { return counts_[size_t(comm_.rank())]; }

Tensor ShardedWeights::shard() const { return Tensor(shard_.data(), DType::F32, {count()}, master_device_); }

Tensor ShardedWeights::compute_shard() const {
  if (compute_shard_.size() == 0) return Tensor();
  return Tensor(compute_shard_.data(), cd_, {count()}, device_);
}

Tensor ShardedWeights::grad_shard() const { return Tensor(grad_shard_.data(), DType::F32, {count()}, device_); }

void ShardedWeights::set_prefetch(bool on) {
  drop_prefetch();
  prefetch_ = on;
  if (on) {
    if (gather_[1].size() == 0) gather_[1] = Buffer(size_t(largest_) * dtype_size(cd_), device_);
    return;
  }
  if (slot_ == 1) {  // a held unit stays bound to its memory, now buffer 0
    std::swap(gather_[0], gather_[1]);
    slot_ = 0;
  }
  gather_[1] = Buffer();
}

void ShardedWeights::zero_grad_shard() {
  drop_prefetch();  // the shard is about to change (or has): no gathered copy may serve a later pass
  grad_shard_.zero();
  // The unit buffers live through a step's backwards only.
  grad_unit_ = Buffer();
  grad_part_ = Buffer();
}

void ShardedWeights::take_shard(bool master) {
  const int64_t n = count();
  if (n > 0) {
    // The fp32 weights (the master copy, or on the CPU the weights themselves), and the compute copy.
    if (master) copy_tensor(shard(), (m_.separate_master() ? m_.master().flat : m_.params().flat).rows(begin_, begin_ + n));
    if (!compute_shard().empty()) copy_tensor(compute_shard(), m_.params().flat.rows(begin_, begin_ + n));
  }
  m_.release_weights();
  bind_views();
}

void ShardedWeights::load(const model::WeightSource& source) {
  drop_prefetch();
  const int64_t n = count();
  if (n == 0) return;
  if (master_device_ == Device::CPU) {
    source(begin_, n, static_cast<float*>(shard_.data()));
  } else {
    std::vector<float> host(static_cast<size_t>(n));
    source(begin_, n, host.data());
    copy_from_host(shard(), host.data());
  }
  if (!compute_shard().empty()) {  // the compute copy rounded from the fp32 shard, on the device
    std::vector<float> host = to_host_f32(shard());
    copy_from_host_f32(compute_shard(), host.data());
  }
}

void ShardedWeights::bind_views() {
  // The views release_weights() left in place (their data null until a unit binds them).
  views_.clear();
  visit_params(m_.params(), m_.config(), [&](Tensor& t, const std::string&, model::ParamShape) { views_.push_back(&t); });
}

void ShardedWeights::whole(const std::function<void()>& f, bool writes) {
  // Reading needs the compute weights only; writing (loading a checkpoint) the fp32 weights, whose
  // compute copy is rounded from them.
  const bool master = writes && m_.separate_master();
  drop_prefetch();
  m_.restore_weights(master);
  comm_.after_compute();
  if (master) {
    // An offloaded master gathers in host memory (the host comm), as ZeRO-1's offload does.
    dist::Comm& c = master_device_ == device_ ? comm_ : dist::host_comm();
    c.all_gather(shard_.data(), m_.master().flat.data, counts_, dist::Type::F32);
  } else {
    const void* send = compute_shard().empty() ? shard_.data() : compute_shard_.data();
    const int64_t es = int64_t(dtype_size(cd_));
    comm_.all_gather(send, m_.params().flat.data, times(counts_, es), dist::Type::U8);
  }
  comm_.before_compute();
  if (master) m_.refresh_compute_weights();
  f();
  take_shard(writes);
}

std::vector<model::FlatRange> ShardedWeights::ranges(model::WeightUnit u) const {
  return model::unit_ranges(m_.plan(), m_.config(), u);
}

void ShardedWeights::bind(std::vector<Tensor*>& views, model::Params& P, const model::FlatRange& r, char* base,
                          size_t es) {
  const std::vector<model::ParamSpec>& specs = m_.specs();
  // Specs are in offset order: the first at or after r.begin, then on while inside r.
  auto it = std::lower_bound(specs.begin(), specs.end(), r.begin,
                             [](const model::ParamSpec& s, int64_t at) { return s.offset < at; });
  for (; it != specs.end() && it->offset < r.end; ++it)
    views[size_t(it - specs.begin())]->data = base ? base + size_t(it->offset - r.begin) * es : nullptr;
  if (r.begin == m_.plan().embed.begin && m_.config().tie_word_embeddings && !m_.config().has_score_head())
    P.lm_head.data = P.embed.data;  // the tied head is the embedding's memory
}

std::vector<int64_t> ShardedWeights::parts(const model::FlatRange& r) const {
  std::vector<int64_t> out(counts_.size());
  for (size_t q = 0, from = 0; q < counts_.size(); from += size_t(counts_[q]), ++q)
    out[q] = overlap(r, int64_t(from), counts_[q]);
  return out;
}

void ShardedWeights::gather(model::WeightUnit u, int slot) {
  // The compute weights' bytes: every rank's part of each range, in rank order, whole in the buffer.
  // The comm waits for the compute queued so far, which holds every read of this buffer's last unit
  // (released before the unit that now computes was acquired).
  const size_t es = dtype_size(cd_);
  char* buf = static_cast<char*>(gather_[slot].data());
  const char* from = static_cast<const char*>(compute_shard().empty() ? shard_.data() : compute_shard_.data());
  comm_.after_compute();
  int64_t at = 0;
  for (const model::FlatRange& r : ranges(u)) {  // a tied head's: the embedding's too
    const std::vector<int64_t> p = parts(r);
    const char* send = from + (p[size_t(comm_.rank())] > 0 ? size_t(offset_in_shard(r)) * es : 0);
    comm_.all_gather(send, buf + size_t(at) * es, times(p, int64_t(es)), dist::Type::U8);
    at += r.size();
  }
}

void ShardedWeights::acquire(model::WeightUnit u) {
  // Every rank asks for the same units in the same order (model/weight_units.h), so all of them take
  // the prefetched unit or none does, and the collectives stay matched.
  if (pending_ && *pending_ == u) {
    slot_ = 1 - slot_;
    ++prefetched_;
  } else {
    gather(u, slot_);
    ++gathered_;
  }
  pending_.reset();
  comm_.before_compute();  // the compute waits for the gather (and what the comm queued before it)
  const size_t es = dtype_size(cd_);
  char* buf = static_cast<char*>(gather_[slot_].data());
  int64_t at = 0;
  for (const model::FlatRange& r : ranges(u)) {
    bind(views_, m_.params(), r, buf + size_t(at) * es, es);
    at += r.size();
  }
}

void ShardedWeights::prefetch(model::WeightUnit next) {
  if (!prefetch_) return;
  gather(next, 1 - slot_);
  pending_ = next;
}

void ShardedWeights::release(model::WeightUnit u) {
  // Views of a released unit point at nothing: a pass that reads a weight it did not acquire fails
  // at once instead of computing with another unit's values.
  for (const model::FlatRange& r : ranges(u)) bind(views_, m_.params(), r, nullptr, 0);
}

void ShardedWeights::begin_grads(model::WeightUnit u) {
  if (grad_unit_.size() == 0) {
    grad_unit_ = Buffer(size_t(largest_) * sizeof(float), device_);
    grad_part_ = Buffer(size_t(std::min(largest_, count())) * sizeof(float), device_);
  }
  float* buf = static_cast<float*>(grad_unit_.data());
  int64_t at = 0;
  for (const model::FlatRange& r : ranges(u)) {  // a tied head's: the embedding's too
    ops::zero(Tensor(buf + at, DType::F32, {r.size()}, device_));
    bind(grad_views_, m_.grads(), r, reinterpret_cast<char*>(buf + at), sizeof(float));
    at += r.size();
  }
}

void ShardedWeights::end_grads(model::WeightUnit u) {
  float* buf = static_cast<float*>(grad_unit_.data());
  float* part = static_cast<float*>(grad_part_.data());
  float* acc = static_cast<float*>(grad_shard_.data());
  int64_t at = 0;
  for (const model::FlatRange& r : ranges(u)) {
    // The ranks' sums of r (in rank order on MPI: dist/comm.h), this rank's part of them into its
    // shard. The comm waits for the backward that wrote the buffer, the compute for the sums.
    const std::vector<int64_t> p = parts(r);
    const int64_t mine = p[size_t(comm_.rank())];
    comm_.after_compute();
    comm_.reduce_scatter(buf + at, part, p, dist::Type::F32);
    comm_.before_compute();
    if (mine > 0)
      ops::add_inplace(Tensor(acc + offset_in_shard(r), DType::F32, {mine}, device_),
                       Tensor(part, DType::F32, {mine}, device_));
    bind(grad_views_, m_.grads(), r, nullptr, 0);
    at += r.size();
  }
}

}  // namespace r1::optim
