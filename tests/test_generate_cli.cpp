// r1 generate end to end with a real tokenizer (Qwen3's, fetched by scripts/fetch_test_data.sh) and
// a small random model of its vocabulary: output records, and bad lines that do not lose the rest.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <sstream>

#include "test_text_util.h"
#include "test_util.h"

using namespace r1;

namespace {

class GenerateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    auto r = test::run_r1("init --preset tiny --arch qwen3 --set vocab_size=151669 --set max_position_embeddings=48 "
                          "--std 0.1 --out " + dir_->file("m"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string args(const std::string& extra) {
    return "generate --model " + dir_->file("m") + " --tokenizer " + test::tokenizer_dir("qwen3") + " " + extra;
  }
  static std::vector<nlohmann::json> records(const std::string& out) {
    std::vector<nlohmann::json> v;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) v.push_back(nlohmann::json::parse(line));
    return v;
  }
  static test::TempDir* dir_;
};
test::TempDir* GenerateCli::dir_ = nullptr;

TEST_F(GenerateCli, SamplesEveryPromptNTimes) {
  test::real_tokenizer("qwen3");  // a clear failure if the test data was not fetched
  auto r = test::run_r1(args("-n 3 --max-new-tokens 6 --seed 4 --template none"),
                        "{\"prompt\": \"What is 2+2?\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto recs = records(r.out);
  ASSERT_EQ(recs.size(), 6u);
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i]["line"], int(i / 3) + 1);
    EXPECT_EQ(recs[i]["sample"], int(i % 3));
    EXPECT_LE(recs[i]["token_ids"].size(), 6u);
    EXPECT_EQ(recs[i]["logprobs"].size(), recs[i]["token_ids"].size());
    EXPECT_TRUE(recs[i]["finish_reason"] == "length" || recs[i]["finish_reason"] == "stop");
  }
  EXPECT_NE(r.err.find("tok/s"), std::string::npos);
}

TEST_F(GenerateCli, BadLinesAreNamedAndTheRestIsGenerated) {
  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += " alpha";  // ~100 tokens, over the 48-token context
  auto r = test::run_r1(args("--max-new-tokens 4 --template none"),
                        "{\"prompt\": \"one\"}\n"
                        "{\"prompt\": \"\"}\n"
                        "not json\n"
                        "{\"prompt\": \"" + long_prompt + "\"}\n"
                        "{\"prompt\": \"five\"}\n");
  EXPECT_NE(r.exit_code, 0);
  auto recs = records(r.out);
  std::map<int, std::string> errors;
  std::set<int> generated;
  for (const auto& j : recs) {
    if (j.contains("error")) errors[j["line"].get<int>()] = j["error"];
    else generated.insert(j["line"].get<int>());
  }
  EXPECT_EQ(generated, (std::set<int>{1, 5}));
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_NE(errors[2].find("empty prompt"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("line 3: invalid JSON"), std::string::npos) << errors[3];
  EXPECT_NE(errors[4].find("longer than the model's context"), std::string::npos) << errors[4];
  EXPECT_NE(r.err.find("3 input line(s) could not be generated"), std::string::npos) << r.err;
}

// r1 chat reads turns from stdin, streams replies and keeps the conversation until /reset.
TEST_F(GenerateCli, ChatTakesTurns) {
  auto r = test::run_r1("chat --model " + dir_->file("m") + " --tokenizer " + test::tokenizer_dir("qwen3") +
                            " --max-new-tokens 5 --system \"Be brief.\"",
                        "Hi\nHow are you?\n/reset\nHello again\n/quit\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("(conversation cleared)"), std::string::npos) << r.out;
  size_t turns = 0;
  for (size_t p = r.err.find("tok/s"); p != std::string::npos; p = r.err.find("tok/s", p + 1)) ++turns;
  EXPECT_EQ(turns, 3u) << r.err;
}

TEST_F(GenerateCli, UnknownTemplateIsAnError) {
  auto r = test::run_r1(args("--template chatml"), "{\"prompt\": \"hi\"}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--template must be chat, r1-zero or none"), std::string::npos) << r.err;
}

}  // namespace
