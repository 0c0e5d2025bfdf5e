#pragma once
// The reward seam: every verifier (math, format, language, code, composite) scores one completion at a
// time behind this interface; score_batch runs many in parallel. Rewards are rules, so they must be
// exactly right and never take the trainer down: score() never throws for bad model output.
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
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
};

// Scores every sample with `threads` workers (0: hardware concurrency); results keep sample order.
// An exception escaping a reward scores 0 with the message as the reason, never propagates.
std::vector<Result> score_batch(const Reward& r, const std::vector<Sample>& samples, int threads = 0);

// Process-wide counters of what went wrong, for the trainer's metrics: a verifier that silently fails
// (every answer 0) must show up here.
struct Counters {
  std::atomic<uint64_t> scored{0}, no_answer{0}, parse_failures{0}, symbolic_checks{0},
      symbolic_timeouts{0}, symbolic_errors{0}, reward_exceptions{0}, sandbox_runs{0},
      sandbox_timeouts{0}, sandbox_errors{0};
  nlohmann::json snapshot() const;
  void reset();
};
Counters& counters();

}  // namespace r1::reward
