#pragma once
// Runs untrusted programs (model-written code) in a child process that cannot hurt the host:
//  - fresh mount, network, PID, IPC and UTS namespaces (a user namespace too when not root); the
//    network namespace has no interfaces;
//  - a private read-only root: a tmpfs holding only read-only binds of the system directories the
//    interpreter and compiler need (/usr and its /bin, /lib links, /etc/ld.so.cache), /dev/null,
//    /dev/zero, /dev/urandom, its own /proc, and the job's directory as the only writable /tmp;
//    the host's files (data, other jobs, the expected outputs) are not there to read;
//  - when started as root, an unprivileged uid of its own per sandbox, so RLIMIT_NPROC is enforced
//    (root ignores it) and counts only this sandbox's processes;
//  - rlimits on CPU seconds, address space, processes, file size and open files; no core files;
//  - a seccomp filter (libseccomp): no sockets but AF_UNIX, no ptrace, mount, namespaces, io_uring,
//    setsid/setpgid (the process group is how we kill everything), kernel modules, bpf, keyrings, ...;
//  - a clean environment (PATH, HOME, LANG only), all other descriptors closed;
//  - a wall-clock deadline, after which the whole process group is killed (and with it the PID
//    namespace); the group is killed again when the program exits, so no stray process survives.
// Fails closed: when a protection cannot be set up the program is not started (SandboxResult::
// setup_failed, the protection named in `missing`), unless SandboxOptions::allow_unsandboxed says
// the caller accepts the risk; then it runs with what could be set up and `missing` lists the rest.
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
  size_t output_bytes = size_t(1) << 20;    // stdout kept: more kills the program; stderr: the rest dropped
};

struct SandboxOptions {
  // Run even when a protection cannot be set up (the caller accepts the risk; `missing` says what).
  bool allow_unsandboxed = false;
  // Host paths the program sees read-only at the same place (symbolic links are recreated as links).
  std::vector<std::string> read_only_paths = {"/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc/ld.so.cache"};
};

struct SandboxResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  bool timed_out = false;        // killed at the wall-clock deadline
  bool output_exceeded = false;  // killed for writing more than output_bytes to stdout
  bool cancelled = false;        // killed because SandboxIo::cancel_fd became readable
  bool setup_failed = false;     // the program never started (a protection is missing, or exec failed)
  std::string out, err;
  double wall_seconds = 0;
  std::vector<std::string> protections;  // what was in force
  std::vector<std::string> missing;      // what could not be set up, with the reason
  bool ok() const {
    return !timed_out && !output_exceeded && !cancelled && !setup_failed && signal == 0 && exit_code == 0;
  }
};

// Descriptors a run uses instead of its own pipes. run() closes stdin_fd, stdout_fd and pass_fds
// (always, as soon as the program holds its copies); cancel_fd stays the caller's.
struct SandboxIo {
  int stdin_fd = -1;          // the program's stdin instead of stdin_data
  int stdout_fd = -1;         // the program's stdout instead of a captured pipe
  std::vector<int> pass_fds;  // become the program's descriptors 4, 5, ...
  int cancel_fd = -1;         // when readable or closed at its far end, the program is killed
};

// What this machine allows (probed once a process by running /bin/true in a sandbox that may run
// unprotected).
struct SandboxSupport {
  bool namespaces = false;      // mount + network + PID namespaces
  bool private_root = false;    // the read-only root with only the job's directory writable
  bool nproc_enforced = false;  // programs run as a uid of their own, so RLIMIT_NPROC holds
  bool seccomp = false;
  std::vector<std::string> missing;  // empty: every protection works here
  bool complete() const { return missing.empty(); }
};
SandboxSupport sandbox_support();

// A private directory (removed with everything in it on destruction) in which programs run.
class Sandbox {
 public:
  explicit Sandbox(SandboxOptions o = {});
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  const std::string& dir() const { return dir_; }  // the job's directory on the host (the program's /tmp)
  uid_t uid() const { return uid_; }               // the uid programs run as
  void write_file(const std::string& name, const std::string& content);
  // argv[0] is an absolute path, or "./NAME" for a program in the job's directory. The program
  // starts in the job's directory (named /tmp inside), so job files are named relative to it.
  SandboxResult run(const std::vector<std::string>& argv, const std::string& stdin_data,
                    const SandboxLimits& limits, const SandboxIo& io = {}) const;

 private:
  SandboxOptions o_;
  uid_t uid_;
  std::string base_, dir_, root_;  // base_ holds dir_ (the job's files) and root_ (a mount point)
};

}  // namespace r1::reward
