#pragma once
// A synthetic reasoning task with an exact checker: column addition of multi-digit numbers. The
// worked solution shows each column's sum and carry inside <think>, the result inside <answer>.
#include <cstdint>
#include <string>
#include <vector>

#include "data/problem.h"

namespace r1::data {

// `count` problems a+b with `digits`-digit operands, ids starting at first_id, from `seed`.
std::vector<Problem> addition_problems(int64_t count, int digits, uint64_t seed, int64_t first_id = 0);

// `from` without the problems that add the same two numbers (in either order) as a `held_out`
// problem, so that no held-out question was seen in training.
std::vector<Problem> without_held_out(std::vector<Problem> from, const std::vector<Problem>& held_out);

// "<think>7+6=13 5+8+1=14 4+3+1=8</think><answer>843</answer>" for 457+386.
std::string addition_solution(const Problem& p);

// A plausible wrong solution: one carry forgotten (the kind of slip the base model should unlearn).
std::string addition_solution_with_slip(const Problem& p, uint64_t seed);

}  // namespace r1::data
