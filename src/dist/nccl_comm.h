#pragma once
// The nccl backend (builds with R1_HAVE_CUDA only): collectives over the ranks of a host comm on
// device memory of this rank's GPU (the one the CUDA backend's context uses). Plain C++ header.
#include <memory>

#include "dist/comm.h"

namespace r1::dist {

// Collective over `host`: rank 0 makes the NCCL unique id and host.broadcast()s it, then every rank
// joins. Uses the CUDA backend's device (cuda::select_device), making its context if needed.
std::unique_ptr<Comm> make_nccl_comm(Comm& host, double timeout_s);

}  // namespace r1::dist
