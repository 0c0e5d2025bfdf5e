#include "dist/mpi_comm.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "base/error.h"

namespace r1::dist {

void check_mpi(int code, const char* call, int rank) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  const std::string who = rank >= 0 ? fmt::format("rank {}", rank) : std::string("MPI");
  fail("{}: {} failed: {}", who, call, len > 0 ? std::string(text, size_t(len)) : fmt::format("error {}", code));
}

namespace {

MPI_Datatype mpi_type(Type t) {
  switch (t) {
    case Type::U8: return MPI_UINT8_T;
    case Type::I32: return MPI_INT32_T;
    case Type::I64: return MPI_INT64_T;
    case Type::F32: return MPI_FLOAT;
    case Type::F64: return MPI_DOUBLE;
  }
  fail("dist: unknown element type {}", int(t));
}

MPI_Op mpi_op(Op op) {
  switch (op) {
    case Op::Sum: return MPI_SUM;
    case Op::Max: return MPI_MAX;
    case Op::Min: return MPI_MIN;
  }
  fail("dist: unknown reduction {}", int(op));
}

class MpiComm final : public Comm {
 public:
  MpiComm() {
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank", -1);
    check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size", rank_);
  }
  const char* backend() const override { return "mpi"; }

  // MPI counts are int: longer buffers go in pieces of at most INT_MAX elements.
  void all_reduce(void* data, int64_t count, Type t, Op op) override {
    R1_CHECK(count >= 0, "rank {}: all_reduce got a negative count ({})", rank_, count);
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < count;) {
      const int n = int(std::min<int64_t>(count - done, INT_MAX));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, p + done * type_size(t), n, mpi_type(t), mpi_op(op), MPI_COMM_WORLD),
                "MPI_Allreduce", rank_);
      done += n;
    }
  }

  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    // Open MPI adds the counts and offsets in int too, so the total must fit, not just each count.
    R1_CHECK(total_count(counts, "reduce_scatter") <= INT_MAX,
             "rank {}: reduce_scatter of more than {} elements in all is beyond MPI's int counts", rank_, INT_MAX);
    const std::vector<int> n(counts.begin(), counts.end());
    check_mpi(MPI_Reduce_scatter(send, recv, n.data(), mpi_type(t), MPI_SUM, MPI_COMM_WORLD), "MPI_Reduce_scatter",
              rank_);
  }

  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    R1_CHECK(total_count(counts, "all_gather") <= INT_MAX,
             "rank {}: all_gather of more than {} elements in all is beyond MPI's int displacements", rank_, INT_MAX);
    std::vector<int> n(size_), displs(size_);
    for (int r = 0, off = 0; r < size_; r++) {
      n[r] = int(counts[r]);
      displs[r] = off;
      off += n[r];
    }
    const void* own = static_cast<const char*>(recv) + size_t(displs[rank_]) * type_size(t);
    const void* src = send == own ? MPI_IN_PLACE : send;
    check_mpi(MPI_Allgatherv(src, n[rank_], mpi_type(t), recv, n.data(), displs.data(), mpi_type(t), MPI_COMM_WORLD),
              "MPI_Allgatherv", rank_);
  }

  void broadcast(void* data, int64_t count, Type t, int root) override {
    R1_CHECK(count >= 0, "rank {}: broadcast got a negative count ({})", rank_, count);
    R1_CHECK(root >= 0 && root < size_, "rank {}: broadcast from root {} in a job of {} ranks", rank_, root, size_);
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < count;) {
      const int n = int(std::min<int64_t>(count - done, INT_MAX));
      check_mpi(MPI_Bcast(p + done * type_size(t), n, mpi_type(t), root, MPI_COMM_WORLD), "MPI_Bcast", rank_);
      done += n;
    }
  }

  void barrier() override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", rank_); }
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm() { return std::make_unique<MpiComm>(); }

}  // namespace r1::dist
