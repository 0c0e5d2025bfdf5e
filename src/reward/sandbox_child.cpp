// The sandbox's child side: namespaces, the private read-only root, identity, limits, seccomp, exec.
// Runs between fork and exec, so it calls only async-signal-safe functions on data the parent built
// (sandbox_internal.h). Every protection that fails is reported on the status channel and, unless the
// caller allowed running unsandboxed, stops the child before the program starts.
#include <fcntl.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "reward/sandbox_internal.h"

namespace r1::reward {
namespace {

void report(const char* line) { [[maybe_unused]] ssize_t n = ::write(kStatusFd, line, std::strlen(line)); }

// "<prefix><number>\n" without snprintf.
void report_num(const char* prefix, long v) {
  char buf[160];
  size_t n = 0;
  for (const char* p = prefix; *p && n < 120; ++p) buf[n++] = *p;
  char digits[24];
  int d = 0;
  bool neg = v < 0;
  unsigned long u = neg ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do digits[d++] = char('0' + u % 10);
  while ((u /= 10) && d < 22);
  if (neg) buf[n++] = '-';
  while (d) buf[n++] = digits[--d];
  buf[n++] = '\n';
  [[maybe_unused]] ssize_t w = ::write(kStatusFd, buf, n);
}

// A protection could not be set up: say which and why; refuse to go on unless allowed.
// `what` reads "-NAME: CALL errno " so the parent shows "NAME: CALL errno N".
bool missing(const ChildPlan& p, const char* what) {
  report_num(what, errno);
  if (!p.allow_unsandboxed) {
    report("Xrefused to run the program: a protection is missing (allow_unsandboxed is off)\n");
    ::_exit(126);
  }
  return false;
}

bool write_proc(const char* path, const char* text) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text, std::strlen(text)) == ssize_t(std::strlen(text));
  ::close(fd);
  return ok;
}

// `what`: "-rlimits: setrlimit(RLIMIT_CPU) errno ".
void set_limit(const ChildPlan& p, int resource, rlim_t soft, rlim_t hard, const char* what) {
  rlimit r{soft, hard};
  if (::setrlimit(resource, &r) != 0) missing(p, what);
}

// Descriptors in, out, err and status become 0..3 and the passed ones 4.., whatever numbers they had
// (a source may sit on a target's number, so everything moves above all of them first).
void arrange_descriptors(const ChildPlan& p) {
  int src[16], n = 0;
  for (int fd : {p.in_r, p.out_w, p.err_w, p.status_w}) src[n++] = fd;
  for (size_t i = 0; i < p.pass_fds.size() && n < 16; ++i) src[n++] = p.pass_fds[i];
  int above = n;
  for (int i = 0; i < n; ++i) above = src[i] >= above ? src[i] + 1 : above;
  int moved[16];
  for (int i = 0; i < n; ++i)
    if ((moved[i] = ::fcntl(src[i], F_DUPFD, above)) < 0) ::_exit(127);
  for (int i = 0; i < n; ++i)
    if (::dup2(moved[i], i) < 0) ::_exit(127);
  ::syscall(SYS_close_range, unsigned(n), ~0U, 0);
  ::fcntl(kStatusFd, F_SETFD, FD_CLOEXEC);  // the report channel closes at exec
}

bool bind(const RootEntry& e, unsigned long rec) {
  if (e.is_dir) {
    if (::mkdir(e.inside.c_str(), 0755) != 0 && errno != EEXIST) return false;
  } else {
    int fd = ::open(e.inside.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    ::close(fd);
  }
  if (::mount(e.host.c_str(), e.inside.c_str(), nullptr, MS_BIND | rec, nullptr) != 0) return false;
  // The device nodes stay writable (/dev/null) but nothing on them executes; the rest is read-only.
  unsigned long flags = MS_BIND | MS_REMOUNT | MS_NOSUID | e.locked_flags;
  flags |= e.writable ? MS_NOEXEC : (MS_RDONLY | MS_NODEV);
  return ::mount(nullptr, e.inside.c_str(), nullptr, flags, nullptr) == 0;
}

// The private root: a tmpfs with read-only binds of the system paths, the /dev nodes, the job's
// directory as /tmp and /dev/shm, a /proc of this PID namespace; pivoted into, the old root detached,
// then remounted read-only. Runs in the PID namespace's first process (so /proc shows only it).
bool build_private_root(const ChildPlan& p) {
  const unsigned long rec = p.root_user ? 0 : MS_REC;  // user namespaces cannot reveal locked submounts
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return missing(p, "-private root: mount --make-rprivate errno ");
  if (::mount("r1sbx", p.root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755") != 0)
    return missing(p, "-private root: tmpfs errno ");
  for (const std::string& d : p.mkdirs)
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) return missing(p, "-private root: mkdir errno ");
  for (const RootEntry& e : p.entries) {
    if (!e.link_target.empty()) {
      if (::symlink(e.link_target.c_str(), e.inside.c_str()) != 0)
        return missing(p, "-private root: symlink errno ");
    } else if (!bind(e, rec)) {
      return missing(p, "-private root: bind mount errno ");
    }
  }
  for (const std::string* at : {&p.root_tmp, &p.root_shm}) {
    if (::mount(p.dir.c_str(), at->c_str(), nullptr, MS_BIND, nullptr) != 0 ||
        ::mount(nullptr, at->c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, nullptr) != 0)
      return missing(p, "-private root: job directory bind errno ");
  }
  if (::mount("proc", p.root_proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    return missing(p, "-private /proc: mount errno ");
  if (::chdir(p.root.c_str()) != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0 ||
      ::umount2(".", MNT_DETACH) != 0 || ::chdir("/") != 0)
    return missing(p, "-private root: pivot_root errno ");
  if (::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0)
    return missing(p, "-private root: read-only remount errno ");
  report("+private read-only root\n+private /proc\n");
  return true;
}

// The program's own process: root, limits, identity, filter, exec.
[[noreturn]] void exec_program(const ChildPlan& p, bool in_namespaces) {
  bool private_root = in_namespaces && build_private_root(p);
  const SandboxLimits& l = p.limits;
  set_limit(p, RLIMIT_CPU, rlim_t(l.cpu_seconds), rlim_t(l.cpu_seconds + 1),
            "-rlimits: setrlimit(CPU) errno ");
  set_limit(p, RLIMIT_AS, l.memory_bytes, l.memory_bytes, "-rlimits: setrlimit(AS) errno ");
  set_limit(p, RLIMIT_NPROC, rlim_t(l.processes), rlim_t(l.processes), "-rlimits: setrlimit(NPROC) errno ");
  set_limit(p, RLIMIT_FSIZE, l.file_bytes, l.file_bytes, "-rlimits: setrlimit(FSIZE) errno ");
  set_limit(p, RLIMIT_NOFILE, rlim_t(l.open_files), rlim_t(l.open_files),
            "-rlimits: setrlimit(NOFILE) errno ");
  set_limit(p, RLIMIT_CORE, 0, 0, "-rlimits: setrlimit(CORE) errno ");
  if (::chdir(private_root ? "/tmp" : p.dir.c_str()) != 0) {
    report_num("Xchdir errno ", errno);
    ::_exit(127);
  }
  if (p.root_user) {  // never run model code as root; as a uid of its own, RLIMIT_NPROC is enforced
    if (::setgroups(0, nullptr) != 0 || ::setgid(p.uid) != 0 || ::setuid(p.uid) != 0)
      missing(p, "-unprivileged uid of its own: setgroups/setgid/setuid errno ");
    else
      report("+unprivileged uid of its own\n");
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // after setuid, which clears it
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) missing(p, "-no_new_privs: prctl errno ");
  const std::vector<sock_filter>& f = seccomp_program();
  sock_fprog prog{static_cast<unsigned short>(f.size()), const_cast<sock_filter*>(f.data())};
  errno = 0;
  if (!f.empty() && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0)
    report("+seccomp\n");
  else
    missing(p, "-seccomp: prctl errno ");
  report("+rlimits\n+clean environment\n");
  ::execve(p.argv[0], p.argv.data(), p.envp.data());
  report_num("Xexec errno ", errno);
  ::_exit(127);
}

}  // namespace

[[noreturn]] void child_main(const ChildPlan& p) {
  ::sigprocmask(SIG_SETMASK, &p.parent_mask, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::setpgid(0, 0);
  arrange_descriptors(p);

  int flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  bool ns = ::unshare(flags | (p.root_user ? 0 : CLONE_NEWUSER)) == 0;
  if (ns && !p.root_user) {  // map ourselves to root of the new user namespace, to be allowed to mount
    ns = write_proc("/proc/self/setgroups", "deny") && write_proc("/proc/self/uid_map", p.uid_map.c_str()) &&
         write_proc("/proc/self/gid_map", p.gid_map.c_str());
    if (!ns) missing(p, "-namespaces (mount, network, PID): uid_map errno ");
  } else if (!ns) {
    missing(p, "-namespaces (mount, network, PID): unshare errno ");
  }
  if (!ns) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    exec_program(p, false);
  }
  report("+mount, network, PID, IPC and UTS namespaces\n");
  // A new PID namespace takes effect for children: the program runs as its PID 1, so when it dies
  // the kernel kills everything it started.
  pid_t pid = ::fork();
  if (pid < 0) {
    report_num("Xfork errno ", errno);
    ::_exit(127);
  }
  if (pid == 0) exec_program(p, true);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Only the program holds its pipes, so its readers see end-of-file when it ends.
  for (int fd = 0; fd < kFirstPassFd + int(p.pass_fds.size()); ++fd)
    if (fd != kStatusFd) ::close(fd);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  report_num("W", st);
  ::_exit(0);
}

}  // namespace r1::reward
