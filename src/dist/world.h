#pragma once
// The job this process belongs to. init() looks at how the process was launched: under mpirun
// (Open MPI's OMPI_COMM_WORLD_SIZE, or PMI_SIZE / PMIX_RANK from other launchers) it initialises
// MPI and this is rank r of N; otherwise it is the only rank and MPI is never touched, so a plain
// `r1 ...` needs no MPI runtime at run time.
//
// Under MPI each rank uses GPU (local rank mod visible GPUs) for device work; device_comm() is an
// NCCL communicator over the same ranks, made on first use (its unique id is broadcast through
// host_comm()).
#include <string>

#include "dist/comm.h"
#include "tensor/tensor.h"

namespace r1::dist {

struct Launch {
  int rank = 0, size = 1;              // in the job
  int local_rank = 0, local_size = 1;  // on this node
  bool mpi = false;                    // launched by an MPI launcher
};

// Idempotent; main() calls it first. Throws when launched under MPI but MPI cannot start.
void init(int* argc, char*** argv);
// Finalises MPI when it was initialised (after the last collective; main() calls it on success).
void finalize();
const Launch& launch();
inline int rank() { return launch().rank; }
inline int world_size() { return launch().size; }
// Rank 0 writes run directories, checkpoints, metrics and reports; the others only compute.
inline bool is_root() { return launch().rank == 0; }

// Host-memory collectives over all ranks (single or mpi).
Comm& host_comm();
// Collectives over all ranks for buffers on `device`: host_comm() for CPU, NCCL for CUDA (an error
// in builds without CUDA).
Comm& device_comm(Device device);

// Ends the whole job after an error on this rank: prints `message` prefixed by the rank, then
// MPI_Abort so that every other rank exits too (they may be waiting in a collective); a single
// process just exits. Never returns.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

}  // namespace r1::dist
