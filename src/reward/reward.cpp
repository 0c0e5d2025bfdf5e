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

namespace {

// Every counter with its name, in one place.
template <typename C, typename F>
void each_counter(C& c, F f) {
  f("scored", c.scored);
  f("no_answer", c.no_answer);
  f("parse_failures", c.parse_failures);
  f("symbolic_checks", c.symbolic_checks);
  f("symbolic_timeouts", c.symbolic_timeouts);
  f("symbolic_errors", c.symbolic_errors);
  f("reward_exceptions", c.reward_exceptions);
  f("reward_timeouts", c.reward_timeouts);
  f("reward_crashes", c.reward_crashes);
  f("sandbox_runs", c.sandbox_runs);
  f("sandbox_timeouts", c.sandbox_timeouts);
  f("sandbox_errors", c.sandbox_errors);
}

}  // namespace

nlohmann::json Counters::snapshot() const {
  nlohmann::json j = nlohmann::json::object();
  each_counter(*this, [&](const char* name, const std::atomic<uint64_t>& a) { j[name] = a.load(); });
  return j;
}

void Counters::reset() {
  each_counter(*this, [](const char*, std::atomic<uint64_t>& a) { a.store(0); });
}

void Counters::add(const nlohmann::json& moved) {
  if (!moved.is_object()) return;
  each_counter(*this, [&](const char* name, std::atomic<uint64_t>& a) {
    if (auto it = moved.find(name); it != moved.end() && it->is_number_unsigned()) a += it->get<uint64_t>();
  });
}

}  // namespace r1::reward
