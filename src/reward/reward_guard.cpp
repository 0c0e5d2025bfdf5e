#include "reward/reward_guard.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "base/error.h"

namespace r1::reward {
namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

void write_all(int fd, const std::string& s) {
  for (size_t off = 0; off < s.size();) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) ::_exit(1);  // the parent is gone
    off += size_t(w);
  }
}

// When each sample started (steady-clock ns; 0: not yet; negated once scored), in memory the worker
// and the parent share: the parent times every sample without a message per sample, and a sample
// scored but not yet reported (results go out in batches) is never blamed for a deadline.
struct StartTimes {
  std::atomic<int64_t>* at = nullptr;
  size_t n = 0;
  explicit StartTimes(size_t count) : n(std::max<size_t>(count, 1)) {
    void* p = ::mmap(nullptr, n * sizeof(int64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    R1_CHECK(p != MAP_FAILED, "reward guard: mmap: {}", std::strerror(errno));
    at = new (p) std::atomic<int64_t>[n]();
  }
  ~StartTimes() { ::munmap(at, n * sizeof(int64_t)); }
};

// The worker: scores samples[unscored[...]] on `threads` threads. Results go out in batches (a flush
// every few milliseconds, or each one when `careful`): "R i <reward as %a> <details json>" per
// sample, then "C <json>" with the counters that moved, so the parent's metrics still see them.
[[noreturn]] void worker_main(const Reward& inner, const std::vector<Sample>& samples,
                              const std::vector<size_t>& unscored, int threads, bool careful, StartTimes& starts,
                              int fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::mutex out;
  std::string pending;
  nlohmann::json last = counters().snapshot();
  auto last_flush = Clock::now();
  auto flush = [&] {  // holding `out`
    nlohmann::json now = counters().snapshot(), moved = nlohmann::json::object();
    for (auto& [key, v] : now.items())
      if (v != last[key]) moved[key] = v.get<uint64_t>() - last[key].get<uint64_t>();
    last = now;
    if (!moved.empty()) pending += "C " + moved.dump() + "\n";
    write_all(fd, pending);
    pending.clear();
    last_flush = Clock::now();
  };
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k = next.fetch_add(1); k < unscored.size(); k = next.fetch_add(1)) {
      const size_t i = unscored[k];
      starts.at[i].store(now_ns());
      const auto t0 = Clock::now();
      Result r;
      try {
        r = inner.score(samples[i]);
      } catch (const std::exception& e) {
        r = raised_result(e);
      } catch (...) {
        r = raised_result(std::runtime_error("unknown exception"));
      }
      r.details["ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      starts.at[i].store(-starts.at[i].load());
      std::string line =
          fmt::format("R {} {:a} {}\n", i, r.reward,
                      r.details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      std::lock_guard<std::mutex> lock(out);
      pending += line;
      if (careful || pending.size() > (32 << 10) || Clock::now() - last_flush > std::chrono::milliseconds(2))
        flush();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  {
    std::lock_guard<std::mutex> lock(out);
    flush();
  }
  ::_exit(0);
}

Result given_up(const std::string& reason, const char* flag) {
  return Result{0.0, {{"reason", reason}, {flag, true}, {"raised", true}}};
}

std::string describe_status(int st) {
  if (WIFSIGNALED(st)) return fmt::format("killed by signal {} ({})", WTERMSIG(st), strsignal(WTERMSIG(st)));
  return fmt::format("exit {}", WEXITSTATUS(st));
}

struct Batch {
  const std::vector<Sample>& samples;
  std::vector<Result> results;
  std::vector<bool> done;
  bool careful = false;  // after a crash among several samples in flight: one at a time, to find it
};

// Complete lines of `buf` (results and counters); returns how many results it took.
size_t take_lines(std::string& buf, Batch& b) {
  size_t results = 0, start = 0;
  for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
    const char* line = buf.c_str() + start;
    if (line[0] == 'C') {
      counters().add(nlohmann::json::parse(line + 2, buf.c_str() + nl, nullptr, false));
      continue;
    }
    if (line[0] != 'R') continue;
    char* end = nullptr;
    const size_t i = std::strtoull(line + 2, &end, 10);
    const double reward = std::strtod(end, &end);
    nlohmann::json details =
        nlohmann::json::parse(static_cast<const char*>(end), buf.c_str() + nl, nullptr, false);
    if (i >= b.samples.size() || !details.is_object()) continue;
    b.results[i] = Result{reward, std::move(details)};
    b.done[i] = true;
    ++results;
  }
  buf.erase(0, start);
  return results;
}

// One worker over the samples not yet done. Returns when it finished, died, or was killed at a
// deadline; every sample it started and did not finish is then scored (0) or left for the next one.
void run_worker(const Reward& inner, Batch& b, int threads, double deadline_s) {
  std::vector<size_t> unscored;
  for (size_t i = 0; i < b.samples.size(); ++i)
    if (!b.done[i]) unscored.push_back(i);
  StartTimes starts(b.samples.size());
  int fds[2];
  R1_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "reward guard: pipe: {}", std::strerror(errno));
  const int workers = b.careful ? 1 : std::max(1, std::min<int>(threads, int(unscored.size())));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    fail("reward guard: fork: {}", std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    worker_main(inner, b.samples, unscored, workers, b.careful, starts, fds[1]);
  }
  ::close(fds[1]);
  const int64_t deadline = int64_t(deadline_s * 1e9);
  std::vector<size_t> expired;
  std::string buf;
  size_t reported = 0, seen_started = 0;
  bool eof = false, stalled = false;
  int64_t last_progress = now_ns();  // a sample started or a result came
  while (!eof) {
    int64_t now = now_ns(), wake = now + 50'000'000;
    size_t started = 0, running = 0;
    for (size_t i : unscored) {
      const int64_t t = starts.at[i].load();
      if (t == 0) continue;
      ++started;
      if (t < 0 || b.done[i]) continue;  // scored (reported or not)
      ++running;
      if (now - t >= deadline) expired.push_back(i);
      wake = std::min(wake, t + deadline);
    }
    if (!expired.empty()) break;
    if (started > seen_started) seen_started = started, last_progress = now;
    if (running == 0 && now - last_progress >= deadline) {  // silent outside any sample: stuck
      stalled = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, int(std::clamp<int64_t>((wake - now) / 1'000'000 + 1, 1, 50))) > 0) {
      char chunk[65536];
      ssize_t n = ::read(fds[0], chunk, sizeof chunk);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) eof = true;
      if (n > 0) buf.append(chunk, size_t(n));
      size_t got = take_lines(buf, b);
      if (got) reported += got, last_progress = now_ns();
    }
  }
  if (!eof) ::kill(pid, SIGKILL);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  char chunk[65536];  // what it wrote before it ended
  for (ssize_t n; (n = ::read(fds[0], chunk, sizeof chunk)) > 0;) buf.append(chunk, size_t(n));
  ::close(fds[0]);
  reported += take_lines(buf, b);
  const std::string why = fmt::format("{:g}", deadline_s);
  size_t blamed = 0;
  for (size_t i : expired)
    if (!b.done[i]) {
      b.results[i] = given_up("reward timed out after " + why + " s; its worker was killed", "timed_out");
      b.done[i] = true;
      counters().reward_timeouts++;
      ++blamed;
    }
  std::vector<size_t> in_flight;  // started, not scored: what a crash can be blamed on
  for (size_t i : unscored)
    if (!b.done[i] && starts.at[i].load() > 0) in_flight.push_back(i);
  if (expired.empty() && !stalled && !in_flight.empty()) {  // it died inside a sample
    if (in_flight.size() == 1 || b.careful) {
      for (size_t i : in_flight) {
        b.results[i] = given_up("the reward's worker process died (" + describe_status(st) + ")", "crashed");
        b.done[i] = true;
        counters().reward_crashes++;
        ++blamed;
      }
    } else {
      b.careful = true;  // several in flight: run them again one at a time to find the one that crashes
      return;
    }
  }
  if (reported == 0 && blamed == 0) {
    // No sample to blame: the worker stopped or stalled outside any sample. Fail the rest rather
    // than start another that would do the same.
    for (size_t i : unscored)
      if (!b.done[i]) {
        b.results[i] = given_up("the reward's worker stopped before scoring this sample (" +
                                    (stalled ? "silent for " + why + " s" : describe_status(st)) + ")",
                                "crashed");
        b.done[i] = true;
        counters().reward_crashes++;
      }
  }
}

}  // namespace

GuardedReward::GuardedReward(std::unique_ptr<Reward> inner, GuardOptions o)
    : inner_(std::move(inner)), o_(o) {
  R1_CHECK(o_.deadline_s > 0, "reward '{}': the deadline must be > 0 s (got {})", inner_->name(),
           o_.deadline_s);
}

Result GuardedReward::score(const Sample& s) const { return score_all({s}, 1)[0]; }

std::vector<Result> GuardedReward::score_all(const std::vector<Sample>& samples, int threads) const {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  Batch b{samples, std::vector<Result>(samples.size()), std::vector<bool>(samples.size(), false)};
  // Each worker scores, gives up on, or loses at least one sample (or turns careful once), so this ends.
  while (std::find(b.done.begin(), b.done.end(), false) != b.done.end())
    run_worker(*inner_, b, threads, o_.deadline_s);
  return b.results;
}

}  // namespace r1::reward
