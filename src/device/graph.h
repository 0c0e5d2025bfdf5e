#pragma once
// A CUDA graph of work queued on the compute stream (device/cuda_stream.h): capture once, replay
// many times with the same kernels, arguments and buffers (so the buffers a captured step reads and
// writes must stay where they are). Plain C++ header; builds with CUDA only.
namespace r1::cuda {

class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Everything queued on the stream between begin_capture and end_capture is recorded, not run.
  // Work in between must not synchronize, allocate device memory or copy from pageable memory.
  void begin_capture();
  void end_capture();
  // Ends a capture that failed part-way, dropping what was recorded (the stream is usable again).
  void abort_capture() noexcept;
  bool ready() const { return exec_ != nullptr; }
  // Queues the recorded work on the stream.
  void replay();
  void reset();

 private:
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
};

}  // namespace r1::cuda
