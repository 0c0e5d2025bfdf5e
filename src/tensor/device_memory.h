#pragma once
// Memory on a Device: the few hooks Buffer and Arena need (allocate, free, zero, copy), and copies
// of tensors between host and device. CUDA memory uses the CUDA runtime on the backend's stream
// (device/cuda_stream.h) in builds with R1_HAVE_CUDA; elsewhere every CUDA request fails with
// a clear error. Plain C++: callers need no CUDA headers.
//
// Ordering: zeroing and device-to-device copies are queued on the backend's stream, after the ops
// already queued there. A copy that reads or writes host memory returns only when it is done, so
// the host data may be reused (and read) at once.
#include <cstddef>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace r1 {

const char* device_name(Device d);  // "cpu" | "cuda"
// "cpu" or "cuda"; anything else is an error naming `what` (a recipe key, a flag).
Device parse_device(const std::string& s, const std::string& what);
// Whether memory and ops on `d` can be used in this process. When not, `why` says so ("this build
// has no CUDA backend" or the runtime's reason, e.g. no GPU).
bool device_usable(Device d, std::string* why = nullptr);
// Throws r1::Error naming `what` when `d` is not usable (start-up check of a trainer or command).
void require_device(Device d, const std::string& what);

namespace devmem {
void* alloc(Device d, size_t bytes);  // 64-byte aligned at least; never null for bytes > 0
void release(Device d, void* p) noexcept;
void zero(Device d, void* p, size_t bytes);
void copy(void* dst, Device dst_dev, const void* src, Device src_dev, size_t bytes);
// Within one device: `height` runs of `width` bytes, run i from src + i * pitch to dst + i * pitch
// (one call on CUDA: a block of every layer of a layer-major cache).
void copy_strided(void* dst, const void* src, Device d, size_t width, size_t height, size_t pitch);
}  // namespace devmem

// dst = src: same dtype and numel, any devices.
void copy_tensor(Tensor dst, const Tensor& src);
// Fills dst (any device) from `bytes` of host memory laid out as dst.
void copy_from_host(Tensor dst, const void* host);
// Fills dst (f32 or bf16, any device) from host floats, rounding to bf16 on the host if needed.
void copy_from_host_f32(Tensor dst, const float* host);
// A copy of host ints in a new tensor (i32, on the arena's device).
Tensor upload_i32(Arena& a, const std::vector<int32_t>& host);
// The values of t (f32 or bf16, any device) as host floats.
std::vector<float> to_host_f32(const Tensor& t);

}  // namespace r1
