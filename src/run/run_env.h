#pragma once
// The recipe's `env` section: multi-turn rollouts with an environment (env/environment.h).
//   env.name            none | python (Python tool for math) | running_sum (multi-turn exact checker)
//   env.max_turns       observations per episode (python: also the tool calls allowed)
//   env.threads         tool calls running at once while the engine decodes other sequences
//   env.tool_format     markdown (```python ... ```) | code_tag (<code>...</code>) | tool_call (Hermes/Qwen chat templates)
//   env.timeout_seconds, env.memory_mb, env.output_bytes   limits of each tool call
//   env.allow_unsandboxed   run model code where a sandbox protection is missing
//   env.turns, env.digits   running_sum: answers asked for, digits of each later addend
// Every value is checked here, errors naming the key, before any model is loaded.
#include <memory>
#include <nlohmann/json.hpp>

#include "env/environment.h"
#include "run/recipe.h"

namespace r1::run {

nlohmann::json env_section();

struct EnvSettings {
  std::string name = "none";
  int max_turns = 4, threads = 4;
};
EnvSettings env_settings(const Recipe& r);

// The recipe's environment, or null for env.name none. `seed` fixes a task's generated turns.
std::unique_ptr<env::Environment> make_recipe_env(const Recipe& r, uint64_t seed);

}  // namespace r1::run
