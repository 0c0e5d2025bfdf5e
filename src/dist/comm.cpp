#include "dist/comm.h"

#include <cstring>

#include "base/error.h"
#include "tensor/device_memory.h"

namespace r1::dist {

size_t type_size(Type t) {
  switch (t) {
    case Type::U8: return 1;
    case Type::I32: return 4;
    case Type::I64: return 8;
    case Type::F32: return 4;
    case Type::F64: return 8;
  }
  fail("dist: unknown element type {}", int(t));
}

int64_t Comm::total_count(const std::vector<int64_t>& counts, const char* call) const {
  R1_CHECK(int(counts.size()) == size_, "rank {}: {} got {} counts for {} ranks", rank_, call, counts.size(), size_);
  int64_t total = 0;
  for (size_t r = 0; r < counts.size(); r++) {
    R1_CHECK(counts[r] >= 0, "rank {}: {} got a negative count ({}) for rank {}", rank_, call, counts[r], r);
    total += counts[r];
  }
  return total;
}

double Comm::all_reduce_scalar(double x, Op op) {
  R1_CHECK(!on_device(), "rank {}: all_reduce_scalar needs a host comm, not {}", rank_, backend());
  all_reduce(&x, 1, Type::F64, op);
  return x;
}

int64_t Comm::all_reduce_scalar(int64_t x, Op op) {
  R1_CHECK(!on_device(), "rank {}: all_reduce_scalar needs a host comm, not {}", rank_, backend());
  all_reduce(&x, 1, Type::I64, op);
  return x;
}

std::vector<std::string> Comm::all_gather_strings(const std::string& s) {
  R1_CHECK(!on_device(), "rank {}: all_gather_strings needs a host comm, not {}", rank_, backend());
  // Lengths first (in place: this rank's slot already holds its own), then the bytes by those counts.
  std::vector<int64_t> lengths(size_, 0);
  lengths[rank_] = int64_t(s.size());
  all_gather(&lengths[rank_], lengths.data(), std::vector<int64_t>(size_, 1), Type::I64);
  int64_t total = 0;
  for (int64_t n : lengths) total += n;
  std::string bytes(size_t(total), '\0');
  all_gather(s.data(), bytes.data(), lengths, Type::U8);
  std::vector<std::string> out;
  out.reserve(size_);
  size_t offset = 0;
  for (int64_t n : lengths) {
    out.push_back(bytes.substr(offset, size_t(n)));
    offset += size_t(n);
  }
  return out;
}

namespace {

// One process: every rank's data is this rank's, so collectives are copies or nothing.
class SingleComm final : public Comm {
 public:
  explicit SingleComm(Device device) : device_(device) {}
  const char* backend() const override { return "single"; }
  bool on_device() const override { return device_ != Device::CPU; }
  void all_reduce(void*, int64_t count, Type, Op) override {
    R1_CHECK(count >= 0, "rank 0: all_reduce got a negative count ({})", count);
  }
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    total_count(counts, "reduce_scatter");
    if (counts[0] > 0) move(recv, send, size_t(counts[0]) * type_size(t));
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, Type t) override {
    total_count(counts, "all_gather");
    if (send != recv && counts[0] > 0) move(recv, send, size_t(counts[0]) * type_size(t));
  }
  void broadcast(void*, int64_t count, Type, int root) override {
    R1_CHECK(count >= 0, "rank 0: broadcast got a negative count ({})", count);
    R1_CHECK(root == 0, "rank 0: broadcast from root {} in a job of 1 rank", root);
  }
  void barrier() override {}

 private:
  // memmove on the host (the contract forbids overlap, but a caller's mistake should not corrupt
  // data here); on a device a copy queued on the compute stream, so it is ordered with the ops.
  void move(void* dst, const void* src, size_t bytes) const {
    if (device_ == Device::CPU) std::memmove(dst, src, bytes);
    else devmem::copy(dst, device_, src, device_, bytes);
  }
  Device device_;
};

}  // namespace

std::unique_ptr<Comm> make_single_comm(Device device) { return std::make_unique<SingleComm>(device); }

}  // namespace r1::dist
