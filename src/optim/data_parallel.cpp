#include "optim/data_parallel.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/log.h"
#include "dist/world.h"
#include "kernels/ops.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "tensor/device_memory.h"
#include "model/train_state.h"
#include "optim/sharded_weights.h"

namespace r1::optim {

namespace {

// The flat-buffer ranges a backward finishes, in the order it finishes them: the head and final
// norm, the layers from the last down, the embedding; grouped into buckets of at least `bytes`.
std::vector<std::pair<int64_t, int64_t>> backward_buckets(const model::Transformer& m, int64_t bytes) {
  const model::ModelPlan& plan = m.plan();
  // LoRA: the adapters' gradients are small and in their own layout: one bucket, sent at the step.
  if (m.has_lora()) return {{0, m.grads().flat.numel()}};
  std::vector<int64_t> bounds = {plan.total, plan.head.begin};
  for (auto l = plan.layers.rbegin(); l != plan.layers.rend(); ++l) bounds.push_back(l->params.begin);
  bounds.push_back(0);
  std::vector<std::pair<int64_t, int64_t>> buckets;
  int64_t end = bounds[0];
  for (size_t i = 1; i < bounds.size(); ++i) {
    const bool last = i + 1 == bounds.size();
    if ((end - bounds[i]) * int64_t(sizeof(float)) >= bytes || last) {
      if (end > bounds[i]) buckets.push_back({bounds[i], end});
      end = bounds[i];
    }
  }
  return buckets;
}

// The AdamW slices of a model restricted to [begin, end), re-based to begin.
std::vector<ParamSlice> shard_slices(const std::vector<ParamSlice>& all, int64_t begin, int64_t end) {
  std::vector<ParamSlice> out;
  for (const ParamSlice& s : all) {
    const int64_t a = std::max(s.offset, begin), b = std::min(s.offset + s.numel, end);
    if (b > a) out.push_back({s.name, a - begin, b - a, s.decay});
  }
  return out;
}

}  // namespace

Shard parse_shard(const std::string& s, const std::string& what) {
  if (s == "none") return Shard::None;
  if (s == "optimizer") return Shard::Optimizer;
  if (s == "gradients") return Shard::Gradients;
  if (s == "full") return Shard::Full;
  fail("{} must be none, optimizer, gradients or full (got '{}')", what, s);
}

const char* shard_name(Shard s) {
  switch (s) {
    case Shard::None: return "none";
    case Shard::Optimizer: return "optimizer";
    case Shard::Gradients: return "gradients";
    case Shard::Full: return "full";
  }
  return "?";
}

DataParallel::DataParallel(model::Transformer& m, AdamWConfig adamw, DataParallelConfig cfg, dist::Comm* comm)
    : m_(m),
      cfg_(cfg),
      // One rank needs no collectives (and no NCCL communicator): the single comm.
      comm_(comm ? comm : dist::world_size() > 1 ? &dist::device_comm(m.device()) : &dist::host_comm()) {
  R1_CHECK(m.trainable(), "data parallel: the model was created with trainable = false (and has no LoRA)");
  R1_CHECK(comm_->size() == 1 || comm_->on_device() == (m.device() != Device::CPU),
           "data parallel: a {} comm cannot combine gradients on {}", comm_->backend(), device_name(m.device()));
  if (cfg_.offload.enabled) {
    R1_CHECK(!m.has_lora(), "train.optimizer_offload: LoRA's optimizer state is small (the adapters only) and "
             "stays on the device; set train.optimizer_offload to off or auto");
    m.place_master(model::MasterPlace::Host);  // where the CPU updates it (created there by the recipes)
  }
  R1_CHECK(cfg_.shard != Shard::Full || !cfg_.offload.enabled || m.device() != Device::CPU,
           "parallel.shard: full on the CPU keeps the optimizer in host memory already; set train.optimizer_offload "
           "to off");
  R1_CHECK(!m.weights_released() || (cfg_.shard == Shard::Full && comm_->size() > 1 && cfg_.source),
           "data parallel: a model built without weights needs parallel.shard: full over several ranks and a "
           "source for their shards");
  // Elements the optimizer updates: the flat layout (a model built without weights has no buffer
  // to count), or LoRA's adapters.
  const int64_t n = m.has_lora() ? m.trainable_weights().master.numel() : m.plan().total;
  // Every level splits the gradient norm's sum of squares by these shards (see global_sum_squares).
  shard_counts_ = model::shard_counts(n, comm_->size());
  for (int r = 0; r < comm_->rank(); ++r) shard_begin_ += shard_counts_[size_t(r)];
  if (comm_->size() == 1) cfg_.shard = Shard::None;  // one rank: nothing to shard
  if (sharded()) {
    const int64_t count = shard_counts_[size_t(comm_->rank())];
    opt_ = std::make_unique<AdamW>(shard_slices(param_slices(m), shard_begin_, shard_begin_ + count), adamw,
                                   m.device(), cfg_.offload);
    // full: the gradient shard is ShardedWeights', accumulated unit by unit during the backward.
    if (cfg_.shard != Shard::Full) shard_grad_ = Buffer(size_t(count) * sizeof(float), m.device());
  } else {
    opt_ = std::make_unique<AdamW>(param_slices(m), adamw, m.device(), cfg_.offload);
  }
  // LoRA's adapter gradients are small and laid out apart: ZeRO-2 keeps them whole.
  if (cfg_.shard >= Shard::Gradients && !m.has_lora()) m.release_grads();
  for (auto [a, b] : backward_buckets(m, cfg_.bucket_bytes)) buckets_.push_back({a, b});
  // Every rank starts from rank 0's weights (a model built without weights: from the same source).
  if (comm_->size() > 1 && !m.weights_released()) broadcast_weights();
  // From here on this rank holds only its shard of the weights.
  if (cfg_.shard == Shard::Full)
    sharded_ = std::make_unique<ShardedWeights>(m, *comm_, shard_counts_, shard_begin_, cfg_.source);
  if (cfg_.offload.enabled && dist::is_root())
    log::info("optimizer offloaded: AdamW runs on the CPU, its moments{} in host memory ({:.2f} GiB), in chunks of {} "
              "elements", m.separate_master() ? " and the fp32 master weights" : "",
              double((m.separate_master() ? 3 : 2) * opt_->n_elements() * 4) / double(1 << 30), cfg_.offload.chunk);
}

void DataParallel::broadcast_weights() {
  const Tensor master = m_.trainable_weights().master;
  // A master copy on the host (offload) goes through the host comm.
  dist::Comm& c = master.device == m_.device() ? *comm_ : dist::host_comm();
  c.broadcast(master.data, master.numel(), dist::Type::F32, 0);
  c.synchronize();
  m_.refresh_compute_weights();
}

DataParallel::~DataParallel() {
  if (armed_) armed_->on_grads_final = nullptr;
}

void DataParallel::arm(model::TrainState& state) {
  // The backward reports offsets of the full layout: nothing to overlap for LoRA's adapters.
  if (comm_->size() == 1 || !comm_->on_device() || !cfg_.overlap || sharded() || m_.has_lora()) return;
  armed_ = &state;
  state.on_grads_final = [this](int64_t begin) { on_grads_ready(begin); };
}

void DataParallel::on_grads_ready(int64_t begin) {
  // Everything at offsets >= begin is final: send each bucket that lies entirely above it.
  size_t upto = next_bucket_;
  while (upto < buckets_.size() && buckets_[upto].begin >= begin) ++upto;
  if (upto == next_bucket_) return;
  comm_->after_compute();
  float* g = m_.grads().flat.f32();
  for (; next_bucket_ < upto; ++next_bucket_) {
    const Range& r = buckets_[next_bucket_];
    comm_->all_reduce(g + r.begin, r.end - r.begin, dist::Type::F32);
  }
}

UpdateResult DataParallel::step(double lr, double max_grad_norm, bool finite_loss) {
  if (armed_) {
    armed_->on_grads_final = nullptr;
    armed_ = nullptr;
  }
  // A non-finite loss on any rank skips the step on every rank.
  const bool finite = comm_->size() == 1
                          ? finite_loss
                          : dist::host_comm().all_reduce_scalar(int64_t(finite_loss), dist::Op::Min) == 1;
  UpdateResult res = sharded() ? step_sharded(lr, max_grad_norm, finite) : step_replicated(lr, max_grad_norm, finite);
  next_bucket_ = 0;
  return res;
}

UpdateResult DataParallel::step_replicated(double lr, double max_grad_norm, bool finite) {
  if (comm_->size() > 1) {
    // The buckets a backward did not send (no overlap, or no micro-batch on this rank), in the
    // same order on every rank.
    if (next_bucket_ < buckets_.size()) on_grads_ready(0);
    comm_->before_compute();
    comm_->synchronize();  // with a watchdog: a dead peer fails this rank instead of hanging it
  }
  // The summed gradients are bitwise the same on every rank, so are the norm and the update.
  if (comm_->size() == 1) return clip_and_step(*opt_, m_, lr, max_grad_norm, finite);
  // The norm as the sharded levels add it, so that every level clips by the same scale.
  const double sq = global_sum_squares(m_.grads().flat);
  UpdateResult res{std::sqrt(sq), !finite || !std::isfinite(sq)};
  if (!res.skipped) optimizer_step(*opt_, m_, float(lr), clip_scale(res.grad_norm, max_grad_norm));
  m_.zero_grads();
  return res;
}

double DataParallel::global_sum_squares(const Tensor& grads) const {
  std::vector<double> parts(size_t(comm_->size()));
  if (sharded()) {
    const double local = grads.numel() > 0 ? ops::sum_squares(grads) : 0.0;
    dist::host_comm().all_gather(&local, parts.data(), std::vector<int64_t>(parts.size(), 1), dist::Type::F64);
  } else {
    // Every rank has the whole reduced buffer: each shard's sum here, as its rank would take it.
    for (size_t r = 0, at = 0; r < parts.size(); at += size_t(shard_counts_[r]), ++r)
      if (shard_counts_[r] > 0) parts[r] = ops::sum_squares(grads.rows(int64_t(at), int64_t(at) + shard_counts_[r]));
  }
  double sq = 0;
  for (double p : parts) sq += p;
  return sq;
}

UpdateResult DataParallel::step_sharded(double lr, double max_grad_norm, bool finite) {
  const int64_t count = shard_counts_[size_t(comm_->rank())];
  Tensor shard(shard_grad_.data(), DType::F32, {count}, m_.device());
  if (sharded_) {
    // full: each unit's backward reduce-scattered its gradients into the shard already.
    shard = sharded_->grad_shard();
  } else {
    comm_->after_compute();
    comm_->reduce_scatter(m_.grads().flat.data, shard.data, shard_counts_, dist::Type::F32);
    comm_->before_compute();
    comm_->synchronize();
    // ZeRO-2: the full buffer is no longer needed; the next backward gets a zeroed one.
    if (cfg_.shard >= Shard::Gradients && !m_.has_lora()) m_.release_grads();
  }
  // The global norm from the shards' sums of squares (rank order: the same sum on every rank).
  const double sq = global_sum_squares(shard);
  UpdateResult res{std::sqrt(sq), !finite || !std::isfinite(sq)};
  if (!res.skipped) {
    const float scale = clip_scale(res.grad_norm, max_grad_norm);
    if (sharded_) {
      opt_->step(sharded_->shard(), shard, float(lr), scale, sharded_->compute_shard());  // the next passes gather it
    } else {
      const model::Transformer::Trainable t = m_.trainable_weights();
      const int64_t a = shard_begin_, b = shard_begin_ + count;
      opt_->step(t.master.rows(a, b), shard, float(lr), scale, t.compute.empty() ? Tensor() : t.compute.rows(a, b));
      gather_shards(t);
    }
  }
  if (sharded_) sharded_->zero_grad_shard();
  else if (!m_.grads_released()) m_.zero_grads();
  return res;
}

DataParallel::HeldBytes DataParallel::held_bytes() const {
  model::Transformer& m = m_;
  HeldBytes h;
  h.weights = int64_t(m.params().flat.nbytes()) + (m.separate_master() ? int64_t(m.master().flat.nbytes()) : 0);
  if (m.has_lora()) h.weights += int64_t(m.trainable_weights().master.nbytes());
  if (sharded_) h.weights += sharded_->bytes();
  h.moments = 2 * opt_->n_elements() * int64_t(sizeof(float));
  h.grads = m.grad_bytes() + int64_t(shard_grad_.size()) + (sharded_ ? sharded_->grad_bytes() : 0);
  return h;
}

void DataParallel::gather_shards(const model::Transformer::Trainable& t) {
  const int64_t a = shard_begin_;
  if (t.master.device == m_.device()) {
    // Every rank's shard of the fp32 weights to every rank, then the compute copy from them on the
    // device (no trip through host memory).
    comm_->after_compute();
    comm_->all_gather(t.master.f32() + a, t.master.data, shard_counts_, dist::Type::F32);
    comm_->before_compute();
    comm_->synchronize();
    m_.refresh_compute_weights();
    return;
  }
  // Offloaded: the step wrote this rank's shard of the compute copy on the device; gather those as
  // bytes there, and the fp32 shards in host memory.
  const size_t es = dtype_size(t.compute.dtype);
  std::vector<int64_t> bytes;
  for (int64_t c : shard_counts_) bytes.push_back(c * int64_t(es));
  comm_->after_compute();
  comm_->all_gather(static_cast<char*>(t.compute.data) + size_t(a) * es, t.compute.data, bytes, dist::Type::U8);
  dist::host_comm().all_gather(t.master.f32() + a, t.master.data, shard_counts_, dist::Type::F32);
  comm_->before_compute();
  comm_->synchronize();
}

int64_t DataParallel::total_elements() const {
  int64_t n = 0;
  for (int64_t c : shard_counts_) n += c;
  return n;
}

model::WeightUnits* DataParallel::weight_units() const { return sharded_.get(); }

int64_t DataParallel::most_passes(int64_t mine) const {
  return sharded_ ? dist::host_comm().all_reduce_scalar(mine, dist::Op::Max) : mine;
}

void DataParallel::load_weights(const std::string& dir) {
  if (sharded_) return sharded_->load(model::checkpoint_weights(dir, m_.config()));
  model::load_weights(dir, m_);
}

void DataParallel::with_whole_weights(const std::function<void()>& f, bool writes) const {
  if (sharded_) sharded_->whole(f, writes);
  else f();
}

int64_t DataParallel::steps_taken() const { return opt_->steps_taken(); }

void DataParallel::save(const std::string& path) const {
  if (!sharded()) {
    if (dist::is_root()) opt_->save(path);
    return;
  }
  // Gather the moment shards on the host (where memory is plentiful) and write them as one AdamW.
  const int64_t n = total_elements();  // (the model's views are empty while its weights are sharded)
  std::vector<float> m(static_cast<size_t>(n)), v(static_cast<size_t>(n));
  opt_->moments_host(m.data() + shard_begin_, v.data() + shard_begin_);
  dist::Comm& host = dist::host_comm();
  host.all_gather(m.data() + shard_begin_, m.data(), shard_counts_, dist::Type::F32);
  host.all_gather(v.data() + shard_begin_, v.data(), shard_counts_, dist::Type::F32);
  if (dist::is_root()) save_adamw_state(path, m.data(), v.data(), n, opt_->steps_taken());
}

void DataParallel::load(const std::string& path, const std::vector<model::FlatMove>& moves) {
  opt_->load(path, total_elements(), sharded() ? shard_begin_ : 0, moves);
}

}  // namespace r1::optim
