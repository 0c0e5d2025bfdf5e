#include "device/graph.h"

#include "device/cuda_check.h"
#include "device/cuda_stream.h"

namespace r1::cuda {

Graph::~Graph() { reset(); }

void Graph::reset() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
}

void Graph::begin_capture() {
  reset();
  // Thread-local: work queued by other threads is not pulled into (or broken by) this capture.
  CUDA_CHECK(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal));
}

void Graph::end_capture() {
  cudaGraph_t g = nullptr;
  CUDA_CHECK(cudaStreamEndCapture(stream(), &g));
  graph_ = g;
  cudaGraphExec_t e = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&e, g, 0));
  exec_ = e;
}

void Graph::abort_capture() noexcept {
  cudaGraph_t g = nullptr;
  if (cudaStreamEndCapture(stream(), &g) == cudaSuccess && g) cudaGraphDestroy(g);
  cudaGetLastError();
  reset();
}

void Graph::replay() { CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream())); }

}  // namespace r1::cuda
