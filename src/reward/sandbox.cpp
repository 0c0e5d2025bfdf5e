#include "reward/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

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
constexpr int kStatusFd = 3;  // the child's report channel to the parent (see report())

// ---- child side: only async-signal-safe calls between fork and exec ----

void report(const char* line) { [[maybe_unused]] ssize_t n = ::write(kStatusFd, line, std::strlen(line)); }

// "<prefix><number>\n" without snprintf.
void report_num(const char* prefix, long v) {
  char buf[64];
  size_t n = 0;
  for (const char* p = prefix; *p && n < 40; ++p) buf[n++] = *p;
  char digits[24];
  int d = 0;
  bool neg = v < 0;
  unsigned long u = neg ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do digits[d++] = char('0' + u % 10); while ((u /= 10) && d < 22);
  if (neg) buf[n++] = '-';
  while (d) buf[n++] = digits[--d];
  buf[n++] = '\n';
  [[maybe_unused]] ssize_t w = ::write(kStatusFd, buf, n);
}

void write_proc(const char* path, const char* text) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  [[maybe_unused]] ssize_t n = ::write(fd, text, std::strlen(text));
  ::close(fd);
}

struct ChildPlan {
  std::vector<char*> argv, envp;
  std::string dir, uid_map, gid_map;
  uid_t uid = 0;
  SandboxLimits limits;
  bool root = false;
  sigset_t parent_mask;
  int in_r = -1, out_w = -1, err_w = -1, status_w = -1;
};

void set_limit(int resource, rlim_t soft, rlim_t hard, const char* failure_prefix) {
  rlimit r{soft, hard};
  if (::setrlimit(resource, &r) != 0) report_num(failure_prefix, errno);
}

// The program's own process: limits, identity, filter, exec.
[[noreturn]] void exec_program(const ChildPlan& p, bool mount_ns, bool pid_ns) {
  if (pid_ns) {  // this process is PID 1 of the new namespace: a /proc that shows only the sandbox
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) report("+private /proc\n");
    else report_num("-private /proc: errno ", errno);
  }
  const SandboxLimits& l = p.limits;
  set_limit(RLIMIT_CPU, rlim_t(l.cpu_seconds), rlim_t(l.cpu_seconds + 1), "-RLIMIT_CPU: errno ");
  set_limit(RLIMIT_AS, l.memory_bytes, l.memory_bytes, "-RLIMIT_AS: errno ");
  set_limit(RLIMIT_NPROC, rlim_t(l.processes), rlim_t(l.processes), "-RLIMIT_NPROC: errno ");
  set_limit(RLIMIT_FSIZE, l.file_bytes, l.file_bytes, "-RLIMIT_FSIZE: errno ");
  set_limit(RLIMIT_NOFILE, rlim_t(l.open_files), rlim_t(l.open_files), "-RLIMIT_NOFILE: errno ");
  set_limit(RLIMIT_CORE, 0, 0, "-RLIMIT_CORE: errno ");
  if (::chdir(mount_ns ? "/tmp" : p.dir.c_str()) != 0) {
    report_num("Xchdir errno ", errno);
    ::_exit(127);
  }
  if (p.root) {  // never run model code as root; as nobody, RLIMIT_NPROC is enforced
    if (::setgroups(0, nullptr) != 0 || ::setgid(p.uid) != 0 || ::setuid(p.uid) != 0) {
      report_num("Xsetuid errno ", errno);
      ::_exit(127);
    }
    report("+unprivileged uid of its own\n");
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // after setuid, which clears it
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  const std::vector<sock_filter>& f = seccomp_program();
  sock_fprog prog{static_cast<unsigned short>(f.size()), const_cast<sock_filter*>(f.data())};
  if (!f.empty() && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0) report("+seccomp\n");
  else report_num("-seccomp: errno ", f.empty() ? 0 : errno);
  report("+rlimits\n+clean environment\n");
  ::execve(p.argv[0], p.argv.data(), p.envp.data());
  report_num("Xexec errno ", errno);
  ::_exit(127);
}

[[noreturn]] void child_main(const ChildPlan& p) {
  ::sigprocmask(SIG_SETMASK, &p.parent_mask, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::setpgid(0, 0);
  if (::dup2(p.in_r, 0) < 0 || ::dup2(p.out_w, 1) < 0 || ::dup2(p.err_w, 2) < 0 ||
      ::dup2(p.status_w, kStatusFd) < 0)
    ::_exit(127);
  ::syscall(SYS_close_range, kStatusFd + 1, ~0U, 0);
  ::fcntl(kStatusFd, F_SETFD, FD_CLOEXEC);  // the report channel closes at exec

  int flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  bool ns = ::unshare(flags | (p.root ? 0 : CLONE_NEWUSER)) == 0;
  if (ns) {
    if (!p.root) {  // map ourselves to root of the new user namespace, to be allowed to mount
      write_proc("/proc/self/setgroups", "deny");
      write_proc("/proc/self/uid_map", p.uid_map.c_str());
      write_proc("/proc/self/gid_map", p.gid_map.c_str());
    }
    report("+mount, network, PID, IPC and UTS namespaces\n");
  } else {
    report_num("-namespaces (mount, network, PID): unshare errno ", errno);
  }
  bool mount_ns = false;
  if (ns && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0) {
    // /var/tmp and /dev/shm first: once /tmp is covered, the private dir's own path is gone.
    for (const char* d : {"/var/tmp", "/dev/shm"}) ::mount(p.dir.c_str(), d, nullptr, MS_BIND, nullptr);
    mount_ns = ::mount(p.dir.c_str(), "/tmp", nullptr, MS_BIND, nullptr) == 0;
  }
  if (mount_ns) report("+private /tmp\n");
  else if (ns) report_num("-private /tmp: errno ", errno);
  if (!ns) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    exec_program(p, false, false);
  }
  // A new PID namespace takes effect for children: the program runs as its PID 1, so when it dies
  // the kernel kills everything it started.
  pid_t pid = ::fork();
  if (pid < 0) {
    report_num("Xfork errno ", errno);
    ::_exit(127);
  }
  if (pid == 0) exec_program(p, mount_ns, true);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (int fd = 0; fd <= 2; ++fd) ::close(fd);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  report_num("W", st);
  ::_exit(0);
}

// ---- parent side ----

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

void read_some(int& fd, std::string& into, size_t cap) {
  char buf[65536];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n > 0) {
    size_t keep = into.size() < cap ? std::min(size_t(n), cap - into.size()) : 0;
    into.append(buf, keep);
  } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
    ::close(fd);
    fd = -1;
  }
}

struct Pipes {
  int fd[4][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};  // stdin, stdout, stderr, status
  ~Pipes() {
    for (auto& p : fd)
      for (int f : p)
        if (f >= 0) ::close(f);
  }
};

}  // namespace

Sandbox::Sandbox() : uid_(::geteuid() == 0 ? next_sandbox_uid() : ::geteuid()) {
  char tmpl[] = "/tmp/r1sbx.XXXXXX";
  R1_CHECK(::mkdtemp(tmpl) != nullptr, "sandbox: cannot create a temp dir: {}", std::strerror(errno));
  dir_ = tmpl;
  if (::geteuid() == 0 && ::chown(dir_.c_str(), uid_, uid_) != 0)
    fail("sandbox: cannot hand {} to uid {}: {}", dir_, uid_, std::strerror(errno));
}

Sandbox::~Sandbox() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void Sandbox::write_file(const std::string& name, const std::string& content) {
  std::ofstream f(dir_ + "/" + name, std::ios::binary);
  f << content;
  R1_CHECK(f.good(), "sandbox: cannot write {}/{}", dir_, name);
}

SandboxResult Sandbox::run(const std::vector<std::string>& argv_in, const std::string& stdin_data,
                           const SandboxLimits& limits) const {
  R1_CHECK(!argv_in.empty() && argv_in[0].starts_with("/"), "sandbox: argv[0] must be an absolute path");
  counters().sandbox_runs++;
  auto t0 = std::chrono::steady_clock::now();
  // Everything the child needs is built here, before fork.
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "TMPDIR=/tmp", "LANG=C.UTF-8"};
  ChildPlan plan;
  plan.argv = c_strings(argv);
  plan.envp = c_strings(env);
  plan.dir = dir_;
  plan.limits = limits;
  plan.root = ::geteuid() == 0;
  plan.uid = uid_;
  plan.uid_map = "0 " + std::to_string(::geteuid()) + " 1";
  plan.gid_map = "0 " + std::to_string(::getegid()) + " 1";
  seccomp_program();  // compile the filter outside the child

  Pipes pp;
  for (auto& p : pp.fd)
    R1_CHECK(::pipe2(p, O_CLOEXEC) == 0, "sandbox: pipe: {}", std::strerror(errno));
  plan.in_r = pp.fd[0][0];
  plan.out_w = pp.fd[1][1];
  plan.err_w = pp.fd[2][1];
  plan.status_w = pp.fd[3][1];
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
  for (int i : {0, 1, 2, 3}) {
    int& child_end = pp.fd[i][i == 0 ? 0 : 1];
    ::close(child_end);
    child_end = -1;
  }
  int& in_w = pp.fd[0][1];
  int& out_r = pp.fd[1][0];
  int& err_r = pp.fd[2][0];
  int& st_r = pp.fd[3][0];
  for (int fd : {in_w, out_r, err_r, st_r}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (stdin_data.empty()) ::close(in_w), in_w = -1;

  SandboxResult r;
  std::string status;
  size_t in_off = 0;
  bool exited = false;
  auto deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(limits.wall_seconds));
  for (;;) {
    if (!exited) {
      siginfo_t si{};
      if (::waitid(P_PID, pid_t(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid) {
        exited = true;
        ::kill(-pid, SIGKILL);  // stragglers it left behind; the zombie still holds the group id
      }
    }
    auto now = std::chrono::steady_clock::now();
    if (!r.timed_out && now >= deadline) {
      r.timed_out = true;
      ::kill(-pid, SIGKILL);
    }
    if (exited && out_r < 0 && err_r < 0 && st_r < 0) break;
    if (r.timed_out && now >= deadline + std::chrono::seconds(2)) break;  // something holds a pipe: give up
    pollfd fds[4];
    int n = 0;
    if (in_w >= 0) fds[n++] = {in_w, POLLOUT, 0};
    for (int fd : {out_r, err_r, st_r})
      if (fd >= 0) fds[n++] = {fd, POLLIN, 0};
    ::poll(fds, nfds_t(n), 10);
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      int fd = fds[i].fd;
      if (fd == in_w) {
        ssize_t w = ::write(in_w, stdin_data.data() + in_off, stdin_data.size() - in_off);
        if (w > 0) in_off += size_t(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || in_off == stdin_data.size()) ::close(in_w), in_w = -1;
      } else if (fd == out_r) {
        read_some(out_r, r.out, limits.output_bytes);
      } else if (fd == err_r) {
        read_some(err_r, r.err, limits.output_bytes);
      } else if (fd == st_r) {
        read_some(st_r, status, 1 << 16);
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

  // The child's report: "+protection", "-missing", "W<wait status of the program>", "X<setup failure>".
  size_t start = 0;
  for (size_t nl; (nl = status.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = status.substr(start, nl - start);
    if (line.empty()) continue;
    if (line[0] == '+') r.protections.push_back(line.substr(1));
    if (line[0] == '-') r.missing.push_back(line.substr(1));
    if (line[0] == 'W') wst = std::atoi(line.c_str() + 1);
    if (line[0] == 'X') r.setup_failed = true, r.missing.push_back("setup failed: " + line.substr(1));
  }
  if (WIFEXITED(wst)) r.exit_code = WEXITSTATUS(wst);
  if (WIFSIGNALED(wst)) r.signal = WTERMSIG(wst);
  if (!plan.root) r.missing.push_back("unprivileged uid: not started as root, so RLIMIT_NPROC counts the invoking user");
  if (r.timed_out) counters().sandbox_timeouts++;
  if (r.setup_failed) counters().sandbox_errors++;
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

const SandboxSupport& sandbox_support() {
  static const SandboxSupport s = [] {
    SandboxSupport s;
    try {
      Sandbox box;
      SandboxResult r = box.run({"/bin/true"}, "", SandboxLimits{});
      auto has = [&](const std::string& p) {
        return std::find(r.protections.begin(), r.protections.end(), p) != r.protections.end();
      };
      s.namespaces = has("mount, network, PID, IPC and UTS namespaces") && has("private /tmp");
      s.nproc_enforced = has("unprivileged uid of its own");
      s.seccomp = has("seccomp");
      s.missing = r.missing;
      if (!r.ok()) s.missing.push_back("probe /bin/true failed");
    } catch (const std::exception& e) {
      s.missing.push_back(e.what());
    }
    return s;
  }();
  return s;
}

}  // namespace r1::reward
