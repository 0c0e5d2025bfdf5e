// The symbolic check in a forked child with a deadline (see latex_to_ginac.h for why a process).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

#include "reward/latex_to_ginac.h"
#include "reward/reward.h"

namespace r1::reward {
namespace {

// Runs in the child only.
char decide(const Expr& a, const Expr& b, bool proportional) {
  try {
    std::map<std::string, GiNaC::symbol> syms;
    GiNaC::ex x = to_ginac(a, syms), y = to_ginac(b, syms);
    // Plain algebra first; with sines and cosines, again as rational functions of exp(i·x).
    const bool trig = (x - y).has(GiNaC::sin(GiNaC::wild())) || (x - y).has(GiNaC::cos(GiNaC::wild()));
    if (!proportional) {
      if (GiNaC::normal((x - y).expand()).is_zero()) return 'Y';
      return trig && GiNaC::normal(trig_as_exponentials(x - y).expand()).is_zero() ? 'Y' : 'N';
    }
    if (y.is_zero() || x.is_zero()) return x.is_zero() && y.is_zero() ? 'Y' : 'N';
    auto constant_ratio = [&](const GiNaC::ex& r) {
      for (GiNaC::const_preorder_iterator i = r.preorder_begin(); i != r.preorder_end(); ++i)
        if (GiNaC::is_a<GiNaC::symbol>(*i)) return false;
      return true;
    };
    if (constant_ratio(GiNaC::normal(x / y))) return 'Y';
    return trig && constant_ratio(GiNaC::normal(trig_as_exponentials(x / y).expand())) ? 'Y' : 'N';
  } catch (...) {
    return 'E';
  }
}

// Bounds the child's memory a little above what it inherited (the parent may be large).
void limit_child_memory() {
  char buf[64] = {};
  int fd = ::open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return;
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return;
  unsigned long pages = std::strtoul(buf, nullptr, 10);
  rlimit r{};
  r.rlim_cur = r.rlim_max = rlim_t(pages) * rlim_t(sysconf(_SC_PAGESIZE)) + (rlim_t(1) << 30);
  setrlimit(RLIMIT_AS, &r);
}

}  // namespace

Verdict symbolic_check(const Expr& a, const Expr& b, bool proportional, int timeout_ms) {
  counters().symbolic_checks++;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    counters().symbolic_errors++;
    return Verdict::Error;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    counters().symbolic_errors++;
    return Verdict::Error;
  }
  if (pid == 0) {
    ::close(fds[0]);
    limit_child_memory();
    rlimit cpu{};
    cpu.rlim_cur = cpu.rlim_max = rlim_t(timeout_ms / 1000 + 2);
    setrlimit(RLIMIT_CPU, &cpu);
    char c = decide(a, b, proportional);
    [[maybe_unused]] ssize_t w = ::write(fds[1], &c, 1);
    ::_exit(0);  // no atexit handlers or static destructors of the parent's copy
  }
  ::close(fds[1]);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char c = 0;
  bool got = false, timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, int(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r > 0) got = ::read(fds[0], &c, 1) == 1;
    if (r == 0) timed_out = true;
    break;
  }
  ::close(fds[0]);
  if (!got) ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    counters().symbolic_timeouts++;
    return Verdict::Timeout;
  }
  if (!got || c == 'E') {
    counters().symbolic_errors++;
    return Verdict::Error;
  }
  return c == 'Y' ? Verdict::Equal : Verdict::NotEqual;
}

}  // namespace r1::reward
