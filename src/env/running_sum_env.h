#pragma once
// A multi-turn task with an exact checker, at demo scale: a running sum. The prompt is the first
// addition ("457+386="); the model answers each turn as <answer>N</answer>; the environment checks
// it exactly against the true running total and asks for the next addend ("\n+129="), `turns` times
// in all. Each correct turn earns 1/turns (reward per turn); the episode ends after the last.
// The addends after the first two follow from the problem's id and the seed, so an episode replays.
#include <cstdint>

#include "env/environment.h"

namespace r1::env {

struct RunningSumOptions {
  int turns = 3;    // answers asked for (the first from the prompt)
  int digits = 2;   // of each later addend
  uint64_t seed = 1;
};

class RunningSumEnv final : public Environment {
 public:
  explicit RunningSumEnv(RunningSumOptions o);
  std::string name() const override { return "running_sum"; }
  bool ends_turn(const std::string& turn_text) const override;
  // The problem's question is "A+B" and its answer A+B, as data::addition_problems writes them.
  std::unique_ptr<Episode> reset(const data::Problem& problem) const override;
  // The addend asked for at turn t >= 1 of the problem with this id.
  int64_t addend(int64_t problem_id, int turn) const;

 private:
  RunningSumOptions o_;
};

}  // namespace r1::env
