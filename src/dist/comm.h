#pragma once
// Collective communication between the ranks of one job, behind one interface with three backends:
//   single : one process; every collective is a copy or nothing (no MPI calls at all)
//   mpi    : processes launched by mpirun, host memory (CPU training, metrics, control)
//   nccl   : one GPU per rank, device memory; the NCCL unique id travels through the mpi comm
// Every rank must make the same calls in the same order with the same counts and types, as with
// MPI and NCCL themselves; a mismatch hangs or fails the job.
//
// Floating-point sums of the mpi comm add the ranks' values in rank order, ((x0 + x1) + x2) + ...,
// for every element of every collective, so all_reduce and reduce_scatter agree bitwise (NCCL's
// order follows its ring and chunking instead).
//
// Host comms (single, mpi) are blocking: a call returns when its result is in place. The nccl comm
// enqueues on its own stream() and returns at once; order it against other streams with events, or
// call synchronize(), which waits with a timeout (a peer that died must not hang this rank).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace r1::dist {

// Integer sums must not overflow: Open MPI 4.1's vectorised reductions saturate 8-bit sums
// (open-mpi/ompi#8045, "wontfix") where NCCL wraps them.
enum class Type : uint8_t { U8, I32, I64, F32, F64 };
enum class Op : uint8_t { Sum, Max, Min };
size_t type_size(Type t);

class Comm {
 public:
  virtual ~Comm() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual const char* backend() const = 0;  // "single" | "mpi" | "nccl"
  // Whether buffers are device memory of this rank's GPU (nccl) rather than host memory.
  virtual bool on_device() const { return false; }

  // data (count elements) becomes op over all ranks' data, on every rank.
  virtual void all_reduce(void* data, int64_t count, Type t, Op op = Op::Sum) = 0;
  // send holds sum(counts) elements: chunk r is counts[r] elements at offset counts[0] + ... +
  // counts[r-1]. This rank receives the sum over ranks of its chunk (counts[rank()] elements) in
  // recv, which must not overlap send. counts has size() entries, the same on every rank.
  virtual void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) = 0;
  // Every rank receives all ranks' send (rank r's has counts[r] elements) in rank order in recv
  // (sum(counts) elements). In place when send is this rank's chunk of recv.
  virtual void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) = 0;
  // root's data (count elements) replaces every other rank's.
  virtual void broadcast(void* data, int64_t count, Type t, int root = 0) = 0;
  // Returns when every rank has called it (for a device comm: and its earlier work has finished).
  virtual void barrier() = 0;

  // Device comms: the stream (cudaStream_t) the collectives run on; null for host comms.
  virtual void* stream() const { return nullptr; }
  // Waits until every collective enqueued so far has finished (nothing for host comms). Fails with
  // an error naming the rank when a collective does not finish within timeout_s (0: wait forever).
  virtual void synchronize() {}
  // Device comms, ordering against the backend's compute stream (device/cuda_stream.h), with
  // events and without blocking the host; nothing for host comms.
  // Collectives enqueued after this call start only once the compute work queued so far is done.
  virtual void after_compute() {}
  // Compute work queued after this call starts only once the collectives enqueued so far are done.
  virtual void before_compute() {}
  double timeout_s = 600.0;
  // The most elements one call of the mpi backend carries (MPI counts and displacements are int):
  // longer collectives go in pieces. Tests lower it to run the pieces on small buffers; the other
  // backends have no such limit.
  int64_t max_count = INT32_MAX;
  // The most elements one call of the backend has carried so far (mpi; tests check the pieces).
  int64_t largest_call() const { return largest_call_; }

  // This rank's block [begin, end) of n items dealt out in rank order, as evenly as they split.
  std::pair<int64_t, int64_t> share(int64_t n) const {
    return {n * rank_ / size_, n * (rank_ + 1) / size_};
  }

  // Convenience for host comms: reduce one scalar, gather strings.
  double all_reduce_scalar(double x, Op op = Op::Sum);
  int64_t all_reduce_scalar(int64_t x, Op op = Op::Sum);
  std::vector<std::string> all_gather_strings(const std::string& s);

 protected:
  // Checks that counts has size() entries, none negative, and returns their sum; `call` names the
  // collective in the error.
  int64_t total_count(const std::vector<int64_t>& counts, const char* call) const;
  int rank_ = 0, size_ = 1;
  int64_t largest_call_ = 0;
};

// The single-process comm (rank 0 of 1): its collectives are copies, on `device` (on a GPU queued on
// the compute stream).
std::unique_ptr<Comm> make_single_comm(Device device = Device::CPU);

}  // namespace r1::dist
