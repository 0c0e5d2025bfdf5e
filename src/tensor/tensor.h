#pragma once
// Tensor: a non-owning view (pointer, dtype, shape, device). Memory is owned by a Buffer or Arena.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace r1 {

enum class DType : uint8_t { F32, BF16, F16, I32 };
enum class Device : uint8_t { CPU, CUDA };

size_t dtype_size(DType t);
const char* dtype_name(DType t);

struct Tensor {
  static constexpr int kMaxDims = 4;
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};

  Tensor() = default;
  Tensor(void* p, DType t, std::initializer_list<int64_t> dims, Device d = Device::CPU);
  static Tensor f32(float* p, std::initializer_list<int64_t> dims) { return {p, DType::F32, dims}; }
  static Tensor i32(int32_t* p, std::initializer_list<int64_t> dims) { return {p, DType::I32, dims}; }

  bool empty() const { return data == nullptr; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  // size(-1) is the last dimension.
  int64_t size(int d) const { return shape[d < 0 ? ndim + d : d]; }
  float* f32() const;
  int32_t* i32() const;
  // "(T=12, C=64) f32" style, for error messages.
  std::string describe() const;
  // The same memory seen with another shape of equal numel.
  Tensor reshape(std::initializer_list<int64_t> dims) const;
  // Rows [begin, end) along dimension 0.
  Tensor rows(int64_t begin, int64_t end) const;
};

// Owning memory on a device: 64-byte aligned host memory (CPU) or cudaMalloc'd GPU memory (CUDA,
// see tensor/device_memory.h). zero() on CUDA is queued on the backend's stream.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes, Device device = Device::CPU);
  // Host memory (Device::CPU) that is page-locked when a GPU is usable, so copies to and from the
  // device run asynchronously at full bus speed (devmem::alloc_pinned); plain host memory otherwise.
  static Buffer pinned(size_t bytes);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* data() const { return data_; }
  size_t size() const { return size_; }
  Device device() const { return device_; }
  void zero();

 private:
  void release() noexcept;
  void* data_ = nullptr;
  size_t size_ = 0;
  Device device_ = Device::CPU;
  bool pinned_ = false;
};

// A bump allocator for activations and scratch of one step, released all at once by reset(), or
// back to a mark (the temporaries of one layer). It never runs out: an overflow moves on to the next
// block, opening one if there is none, and the next reset() merges all blocks into one of the peak
// size, so a steady-state step allocates nothing (and can be captured in a CUDA graph). Its
// tensors live on its device.
class Arena {
 public:
  explicit Arena(size_t bytes = 0, Device device = Device::CPU);
  Tensor alloc(DType t, std::initializer_list<int64_t> dims);
  Tensor alloc_f32(std::initializer_list<int64_t> dims) { return alloc(DType::F32, dims); }
  Tensor alloc_i32(std::initializer_list<int64_t> dims) { return alloc(DType::I32, dims); }
  // Same as alloc, filled with zeros.
  Tensor zeros(DType t, std::initializer_list<int64_t> dims);
  Tensor zeros_f32(std::initializer_list<int64_t> dims) { return zeros(DType::F32, dims); }
  void reset();
  // Where the next allocation goes. rewind(mark) releases everything allocated since the mark
  // (blocks opened meanwhile stay, for the next allocations), so a loop over layers can reuse one
  // layer's temporaries for the next: the same allocations then get the same addresses.
  struct Mark {
    size_t block = 0, block_used = 0, used = 0;
  };
  Mark mark() const { return {cur_, block_used_, used_}; }
  void rewind(const Mark& m);
  size_t used() const { return used_; }
  size_t peak() const { return peak_; }
  // Bytes of the blocks it holds.
  size_t reserved() const;
  Device device() const { return device_; }

 private:
  Device device_ = Device::CPU;
  std::vector<Buffer> blocks_;
  size_t cur_ = 0;         // the block being filled
  size_t block_used_ = 0;  // bytes used in blocks_[cur_]
  size_t used_ = 0, peak_ = 0;
};

}  // namespace r1
