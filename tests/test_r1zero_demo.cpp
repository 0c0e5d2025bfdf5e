// The learning test: the built-in R1-Zero run at reduced size (fixed seed, CPU) raises held-out
// pass@1 by a clear margin, and its response length grows as it learns to reason.
#include <gtest/gtest.h>

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
