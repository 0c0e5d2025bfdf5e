#pragma once
// Device memory: an owning CudaBuffer (plain cudaMalloc, never managed memory) and copies between
// host tensors and CUDA tensors. Plain C++ interface, so tests and callers need no CUDA headers.
#include <cstddef>
#include <initializer_list>
#include <vector>

#include "tensor/tensor.h"

namespace r1::cuda {

class CudaBuffer {
 public:
  CudaBuffer() = default;
  explicit CudaBuffer(size_t bytes);
  ~CudaBuffer();
  CudaBuffer(CudaBuffer&& o) noexcept;
  CudaBuffer& operator=(CudaBuffer&& o) noexcept;
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  void* data() const { return data_; }
  size_t size() const { return size_; }
  // Makes room for at least `bytes`, dropping the old contents when it has to reallocate.
  void reserve(size_t bytes);
  // A Device::CUDA view of the buffer's start with the given shape (must fit).
  Tensor tensor(DType t, std::initializer_list<int64_t> dims) const;

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Copies host (a CPU tensor) into buf, growing it as needed; returns the CUDA view of the copy with
// host's dtype and shape.
Tensor to_device(const Tensor& host, CudaBuffer& buf);
// Copies dev (a CUDA tensor) into host (a CPU tensor of the same dtype and numel) and waits for it.
void to_host(const Tensor& dev, Tensor host);
// Convenience: a CUDA f32 tensor read back into a vector.
std::vector<float> to_host_f32(const Tensor& dev);

}  // namespace r1::cuda
