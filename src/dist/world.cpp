#include "dist/world.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include "base/error.h"
#include "base/log.h"
#include "device/cuda_device.h"
#include "dist/mpi_comm.h"
#ifdef R1_HAVE_CUDA
#include "dist/nccl_comm.h"
#endif

namespace r1::dist {

namespace {

struct World {
  Launch launch;
  bool initialised = false;
  bool mpi_started = false, mpi_finalized = false;  // MPI_Init_thread / MPI_Finalize done here
  std::unique_ptr<Comm> host, device;
};

// Never destroyed: abort_job may run from anywhere, even while statics are being torn down.
World& world() {
  static World* w = new World();
  return *w;
}

// Whether an MPI launcher started this process: Open MPI's mpirun, Hydra or Slurm's PMI, PMIx.
bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

// R1_DIST_TIMEOUT_S: seconds a device comm waits for a collective before failing (0: forever).
// Unset: the comms keep their default.
std::optional<double> timeout_from_env() {
  const char* v = std::getenv("R1_DIST_TIMEOUT_S");
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  R1_CHECK(end != v && *end == '\0' && s >= 0, "R1_DIST_TIMEOUT_S must be seconds >= 0 (0: no timeout), not '{}'",
           v);
  return s;
}

// R1_MPI_MAX_COUNT: elements per MPI call (Comm::max_count), for tests that run the pieces of a
// collective beyond MPI's int counts on small buffers. Unset: MPI's own limit.
std::optional<int64_t> max_count_from_env() {
  const char* v = std::getenv("R1_MPI_MAX_COUNT");
  if (v == nullptr || *v == '\0') return std::nullopt;
  char* end = nullptr;
  const long long n = std::strtoll(v, &end, 10);
  R1_CHECK(end != v && *end == '\0' && n >= 1, "R1_MPI_MAX_COUNT must be a count >= 1, not '{}'", v);
  return n;
}

}  // namespace

void init(int* argc, char*** argv) {
  World& w = world();
  if (w.initialised) return;
  timeout_from_env();  // a bad value fails at start, not at the first collective
  if (launched_by_mpi()) {
    int already = 0;
    check_mpi(MPI_Initialized(&already), "MPI_Initialized", -1);
    if (!already) {
      // FUNNELED: only the main thread calls MPI; OpenMP threads compute between the calls.
      int provided = 0;
      check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread", -1);
      w.mpi_started = true;
    }
    // Failures come back as codes, so they become r1::Errors naming the rank and call.
    check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", -1);
    Launch& l = w.launch;
    check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &l.rank), "MPI_Comm_rank", -1);
    check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &l.size), "MPI_Comm_size", l.rank);
    // The ranks sharing memory with this one are its node: any launcher, no environment parsing.
    MPI_Comm node = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, l.rank, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type", l.rank);
    check_mpi(MPI_Comm_rank(node, &l.local_rank), "MPI_Comm_rank (node)", l.rank);
    check_mpi(MPI_Comm_size(node, &l.local_size), "MPI_Comm_size (node)", l.rank);
    check_mpi(MPI_Comm_free(&node), "MPI_Comm_free", l.rank);
    l.mpi = true;
    if (l.size > 1) {  // rank 0 speaks for the job; the others only warn, saying who they are
      log::settings().info = l.rank == 0;
      if (l.rank != 0) log::settings().prefix = fmt::format("[rank {}] ", l.rank);
    }
    cuda::select_device(l.local_rank);  // only remembered: CUDA starts if and when device work does
  }
  w.initialised = true;
}

void finalize() {
  World& w = world();
  if (!w.mpi_started || w.mpi_finalized) return;
  w.mpi_finalized = true;
  const int code = MPI_Finalize();
  R1_CHECK(code == MPI_SUCCESS, "rank {}: MPI_Finalize failed (error {})", w.launch.rank, code);
}

const Launch& launch() { return world().launch; }

Comm& host_comm() {
  World& w = world();
  R1_CHECK(!w.mpi_finalized, "rank {}: host_comm() after dist::finalize()", w.launch.rank);
  if (!w.host) {
    w.host = w.launch.mpi ? make_mpi_comm() : make_single_comm();
    if (const auto t = timeout_from_env()) w.host->timeout_s = *t;
    if (const auto n = max_count_from_env()) w.host->max_count = *n;
  }
  return *w.host;
}

Comm& device_comm(Device device) {
  if (device == Device::CPU) return host_comm();
  World& w = world();
#ifdef R1_HAVE_CUDA
  // One rank too gets a real NCCL comm: the single comm's memmove cannot touch device memory.
  if (!w.device) w.device = make_nccl_comm(host_comm(), host_comm().timeout_s);
  return *w.device;
#else
  fail("rank {}: device_comm(cuda): this build has no CUDA backend", w.launch.rank);
#endif
}

void abort_job(const std::string& message, int code) {
  World& w = world();
  if (w.launch.size > 1)
    std::fprintf(stderr, "error: [rank %d/%d] %s\n", w.launch.rank, w.launch.size, message.c_str());
  else
    std::fprintf(stderr, "error: %s\n", message.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  // MPI_Abort takes the other ranks down with this one, wherever they are waiting.
  if (w.launch.mpi && !w.mpi_finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

}  // namespace r1::dist
