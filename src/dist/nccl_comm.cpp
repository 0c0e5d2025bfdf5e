#include "dist/nccl_comm.h"

#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "base/error.h"
#include "device/cuda_check.h"
#include "device/cuda_stream.h"

namespace r1::dist {

namespace {

ncclDataType_t nccl_type(Type t) {
  switch (t) {
    case Type::U8: return ncclUint8;
    case Type::I32: return ncclInt32;
    case Type::I64: return ncclInt64;
    case Type::F32: return ncclFloat32;
    case Type::F64: return ncclFloat64;
  }
  fail("dist: unknown element type {}", int(t));
}

ncclRedOp_t nccl_op(Op op) {
  switch (op) {
    case Op::Sum: return ncclSum;
    case Op::Max: return ncclMax;
    case Op::Min: return ncclMin;
  }
  fail("dist: unknown reduction {}", int(op));
}

void check_nccl(ncclResult_t r, const char* call, int rank) {
  if (r != ncclSuccess) fail("rank {}: {} failed: {}", rank, call, ncclGetErrorString(r));
}

class NcclComm final : public Comm {
 public:
  NcclComm(Comm& host, double timeout) {
    rank_ = host.rank();
    size_ = host.size();
    timeout_s = timeout;
    cuda::stream();  // selects this rank's device on this thread; NCCL binds to the current one
    ncclUniqueId id{};
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId", rank_);
    host.broadcast(&id, int64_t(sizeof id), Type::U8, 0);
    check_nccl(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank", rank_);
    // Its own non-blocking stream: collectives overlap the ops' stream unless ordered by events.
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&flag_, sizeof(int)));
    CUDA_CHECK(cudaMemset(flag_, 0, sizeof(int)));
    CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming));
  }
  // Never destroyed, like the CUDA context: ncclCommDestroy at exit may run after the CUDA runtime
  // has unloaded or wait on a peer that already left; the process owns the GPU and the comm anyway.
  // dist::world keeps the comm for the whole process.

  const char* backend() const override { return "nccl"; }
  bool on_device() const override { return true; }
  void* stream() const override { return stream_; }

  void all_reduce(void* data, int64_t count, Type t, Op op) override {
    usable("all_reduce");
    R1_CHECK(count >= 0, "rank {}: all_reduce got a negative count ({})", rank_, count);
    check_nccl(ncclAllReduce(data, data, size_t(count), nccl_type(t), nccl_op(op), comm_, stream_), "ncclAllReduce",
               rank_);
  }

  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    usable("reduce_scatter");
    total_count(counts, "reduce_scatter");
    if (all_equal(counts)) {
      check_nccl(ncclReduceScatter(send, recv, size_t(counts[0]), nccl_type(t), ncclSum, comm_, stream_),
                 "ncclReduceScatter", rank_);
      return;
    }
    // Unequal chunks: one reduce per chunk to its owner, fused into one group. Counts are the same
    // on every rank, so skipping empty chunks keeps the ranks' calls matched.
    const char* s = static_cast<const char*>(send);
    check_nccl(ncclGroupStart(), "ncclGroupStart", rank_);
    int64_t off = 0;
    for (int r = 0; r < size_; r++) {
      if (counts[r] > 0)
        check_nccl(ncclReduce(s + off * type_size(t), recv, size_t(counts[r]), nccl_type(t), ncclSum, r, comm_, stream_),
                   "ncclReduce", rank_);
      off += counts[r];
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd (reduce_scatter)", rank_);
  }

  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    usable("all_gather");
    total_count(counts, "all_gather");
    if (all_equal(counts)) {
      check_nccl(ncclAllGather(send, recv, size_t(counts[0]), nccl_type(t), comm_, stream_), "ncclAllGather", rank_);
      return;
    }
    // Unequal chunks: rank r broadcasts its chunk into its place in recv (in place on r when send is
    // already there), all in one group.
    char* out = static_cast<char*>(recv);
    check_nccl(ncclGroupStart(), "ncclGroupStart", rank_);
    int64_t off = 0;
    for (int r = 0; r < size_; r++) {
      char* dst = out + off * type_size(t);
      const void* src = r == rank_ ? send : dst;
      if (counts[r] > 0)
        check_nccl(ncclBroadcast(src, dst, size_t(counts[r]), nccl_type(t), r, comm_, stream_), "ncclBroadcast", rank_);
      off += counts[r];
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd (all_gather)", rank_);
  }

  void broadcast(void* data, int64_t count, Type t, int root) override {
    usable("broadcast");
    R1_CHECK(count >= 0, "rank {}: broadcast got a negative count ({})", rank_, count);
    R1_CHECK(root >= 0 && root < size_, "rank {}: broadcast from root {} in a job of {} ranks", rank_, root, size_);
    check_nccl(ncclBroadcast(data, data, size_t(count), nccl_type(t), root, comm_, stream_), "ncclBroadcast", rank_);
  }

  // Stream order without host waits: an event recorded on one stream, waited for by the other.
  void after_compute() override {
    CUDA_CHECK(cudaEventRecord(compute_done_, cuda::stream()));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_done_, 0));
  }
  void before_compute() override {
    CUDA_CHECK(cudaEventRecord(comm_done_, stream_));
    CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(), comm_done_, 0));
  }

  // NCCL has no barrier: a one-int all-reduce cannot finish before every rank has enqueued it.
  void barrier() override {
    usable("barrier");
    check_nccl(ncclAllReduce(flag_, flag_, 1, ncclInt32, ncclSum, comm_, stream_), "ncclAllReduce (barrier)", rank_);
    synchronize();
  }

  // Polls rather than cudaStreamSynchronize: a collective waiting for a dead peer never completes,
  // and only a poll can notice NCCL's asynchronous errors or give up after timeout_s.
  void synchronize() override {
    usable("synchronize");
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) {
        cudaGetLastError();
        fail("rank {}: an NCCL collective failed on the GPU: {} ({})", rank_, cudaGetErrorName(q),
             cudaGetErrorString(q));
      }
      ncclResult_t async = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError", rank_);
      if (async != ncclSuccess && async != ncclInProgress) {
        abort_comm();
        fail("rank {}: an NCCL collective failed: {}", rank_, ncclGetErrorString(async));
      }
      const double waited = std::chrono::duration<double>(clock::now() - start).count();
      if (timeout_s > 0 && waited > timeout_s) {
        abort_comm();
        fail("rank {}: an NCCL collective did not finish within {} s (a peer rank may have died or stopped calling "
             "collectives)",
             rank_, timeout_s);
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::microseconds(1000));
    }
  }

 private:
  static bool all_equal(const std::vector<int64_t>& counts) {
    for (int64_t c : counts)
      if (c != counts[0]) return false;
    return true;
  }
  // After an abort the communicator is gone; later calls must fail rather than use it.
  void usable(const char* call) const {
    R1_CHECK(comm_ != nullptr, "rank {}: {} on an NCCL comm that was aborted after an earlier failure", rank_, call);
  }
  void abort_comm() {
    ncclCommAbort(comm_);  // its own failure changes nothing: this rank is failing already
    comm_ = nullptr;
  }

  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int* flag_ = nullptr;  // the barrier's one device int
  cudaEvent_t compute_done_ = nullptr, comm_done_ = nullptr;
};

}  // namespace

std::unique_ptr<Comm> make_nccl_comm(Comm& host, double timeout_s) {
  return std::make_unique<NcclComm>(host, timeout_s);
}

}  // namespace r1::dist
