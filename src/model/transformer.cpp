// The Transformer's weights: allocation on a device, initialisation, host interop and copies.
// The forward/backward is in train_state.cpp, generation in cached_forward.cpp.
#include "model/transformer.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/progress.h"
#include "base/rng.h"
#include "kernels/ops.h"
#include "model/random_init.h"
#include "tensor/device_memory.h"

namespace r1::model {

namespace {

constexpr int64_t kChunk = int64_t(1) << 26;         // elements per host-device copy of the weights
constexpr int64_t kProgressMin = int64_t(1) << 30;  // elements from which those copies show progress

// A progress line for a copy of n elements, when n is large enough for one to be worth showing.
std::optional<Progress> copy_progress(const char* what, int64_t n) {
  if (n < kProgressMin) return std::nullopt;
  return std::optional<Progress>(std::in_place, what, (n + kChunk - 1) / kChunk, "chunk");
}

// dst = src (f32) rounded to dst's dtype: on their device when they share one, else (a host master
// copy, device compute weights) a chunk at a time through a host staging buffer.
void round_into(Tensor dst, const Tensor& src) {
  if (dst.device == src.device) return ops::convert(dst, src);
  R1_CHECK(src.device == Device::CPU, "round_into: {} from {}", dst.describe(), src.describe());
  const int64_t n = dst.numel(), chunk = std::min(n, kChunk);
  Buffer staging = Buffer::pinned(size_t(chunk) * dtype_size(dst.dtype));
  std::optional<Progress> bar = copy_progress("rounding the weights to the device", n);
  for (int64_t a = 0; a < n; a += chunk) {
    const int64_t b = std::min(n, a + chunk);
    Tensor part(staging.data(), dst.dtype, {b - a});
    ops::convert(part, src.reshape({n}).rows(a, b));
    copy_tensor(dst.reshape({n}).rows(a, b), part);
    if (bar) bar->update(1);
  }
}

// dst (f32, any device) = host f32, a chunk at a time.
void upload(Tensor dst, const float* host) {
  const int64_t n = dst.numel();
  std::optional<Progress> bar = copy_progress("copying the weights to the device", n);
  for (int64_t a = 0; a < n; a += kChunk) {
    const int64_t b = std::min(n, a + kChunk);
    copy_from_host(dst.reshape({n}).rows(a, b), host + a);
    if (bar) bar->update(1);
  }
}

}  // namespace

Batch pack_sequences(const std::vector<std::vector<int32_t>>& seqs) {
  Batch b;
  b.cu_seqlens.push_back(0);
  for (const auto& s : seqs) {
    R1_CHECK(!s.empty(), "pack_sequences: sequence {} is empty", b.sequences());
    for (size_t i = 0; i < s.size(); ++i) {
      b.ids.push_back(s[i]);
      b.positions.push_back(int32_t(i));
      b.targets.push_back(i + 1 < s.size() ? s[i + 1] : -1);
    }
    b.cu_seqlens.push_back(int32_t(b.ids.size()));
  }
  return b;
}

Transformer::Transformer(ModelConfig cfg, Device device, bool trainable, std::optional<DType> compute_dtype,
                         MasterPlace master, bool allocate)
    : cfg_(std::move(cfg)), plan_(make_plan(cfg_)), device_(device), trainable_(trainable) {
  const int64_t n = plan_.total;
  // CUDA computes in bf16 and keeps fp32 masters for the optimizer (ops.h's dtype contract).
  const DType compute = compute_dtype.value_or(device_ == Device::CPU ? DType::F32 : DType::BF16);
  R1_CHECK(compute == DType::F32 || (compute == DType::BF16 && device_ != Device::CPU),
           "Transformer: compute dtype {} is not available on {}", dtype_name(compute), device_name(device_));
  if (!allocate) {  // sharded from the start: the views' shapes, no memory (see release_weights)
    params_ = bind_params(cfg_, plan_.specs, nullptr, compute, device_);
    params_.flat = Tensor(nullptr, compute, {0}, device_);
    if (trainable_ && compute != DType::F32) {
      master_device_ = master == MasterPlace::Host ? Device::CPU : device_;
      master_ = bind_params(cfg_, plan_.specs, nullptr, DType::F32, master_device_);
      master_.flat = Tensor(nullptr, DType::F32, {0}, master_device_);
    }
    init_rope();
    return;
  }
  weights_ = Buffer(size_t(n) * dtype_size(compute), device_);
  weights_.zero();
  params_ = bind_params(cfg_, plan_.specs, weights_.data(), compute, device_);
  if (trainable_ && compute != DType::F32) {
    const Device where = master == MasterPlace::Host ? Device::CPU : device_;
    master_weights_ = where == Device::CPU ? Buffer::pinned(size_t(n) * sizeof(float))
                                           : Buffer(size_t(n) * sizeof(float), device_);
    master_weights_.zero();
    master_ = bind_params(cfg_, plan_.specs, master_weights_.data(), DType::F32, where);
  }
  if (trainable_) allocate_grads();
  init_rope();
}

void Transformer::init_rope() {
  inv_freq_ = cfg_.rope_inv_freq();
  inv_freq_t_ = Tensor::f32(inv_freq_.data(), {int64_t(inv_freq_.size())});
  if (device_ != Device::CPU) {
    inv_freq_dev_ = Buffer(inv_freq_t_.nbytes(), device_);
    Tensor dev(inv_freq_dev_.data(), DType::F32, {inv_freq_t_.numel()}, device_);
    copy_tensor(dev, inv_freq_t_);
    inv_freq_t_ = dev;
  }
}

void Transformer::place_master(MasterPlace place) {
  if (!separate_master()) return;
  const Device where = place == MasterPlace::Host ? Device::CPU : device_;
  if (master_.flat.device == where) return;
  const size_t bytes = master_weights_.size();
  Buffer moved = where == Device::CPU ? Buffer::pinned(bytes) : Buffer(bytes, where);
  devmem::copy(moved.data(), where, master_weights_.data(), master_.flat.device, bytes);
  master_weights_ = std::move(moved);
  master_ = bind_params(cfg_, plan_.specs, master_weights_.data(), DType::F32, where);
}

float* Transformer::host_weights() {
  if (device_ == Device::CPU && compute_dtype() == DType::F32) return params_.flat.f32();
  if (separate_master() && master_.flat.device == Device::CPU) return master_.flat.f32();
  return nullptr;
}

const float* Transformer::host_weights() const { return const_cast<Transformer*>(this)->host_weights(); }

void Transformer::allocate_grads() {
  gradients_ = Buffer(size_t(plan_.total) * sizeof(float), device_);
  gradients_.zero();
  grads_ = bind_params(cfg_, plan_.specs, gradients_.data(), DType::F32, device_);
}

Params& Transformer::grads() {
  if (grads_released() && !grads_unbound_) allocate_grads();
  return grads_;
}

void Transformer::unbind_grads() {
  R1_CHECK(trainable_ && !has_lora(), "unbind_grads: only a fully trained model's gradients can be sharded");
  gradients_ = Buffer();
  grads_ = bind_params(cfg_, plan_.specs, nullptr, DType::F32, device_);  // the views' shapes, no memory
  grads_.flat = Tensor(nullptr, DType::F32, {0}, device_);
  grads_unbound_ = true;
}

void Transformer::release_grads() {
  if (!trainable_) return;  // LoRA: the adapters' gradients stay
  gradients_ = Buffer();
  grads_ = Params();
}

void Transformer::zero_grads() {
  if (grads_unbound_) return;  // the units' buffers are zeroed as their backwards begin
  if (grads_released()) allocate_grads();  // allocated zeroed
  gradients_.zero();
  adapter_grads_.zero();
}

Transformer::Trainable Transformer::trainable_weights() {
  R1_CHECK(trainable(), "the model was created with trainable = false and has no LoRA adapters");
  if (has_lora())
    return {&adapter_specs_, adapter_master_flat_, grads_.flat,
            adapter_master_flat_.data == adapter_flat_.data ? Tensor() : adapter_flat_};
  return {&plan_.specs, master().flat, grads_.flat, separate_master() ? params_.flat : Tensor()};
}

void Transformer::add_lora(const LoraConfig& lora, uint64_t seed) {
  validate(lora, "add_lora");
  R1_CHECK(!has_lora(), "add_lora: the model already has LoRA adapters");
  R1_CHECK(!cfg_.has_score_head(), "add_lora: LoRA on a sequence classifier is not supported");
  // The base is frozen: no fp32 copy, no gradients.
  trainable_ = false;
  master_weights_ = Buffer();
  gradients_ = Buffer();
  master_ = Params();
  lora_ = lora;
  adapter_specs_ = lora_specs(cfg_, lora_);
  const int64_t n = total_params(adapter_specs_);
  const DType cd = compute_dtype();
  adapter_weights_ = Buffer(size_t(n) * dtype_size(cd), device_);
  adapter_flat_ = Tensor(adapter_weights_.data(), cd, {n}, device_);
  adapter_master_flat_ = adapter_flat_;
  if (cd != DType::F32) {
    adapter_master_ = Buffer(size_t(n) * sizeof(float), device_);
    adapter_master_flat_ = Tensor(adapter_master_.data(), DType::F32, {n}, device_);
  }
  adapter_grads_ = Buffer(size_t(n) * sizeof(float), device_);
  adapter_grads_.zero();
  // The layers' Linear views, in lora_specs' order: A then B for each adapted linear.
  grads_ = Params();
  grads_.layers.resize(params_.layers.size());
  grads_.flat = Tensor(adapter_grads_.data(), DType::F32, {n}, device_);
  size_t i = 0;
  int adapter = 0;
  const std::vector<std::string> modules = lora_.modules();
  auto view = [&](void* base, DType dt, const ParamSpec& s) {
    return Tensor(static_cast<char*>(base) + size_t(s.offset) * dtype_size(dt), dt, {s.shape[0], s.shape[1]},
                  device_);
  };
  for (size_t l = 0; l < params_.layers.size(); ++l) {
    LayerWeights& G = grads_.layers[l];
    visit_layer_linears(params_.layers[l], cfg_, int(l), [&](Linear& W, const std::string& name, int64_t, int64_t) {
      if (std::find(modules.begin(), modules.end(), name.substr(name.rfind('.') + 1)) == modules.end()) return;
      Linear* g = nullptr;
      visit_layer_linears(G, cfg_, int(l), [&](Linear& x, const std::string& m, int64_t, int64_t) {
        if (m == name) g = &x;
      });
      const ParamSpec &a = adapter_specs_[i], &b = adapter_specs_[i + 1];
      i += 2;
      W.lora_a = view(adapter_weights_.data(), cd, a);
      W.lora_b = view(adapter_weights_.data(), cd, b);
      g->lora_a = view(adapter_grads_.data(), DType::F32, a);
      g->lora_b = view(adapter_grads_.data(), DType::F32, b);
      W.adapter = g->adapter = adapter++;
    });
  }
  R1_CHECK(i == adapter_specs_.size(), "add_lora: {} adapter tensors bound of {}", i, adapter_specs_.size());
  // A ~ U(-1/sqrt(IN), 1/sqrt(IN)) (PEFT's kaiming_uniform_(a=sqrt(5))), one stream per tensor; B = 0.
  std::vector<float> host(size_t(n), 0.0f);
  for (size_t k = 0; k < adapter_specs_.size(); k += 2) {
    const ParamSpec& a = adapter_specs_[k];
    const float bound = 1.0f / std::sqrt(float(a.shape[1]));
    Rng rng(seed, k);
    for (int64_t j = 0; j < a.numel(); ++j) host[size_t(a.offset + j)] = bound * (2.0f * rng.uniform() - 1.0f);
  }
  set_adapter(host.data());
}

std::vector<float> Transformer::adapter_host() const {
  R1_CHECK(has_lora(), "adapter_host: the model has no LoRA adapters");
  return to_host_f32(adapter_master_flat_);
}

void Transformer::set_adapter(const float* host_flat) {
  R1_CHECK(has_lora(), "set_adapter: the model has no LoRA adapters");
  if (adapter_master_flat_.data != adapter_flat_.data) copy_from_host(adapter_master_flat_, host_flat);
  copy_from_host_f32(adapter_flat_, host_flat);
}

void Transformer::init_random(uint64_t seed, float std) {
  if (float* w = host_weights()) {  // drawn in place: no second copy
    draw_init_weights(plan_.specs, seed, std, w);
    refresh_compute_weights();
    return;
  }
  std::vector<float> host(size_t(plan_.total), 0.0f);
  draw_init_weights(plan_.specs, seed, std, host.data());
  set_weights(host.data());
}

std::vector<float> Transformer::weights_host() const {
  check_weights_held("weights_host");
  R1_CHECK(!master_released(), "weights_host: the fp32 master copy is sharded (parallel.shard: full) and was not "
           "gathered with the compute weights");
  return to_host_f32(separate_master() ? master_.flat : params_.flat);
}

void Transformer::check_weights_held(const char* what) const {
  R1_CHECK(!weights_released(), "{}: this rank holds only a shard of the weights (parallel.shard: full); gather "
           "them first (optim::DataParallel::with_whole_weights)", what);
}

void Transformer::release_weights() {
  R1_CHECK(!has_lora(), "release_weights: a LoRA model's frozen base is not sharded");
  const DType cd = compute_dtype();
  if (separate_master()) master_device_ = master_.flat.device;  // restored where it was (offload: the host)
  weights_ = Buffer();
  // The views keep their shapes and point at nothing until a unit of weights is bound to them.
  visit_params(params_, cfg_, [](Tensor& t, const std::string&, ParamShape) { t.data = nullptr; });
  if (!params_.lm_head.empty()) params_.lm_head.data = nullptr;
  params_.flat = Tensor(nullptr, cd, {0}, device_);  // still says the compute dtype
  if (cd != DType::F32 && trainable_) {
    master_weights_ = Buffer();
    master_ = bind_params(cfg_, plan_.specs, nullptr, DType::F32, master_device_);
    master_.flat = Tensor(nullptr, DType::F32, {0}, master_device_);
  }
}

void Transformer::restore_weights(bool master) {
  if (!weights_released()) return;
  const DType cd = compute_dtype();
  weights_ = Buffer(size_t(plan_.total) * dtype_size(cd), device_);
  weights_.zero();
  params_ = bind_params(cfg_, plan_.specs, weights_.data(), cd, device_);
  if (master && cd != DType::F32 && trainable_) {
    const size_t bytes = size_t(plan_.total) * sizeof(float);
    master_weights_ = master_device_ == Device::CPU ? Buffer::pinned(bytes) : Buffer(bytes, device_);
    master_weights_.zero();
    master_ = bind_params(cfg_, plan_.specs, master_weights_.data(), DType::F32, master_device_);
  }
}

void Transformer::set_weights(const float* host_flat) {
  check_weights_held("set_weights");
  R1_CHECK(!master_released(), "set_weights: the fp32 master copy is sharded (parallel.shard: full) and was not "
           "gathered with the compute weights");
  if (!separate_master()) return copy_from_host_f32(params_.flat, host_flat);
  if (master_.flat.data != host_flat) upload(master_.flat, host_flat);
  refresh_compute_weights();
}

void Transformer::refresh_compute_weights() {
  if (has_lora()) {
    if (adapter_master_flat_.data != adapter_flat_.data) round_into(adapter_flat_, adapter_master_flat_);
    return;
  }
  if (separate_master()) round_into(params_.flat, master_.flat);
}

void copy_weights(Transformer& dst, const Transformer& src) {
  R1_CHECK(dst.params().flat.numel() == src.params().flat.numel() && dst.specs().size() == src.specs().size(),
           "copy_weights: the models differ in architecture ({} and {} parameters)", dst.params().flat.numel(),
           src.params().flat.numel());
  const bool same_layout = dst.device() == src.device() && dst.compute_dtype() == src.compute_dtype();
  // Device to device where the source has everything the destination needs.
  if (same_layout && (!dst.separate_master() || src.separate_master())) {
    copy_tensor(dst.params().flat, src.params().flat);
    if (dst.separate_master()) copy_tensor(dst.master().flat, src.master().flat);
    return;
  }
  std::vector<float> host = src.weights_host();
  dst.set_weights(host.data());
}

Transformer classifier_from(const Transformer& lm, const ModelConfig& cfg, uint64_t seed, Device device, float std) {
  R1_CHECK(cfg.has_score_head(), "classifier_from: the config has no score head (num_labels = 0)");
  Transformer m(cfg, device);
  const std::vector<float> src = lm.weights_host();
  std::vector<float> host(size_t(m.params().flat.numel()), 0.0f);
  for (size_t i = 0; i < m.specs().size(); ++i) {
    const ParamSpec& s = m.specs()[i];
    float* dst = host.data() + s.offset;
    if (s.name == "score.weight") {
      Rng rng(seed, i);
      for (int64_t j = 0; j < s.numel(); ++j) dst[j] = std * rng.normal();
      continue;
    }
    auto from =
        std::find_if(lm.specs().begin(), lm.specs().end(), [&](const ParamSpec& x) { return x.name == s.name; });
    R1_CHECK(from != lm.specs().end() && from->shape == s.shape,
             "classifier_from: the backbone has no tensor '{}' of the classifier's shape", s.name);
    std::copy(src.begin() + from->offset, src.begin() + from->offset + s.numel(), dst);
  }
  m.set_weights(host.data());
  return m;
}

}  // namespace r1::model
