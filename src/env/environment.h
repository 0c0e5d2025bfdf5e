#pragma once
// Environments for multi-turn rollouts: an episode starts from a problem (reset), and after each
// model turn (an action, as tokens and as text) answers with an observation (step) until it is done;
// rewards come per turn (StepResult::reward) and at the end (Episode::finish). The rollout engine
// drives episodes through rollout::TurnHooks (env/episodes.h), so the trajectory stays token ids.
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/problem.h"

namespace r1::env {

// One model turn: the tokens sampled since the last observation, and their text.
struct Action {
  std::vector<int32_t> tokens;
  std::string text;
};

struct StepResult {
  std::string observation;  // text appended after the turn (tokenized once, masked out of the loss)
  bool done = false;        // the episode ends after the observation
  double reward = 0;        // this turn's reward
};

// What an episode adds up, for the reward and the step's metrics.
struct EpisodeOutcome {
  double reward = 0;                // per-turn rewards plus the final one
  std::vector<double> turn_rewards;
  int turns = 0;                    // observations given
  int tool_calls = 0, tool_errors = 0;  // tool environments: calls run, and those that failed (error,
                                        // timeout, memory, output flood, or over the call limit)
  nlohmann::json details = nlohmann::json::object();
};

class Episode {
 public:
  virtual ~Episode() = default;
  // The model's turn ended (Environment::ends_turn said so). Runs on a rollout worker thread.
  virtual StepResult step(const Action& action) = 0;
  // The sequence ended (stop token, length, or done): the final reward from the whole text of the
  // trajectory (model turns and observations, decoded once at the end), and the episode's counts.
  virtual EpisodeOutcome finish(const std::string& trajectory_text) = 0;
};

class Environment {
 public:
  virtual ~Environment() = default;
  virtual std::string name() const = 0;
  // Whether the text of the model's current turn ends an action (looks at its end only: it runs
  // after every token).
  virtual bool ends_turn(const std::string& turn_text) const = 0;
  virtual std::unique_ptr<Episode> reset(const data::Problem& problem) const = 0;
};

}  // namespace r1::env
