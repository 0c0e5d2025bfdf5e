// The sandbox's parent side: the job's directory, the plan the child follows (sandbox_child.cpp),
// and the run loop that feeds stdin, collects output and enforces the wall clock.
#include "reward/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>

#include "base/error.h"
#include "reward/reward.h"
#include "reward/sandbox_internal.h"

namespace r1::reward {
namespace {

// Each sandbox gets a uid of its own (no passwd entry needed): RLIMIT_NPROC counts processes per uid,
// so a fork bomb in one sandbox cannot starve the compiler of another running beside it.
constexpr uid_t kUidBase = 1600000000;
uid_t next_sandbox_uid() {
  static std::atomic<uint32_t> counter{0};
  return kUidBase + ((uint32_t(::getpid()) & 0xFFFFF) << 8 | (counter.fetch_add(1) & 0xFF));
}

// 128 random bits in hex: the job's host path cannot be guessed.
std::string random_name() {
  unsigned char b[16];
  R1_CHECK(::getrandom(b, sizeof b, 0) == ssize_t(sizeof b), "sandbox: getrandom: {}", std::strerror(errno));
  std::string s;
  for (unsigned char c : b) s += fmt::format("{:02x}", c);
  return s;
}

// Kernels from 5.14 count RLIMIT_NPROC per user namespace, so a sandbox in its own user namespace
// (started without root) has a process count of its own too.
bool nproc_per_user_namespace() {
  utsname u{};
  int major = 0, minor = 0;
  return ::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
         (major > 5 || (major == 5 && minor >= 14));
}

constexpr const char* kOwnNprocNamespace = "process limit counted in its own user namespace";
constexpr const char* kNoOwnNproc =
    "unprivileged uid of its own: not root, and no user namespace of its own to count RLIMIT_NPROC in";

unsigned long locked_mount_flags(const std::string& path) {
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) return 0;
  unsigned long f = 0;
  if (v.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (v.f_flag & ST_NODEV) f |= MS_NODEV;
  if (v.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (v.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (v.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (v.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

// What the private root holds: the read-only paths that exist here, then the /dev nodes.
void plan_root(const SandboxOptions& o, const std::string& root, ChildPlan& plan) {
  auto add_parents = [&](const std::string& host) {
    for (size_t p = host.find('/', 1); p != std::string::npos; p = host.find('/', p + 1)) {
      std::string d = root + host.substr(0, p);
      if (std::find(plan.mkdirs.begin(), plan.mkdirs.end(), d) == plan.mkdirs.end()) plan.mkdirs.push_back(d);
    }
  };
  auto add = [&](const std::string& host, bool writable) {
    struct stat st {};
    if (host.empty() || host[0] != '/' || host == "/" || ::lstat(host.c_str(), &st) != 0) return;
    RootEntry e{host, root + host, "", S_ISDIR(st.st_mode), writable, locked_mount_flags(host)};
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
      if (n <= 0) return;
      e.link_target.assign(target, size_t(n));
    }
    add_parents(host);
    plan.entries.push_back(std::move(e));
  };
  for (const std::string& p : o.read_only_paths) add(p, false);
  for (const char* dev : {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}) add(dev, true);
  for (const char* d : {"/tmp", "/proc", "/dev", "/dev/shm"}) add_parents(std::string(d) + "/x");
  plan.root_tmp = root + "/tmp";
  plan.root_shm = root + "/dev/shm";
  plan.root_proc = root + "/proc";
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Appends what is readable; returns how many bytes did not fit under `cap`.
size_t read_some(int& fd, std::string& into, size_t cap) {
  char buf[65536];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0) {
    size_t keep = into.size() < cap ? std::min(size_t(n), cap - into.size()) : 0;
    into.append(buf, keep);
    return size_t(n) - keep;
  }
  if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    ::close(fd);
    fd = -1;
  }
  return 0;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// The descriptors of one run: our pipes and the caller's SandboxIo ones, all closed here.
struct RunFds {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1};
  SandboxIo io;
  explicit RunFds(const SandboxIo& given) : io(given) {}
  void close_child_ends() {
    close_fd(in[0]), close_fd(out[1]), close_fd(err[1]), close_fd(st[1]);
    close_fd(io.stdin_fd), close_fd(io.stdout_fd);
    for (int& fd : io.pass_fds) close_fd(fd);
  }
  ~RunFds() {
    close_child_ends();
    close_fd(in[1]), close_fd(out[0]), close_fd(err[0]), close_fd(st[0]);
  }
};

void parse_status(const std::string& status, SandboxResult& r, int& wst) {
  size_t start = 0;
  for (size_t nl; (nl = status.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = status.substr(start, nl - start);
    if (line.empty()) continue;
    if (line[0] == '+') r.protections.push_back(line.substr(1));
    if (line[0] == '-') r.missing.push_back(line.substr(1));
    if (line[0] == 'W') wst = std::atoi(line.c_str() + 1);
    if (line[0] == 'X') r.setup_failed = true, r.missing.push_back("setup failed: " + line.substr(1));
  }
}

}  // namespace

Sandbox::Sandbox(SandboxOptions o)
    : o_(std::move(o)), uid_(::geteuid() == 0 ? next_sandbox_uid() : ::geteuid()) {
  base_ = "/tmp/r1sbx-" + random_name();
  // 0711: a program running without a private root (allow_unsandboxed) reaches its own directory by
  // path; the directory itself is 0700 and its uid's alone.
  R1_CHECK(::mkdir(base_.c_str(), 0711) == 0 && ::chmod(base_.c_str(), 0711) == 0,
           "sandbox: cannot create {}: {}", base_, std::strerror(errno));
  dir_ = base_ + "/work";
  root_ = base_ + "/root";
  R1_CHECK(::mkdir(dir_.c_str(), 0700) == 0 && ::mkdir(root_.c_str(), 0700) == 0,
           "sandbox: cannot create {}/*: {}", base_, std::strerror(errno));
  if (::geteuid() == 0 && ::chown(dir_.c_str(), uid_, uid_) != 0)
    fail("sandbox: cannot hand {} to uid {}: {}", dir_, uid_, std::strerror(errno));
}

Sandbox::~Sandbox() {
  std::error_code ec;
  std::filesystem::remove_all(base_, ec);
}

void Sandbox::write_file(const std::string& name, const std::string& content) {
  std::ofstream f(dir_ + "/" + name, std::ios::binary);
  f << content;
  R1_CHECK(f.good(), "sandbox: cannot write {}/{}", dir_, name);
}

SandboxResult Sandbox::run(const std::vector<std::string>& argv_in, const std::string& stdin_data,
                           const SandboxLimits& limits, const SandboxIo& io) const {
  RunFds fds(io);
  // Without root, the process count is the program's own only in a user namespace of a new kernel.
  if (::geteuid() != 0 && !nproc_per_user_namespace() && !o_.allow_unsandboxed) {
    SandboxResult refused;
    refused.setup_failed = true;
    refused.missing = {kNoOwnNproc,
                       "setup failed: refused to run the program: a protection is missing "
                       "(allow_unsandboxed is off)"};
    counters().sandbox_errors++;
    return refused;
  }
  R1_CHECK(!argv_in.empty() && (argv_in[0].starts_with("/") || argv_in[0].starts_with("./")),
           "sandbox: argv[0] must be an absolute path or ./NAME (got '{}')",
           argv_in.empty() ? "" : argv_in[0]);
  R1_CHECK(io.pass_fds.size() <= 8, "sandbox: at most 8 passed descriptors");
  counters().sandbox_runs++;
  auto t0 = std::chrono::steady_clock::now();
  // Everything the child needs is built here, before fork.
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"};
  ChildPlan plan;
  plan.argv = c_strings(argv);
  plan.envp = c_strings(env);
  plan.dir = dir_;
  plan.root = root_;
  plan_root(o_, root_, plan);
  plan.limits = limits;
  plan.root_user = ::geteuid() == 0;
  plan.allow_unsandboxed = o_.allow_unsandboxed;
  plan.uid = uid_;
  plan.uid_map = "0 " + std::to_string(::geteuid()) + " 1";
  plan.gid_map = "0 " + std::to_string(::getegid()) + " 1";
  seccomp_program();  // compile the filter outside the child

  for (int* p : {fds.in, fds.out, fds.err, fds.st})
    R1_CHECK(::pipe2(p, O_CLOEXEC) == 0, "sandbox: pipe: {}", std::strerror(errno));
  plan.in_r = io.stdin_fd >= 0 ? io.stdin_fd : fds.in[0];
  plan.out_w = io.stdout_fd >= 0 ? io.stdout_fd : fds.out[1];
  plan.err_w = fds.err[1];
  plan.status_w = fds.st[1];
  plan.pass_fds = io.pass_fds;
  // A program that exits without reading its stdin must not kill us with SIGPIPE.
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  plan.parent_mask = old;

  pid_t pid = ::fork();
  if (pid < 0) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    counters().sandbox_errors++;
    fail("sandbox: fork: {}", std::strerror(errno));
  }
  if (pid == 0) child_main(plan);
  ::setpgid(pid, pid);  // also done by the child: whichever runs first
  fds.close_child_ends();
  int& in_w = fds.in[1];
  int& out_r = fds.out[0];
  int& err_r = fds.err[0];
  int& st_r = fds.st[0];
  if (io.stdout_fd >= 0) close_fd(out_r);  // the caller reads the program's stdout
  for (int fd : {in_w, out_r, err_r, st_r})
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (stdin_data.empty() || io.stdin_fd >= 0) close_fd(in_w);

  SandboxResult r;
  std::string status;
  size_t in_off = 0;
  bool exited = false;
  auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(limits.wall_seconds));
  std::optional<std::chrono::steady_clock::time_point> killed_at;
  auto kill_now = [&](bool& why) {  // once, for the first reason
    if (exited || killed_at) return;
    why = true;
    killed_at = std::chrono::steady_clock::now();
    ::kill(-pid, SIGKILL);
  };
  for (;;) {
    if (!exited) {
      siginfo_t si{};
      if (::waitid(P_PID, id_t(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
        exited = true;
        ::kill(-pid, SIGKILL);  // stragglers it left behind; the zombie still holds the group id
        if (!killed_at) killed_at = std::chrono::steady_clock::now();  // bounds the wait for its pipes
      }
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) kill_now(r.timed_out);
    if (exited && out_r < 0 && err_r < 0 && st_r < 0) break;
    if (killed_at && now >= *killed_at + std::chrono::seconds(2)) break;  // something holds a pipe: give up
    pollfd pfd[5];
    int n = 0;
    if (in_w >= 0) pfd[n++] = {in_w, POLLOUT, 0};
    for (int fd : {out_r, err_r, st_r})
      if (fd >= 0) pfd[n++] = {fd, POLLIN, 0};
    if (io.cancel_fd >= 0 && !killed_at) pfd[n++] = {io.cancel_fd, POLLIN, 0};
    ::poll(pfd, nfds_t(n), 10);
    for (int i = 0; i < n; ++i) {
      if (!pfd[i].revents) continue;
      int fd = pfd[i].fd;
      if (fd == in_w) {
        ssize_t w = ::write(in_w, stdin_data.data() + in_off, stdin_data.size() - in_off);
        if (w > 0) in_off += size_t(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == stdin_data.size()) close_fd(in_w);
      } else if (fd == out_r) {
        if (read_some(out_r, r.out, limits.output_bytes) > 0) kill_now(r.output_exceeded);
      } else if (fd == err_r) {
        read_some(err_r, r.err, limits.output_bytes);
      } else if (fd == st_r) {
        read_some(st_r, status, 1 << 16);
      } else if (fd == io.cancel_fd) {
        kill_now(r.cancelled);
      }
    }
  }
  ::kill(-pid, SIGKILL);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
  }
  // Drop the SIGPIPE we may have caught, then restore the thread's mask.
  timespec zero{0, 0};
  while (sigtimedwait(&pipe_only, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  parse_status(status, r, wst);
  if (WIFEXITED(wst)) r.exit_code = WEXITSTATUS(wst);
  if (WIFSIGNALED(wst)) r.signal = WTERMSIG(wst);
  if (!plan.root_user) {
    bool own_ns = std::find(r.protections.begin(), r.protections.end(),
                            "mount, network, PID, IPC and UTS namespaces") != r.protections.end();
    if (own_ns && nproc_per_user_namespace())
      r.protections.push_back(kOwnNprocNamespace);
    else
      r.missing.push_back(kNoOwnNproc);
  }
  if (r.timed_out) counters().sandbox_timeouts++;
  if (r.setup_failed) counters().sandbox_errors++;
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

namespace {

SandboxSupport probe_support() {
  SandboxSupport s;
  try {
    SandboxOptions o;
    o.allow_unsandboxed = true;  // to learn everything that is missing, not just the first
    Sandbox box(o);
    SandboxResult r = box.run({"/bin/true"}, "", SandboxLimits{});
    auto has = [&](const std::string& p) {
      return std::find(r.protections.begin(), r.protections.end(), p) != r.protections.end();
    };
    s.namespaces = has("mount, network, PID, IPC and UTS namespaces");
    s.private_root = has("private read-only root");
    s.nproc_enforced = has("unprivileged uid of its own") || has(kOwnNprocNamespace);
    s.seccomp = has("seccomp");
    s.missing = r.missing;
    if (!r.ok())
      s.missing.push_back(
          fmt::format("probe: /bin/true in the sandbox failed (exit {}, signal {})", r.exit_code, r.signal));
  } catch (const std::exception& e) {
    s.missing.push_back(e.what());
  }
  return s;
}

}  // namespace

// The answer holds for the process that probed: a forked child that has since lost a protection
// (a seccomp filter of its own, dropped privileges) probes again rather than inherit its parent's.
SandboxSupport sandbox_support() {
  static std::mutex mu;
  static std::optional<SandboxSupport> probed;
  static pid_t prober = 0;
  const std::lock_guard<std::mutex> lock(mu);
  if (!probed || prober != ::getpid()) {
    probed = probe_support();
    prober = ::getpid();
  }
  return *probed;
}

}  // namespace r1::reward
