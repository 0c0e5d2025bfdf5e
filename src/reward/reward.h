#pragma once
// The reward seam: every verifier (math, format, language, code, composite) scores one completion at a
// time behind this interface; score_batch runs many in parallel. Rewards are rules, so they must be
// exactly right and never take the trainer down: score() never throws for bad model output. A neural
// reward model (model_reward.h) scores whole batches at once through score_all.
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace r1::reward {

struct Sample {
  std::string completion;  // the model's text
  std::string answer;      // gold answer (math); may be empty for rewards that need none
  nlohmann::json tests;    // unit tests (code); null when absent
  std::string prompt;      // the prompt the completion answers (a neural reward model reads both)
  std::string type;        // the problem's prompt type (data::Problem::type), for per-type rewards
};

struct Result {
  double reward = 0.0;
  nlohmann::json details = nlohmann::json::object();  // extracted answer, deciding check, ms, reason
};

class Reward {
 public:
  virtual ~Reward() = default;
  virtual std::string name() const = 0;
  // Called concurrently from several threads: implementations keep no mutable state.
  virtual Result score(const Sample& s) const = 0;
  // Every sample's result, in sample order, with up to `threads` workers (0: hardware concurrency).
  // The default runs score() per sample on a thread pool, an exception scoring its sample 0 (see
  // raised_result); a reward that batches (one forward pass for many samples) overrides it.
  virtual std::vector<Result> score_all(const std::vector<Sample>& samples, int threads) const;
};

// Scores every sample through r.score_all; results keep sample order. An exception escaping a
// reward scores 0 with the message as the reason, never propagates.
std::vector<Result> score_batch(const Reward& r, const std::vector<Sample>& samples, int threads = 0);

// The result of a sample whose scoring raised: reward 0, the message as the reason, details
// "raised": true (so a composite can fail the whole sample, as score() of it would have). Counts it.
Result raised_result(const std::exception& e);
inline bool raised(const Result& r) { return r.details.value("raised", false); }

// Process-wide counters of what went wrong, for the trainer's metrics: a verifier that silently fails
// (every answer 0) must show up here.
struct Counters {
  std::atomic<uint64_t> scored{0}, no_answer{0}, parse_failures{0}, symbolic_checks{0}, symbolic_timeouts{0},
      symbolic_errors{0}, reward_exceptions{0}, reward_timeouts{0}, reward_crashes{0}, sandbox_runs{0},
      sandbox_timeouts{0}, sandbox_errors{0};
  nlohmann::json snapshot() const;
  void reset();
  void add(const nlohmann::json& moved);  // adds counts by name (a worker process's, reward_guard.h)
};
Counters& counters();

}  // namespace r1::reward
