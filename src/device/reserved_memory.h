#pragma once
// Device memory at a fixed address whose physical pages can be given back and taken again (CUDA
// virtual memory management): the rollout engine's KV cache pool, which its captured decode steps
// keep pointing at while the memory serves the training step in between. Plain C++ header; builds
// without CUDA fail at construction.
#include <cstddef>
#include <cstdint>

namespace r1::cuda {

class ReservedMemory {
 public:
  // Reserves an address range of at least `bytes` (rounded up to the allocation granularity) on
  // this process's device and backs it with memory.
  explicit ReservedMemory(size_t bytes);
  ~ReservedMemory();
  ReservedMemory(const ReservedMemory&) = delete;
  ReservedMemory& operator=(const ReservedMemory&) = delete;

  void* data() const { return reinterpret_cast<void*>(ptr_); }
  size_t size() const { return size_; }
  bool resident() const { return resident_; }
  // Waits for the stream's work, then frees the physical memory; the address stays reserved.
  void release();
  // Backs the address with new memory (contents undefined); fails naming the size when the device
  // has too little free.
  void acquire();

 private:
  uint64_t ptr_ = 0, handle_ = 0;
  size_t size_ = 0;
  int device_ = 0;
  bool resident_ = false;
};

}  // namespace r1::cuda
