#pragma once
// A training or evaluation problem: the question shown to the model and the gold answer the
// verifier compares against.
#include <cstdint>
#include <string>
#include <vector>

namespace r1::data {

struct Problem {
  int64_t id = 0;        // stable index: names the problem in random streams and samples
  std::string question;
  std::string answer;
};

}  // namespace r1::data
