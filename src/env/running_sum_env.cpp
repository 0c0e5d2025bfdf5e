#include "env/running_sum_env.h"

#include <fmt/format.h>

#include <optional>

#include "base/error.h"
#include "base/rng.h"

namespace r1::env {

namespace {

// The number inside the turn's last <answer>...</answer>, when it is a plain integer.
std::optional<int64_t> turn_answer(const std::string& text) {
  const size_t close = text.rfind("</answer>");
  if (close == std::string::npos) return std::nullopt;
  const size_t open = text.rfind("<answer>", close);
  if (open == std::string::npos) return std::nullopt;
  const std::string body = text.substr(open + 8, close - open - 8);
  if (body.empty() || body.size() > 18) return std::nullopt;
  size_t i = body[0] == '-' ? 1 : 0;
  if (i == body.size()) return std::nullopt;
  for (size_t k = i; k < body.size(); ++k)
    if (body[k] < '0' || body[k] > '9') return std::nullopt;
  return std::stoll(body);
}

class RunningSumEpisode final : public Episode {
 public:
  RunningSumEpisode(const RunningSumEnv& env, const RunningSumOptions& o, int64_t id, int64_t total)
      : env_(env), o_(o), id_(id), total_(total) {}

  StepResult step(const Action& action) override {
    StepResult r;
    const std::optional<int64_t> got = turn_answer(action.text);
    const bool correct = got && *got == total_;
    r.reward = correct ? 1.0 / o_.turns : 0.0;
    turn_rewards_.push_back(r.reward);
    correct_ += correct;
    ++answered_;
    if (answered_ >= o_.turns) {
      r.done = true;
      return r;
    }
    const int64_t next = env_.addend(id_, answered_);
    total_ += next;
    r.observation = fmt::format("\n+{}=", next);
    return r;
  }

  EpisodeOutcome finish(const std::string&) override {
    EpisodeOutcome e;
    e.turn_rewards = turn_rewards_;
    for (double x : turn_rewards_) e.reward += x;
    e.turns = answered_;
    e.details = {{"answered", answered_}, {"correct", correct_}, {"asked", o_.turns}};
    return e;
  }

 private:
  const RunningSumEnv& env_;
  const RunningSumOptions& o_;
  int64_t id_, total_;
  int answered_ = 0, correct_ = 0;
  std::vector<double> turn_rewards_;
};

}  // namespace

RunningSumEnv::RunningSumEnv(RunningSumOptions o) : o_(o) {
  R1_CHECK(o_.turns >= 1 && o_.turns <= 64, "env.turns must be in [1, 64] (got {})", o_.turns);
  R1_CHECK(o_.digits >= 1 && o_.digits <= 9, "env.digits must be in [1, 9] (got {})", o_.digits);
}

bool RunningSumEnv::ends_turn(const std::string& turn_text) const {
  static const std::string close = "</answer>";
  return turn_text.size() >= close.size() && turn_text.compare(turn_text.size() - close.size(), close.size(), close) == 0;
}

int64_t RunningSumEnv::addend(int64_t problem_id, int turn) const {
  uint32_t r[4];
  Philox::generate(o_.seed, 0x5E5E + uint64_t(turn), uint64_t(problem_id), r);
  int64_t lo = 1;
  for (int d = 1; d < o_.digits; ++d) lo *= 10;
  return lo + int64_t(r[0] % uint32_t(9 * lo));
}

std::unique_ptr<Episode> RunningSumEnv::reset(const data::Problem& problem) const {
  int64_t total = 0;
  try {
    size_t used = 0;
    total = std::stoll(problem.answer, &used);
    R1_CHECK(used == problem.answer.size(), "");
  } catch (...) {
    fail("running_sum: problem {} has answer '{}', not an integer", problem.id, problem.answer);
  }
  return std::make_unique<RunningSumEpisode>(*this, o_, problem.id, total);
}

}  // namespace r1::env
