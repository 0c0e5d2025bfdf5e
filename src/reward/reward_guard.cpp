#include "reward/reward_guard.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "base/error.h"

namespace r1::reward {
namespace {

using Clock = std::chrono::steady_clock;

void write_all(int fd, const std::string& s) {
  for (size_t off = 0; off < s.size();) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) ::_exit(1);  // the parent is gone
    off += size_t(w);
  }
}

// The worker: scores samples[todo[...]] on `threads` threads. Per sample it reports "S i" when it
// starts and "R i <reward as %a> <json>" when done (the json holds the details and the counters
// that moved since the last report, so the parent's metrics still see them).
[[noreturn]] void worker_main(const Reward& inner, const std::vector<Sample>& samples, const std::vector<size_t>& todo,
                              int threads, int fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::mutex out;
  nlohmann::json last = counters().snapshot();
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k; (k = next.fetch_add(1)) < todo.size();) {
      const size_t i = todo[k];
      {
        std::lock_guard<std::mutex> lock(out);
        write_all(fd, fmt::format("S {}\n", i));
      }
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
      std::lock_guard<std::mutex> lock(out);
      nlohmann::json now = counters().snapshot(), moved = nlohmann::json::object();
      for (auto& [key, v] : now.items())
        if (v != last[key]) moved[key] = v.get<uint64_t>() - last[key].get<uint64_t>();
      last = now;
      nlohmann::json body = {{"details", std::move(r.details)}, {"counters", moved}};
      write_all(fd, fmt::format("R {} {:a} {}\n", i, r.reward, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
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
};

// One worker over the samples not yet done. Returns when it finished, died, or was killed at a
// deadline; every sample it started and did not finish is then scored (0) or left for the next one.
void run_worker(const Reward& inner, Batch& b, int threads, double deadline_s) {
  std::vector<size_t> todo;
  for (size_t i = 0; i < b.samples.size(); ++i)
    if (!b.done[i]) todo.push_back(i);
  int fds[2];
  R1_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "reward guard: pipe: {}", std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    fail("reward guard: fork: {}", std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    worker_main(inner, b.samples, todo, std::max(1, std::min<int>(threads, int(todo.size()))), fds[1]);
  }
  ::close(fds[1]);
  const auto deadline = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(deadline_s));
  std::map<size_t, Clock::time_point> running;
  std::vector<size_t> expired;
  std::string buf;
  bool eof = false;
  size_t reported = 0;
  auto last_message = Clock::now();
  while (!eof && expired.empty()) {
    auto now = Clock::now(), next = last_message + deadline;  // a worker silent that long is stuck
    for (const auto& [i, t] : running) next = std::min(next, t + deadline);
    pollfd p{fds[0], POLLIN, 0};
    auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
    if (::poll(&p, 1, int(std::clamp<int64_t>(wait_ms + 1, 0, 1000))) > 0) {
      char chunk[65536];
      ssize_t n = ::read(fds[0], chunk, sizeof chunk);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) eof = true;
      if (n > 0) buf.append(chunk, size_t(n)), last_message = Clock::now();
    }
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos; buf.erase(0, nl + 1)) {
      const std::string line = buf.substr(0, nl);
      char* end = nullptr;
      const size_t i = std::strtoull(line.c_str() + 2, &end, 10);
      if (i >= b.samples.size()) continue;
      if (line[0] == 'S') running[i] = Clock::now();
      if (line[0] != 'R') continue;
      const double reward = std::strtod(end, &end);
      nlohmann::json body = nlohmann::json::parse(end, nullptr, false);
      if (!body.is_object()) continue;
      b.results[i] = Result{reward, body["details"]};
      b.done[i] = true;
      ++reported;
      running.erase(i);
      counters().add(body["counters"]);
    }
    now = Clock::now();
    for (const auto& [i, t] : running)
      if (now - t >= deadline) expired.push_back(i);
    if (running.empty() && now - last_message >= deadline && !eof) break;  // stuck outside any sample
  }
  if (!eof) ::kill(pid, SIGKILL);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  ::close(fds[0]);
  const std::string why = fmt::format("{:g}", deadline_s);
  for (size_t i : expired) {
    b.results[i] = given_up("reward timed out after " + why + " s; its worker was killed", "timed_out");
    b.done[i] = true;
    counters().reward_timeouts++;
  }
  if (eof) {  // it ended by itself: whatever it had started and not reported died with it
    for (const auto& [i, t] : running) {
      b.results[i] = given_up("the reward's worker process died (" + describe_status(st) + ")", "crashed");
      b.done[i] = true;
      counters().reward_crashes++;
    }
  }
  if (reported == 0 && expired.empty() && !(eof && !running.empty())) {
    // No sample to blame: the worker stopped (or stalled) outside any sample. Fail the rest
    // rather than start another worker that would do the same.
    for (size_t i : todo)
      if (!b.done[i]) {
        b.results[i] = given_up("the reward's worker stopped before scoring this sample (" +
                                    (eof ? describe_status(st) : "silent for " + why + " s") + ")",
                                "crashed");
        b.done[i] = true;
        counters().reward_crashes++;
      }
  }
}

}  // namespace

GuardedReward::GuardedReward(std::unique_ptr<Reward> inner, GuardOptions o) : inner_(std::move(inner)), o_(o) {
  R1_CHECK(o_.deadline_s > 0, "reward '{}': the deadline must be > 0 s (got {})", inner_->name(), o_.deadline_s);
}

Result GuardedReward::score(const Sample& s) const { return score_all({s}, 1)[0]; }

std::vector<Result> GuardedReward::score_all(const std::vector<Sample>& samples, int threads) const {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  Batch b{samples, std::vector<Result>(samples.size()), std::vector<bool>(samples.size(), false)};
  // Each worker scores, gives up on, or loses at least one sample, so this loop ends.
  while (std::find(b.done.begin(), b.done.end(), false) != b.done.end()) run_worker(*inner_, b, threads, o_.deadline_s);
  return b.results;
}

}  // namespace r1::reward
