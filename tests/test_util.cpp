#include "test_util.h"

#ifdef R1_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace r1::test {

TempDir::TempDir() {
  char tmpl[] = "/tmp/r1test.XXXXXX";
  char* p = mkdtemp(tmpl);
  path_ = p ? p : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

RunResult run_r1(const std::string& args, const std::string& input) {
  return run_command(std::string(R1_BINARY) + " " + args, input);
}

RunResult run_command(const std::string& command, const std::string& input) {
  TempDir io;
  {
    std::ofstream(io.file("in")) << input;
  }
  std::string cmd = command + " <" + io.file("in") + " >" + io.file("out") + " 2>" + io.file("err");
  int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(io.file("out"));
  r.err = slurp(io.file("err"));
  return r;
}

std::string mpirun_command(int np) {
  return "mpirun -np " + std::to_string(np) +
         // more ranks than cores (3 ranks on a 2-core runner)
         " --oversubscribe"
         // containers and CI runners often run tests as root, which mpirun refuses by default
         " --allow-run-as-root"
         // no pinning: mpirun would pin each rank to a core that other tests (ctest -j) use too
         " --bind-to none"
         // one host: shared memory and self, chosen outright rather than by probing the network
         // transports (UCX, verbs, OFI, TCP) a container lacks; starts in 0.1 s instead of 0.3 s
         " --mca pml ob1 --mca btl self,vader"
         // the shared-memory transport's single-copy mode needs ptrace rights (CMA), which
         // containers without CAP_SYS_PTRACE deny mid-run; plain copies always work
         " --mca btl_vader_single_copy_mechanism none"
         // one OpenMP thread per rank, sleeping when idle, so ranks do not fight over the cores
         " -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE ";
}

RunResult run_mpi(int np, const std::string& program_and_args, int limit_s) {
  return run_command("timeout " + std::to_string(limit_s) + " " + mpirun_command(np) + program_and_args);
}

int gpu_count() {
#ifdef R1_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) == cudaSuccess) return n;
  cudaGetLastError();  // no driver: clear the error for the tests that follow
#endif
  return 0;
}

std::string source_path(const std::string& rel) { return std::string(R1_SOURCE_DIR) + "/" + rel; }

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(in, l))
    if (!l.empty()) lines.push_back(l);
  return lines;
}

}  // namespace r1::test
