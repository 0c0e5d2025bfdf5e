// The learning test: the built-in R1-Zero run at reduced size (fixed seed, CPU) raises held-out
// pass@1 by a clear margin, and its response length grows as it learns to reason.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>

#include "test_util.h"
#include "pipeline/r1zero_demo.h"

using namespace r1;

TEST(R1ZeroDemo, GrpoRaisesHeldOutPassAt1) {
  test::TempDir dir;
  pipeline::DemoOptions o;
  o.sft_steps = 800;
  o.grpo_steps = 60;
  o.eval_problems = 100;
  o.out = dir.file("run");
  o.progress = false;
  pipeline::DemoResult r = pipeline::run_r1zero_demo(o);
  EXPECT_GT(r.pass_after, r.pass_before + 0.15) << "pass@1 " << r.pass_before << " -> " << r.pass_after;
  EXPECT_GT(r.length_after, r.length_before) << "length " << r.length_before << " -> " << r.length_after;
  EXPECT_TRUE(test::read_lines(dir.file("run/metrics.jsonl")).size() == size_t(o.grpo_steps) + 2);
  EXPECT_FALSE(r.report.empty());
}

namespace {

// The operands of "a+b" in a canonical order: a+b and b+a are the same question to the model.
std::pair<std::string, std::string> operands(const data::Problem& p) {
  const size_t plus = p.question.find('+');
  std::string a = p.question.substr(0, plus), b = p.question.substr(plus + 1);
  return a < b ? std::pair{a, b} : std::pair{b, a};
}

}  // namespace

// "Held-out": no held-out problem adds the same two numbers as a problem the demo trains on (base
// training and GRPO both draw from the training set), at the default size and the test's.
TEST(R1ZeroDemo, HeldOutProblemsAreNeverSeenInTraining) {
  for (int eval : {200, 100}) {
    pipeline::DemoOptions o;
    o.eval_problems = eval;
    const pipeline::DemoProblems p = pipeline::demo_problems(o);
    std::set<std::pair<std::string, std::string>> held;
    for (const auto& q : p.held_out) held.insert(operands(q));
    EXPECT_EQ(p.held_out.size(), size_t(eval));
    EXPECT_GT(p.train.size(), 19900u);
    std::printf("[ DEMO ] %d held out: %zu of 20000 training problems repeated one and were dropped\n", eval,
                20000 - p.train.size());
    for (const auto& q : p.train) ASSERT_EQ(held.count(operands(q)), 0u) << q.question << " is held out";
  }
}
