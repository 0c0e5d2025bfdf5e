#include "run/run_env.h"

#include <cmath>

#include "base/error.h"
#include "env/python_math_env.h"
#include "env/running_sum_env.h"

namespace r1::run {

nlohmann::json env_section() {
  return {{"name", "none"},          {"max_turns", 4},     {"threads", 4},       {"tool_format", "markdown"},
          {"timeout_seconds", 2.0},  {"memory_mb", 256},   {"output_bytes", 1024}, {"allow_unsandboxed", false},
          {"turns", 3},              {"digits", 2}};
}

EnvSettings env_settings(const Recipe& r) {
  EnvSettings s;
  s.name = r.get<std::string>("env.name");
  s.max_turns = r.get<int>("env.max_turns");
  s.threads = r.get<int>("env.threads");
  R1_CHECK(s.name == "none" || s.name == "python" || s.name == "running_sum",
           "env.name: unknown environment '{}' (valid: none, python, running_sum)", s.name);
  R1_CHECK(s.max_turns >= 1 && s.max_turns <= 64, "env.max_turns must be in [1, 64], got {}", s.max_turns);
  R1_CHECK(s.threads >= 1 && s.threads <= 256, "env.threads must be in [1, 256], got {}", s.threads);
  return s;
}

std::unique_ptr<env::Environment> make_recipe_env(const Recipe& r, uint64_t seed) {
  const EnvSettings s = env_settings(r);
  if (s.name == "python") {
    env::PythonMathOptions o;
    o.format = env::parse_tool_format(r.get<std::string>("env.tool_format"), "env.tool_format");
    o.max_calls = s.max_turns;
    o.tool.timeout_seconds = r.get<double>("env.timeout_seconds");
    const int64_t mb = r.get<int64_t>("env.memory_mb");
    const int64_t out = r.get<int64_t>("env.output_bytes");
    R1_CHECK(std::isfinite(o.tool.timeout_seconds) && o.tool.timeout_seconds > 0 && o.tool.timeout_seconds <= 600,
             "env.timeout_seconds must be in (0, 600], got {}", o.tool.timeout_seconds);
    R1_CHECK(mb >= 16 && mb <= 65536, "env.memory_mb must be in [16, 65536], got {}", mb);
    R1_CHECK(out >= 1 && out <= (int64_t(1) << 20), "env.output_bytes must be in [1, 1048576], got {}", out);
    o.tool.memory_bytes = size_t(mb) << 20;
    o.tool.output_bytes = size_t(out);
    o.tool.allow_unsandboxed = r.get<bool>("env.allow_unsandboxed");
    return std::make_unique<env::PythonMathEnv>(o);
  }
  if (s.name == "running_sum") {
    env::RunningSumOptions o;
    o.turns = r.get<int>("env.turns");
    o.digits = r.get<int>("env.digits");
    o.seed = seed;
    R1_CHECK(o.turns <= s.max_turns, "env.turns ({}) must not exceed env.max_turns ({}): the engine stops asking "
             "after max_turns observations", o.turns, s.max_turns);
    return std::make_unique<env::RunningSumEnv>(o);
  }
  return nullptr;
}

}  // namespace r1::run
