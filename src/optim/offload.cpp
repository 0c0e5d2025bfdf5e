#include "optim/offload.h"

#include <algorithm>

#include "base/error.h"

namespace r1::optim {

OffloadStream::OffloadStream(int64_t chunk) : chunk_(chunk) {
  R1_CHECK(chunk_ >= 64, "optimizer offload: chunk of {} elements (at least 64)", chunk_);
}

void OffloadStream::prepare(const Tensor& grads, const Tensor& compute) {
  const bool down_dev = grads.device != Device::CPU;
  const bool up_dev = !compute.empty() && compute.device != Device::CPU;
  if (!down_ || down_->on_device() != down_dev) down_ = std::make_unique<cuda::CopyQueue>(down_dev, 2);
  if (!up_ || up_->on_device() != up_dev) up_ = std::make_unique<cuda::CopyQueue>(up_dev, 2);
  const size_t gbytes = size_t(chunk_) * sizeof(float);
  for (Buffer& b : grads_)
    if (b.size() != gbytes) b = Buffer::pinned(gbytes);
  if (compute.empty()) return;
  const size_t cbytes = size_t(chunk_) * dtype_size(compute.dtype);
  for (Buffer& b : compute_)
    if (b.size() != cbytes || compute_dtype_ != compute.dtype) b = Buffer::pinned(cbytes);
  compute_dtype_ = compute.dtype;
}

void OffloadStream::run(const Tensor& grads, Tensor compute, const Update& update) {
  R1_CHECK(grads.dtype == DType::F32, "optimizer offload: gradients {} must be f32", grads.describe());
  R1_CHECK(compute.empty() || compute.numel() == grads.numel(),
           "optimizer offload: compute copy {} does not match gradients {}", compute.describe(), grads.describe());
  const int64_t n = grads.numel();
  chunks_run_ = 0;
  if (n == 0) return;
  prepare(grads, compute);
  const int64_t chunks = (n + chunk_ - 1) / chunk_;
  const size_t cs = compute.empty() ? 0 : dtype_size(compute.dtype);
  auto begin_of = [&](int64_t c) { return c * chunk_; };
  auto size_of = [&](int64_t c) { return std::min(chunk_, n - c * chunk_); };
  auto fetch = [&](int64_t c) {  // chunk c of the gradients into staging buffer c % 2
    down_->copy(grads_[c % 2].data(), static_cast<const float*>(grads.data) + begin_of(c),
                size_t(size_of(c)) * sizeof(float));
    down_->record(int(c % 2));
  };
  down_->after_compute();  // the backward that wrote the gradients comes first
  fetch(0);
  for (int64_t c = 0; c < chunks; ++c) {
    const int k = int(c % 2);
    if (c + 1 < chunks) fetch(c + 1);  // its buffer held chunk c - 1, updated already
    down_->wait(k);
    up_->wait(k);  // the upload of chunk c - 2 out of this compute buffer is done
    const int64_t m = size_of(c);
    const Tensor g(grads_[k].data(), DType::F32, {m});
    const Tensor out = compute.empty() ? Tensor() : Tensor(compute_[k].data(), compute.dtype, {m});
    update(begin_of(c), g, out);
    if (!compute.empty()) {
      up_->copy(static_cast<char*>(compute.data) + size_t(begin_of(c)) * cs, out.data, size_t(m) * cs);
      up_->record(k);
    }
  }
  up_->synchronize();
  down_->synchronize();
  chunks_run_ = chunks;
}

}  // namespace r1::optim
