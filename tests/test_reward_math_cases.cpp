// The math verifier against its case list (tests/fixtures/math_cases.jsonl, made by
// tests/fixtures/make_math_cases.py from the MATH-500, AIME, AMC and GSM8K golds and hand-written
// cases): counts per form, no wrong answer accepted, and every correct one accepted except the
// false negatives the list admits ("known_miss").
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "reward/math_reward.h"
#include "math_decisions.h"
#include "test_util.h"

using namespace r1::reward;

TEST(RewardMathCases, EveryFormCountedNoFalsePositive) {
  std::ifstream in(r1::test::source_path("tests/fixtures/math_cases.jsonl"));
  ASSERT_TRUE(in.good()) << "tests/fixtures/math_cases.jsonl is missing";
  std::vector<nlohmann::json> cases;
  std::vector<Sample> samples;
  for (std::string line; std::getline(in, line);) {
    cases.push_back(nlohmann::json::parse(line));
    const auto& c = cases.back();
    samples.push_back({c["completion"], c["gold"], nullptr, c.value("prompt", "")});
  }
  ASSERT_GT(cases.size(), 4000u);
  MathReward reward(r1::test::math_decisions_only());
  std::vector<Result> rs = score_batch(reward, samples, r1::test::kScoreThreads);
  struct Counts {
    int accepted = 0, correct = 0, rejected = 0, wrong = 0, false_pos = 0, known_miss = 0;
  };
  std::map<std::string, Counts> by_form;
  Counts all;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const bool expect = c["expect"], got = rs[i].reward == 1.0, known = c.value("known_miss", false);
    for (Counts* n : {&by_form[c["form"]], &all}) {
      n->correct += expect;
      n->wrong += !expect;
      n->accepted += expect && got;
      n->rejected += !expect && !got;
      n->false_pos += !expect && got;
      n->known_miss += expect && !got && known;
    }
    EXPECT_FALSE(!expect && got) << "FALSE POSITIVE " << c["source"] << " (" << c["form"] << "): gold '"
                                 << c["gold"].get<std::string>() << "' accepted '"
                                 << c["completion"].get<std::string>() << "': " << rs[i].details.dump();
    EXPECT_FALSE(expect && !got && !known)
        << c["source"] << " (" << c["form"] << "): gold '" << c["gold"].get<std::string>() << "' rejected '"
        << c["completion"].get<std::string>() << "': " << rs[i].details.dump();
    EXPECT_FALSE(expect && got && known) << c["source"] << ": a known miss now passes; drop its known_miss";
  }
  std::printf("[ math cases ] %-20s %9s %9s %6s %9s\n", "form", "accepted", "rejected", "FP", "known FN");
  for (const auto& [form, n] : by_form)
    std::printf("[ math cases ] %-20s %4d/%-4d %4d/%-4d %6d %9d\n", form.c_str(), n.accepted, n.correct,
                n.rejected, n.wrong, n.false_pos, n.known_miss);
  std::printf("[ math cases ] %-20s %4d/%-4d %4d/%-4d %6d %9d\n", "all", all.accepted, all.correct,
              all.rejected, all.wrong, all.false_pos, all.known_miss);
  EXPECT_EQ(all.false_pos, 0);
}
