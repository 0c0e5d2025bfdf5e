#include "kernels/cuda/cuda_buffer.h"

#include "base/error.h"
#include "kernels/cuda/cublas_check.h"
#include "kernels/cuda/cuda_context.h"

namespace r1::cuda {

CudaBuffer::CudaBuffer(size_t bytes) { reserve(bytes); }

CudaBuffer::~CudaBuffer() { release(); }

CudaBuffer::CudaBuffer(CudaBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

CudaBuffer& CudaBuffer::operator=(CudaBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void CudaBuffer::release() noexcept {
  // A destructor must not throw; cudaFree only fails when the context is already broken.
  if (data_) cudaFree(data_);
  data_ = nullptr;
  size_ = 0;
}

void CudaBuffer::reserve(size_t bytes) {
  if (bytes <= size_) return;
  release();
  if (bytes == 0) return;
  context();  // fails with a clear message when there is no device
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail("CudaBuffer: cudaMalloc of {} bytes failed: {}", bytes, cudaGetErrorString(err));
  }
  data_ = p;
  size_ = bytes;
}

Tensor CudaBuffer::tensor(DType t, std::initializer_list<int64_t> dims) const {
  Tensor v(data_, t, dims, Device::CUDA);
  R1_CHECK(v.nbytes() <= size_, "CudaBuffer of {} bytes cannot hold {}", size_, v.describe());
  return v;
}

Tensor to_device(const Tensor& host, CudaBuffer& buf) {
  R1_CHECK(host.device == Device::CPU, "to_device: {} is not a CPU tensor", host.describe());
  buf.reserve(host.nbytes());
  Tensor dev = host;
  dev.data = buf.data();
  dev.device = Device::CUDA;
  if (host.nbytes() > 0) {
    R1_CHECK(host.data != nullptr, "to_device: {} has no data", host.describe());
    Context& ctx = context();
    CUDA_CHECK(cudaMemcpyAsync(dev.data, host.data, host.nbytes(), cudaMemcpyHostToDevice, ctx.stream));
    // Pageable host memory: wait, so the caller may free or change host right away.
    CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  }
  return dev;
}

void to_host(const Tensor& dev, Tensor host) {
  R1_CHECK(dev.device == Device::CUDA, "to_host: {} is not a CUDA tensor", dev.describe());
  R1_CHECK(host.device == Device::CPU, "to_host: {} is not a CPU tensor", host.describe());
  R1_CHECK(dev.dtype == host.dtype && dev.numel() == host.numel(), "to_host: {} does not match {}",
           dev.describe(), host.describe());
  if (dev.nbytes() == 0) return;
  Context& ctx = context();
  CUDA_CHECK(cudaMemcpyAsync(host.data, dev.data, dev.nbytes(), cudaMemcpyDeviceToHost, ctx.stream));
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

std::vector<float> to_host_f32(const Tensor& dev) {
  std::vector<float> v(static_cast<size_t>(dev.numel()));
  to_host(dev, Tensor(v.data(), DType::F32, {dev.numel()}));
  return v;
}

}  // namespace r1::cuda
