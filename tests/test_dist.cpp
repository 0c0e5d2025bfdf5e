// The communication layer: the single comm in this process, and the mpi and nccl comms in jobs that
// mpirun starts (the r1_comm_worker program checks every collective on every rank).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.h"
#include "dist/comm.h"
#include "dist/world.h"
#include "require_gpu.h"
#include "test_util.h"
#ifdef R1_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace r1 {
namespace {

using dist::Op;
using dist::Type;

struct Timed {
  test::RunResult run;
  double seconds;
};

// `timeout` bounds every job: a hang must fail the test, not stall the suite.
Timed run_job(int np, const std::string& program_and_args, int limit_s = 60) {
  const auto start = std::chrono::steady_clock::now();
  auto run = test::run_mpi(np, program_and_args, limit_s);
  return {run, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

void expect_all_checks_pass(int np, const std::string& device, const std::string& extra = "") {
  auto job = run_job(np, std::string(R1_COMM_WORKER) + " --device " + device + extra);
  EXPECT_EQ(job.run.exit_code, 0) << job.run.out << job.run.err;
  EXPECT_NE(job.run.out.find("PASSED"), std::string::npos) << job.run.out << job.run.err;
  EXPECT_EQ(job.run.out.find("FAIL"), std::string::npos) << job.run.out;
}

TEST(DistSingle, CollectivesAreCopiesInOneProcess) {
  auto comm = dist::make_single_comm();
  EXPECT_STREQ(comm->backend(), "single");
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_FALSE(comm->on_device());
  EXPECT_EQ(comm->stream(), nullptr);

  std::vector<float> x = {1.5f, -2.f, 3.f};
  comm->all_reduce(x.data(), 3, Type::F32, Op::Max);
  EXPECT_EQ(x, (std::vector<float>{1.5f, -2.f, 3.f}));

  const std::vector<int64_t> send = {7, 8, 9};
  std::vector<int64_t> recv(3, 0);
  comm->reduce_scatter(send.data(), recv.data(), {3}, Type::I64);
  EXPECT_EQ(recv, send);

  std::vector<double> gathered(2, 0.0);
  const std::vector<double> mine = {0.25, 0.5};
  comm->all_gather(mine.data(), gathered.data(), {2}, Type::F64);
  EXPECT_EQ(gathered, mine);
  comm->all_gather(gathered.data(), gathered.data(), {2}, Type::F64);  // in place
  EXPECT_EQ(gathered, mine);

  std::vector<int32_t> b = {4, 5};
  comm->broadcast(b.data(), 2, Type::I32, 0);
  EXPECT_EQ(b, (std::vector<int32_t>{4, 5}));
  EXPECT_THROW(comm->broadcast(b.data(), 2, Type::I32, 1), Error);
  EXPECT_THROW(comm->reduce_scatter(send.data(), recv.data(), {1, 2}, Type::I64), Error);
  comm->barrier();
  comm->synchronize();

  EXPECT_EQ(comm->all_reduce_scalar(2.5), 2.5);
  EXPECT_EQ(comm->all_reduce_scalar(int64_t(-3), Op::Min), -3);
  EXPECT_EQ(comm->all_gather_strings("abc"), (std::vector<std::string>{"abc"}));
  EXPECT_EQ(comm->all_gather_strings(""), (std::vector<std::string>{""}));
}

TEST(DistSingle, TypeSizes) {
  EXPECT_EQ(dist::type_size(Type::U8), 1u);
  EXPECT_EQ(dist::type_size(Type::I32), 4u);
  EXPECT_EQ(dist::type_size(Type::I64), 8u);
  EXPECT_EQ(dist::type_size(Type::F32), 4u);
  EXPECT_EQ(dist::type_size(Type::F64), 8u);
}

// The test program is not started by mpirun: it is the only rank and its comms are single ones.
TEST(DistSingle, WorldWithoutLauncher) {
  EXPECT_EQ(dist::world_size(), 1);
  EXPECT_EQ(dist::rank(), 0);
  EXPECT_TRUE(dist::is_root());
  EXPECT_FALSE(dist::launch().mpi);
  EXPECT_STREQ(dist::host_comm().backend(), "single");
  EXPECT_EQ(&dist::device_comm(Device::CPU), &dist::host_comm());
  if (!device_usable(Device::CUDA)) {
    EXPECT_THROW(dist::device_comm(Device::CUDA), Error);
  }
}

TEST(DistMpi, CollectivesTwoRanks) { expect_all_checks_pass(2, "cpu"); }

// Three ranks on two cores: chunks of unequal sizes land at offsets a 2-rank job never uses.
TEST(DistMpi, CollectivesThreeRanks) { expect_all_checks_pass(3, "cpu"); }

// Every collective in pieces of at most 3 elements per call: the path of buffers beyond MPI's int
// counts (ZeRO-1 gathers of models over 2^31 parameters) gives the same bytes as one call.
TEST(DistMpi, CollectivesInPiecesBeyondTheCountLimit) {
  expect_all_checks_pass(2, "cpu", " --max-count 3");
  expect_all_checks_pass(3, "cpu", " --max-count 4");
}

// A rank that dies mid-job must end the job: the survivor waits in an all_reduce that can never
// finish, and mpirun has to take it down rather than leave it hanging until `timeout`.
TEST(DistMpi, DeadRankEndsTheJob) {
  auto job = run_job(2, std::string(R1_COMM_WORKER) + " --device cpu --die-rank 1");
  EXPECT_NE(job.run.exit_code, 0) << job.run.out << job.run.err;
  EXPECT_NE(job.run.exit_code, 124) << "the job hung until timeout killed it\n" << job.run.out << job.run.err;
  EXPECT_LT(job.seconds, 30.0);
  EXPECT_NE(job.run.out.find("[rank 1] exiting abruptly"), std::string::npos) << job.run.out << job.run.err;
}

// An r1::Error on one rank while the other waits in an all_reduce: abort_job ends both.
TEST(DistMpi, ErrorOnOneRankEndsTheJob) {
  auto job = run_job(2, std::string(R1_COMM_WORKER) + " --device cpu --throw-rank 1");
  EXPECT_NE(job.run.exit_code, 0) << job.run.out << job.run.err;
  EXPECT_NE(job.run.exit_code, 124) << "the job hung until timeout killed it\n" << job.run.out << job.run.err;
  EXPECT_LT(job.seconds, 30.0);
  EXPECT_NE(job.run.err.find("error: [rank 1/2] rank 1 fails on purpose"), std::string::npos) << job.run.err;
}

// An r1::Error on the ranks of an r1 job ends it at once, each rank naming itself.
TEST(DistMpi, FailingCommandEndsTheJob) {
  test::TempDir dir;
  auto job = run_job(2, std::string(R1_BINARY) + " grpo " + dir.file("missing.yaml"));
  EXPECT_NE(job.run.exit_code, 0) << job.run.out << job.run.err;
  EXPECT_NE(job.run.exit_code, 124) << "the job hung until timeout killed it\n" << job.run.out << job.run.err;
  EXPECT_LT(job.seconds, 30.0);
  EXPECT_NE(job.run.err.find("error: [rank "), std::string::npos) << job.run.err;
  EXPECT_NE(job.run.err.find("/2] "), std::string::npos) << job.run.err;
}

// A successful r1 command under mpirun finalises MPI on every rank and exits 0.
TEST(DistMpi, SuccessfulCommandFinalizes) {
  auto job = run_job(2, std::string(R1_BINARY) + " --help");
  EXPECT_EQ(job.run.exit_code, 0) << job.run.out << job.run.err;
  EXPECT_LT(job.seconds, 30.0);
}

// One rank per GPU (NCCL refuses two ranks on one device), at most two.
TEST(DistNccl, Collectives) {
  REQUIRE_GPU();
  expect_all_checks_pass(std::min(2, test::gpu_count()), "cuda");
}

// The survivor's synchronize() gives up after R1_DIST_TIMEOUT_S (or mpirun ends it first).
TEST(DistNccl, DeadRankEndsTheJob) {
  REQUIRE_GPU();
  if (test::gpu_count() < 2) GTEST_SKIP() << "needs 2 GPUs";
  auto job = run_job(2, "-x R1_DIST_TIMEOUT_S=10 " + std::string(R1_COMM_WORKER) + " --device cuda --die-rank 1", 120);
  EXPECT_NE(job.run.exit_code, 0) << job.run.out << job.run.err;
  EXPECT_NE(job.run.exit_code, 124) << "the job hung until timeout killed it\n" << job.run.out << job.run.err;
}

}  // namespace
}  // namespace r1
