#pragma once
// A training or evaluation problem: the question shown to the model and the gold answer the
// verifier compares against.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace r1::data {

struct Problem {
  int64_t id = 0;        // stable index: names the problem in random streams and samples
  std::string question;
  std::string answer;
  std::string type;     // prompt type (e.g. "math", "general"): picks the reward route; may be empty
  nlohmann::json meta;  // per-benchmark fields kept for reports (MATH-500: subject, level); may be null
};

}  // namespace r1::data
