#pragma once
// The mpi backend: collectives over MPI_COMM_WORLD on host memory. Plain C++ header (no mpi.h), so
// only the dist/ sources compile against MPI.
#include <memory>

#include "dist/comm.h"

namespace r1::dist {

// Needs MPI initialised; every MPI failure becomes an r1::Error naming the call and the rank (the
// world's error handler must be MPI_ERRORS_RETURN, which dist::init sets).
std::unique_ptr<Comm> make_mpi_comm();

// Throws r1::Error "rank R: CALL failed: MPI's message" when `code` is not MPI_SUCCESS; `rank` is
// -1 when not yet known.
void check_mpi(int code, const char* call, int rank);

}  // namespace r1::dist
