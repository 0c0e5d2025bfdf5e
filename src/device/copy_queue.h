#pragma once
// A queue of memory copies on a CUDA stream of its own, so transfers between host and device
// overlap the host's work and the compute stream's (the offloaded optimizer: gradients go down and
// weights come up while the CPU updates another chunk). Plain C++.
//
// A host queue (on_device = false: the CPU backend, or a build without CUDA) copies at once, in
// order, so code written for the device queue runs unchanged on any machine and its tests need no
// GPU.
#include <cstddef>
#include <memory>

namespace r1::cuda {

class CopyQueue {
 public:
  // `events`: how many markers (record/wait slots) the caller uses, e.g. 2 for double buffering.
  CopyQueue(bool on_device, int events);
  ~CopyQueue();
  CopyQueue(const CopyQueue&) = delete;
  CopyQueue& operator=(const CopyQueue&) = delete;

  bool on_device() const { return impl_ != nullptr; }
  // Copies queued after this call start only once the work queued on the compute stream so far
  // (device/cuda_stream.h) is done, e.g. the backward that wrote the gradients.
  void after_compute();
  // Queues a copy of `bytes` between host and device memory, either way (host memory should be
  // pinned for the copy to be asynchronous: tensor/device_memory.h's alloc_pinned).
  void copy(void* dst, const void* src, size_t bytes);
  // Marker `slot` (0 <= slot < events) now stands for the copies queued so far; wait(slot) returns
  // once they are done (at once for a slot never recorded).
  void record(int slot);
  void wait(int slot);
  // Returns once every queued copy is done.
  void synchronize();

 private:
  void check_slot(int slot) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int events_ = 0;
};

}  // namespace r1::cuda
