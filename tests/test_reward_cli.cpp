// r1 reward: JSONL in, one {"reward": x, ...details} line out per input line; bad input names the line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

using r1::test::run_r1;

TEST(RewardCli, ScoresEachLine) {
  auto r = run_r1("reward --reward math+format:0.5",
                  "{\"completion\": \"<think>a</think><answer>\\\\boxed{\\\\frac{1}{2}}</answer>\", \"answer\": \"0.5\"}\n"
                  "{\"completion\": \"The answer is 3\", \"answer\": 4}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto first = nlohmann::json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_DOUBLE_EQ(first["reward"], 1.5);
  EXPECT_EQ(first["math"]["check"], "numeric");
  auto second = nlohmann::json::parse(r.out.substr(r.out.find('\n') + 1));
  EXPECT_DOUBLE_EQ(second["reward"], 0.0);
  EXPECT_EQ(second["math"]["extracted"], "3");
}

TEST(RewardCli, BadLineIsNamed) {
  auto r = run_r1("reward --reward math", "{\"completion\": \"\\\\boxed{1}\", \"answer\": \"1\"}\n{\"answer\": \"1\"}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  auto u = run_r1("reward --reward nonsense", "{\"completion\": \"x\"}\n");
  EXPECT_NE(u.exit_code, 0);
  EXPECT_NE(u.err.find("unknown reward 'nonsense'"), std::string::npos) << u.err;
}
