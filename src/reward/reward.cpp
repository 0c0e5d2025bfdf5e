#include "reward/reward.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>

#include "base/error.h"

namespace r1::reward {

Result raised_result(const std::exception& e) {
  counters().reward_exceptions++;
  return Result{0.0, {{"reason", std::string("reward raised: ") + e.what()}, {"raised", true}}};
}

std::vector<Result> Reward::score_all(const std::vector<Sample>& samples, int threads) const {
  std::vector<Result> out(samples.size());
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  threads = int(std::min<size_t>(size_t(threads), std::max<size_t>(1, samples.size())));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < samples.size();) {
      const auto t0 = std::chrono::steady_clock::now();
      try {
        out[i] = score(samples[i]);
      } catch (const std::exception& e) {
        out[i] = raised_result(e);
      }
      out[i].details["ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return out;
}

std::vector<Result> score_batch(const Reward& r, const std::vector<Sample>& samples, int threads) {
  std::vector<Result> out;
  try {
    out = r.score_all(samples, threads);
    R1_CHECK(out.size() == samples.size(), "reward '{}' returned {} results for {} samples", r.name(), out.size(),
             samples.size());
  } catch (const std::exception& e) {  // a batched reward failed as a whole: every sample scores 0
    out.assign(samples.size(), Result{});
    for (Result& x : out) x = raised_result(e);
  }
  counters().scored += samples.size();
  return out;
}

Counters& counters() {
  static Counters c;
  return c;
}

nlohmann::json Counters::snapshot() const {
  return {{"scored", scored.load()},
          {"no_answer", no_answer.load()},
          {"parse_failures", parse_failures.load()},
          {"symbolic_checks", symbolic_checks.load()},
          {"symbolic_timeouts", symbolic_timeouts.load()},
          {"symbolic_errors", symbolic_errors.load()},
          {"reward_exceptions", reward_exceptions.load()},
          {"sandbox_runs", sandbox_runs.load()},
          {"sandbox_timeouts", sandbox_timeouts.load()},
          {"sandbox_errors", sandbox_errors.load()}};
}

void Counters::reset() {
  for (auto* a : {&scored, &no_answer, &parse_failures, &symbolic_checks, &symbolic_timeouts,
                  &symbolic_errors, &reward_exceptions, &sandbox_runs, &sandbox_timeouts, &sandbox_errors})
    a->store(0);
}

}  // namespace r1::reward
