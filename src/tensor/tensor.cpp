#include "tensor/tensor.h"

#include <algorithm>

#include "base/error.h"
#include "tensor/device_memory.h"

namespace r1 {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
  }
  return "?";
}

Tensor::Tensor(void* p, DType t, std::initializer_list<int64_t> dims, Device d)
    : data(p), dtype(t), device(d), ndim(int(dims.size())) {
  R1_CHECK(dims.size() <= kMaxDims, "tensor rank {} exceeds {}", dims.size(), kMaxDims);
  int i = 0;
  for (int64_t s : dims) {
    R1_CHECK(s >= 0, "negative tensor dimension {}", s);
    shape[i++] = s;
  }
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

float* Tensor::f32() const {
  R1_CHECK(dtype == DType::F32, "expected an f32 tensor, got {}", describe());
  return static_cast<float*>(data);
}

int32_t* Tensor::i32() const {
  R1_CHECK(dtype == DType::I32, "expected an i32 tensor, got {}", describe());
  return static_cast<int32_t*>(data);
}

std::string Tensor::describe() const {
  std::string s = "(";
  for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ") " + dtype_name(dtype) + (device == Device::CUDA ? " cuda" : "");
}

Tensor Tensor::reshape(std::initializer_list<int64_t> dims) const {
  Tensor t(data, dtype, dims, device);
  R1_CHECK(t.numel() == numel(), "cannot reshape {} to {}", describe(), t.describe());
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  R1_CHECK(ndim >= 1 && 0 <= begin && begin <= end && end <= shape[0], "rows [{}, {}) out of range for {}",
           begin, end, describe());
  Tensor t = *this;
  int64_t row = numel() / (shape[0] ? shape[0] : 1);
  t.data = static_cast<char*>(data) + size_t(begin * row) * dtype_size(dtype);
  t.shape[0] = end - begin;
  return t;
}

Buffer::Buffer(size_t bytes, Device device)
    : data_(devmem::alloc(device, bytes)), size_(bytes), device_(device) {}

Buffer Buffer::pinned(size_t bytes) {
  Buffer b;
  b.data_ = devmem::alloc_pinned(bytes);
  b.size_ = bytes;
  b.pinned_ = true;
  return b;
}

void Buffer::release() noexcept {
  if (pinned_) devmem::release_pinned(data_, size_);
  else devmem::release(device_, data_, size_);
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept : data_(o.data_), size_(o.size_), device_(o.device_), pinned_(o.pinned_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    device_ = o.device_;
    pinned_ = o.pinned_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void Buffer::zero() { devmem::zero(device_, data_, size_); }

Arena::Arena(size_t bytes, Device device) : device_(device) {
  if (bytes) blocks_.emplace_back(bytes, device_);
}

Tensor Arena::alloc(DType t, std::initializer_list<int64_t> dims) {
  Tensor view(nullptr, t, dims, device_);
  size_t bytes = (view.nbytes() + 63) / 64 * 64;
  // Move on through the blocks already open (after a rewind), then open one at the end.
  while (!blocks_.empty() && block_used_ + bytes > blocks_[cur_].size() && cur_ + 1 < blocks_.size()) {
    ++cur_;
    block_used_ = 0;
  }
  if (blocks_.empty() || block_used_ + bytes > blocks_[cur_].size()) {
    size_t grow = blocks_.empty() ? 0 : blocks_.back().size();
    blocks_.emplace_back(std::max(bytes, std::max(grow, size_t(1) << 20)), device_);
    cur_ = blocks_.size() - 1;
    block_used_ = 0;
  }
  view.data = static_cast<char*>(blocks_[cur_].data()) + block_used_;
  block_used_ += bytes;
  used_ += bytes;
  peak_ = std::max(peak_, used_);
  return view;
}

void Arena::rewind(const Mark& m) {
  R1_CHECK(m.used <= used_ && (blocks_.empty() ? m.block == 0 : m.block < blocks_.size()),
           "Arena::rewind: the mark is not from this arena's current allocations");
  cur_ = m.block;
  block_used_ = m.block_used;
  used_ = m.used;
}

Tensor Arena::zeros(DType dt, std::initializer_list<int64_t> dims) {
  Tensor t = alloc(dt, dims);
  devmem::zero(device_, t.data, t.nbytes());
  return t;
}

size_t Arena::reserved() const {
  size_t n = 0;
  for (const Buffer& b : blocks_) n += b.size();
  return n;
}

void Arena::reset() {
  if (blocks_.size() > 1) {
    blocks_.clear();
    blocks_.emplace_back(peak_, device_);
  }
  cur_ = 0;
  block_used_ = 0;
  used_ = 0;
}

}  // namespace r1
