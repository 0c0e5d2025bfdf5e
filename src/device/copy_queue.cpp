#include "device/copy_queue.h"

#include <cstring>
#include <vector>

#include "base/error.h"

#ifdef R1_HAVE_CUDA
#include "device/cuda_check.h"
#include "device/cuda_stream.h"
#endif

namespace r1::cuda {

void CopyQueue::check_slot(int slot) const {
  R1_CHECK(slot >= 0 && slot < events_, "CopyQueue: event {} of {}", slot, events_);
}

#ifdef R1_HAVE_CUDA
struct CopyQueue::Impl {
  cudaStream_t stream = nullptr;
  std::vector<cudaEvent_t> events;
  cudaEvent_t compute_done = nullptr;
};

CopyQueue::CopyQueue(bool on_device, int events) : events_(events) {
  R1_CHECK(events >= 1, "CopyQueue: {} events (at least 1)", events);
  if (!on_device) return;
  stream();  // the device this process uses, selected first
  impl_ = std::make_unique<Impl>();
  // Non-blocking: the copies must not wait for the legacy default stream (nor it for them).
  CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  impl_->events.resize(size_t(events));
  for (cudaEvent_t& e : impl_->events) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  CUDA_CHECK(cudaEventCreateWithFlags(&impl_->compute_done, cudaEventDisableTiming));
}

CopyQueue::~CopyQueue() {
  if (!impl_) return;
  cudaStreamSynchronize(impl_->stream);  // nothing may still read or write the caller's buffers
  for (cudaEvent_t e : impl_->events) cudaEventDestroy(e);
  cudaEventDestroy(impl_->compute_done);
  cudaStreamDestroy(impl_->stream);
}

void CopyQueue::after_compute() {
  if (!impl_) return;
  CUDA_CHECK(cudaEventRecord(impl_->compute_done, stream()));
  CUDA_CHECK(cudaStreamWaitEvent(impl_->stream, impl_->compute_done, 0));
}

void CopyQueue::copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (!impl_) {
    std::memcpy(dst, src, bytes);
    return;
  }
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, impl_->stream));
}

void CopyQueue::record(int slot) {
  check_slot(slot);
  if (!impl_) return;
  CUDA_CHECK(cudaEventRecord(impl_->events[size_t(slot)], impl_->stream));
}

void CopyQueue::wait(int slot) {
  check_slot(slot);
  if (!impl_) return;
  CUDA_CHECK(cudaEventSynchronize(impl_->events[size_t(slot)]));
}

void CopyQueue::synchronize() {
  if (impl_) CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

#else  // no CUDA backend: only host queues

struct CopyQueue::Impl {};

CopyQueue::CopyQueue(bool on_device, int events) : events_(events) {
  R1_CHECK(events >= 1, "CopyQueue: {} events (at least 1)", events);
  R1_CHECK(!on_device, "CopyQueue: a device queue was requested, but this build has no CUDA backend");
}
CopyQueue::~CopyQueue() = default;
void CopyQueue::after_compute() {}
void CopyQueue::copy(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}
void CopyQueue::record(int slot) { check_slot(slot); }
void CopyQueue::wait(int slot) { check_slot(slot); }
void CopyQueue::synchronize() {}

#endif

}  // namespace r1::cuda
