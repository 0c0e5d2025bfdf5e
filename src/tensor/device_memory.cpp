#include "tensor/device_memory.h"

#include <cstdlib>
#include <cstring>

#include "base/bf16.h"
#include "base/error.h"
#include "device/cuda_device.h"

#ifdef R1_HAVE_CUDA
#include "device/cuda_check.h"
#include "device/cuda_stream.h"
#endif

namespace r1 {

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

Device parse_device(const std::string& s, const std::string& what) {
  if (s == "cpu") return Device::CPU;
  if (s == "cuda") return Device::CUDA;
  fail("{}: unknown device '{}' (valid: cpu, cuda)", what, s);
}

bool device_usable(Device d, std::string* why) {
  if (d == Device::CPU) return true;
  if (cuda::cuda_available()) return true;
  if (why) *why = cuda::cuda_device_description();
  return false;
}

void require_device(Device d, const std::string& what) {
  std::string why;
  if (!device_usable(d, &why)) fail("{}: device {} was requested but cannot be used: {}", what, device_name(d), why);
}

namespace devmem {

#ifdef R1_HAVE_CUDA
namespace {
cudaMemcpyKind kind(Device dst, Device src) {
  if (dst == Device::CUDA) return src == Device::CUDA ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
  return src == Device::CUDA ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost;
}
}  // namespace
#else
namespace {
[[noreturn]] void no_cuda(const char* what) {
  fail("{}: CUDA memory was requested, but this build has no CUDA backend", what);
}
}  // namespace
#endif

void* alloc(Device d, size_t bytes) {
  if (bytes == 0) return nullptr;
  if (d == Device::CPU) {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    R1_CHECK(p != nullptr, "out of memory allocating {} bytes", bytes);
    return p;
  }
#ifdef R1_HAVE_CUDA
  cuda::stream();  // fails with the reason when no device is usable
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail("out of GPU memory allocating {:.2f} GiB: {}", double(bytes) / double(1 << 30), cudaGetErrorString(err));
  }
  return p;
#else
  no_cuda("alloc");
#endif
}

void release(Device d, void* p) noexcept {
  if (!p) return;
  if (d == Device::CPU) {
    std::free(p);
    return;
  }
#ifdef R1_HAVE_CUDA
  cudaFree(p);  // waits for queued work using p; fails only when the context is already broken
#endif
}

void zero(Device d, void* p, size_t bytes) {
  if (!p || bytes == 0) return;
  if (d == Device::CPU) {
    std::memset(p, 0, bytes);
    return;
  }
#ifdef R1_HAVE_CUDA
  CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda::stream()));
#else
  no_cuda("zero");
#endif
}

void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes) {
  if (bytes == 0) return;
  if (dst_dev == Device::CPU && src_dev == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef R1_HAVE_CUDA
  cudaStream_t s = cuda::stream();
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind(dst_dev, src_dev), s));
  // Host memory is involved: finish now, so the caller may reuse or read it.
  if (dst_dev == Device::CPU || src_dev == Device::CPU) CUDA_CHECK(cudaStreamSynchronize(s));
#else
  no_cuda("copy");
#endif
}

void copy_strided(void* dst, const void* src, Device d, size_t width, size_t height, size_t pitch) {
  if (width == 0 || height == 0) return;
  if (d == Device::CPU) {
    for (size_t i = 0; i < height; ++i)
      std::memcpy(static_cast<char*>(dst) + i * pitch, static_cast<const char*>(src) + i * pitch, width);
    return;
  }
#ifdef R1_HAVE_CUDA
  CUDA_CHECK(
      cudaMemcpy2DAsync(dst, pitch, src, pitch, width, height, cudaMemcpyDeviceToDevice, cuda::stream()));
#else
  no_cuda("copy_strided");
#endif
}

}  // namespace devmem

void copy_tensor(Tensor dst, const Tensor& src) {
  R1_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel(), "copy_tensor: {} does not match {}",
           dst.describe(), src.describe());
  devmem::copy(dst.data, dst.device, src.data, src.device, src.nbytes());
}

void copy_from_host(Tensor dst, const void* host) { devmem::copy(dst.data, dst.device, host, Device::CPU, dst.nbytes()); }

void copy_from_host_f32(Tensor dst, const float* host) {
  if (dst.dtype == DType::F32) return copy_from_host(dst, host);
  R1_CHECK(dst.dtype == DType::BF16, "copy_from_host_f32: {} must be f32 or bf16", dst.describe());
  std::vector<uint16_t> b(size_t(dst.numel()));
  for (size_t i = 0; i < b.size(); ++i) b[i] = f32_to_bf16(host[i]);
  copy_from_host(dst, b.data());
}

Tensor upload_i32(Arena& a, const std::vector<int32_t>& host) {
  Tensor t = a.alloc_i32({int64_t(host.size())});
  copy_from_host(t, host.data());
  return t;
}

std::vector<float> to_host_f32(const Tensor& t) {
  std::vector<float> out(size_t(t.numel()));
  if (t.dtype == DType::F32) {
    devmem::copy(out.data(), Device::CPU, t.data, t.device, t.nbytes());
    return out;
  }
  R1_CHECK(t.dtype == DType::BF16, "to_host_f32: {} must be f32 or bf16", t.describe());
  std::vector<uint16_t> b(out.size());
  devmem::copy(b.data(), Device::CPU, t.data, t.device, t.nbytes());
  for (size_t i = 0; i < b.size(); ++i) out[i] = bf16_to_f32(b[i]);
  return out;
}

}  // namespace r1
