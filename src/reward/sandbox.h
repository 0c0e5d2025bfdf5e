#pragma once
// Runs untrusted programs (model-written code) in a child process that cannot hurt the host:
//  - fresh mount, network, PID, IPC and UTS namespaces (user namespace too when not root); the private
//    temp dir is bind-mounted over /tmp, /var/tmp and /dev/shm; the network namespace has no interfaces;
//  - when started as root, an unprivileged uid of its own per sandbox, so RLIMIT_NPROC is enforced (root
//    ignores it) and counts only this sandbox's processes;
//  - rlimits on CPU seconds, address space, processes, file size and open files; no core files;
//  - a seccomp filter (libseccomp): no sockets but AF_UNIX, no ptrace, mount, namespaces, setsid/setpgid
//    (the process group is how we kill everything), kernel modules, bpf, keyrings, ...;
//  - a clean environment (PATH, HOME, LANG only), all other descriptors closed;
//  - a wall-clock deadline, after which the whole process group is killed (and with it the PID
//    namespace); the group is killed again when the program exits, so no stray process survives.
// Each protection that cannot be set up is listed in SandboxResult::missing, never silently dropped.
#include <sys/types.h>

#include <string>
#include <vector>

namespace r1::reward {

struct SandboxLimits {
  int cpu_seconds = 2;
  double wall_seconds = 5.0;
  size_t memory_bytes = size_t(512) << 20;  // RLIMIT_AS
  int processes = 32;                       // RLIMIT_NPROC, for the sandbox uid
  size_t file_bytes = size_t(16) << 20;     // RLIMIT_FSIZE
  int open_files = 64;                      // RLIMIT_NOFILE
  size_t output_bytes = size_t(1) << 20;    // stdout and stderr kept (each); the rest is dropped
};

struct SandboxResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  bool timed_out = false;  // killed at the wall-clock deadline
  bool setup_failed = false;
  std::string out, err;
  double wall_seconds = 0;
  std::vector<std::string> protections;  // what was in force
  std::vector<std::string> missing;      // what could not be set up, with the reason
  bool ok() const { return !timed_out && !setup_failed && signal == 0 && exit_code == 0; }
};

// What this machine allows (probed once by running /bin/true in a sandbox).
struct SandboxSupport {
  bool namespaces = false;      // mount + network + PID namespaces
  bool nproc_enforced = false;  // programs run as an unprivileged uid of their own, so RLIMIT_NPROC holds
  bool seccomp = false;
  std::vector<std::string> missing;
};
const SandboxSupport& sandbox_support();

// A private directory (removed with everything in it on destruction) in which programs run.
class Sandbox {
 public:
  Sandbox();
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  const std::string& dir() const { return dir_; }
  uid_t uid() const { return uid_; }  // the uid programs run as
  void write_file(const std::string& name, const std::string& content);
  // argv[0] must be an absolute path. The program starts in the private dir (seen as /tmp).
  SandboxResult run(const std::vector<std::string>& argv, const std::string& stdin_data,
                    const SandboxLimits& limits) const;

 private:
  uid_t uid_;
  std::string dir_;
};

}  // namespace r1::reward
