#pragma once
// Shared helpers for the tests: temporary directories and running the r1 binary.
#include <string>
#include <vector>

namespace r1::test {

// A fresh directory under /tmp, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code;
  std::string out, err;
};
// Runs `build/r1 ARGS` with `input` on stdin; captures stdout and stderr.
RunResult run_r1(const std::string& args, const std::string& input = "");
// Runs a shell command line with `input` on stdin; captures stdout and stderr.
RunResult run_command(const std::string& command, const std::string& input = "");

// "mpirun -np NP ... " (with a trailing space): the launcher prefix for multi-rank tests, quiet and
// reliable in a container and on a CI runner of 2 cores (see test_util.cpp for each option).
std::string mpirun_command(int np);
// `timeout LIMIT_S mpirun -np NP PROGRAM_AND_ARGS`: a hang fails the caller instead of stalling
// the suite (exit code 124).
RunResult run_mpi(int np, const std::string& program_and_args, int limit_s = 120);
// GPUs this process can see (0 in a build without CUDA or without a driver).
int gpu_count();

std::string source_path(const std::string& rel);  // path inside the source tree
std::vector<std::string> read_lines(const std::string& path);

}  // namespace r1::test
