#pragma once
// The data movement of an offloaded optimizer step (AdamW with OffloadConfig::enabled): the
// gradients come down from their device a chunk at a time into pinned staging buffers, the CPU
// updates that chunk of the fp32 master weights and moments (host memory), and the chunk's updated
// compute copy (bf16) goes back up. Two staging buffers each way: while the CPU updates chunk c,
// chunk c+1 travels down and chunk c-1 up, each on a copy stream of its own
// (device/copy_queue.h). With everything in host memory (the CPU backend) the same chunks and
// buffers are used, the copies being plain memory copies, so the path is tested on any machine.
#include <cstdint>
#include <functional>
#include <memory>

#include "device/copy_queue.h"
#include "tensor/tensor.h"

namespace r1::optim {

class OffloadStream {
 public:
  explicit OffloadStream(int64_t chunk);
  // update(begin, grads, compute) for each chunk [begin, begin + grads.numel()) of the n elements of
  // `grads` (n, f32, any device) in order: grads is the chunk's host copy, compute (empty when
  // `compute` is) a host buffer of compute's dtype whose contents are copied to compute's chunk
  // afterwards. Returns when every copy is done.
  using Update = std::function<void(int64_t begin, const Tensor& grads, Tensor compute)>;
  void run(const Tensor& grads, Tensor compute, const Update& update);
  int64_t chunk() const { return chunk_; }
  // How many chunks the last run() moved (tests: the chunking really happened).
  int64_t chunks_run() const { return chunks_run_; }

 private:
  // Staging buffers and copy queues for these operands (kept from one run to the next).
  void prepare(const Tensor& grads, const Tensor& compute);

  int64_t chunk_;
  int64_t chunks_run_ = 0;
  Buffer grads_[2], compute_[2];  // pinned staging: chunk f32 gradients, chunk compute-dtype weights
  DType compute_dtype_ = DType::F32;
  std::unique_ptr<cuda::CopyQueue> down_, up_;  // gradients to the host, compute copy to its device
};

}  // namespace r1::optim
