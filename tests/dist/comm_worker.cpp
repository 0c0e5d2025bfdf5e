// r1_comm_worker: checks every collective of one comm against exact expected values. It runs under
// mpirun (tests/test_dist.cpp starts it); every rank makes the same calls in the same order, with
// data that depends on the rank so that a chunk landing in the wrong place shows.
//
//   r1_comm_worker --device cpu|cuda   host_comm() or device_comm(CUDA); exits 0 when all pass
//   ... --die-rank R                   rank R exits abruptly before an all_reduce the others enter
//                                      (the job must end rather than hang)
//   ... --throw-rank R                 rank R throws an r1::Error there instead (main() must end
//                                      the job through abort_job)
//   ... --max-count N                  the host comm's calls carry at most N elements: the checks
//                                      then run the collectives in pieces
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/error.h"
#include "dist/world.h"
#include "tensor/device_memory.h"

namespace {

using r1::Device;
using namespace r1::dist;

template <class T> Type type_of();
template <> Type type_of<uint8_t>() { return Type::U8; }
template <> Type type_of<int32_t>() { return Type::I32; }
template <> Type type_of<int64_t>() { return Type::I64; }
template <> Type type_of<float>() { return Type::F32; }
template <> Type type_of<double>() { return Type::F64; }

template <class T> const char* type_name() {
  switch (type_of<T>()) {
    case Type::U8: return "u8";
    case Type::I32: return "i32";
    case Type::I64: return "i64";
    case Type::F32: return "f32";
    case Type::F64: return "f64";
  }
  return "?";
}

const char* op_name(Op op) { return op == Op::Sum ? "sum" : op == Op::Max ? "max" : "min"; }

// Elements of T in the comm's memory (host, or this rank's GPU for a device comm), filled from host
// values and read back after the comm's work has finished.
template <class T> class Buf {
 public:
  Buf(Comm& comm, const std::vector<T>& init) : comm_(comm), host_(init) {
    if (!comm.on_device()) return;
    dev_ = static_cast<T*>(r1::devmem::alloc(Device::CUDA, std::max<size_t>(bytes(), 64)));
    if (bytes() > 0) r1::devmem::copy(dev_, Device::CUDA, host_.data(), Device::CPU, bytes());
  }
  ~Buf() {
    if (!dev_) return;
    comm_.synchronize();  // the collective may still be using the memory
    r1::devmem::release(Device::CUDA, dev_, std::max<size_t>(bytes(), 64));
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;

  T* at(int64_t offset) { return (dev_ ? dev_ : host_.data()) + offset; }
  std::vector<T> read() {
    comm_.synchronize();
    if (dev_ && bytes() > 0) r1::devmem::copy(host_.data(), Device::CPU, dev_, Device::CUDA, bytes());
    return host_;
  }

 private:
  size_t bytes() const { return host_.size() * sizeof(T); }
  Comm& comm_;
  std::vector<T> host_;
  T* dev_ = nullptr;
};

std::vector<int64_t> offsets_of(const std::vector<int64_t>& counts) {
  std::vector<int64_t> off(counts.size() + 1, 0);
  for (size_t r = 0; r < counts.size(); r++) off[r + 1] = off[r] + counts[r];
  return off;
}

class Checks {
 public:
  explicit Checks(Comm& comm) : c_(comm), rank_(comm.rank()), n_(comm.size()) {}
  int failures() const { return failures_; }
  int count() const { return checks_; }

  template <class T> void expect(const std::string& name, const std::vector<T>& got, const std::vector<T>& want) {
    checks_++;
    std::string why;
    if (got.size() != want.size()) why = fmt::format("{} elements, expected {}", got.size(), want.size());
    for (size_t i = 0; why.empty() && i < got.size(); i++)
      if (got[i] != want[i]) why = fmt::format("element {} is {}, expected {}", i, double(got[i]), double(want[i]));
    report(name, why);
  }
  void report(const std::string& name, const std::string& why) {
    if (why.empty()) {
      std::printf("[rank %d] ok   %s\n", rank_, name.c_str());
    } else {
      failures_++;
      std::printf("[rank %d] FAIL %s: %s\n", rank_, name.c_str(), why.c_str());
    }
    std::fflush(stdout);
  }

  // Element i of rank r: (r+1)(i%20+1), negated at odd i so max and min pick different ranks. Sums
  // stay small: Open MPI saturates u8 sums that overflow (see dist/comm.h), NCCL wraps them.
  template <class T> void all_reduce(Op op) {
    const int64_t count = 257;
    auto value = [](int r, int64_t i) {
      return T((r + 1) * (i % 20 + 1) * (i % 2 && std::is_signed_v<T> ? -1 : 1));
    };
    std::vector<T> mine(count), want(count);
    for (int64_t i = 0; i < count; i++) {
      mine[i] = value(rank_, i);
      want[i] = value(0, i);
      for (int r = 1; r < n_; r++) {
        const T v = value(r, i);
        want[i] = op == Op::Sum ? T(want[i] + v) : op == Op::Max ? std::max(want[i], v) : std::min(want[i], v);
      }
    }
    Buf<T> buf(c_, mine);
    c_.all_reduce(buf.at(0), count, type_of<T>(), op);
    expect(fmt::format("all_reduce {} {}", op_name(op), type_name<T>()), buf.read(), want);
  }

  // send[j] = (rank+1)(j+1): this rank's chunk sums to (j+1) n(n+1)/2.
  template <class T> void reduce_scatter(const std::string& label, const std::vector<int64_t>& counts) {
    const auto off = offsets_of(counts);
    std::vector<T> send(off[n_]), want(counts[rank_]);
    for (int64_t j = 0; j < off[n_]; j++) send[j] = T((rank_ + 1) * (j + 1));
    for (int64_t k = 0; k < counts[rank_]; k++) want[k] = T((off[rank_] + k + 1) * n_ * (n_ + 1) / 2);
    Buf<T> in(c_, send), out(c_, std::vector<T>(counts[rank_], T(-7)));
    c_.reduce_scatter(in.at(0), out.at(0), counts, type_of<T>());
    expect(fmt::format("reduce_scatter {} {}", label, type_name<T>()), out.read(), want);
  }

  // Rank q contributes 1000q + k at its k-th element.
  template <class T> void all_gather(const std::string& label, const std::vector<int64_t>& counts, bool in_place) {
    const auto off = offsets_of(counts);
    std::vector<T> mine(counts[rank_]), want(off[n_]), start(off[n_], T(-7));
    for (int64_t k = 0; k < counts[rank_]; k++) mine[k] = T(1000 * rank_ + k);
    for (int q = 0; q < n_; q++)
      for (int64_t k = 0; k < counts[q]; k++) want[off[q] + k] = T(1000 * q + k);
    const std::string name = fmt::format("all_gather {}{} {}", label, in_place ? " in place" : "", type_name<T>());
    if (in_place) {
      std::copy(mine.begin(), mine.end(), start.begin() + off[rank_]);
      Buf<T> out(c_, start);
      c_.all_gather(out.at(off[rank_]), out.at(0), counts, type_of<T>());
      expect(name, out.read(), want);
    } else {
      Buf<T> in(c_, mine), out(c_, start);
      c_.all_gather(in.at(0), out.at(0), counts, type_of<T>());
      expect(name, out.read(), want);
    }
  }

  // Host comms add floats in rank order, ((x0 + x1) + x2) + ..., whatever the collective and its
  // chunking: values of mixed magnitudes, whose sum changes with the order, must come out as the
  // rank-order sum from all_reduce and from reduce_scatter alike (bitwise).
  template <class T> void sum_order() {
    const int64_t count = 301;
    auto value = [](int r, int64_t i) {
      return T(std::sin(0.37 * double(i) + 7.1 * r) * std::pow(10.0, double((i + 3 * r) % 9)));
    };
    std::vector<T> mine(count), want(count);
    for (int64_t i = 0; i < count; i++) {
      mine[i] = value(rank_, i);
      want[i] = value(0, i);
      for (int r = 1; r < n_; r++) want[i] += value(r, i);
    }
    Buf<T> buf(c_, mine);
    c_.all_reduce(buf.at(0), count, type_of<T>(), Op::Sum);
    expect(fmt::format("all_reduce adds in rank order {}", type_name<T>()), buf.read(), want);
    std::vector<int64_t> counts(n_);
    for (int q = 0; q < n_; q++) counts[q] = q == n_ - 1 ? count - 97 * (n_ - 1) : 97;
    const auto off = offsets_of(counts);
    Buf<T> in(c_, mine), out(c_, std::vector<T>(counts[rank_]));
    c_.reduce_scatter(in.at(0), out.at(0), counts, type_of<T>());
    expect(fmt::format("reduce_scatter adds in rank order {}", type_name<T>()), out.read(),
           std::vector<T>(want.begin() + off[rank_], want.begin() + off[rank_ + 1]));
  }

  template <class T> void broadcast(int root) {
    const int64_t count = 100;
    std::vector<T> mine(count), want(count);
    for (int64_t i = 0; i < count; i++) {
      mine[i] = T(rank_ * 100 + i);
      want[i] = T(root * 100 + i);
    }
    Buf<T> buf(c_, mine);
    c_.broadcast(buf.at(0), count, type_of<T>(), root);
    expect(fmt::format("broadcast from root {} {}", root, type_name<T>()), buf.read(), want);
  }

  void barrier() {
    c_.barrier();
    report("barrier", "");
  }

 private:
  Comm& c_;
  int rank_, n_;
  int failures_ = 0, checks_ = 0;
};

// Host conveniences: scalars and strings of different lengths (rank 1's is empty).
void host_conveniences(Checks& checks, Comm& host) {
  const int r = host.rank(), n = host.size();
  checks.expect("all_reduce_scalar f64 sum", std::vector<double>{host.all_reduce_scalar(0.5 * (r + 1))},
                std::vector<double>{0.25 * n * (n + 1)});
  checks.expect("all_reduce_scalar i64 max", std::vector<int64_t>{host.all_reduce_scalar(int64_t(10 * r), Op::Max)},
                std::vector<int64_t>{int64_t(10 * (n - 1))});
  checks.expect("all_reduce_scalar i64 min", std::vector<int64_t>{host.all_reduce_scalar(int64_t(r - 5), Op::Min)},
                std::vector<int64_t>{-5});
  auto text = [](int q) { return q == 1 ? std::string() : std::string(size_t(3 * q + 1), char('a' + q)); };
  const auto got = host.all_gather_strings(text(r));
  std::string why = int(got.size()) == n ? "" : fmt::format("{} strings, expected {}", got.size(), n);
  for (int q = 0; why.empty() && q < n; q++)
    if (got[q] != text(q)) why = fmt::format("string {} is '{}', expected '{}'", q, got[q], text(q));
  checks.report("all_gather_strings", why);
}

void run_checks(Checks& checks, Comm& comm) {
  const int n = comm.size();
  checks.all_reduce<float>(Op::Sum);
  checks.all_reduce<double>(Op::Sum);
  checks.all_reduce<int64_t>(Op::Sum);
  checks.all_reduce<int32_t>(Op::Sum);
  checks.all_reduce<uint8_t>(Op::Sum);
  for (Op op : {Op::Max, Op::Min}) {
    checks.all_reduce<float>(op);
    checks.all_reduce<double>(op);
    checks.all_reduce<int64_t>(op);
  }
  // Equal chunks; unequal ones, with rank 1's empty; unequal, none empty.
  const std::vector<int64_t> equal(n, 5);
  std::vector<int64_t> with_empty(n), ragged(n);
  for (int q = 0; q < n; q++) {
    with_empty[q] = q == 1 ? 0 : 4 + 3 * q;
    ragged[q] = q + 1;
  }
  const std::vector<std::pair<std::string, std::vector<int64_t>>> cases = {
      {"equal", equal}, {"unequal with an empty chunk", with_empty}, {"unequal", ragged}};
  for (const auto& [label, counts] : cases) {
    checks.reduce_scatter<float>(label, counts);
    checks.reduce_scatter<int64_t>(label, counts);
    for (bool in_place : {false, true}) {
      checks.all_gather<float>(label, counts, in_place);
      checks.all_gather<int32_t>(label, counts, in_place);
    }
  }
  if (!comm.on_device()) {
    checks.sum_order<float>();
    checks.sum_order<double>();
  }
  checks.broadcast<float>(0);
  checks.broadcast<int64_t>(n - 1);
  checks.broadcast<double>(n - 1);
  checks.barrier();
}

int run(int argc, char** argv) {
  std::string device = "cpu";
  int die_rank = -1, throw_rank = -1;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    R1_CHECK(i + 1 < argc, "{} needs a value", a);
    if (a == "--device") device = argv[++i];
    else if (a == "--die-rank") die_rank = std::atoi(argv[++i]);
    else if (a == "--throw-rank") throw_rank = std::atoi(argv[++i]);
    else if (a == "--max-count") host_comm().max_count = std::atoll(argv[++i]);
    else r1::fail("unknown argument {} (usage: r1_comm_worker --device cpu|cuda [--die-rank R | --throw-rank R] "
                 "[--max-count N])", a);
  }
  Comm& host = host_comm();
  Comm& comm = device_comm(r1::parse_device(device, "--device"));
  std::printf("[rank %d] %d ranks, %s comm\n", comm.rank(), comm.size(), comm.backend());

  if (die_rank >= 0 || throw_rank >= 0) {
    host.barrier();  // every rank is up: the failure happens mid-job, not at start
    if (comm.rank() == die_rank) {
      std::printf("[rank %d] exiting abruptly\n", comm.rank());
      std::fflush(stdout);
      std::_Exit(137);
    }
    if (comm.rank() == throw_rank) r1::fail("rank {} fails on purpose", comm.rank());
    Buf<float> x(comm, std::vector<float>(16, 1.f));
    comm.all_reduce(x.at(0), 16, Type::F32);
    x.read();
    std::printf("[rank %d] the all_reduce returned without its peer\n", comm.rank());
    return 1;
  }

  Checks checks(comm);
  run_checks(checks, comm);
  host_conveniences(checks, host);
  if (comm.on_device()) {
    std::string why;
    try {
      comm.all_reduce_scalar(1.0);
      why = "a device comm reduced a host scalar";
    } catch (const r1::Error&) {
    }
    checks.report("all_reduce_scalar refuses a device comm", why);
  }
  if (host.max_count < INT32_MAX) {
    const std::string why = host.largest_call() <= host.max_count
                                ? ""
                                : fmt::format("a call carried {} elements, over --max-count {}", host.largest_call(),
                                              host.max_count);
    checks.report("every mpi call within --max-count", why);
  }
  const int64_t failed = host.all_reduce_scalar(int64_t(checks.failures()));
  if (host.rank() == 0)
    std::printf("%s: %d checks on each of %d ranks, %lld failed\n", failed ? "FAILED" : "PASSED", checks.count(),
                host.size(), static_cast<long long>(failed));
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    init(&argc, &argv);
    const int code = run(argc, argv);
    std::fflush(stdout);
    finalize();
    return code;
  } catch (const std::exception& e) {
    if (world_size() > 1) abort_job(e.what());
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
