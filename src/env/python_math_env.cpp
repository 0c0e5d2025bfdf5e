#include "env/python_math_env.h"

#include "base/error.h"

namespace r1::env {

namespace {

class PythonMathEpisode final : public Episode {
 public:
  explicit PythonMathEpisode(const PythonMathOptions& o) : o_(o) {}

  StepResult step(const Action& action) override {
    ++calls_;
    StepResult r;
    std::string output;
    const std::optional<std::string> code = tool_call_code(o_.format, action.text);
    if (calls_ > o_.max_calls) {
      output = "Error: no tool calls left in this episode";
      ++errors_;
    } else if (!code) {
      output = "Error: malformed tool call";
      ++errors_;
    } else {
      const ToolRun run = run_python_tool(*code, o_.tool);
      output = run.output;
      errors_ += run.error;
      timeouts_ += run.timed_out;
      truncated_ += run.truncated;
    }
    r.observation = tool_observation(o_.format, output);
    return r;
  }

  EpisodeOutcome finish(const std::string&) override {
    EpisodeOutcome e;
    e.turns = calls_;
    e.tool_calls = calls_;
    e.tool_errors = errors_;
    e.details = {{"tool_calls", calls_}, {"tool_errors", errors_}, {"tool_timeouts", timeouts_},
                 {"tool_truncated", truncated_}};
    return e;
  }

 private:
  const PythonMathOptions& o_;
  int calls_ = 0, errors_ = 0, timeouts_ = 0, truncated_ = 0;
};

}  // namespace

PythonMathEnv::PythonMathEnv(PythonMathOptions o) : o_(std::move(o)) {
  R1_CHECK(o_.max_calls >= 1, "env.max_turns must be at least 1 for the python environment (got {})", o_.max_calls);
  check_python_tool(o_.tool);
}

std::unique_ptr<Episode> PythonMathEnv::reset(const data::Problem&) const {
  return std::make_unique<PythonMathEpisode>(o_);
}

}  // namespace r1::env
