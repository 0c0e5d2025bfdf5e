#include "dist/mpi_comm.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

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

  // MPI counts are int: longer buffers go in pieces of at most max_count elements.
  void all_reduce(void* data, int64_t count, Type t, Op op) override {
    R1_CHECK(count >= 0, "rank {}: all_reduce got a negative count ({})", rank_, count);
    if (op == Op::Sum && is_float(t)) {
      // Rank-order sums (see ordered_reduce_scatter), then every rank's block to every rank: the
      // same bits as a reduce_scatter of any chunking, which sharded optimizers rely on.
      std::vector<int64_t> counts(static_cast<size_t>(size_));
      for (int r = 0; r < size_; ++r) counts[size_t(r)] = count * (r + 1) / size_ - count * r / size_;
      const size_t es = type_size(t);
      char* own = static_cast<char*>(data) + size_t(count * rank_ / size_) * es;
      std::vector<char> mine(size_t(counts[size_t(rank_)]) * es);
      ordered_reduce_scatter(data, mine.data(), counts, t);
      std::memcpy(own, mine.data(), mine.size());
      all_gather(own, data, counts, t);
      return;
    }
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < count;) {
      const int n = int(std::min(count - done, limit()));
      note(n);
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, p + done * type_size(t), n, mpi_type(t), mpi_op(op), MPI_COMM_WORLD),
                "MPI_Allreduce", rank_);
      done += n;
    }
  }

  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    // Open MPI adds the counts and offsets in int too, so the total must fit, not just each count.
    const int64_t total = total_count(counts, "reduce_scatter");
    if (is_float(t)) {
      ordered_reduce_scatter(send, recv, counts, t);
      return;
    }
    if (total <= limit()) {
      note(total);
      const std::vector<int> n(counts.begin(), counts.end());
      check_mpi(MPI_Reduce_scatter(send, recv, n.data(), mpi_type(t), MPI_SUM, MPI_COMM_WORLD),
                "MPI_Reduce_scatter", rank_);
      return;
    }
    // In rounds: round k reduces elements [k p, (k + 1) p) of every rank's chunk, packed by rank.
    const size_t es = type_size(t);
    const Rounds rd = rounds(counts);
    const std::vector<int64_t> off = offsets(counts);
    std::vector<char> packed(size_t(rd.piece * size_) * es);
    for (int64_t k = 0; k < rd.count; ++k) {
      const std::vector<int> n = pieces(counts, rd.piece, k);
      note(sum(n));
      for (int r = 0, at = 0; r < size_; at += n[size_t(r)], ++r)
        std::memcpy(packed.data() + size_t(at) * es, static_cast<const char*>(send) + size_t(off[size_t(r)] + k * rd.piece) * es,
                    size_t(n[size_t(r)]) * es);
      check_mpi(MPI_Reduce_scatter(packed.data(), static_cast<char*>(recv) + size_t(k * rd.piece) * es, n.data(),
                                   mpi_type(t), MPI_SUM, MPI_COMM_WORLD),
                "MPI_Reduce_scatter", rank_);
    }
  }

  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    const int64_t total = total_count(counts, "all_gather");
    const size_t es = type_size(t);
    const std::vector<int64_t> off = offsets(counts);
    if (total <= limit()) {
      note(total);
      std::vector<int> n(counts.begin(), counts.end()), displs(off.begin(), off.end() - 1);
      const void* own = static_cast<const char*>(recv) + size_t(off[size_t(rank_)]) * es;
      const void* src = send == own ? MPI_IN_PLACE : send;
      check_mpi(MPI_Allgatherv(src, n[size_t(rank_)], mpi_type(t), recv, n.data(), displs.data(), mpi_type(t),
                               MPI_COMM_WORLD),
                "MPI_Allgatherv", rank_);
      return;
    }
    // In rounds through a buffer of one round's pieces (displacements beyond int cannot be named):
    // round k gathers elements [k p, (k + 1) p) of every rank's chunk, then puts them in place.
    const Rounds rd = rounds(counts);
    std::vector<char> gathered(size_t(rd.piece * size_) * es);
    for (int64_t k = 0; k < rd.count; ++k) {
      const std::vector<int> n = pieces(counts, rd.piece, k);
      note(sum(n));
      std::vector<int> displs(static_cast<size_t>(size_));
      for (int r = 1; r < size_; ++r) displs[size_t(r)] = displs[size_t(r) - 1] + n[size_t(r) - 1];
      check_mpi(MPI_Allgatherv(static_cast<const char*>(send) + size_t(k * rd.piece) * es, n[size_t(rank_)],
                               mpi_type(t), gathered.data(), n.data(), displs.data(), mpi_type(t), MPI_COMM_WORLD),
                "MPI_Allgatherv", rank_);
      for (int r = 0; r < size_; ++r)
        std::memcpy(static_cast<char*>(recv) + size_t(off[size_t(r)] + k * rd.piece) * es,
                    gathered.data() + size_t(displs[size_t(r)]) * es, size_t(n[size_t(r)]) * es);
    }
  }

  void broadcast(void* data, int64_t count, Type t, int root) override {
    R1_CHECK(count >= 0, "rank {}: broadcast got a negative count ({})", rank_, count);
    R1_CHECK(root >= 0 && root < size_, "rank {}: broadcast from root {} in a job of {} ranks", rank_, root, size_);
    char* p = static_cast<char*>(data);
    for (int64_t done = 0; done < count;) {
      const int n = int(std::min(count - done, limit()));
      note(n);
      check_mpi(MPI_Bcast(p + done * type_size(t), n, mpi_type(t), root, MPI_COMM_WORLD), "MPI_Bcast", rank_);
      done += n;
    }
  }

  void barrier() override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", rank_); }

 private:
  static bool is_float(Type t) { return t == Type::F32 || t == Type::F64; }

  // Floating-point sums in one fixed order, rank 0's value first, then rank 1's added, and so on:
  // ((x0 + x1) + x2) + ... for every element, whatever the chunking, the world size's algorithm
  // choice in Open MPI or the message size. So an all_reduce and a reduce_scatter give bitwise the
  // same sums, and ZeRO's sharded steps the weights of the replicated one. Each rank receives every
  // rank's copy of its chunk (MPI_Alltoallv, the data a ring reduce-scatter moves too) and adds them
  // in order, in rounds of at most `piece` elements of each chunk.
  void ordered_reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) {
    const size_t es = type_size(t);
    const Rounds rd = rounds(counts);
    const std::vector<int64_t> off = offsets(counts);
    const int64_t mine = counts[size_t(rank_)];
    std::vector<char> packed(size_t(std::min(rd.piece, std::max<int64_t>(mine, 1)) * size_) * es);
    const size_t ranks = static_cast<size_t>(size_);
    std::vector<int> scounts(ranks), sdispls(ranks), rcounts(ranks), rdispls(ranks);
    for (int64_t k = 0; k < rd.count; ++k) {
      const std::vector<int> n = pieces(counts, rd.piece, k);
      const int got = n[size_t(rank_)];
      std::vector<int64_t> from(ranks);
      for (int r = 0; r < size_; ++r) {
        // Round k's piece of rank r's chunk goes to r; this rank receives `got` elements from each.
        scounts[size_t(r)] = n[size_t(r)];
        from[size_t(r)] = off[size_t(r)] + k * rd.piece;
        rcounts[size_t(r)] = got;
        rdispls[size_t(r)] = r * got;
      }
      note(int64_t(got) * size_);
      // Displacements are int: send from the start of round k's first piece (they span < limit()).
      const int64_t base = from[0];
      int64_t last = base;
      for (int r = 0; r < size_; ++r) {
        sdispls[size_t(r)] = int(from[size_t(r)] - base);
        last = std::max(last, from[size_t(r)] + scounts[size_t(r)]);
      }
      if (last - base <= limit()) {
        check_mpi(MPI_Alltoallv(static_cast<const char*>(send) + size_t(base) * es, scounts.data(), sdispls.data(),
                                mpi_type(t), packed.data(), rcounts.data(), rdispls.data(), mpi_type(t),
                                MPI_COMM_WORLD),
                  "MPI_Alltoallv", rank_);
      } else {
        // The pieces lie too far apart for int displacements: stage them side by side first.
        std::vector<char> staged(size_t(sum(n)) * es);
        for (int r = 0, at = 0; r < size_; at += n[size_t(r)], ++r) {
          std::memcpy(staged.data() + size_t(at) * es, static_cast<const char*>(send) + size_t(from[size_t(r)]) * es,
                      size_t(n[size_t(r)]) * es);
          sdispls[size_t(r)] = at;
        }
        check_mpi(MPI_Alltoallv(staged.data(), scounts.data(), sdispls.data(), mpi_type(t), packed.data(),
                                rcounts.data(), rdispls.data(), mpi_type(t), MPI_COMM_WORLD),
                  "MPI_Alltoallv", rank_);
      }
      char* out = static_cast<char*>(recv) + size_t(k * rd.piece) * es;
      if (t == Type::F32) add_in_rank_order(reinterpret_cast<const float*>(packed.data()), reinterpret_cast<float*>(out), got);
      else add_in_rank_order(reinterpret_cast<const double*>(packed.data()), reinterpret_cast<double*>(out), got);
    }
  }
  // out[i] = ((in[0][i] + in[1][i]) + in[2][i]) + ..., in[r] the n values rank r sent.
  template <class T> void add_in_rank_order(const T* in, T* out, int n) const {
    std::memcpy(out, in, size_t(n) * sizeof(T));
    for (int r = 1; r < size_; ++r) {
      const T* part = in + size_t(r) * size_t(n);
      for (int i = 0; i < n; ++i) out[i] += part[i];
    }
  }

  void note(int64_t n) { largest_call_ = std::max(largest_call_, n); }
  static int64_t sum(const std::vector<int>& n) {
    int64_t s = 0;
    for (int x : n) s += x;
    return s;
  }
  int64_t limit() const {
    R1_CHECK(max_count >= size_, "rank {}: max_count {} is below the {} ranks", rank_, max_count, size_);
    return std::min<int64_t>(max_count, INT_MAX);
  }
  // A collective too long for one call: `count` rounds, each moving up to `piece` elements of every
  // rank's chunk (so at most size() * piece, within limit(); at most 2^28 elements per round, the
  // size of the staging buffer).
  struct Rounds {
    int64_t piece = 1, count = 0;
  };
  Rounds rounds(const std::vector<int64_t>& counts) const {
    Rounds rd;
    rd.piece = std::max<int64_t>(1, std::min<int64_t>(limit(), int64_t(1) << 28) / size_);
    const int64_t longest = *std::max_element(counts.begin(), counts.end());
    rd.count = (longest + rd.piece - 1) / rd.piece;
    return rd;
  }
  // Each rank's elements in round k.
  std::vector<int> pieces(const std::vector<int64_t>& counts, int64_t piece, int64_t k) const {
    std::vector<int> n(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r)
      n[size_t(r)] = int(std::clamp<int64_t>(counts[size_t(r)] - k * piece, 0, piece));
    return n;
  }
  // Where each rank's chunk starts (size() + 1 entries, the last the total).
  std::vector<int64_t> offsets(const std::vector<int64_t>& counts) const {
    std::vector<int64_t> off(size_t(size_) + 1, 0);
    for (int r = 0; r < size_; ++r) off[size_t(r) + 1] = off[size_t(r)] + counts[size_t(r)];
    return off;
  }
};

}  // namespace

std::unique_ptr<Comm> make_mpi_comm() { return std::make_unique<MpiComm>(); }

}  // namespace r1::dist
