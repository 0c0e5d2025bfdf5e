// bench/ab_summary.py, the table of `bash bench/gpu.sh ab BASE [BASE2 ...]`: each build's median
// over the rounds, its ratio to the first build, the decode step where one is reported, and a clear
// line for a build that produced no result.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

r1::test::RunResult summary(const r1::test::TempDir& d, const std::string& jsonl, const std::string& labels) {
  std::ofstream(d.file("ab.jsonl")) << jsonl;
  return r1::test::run_command("python3 " + r1::test::source_path("bench/ab_summary.py") + " " +
                               d.file("ab.jsonl") + " " + labels);
}

TEST(BenchAb, EachBuildsMedianAndItsRatioToTheFirst) {
  r1::test::TempDir d;
  // generate: 3 rounds (medians 100, 105, 120); grpo: step 0 (the warm-up) is not counted; train:
  // p12 produced nothing.
  const auto r = summary(d, R"({"ab":"base","case":"generate","round":1,"tok_s":90,"decode_step_ms":1.5}
{"ab":"p12","case":"generate","round":1,"tok_s":105,"decode_step_ms":1.4}
{"ab":"this","case":"generate","round":1,"tok_s":120,"decode_step_ms":1.2}
{"ab":"this","case":"generate","round":2,"tok_s":121,"decode_step_ms":1.19}
{"ab":"p12","case":"generate","round":2,"tok_s":104,"decode_step_ms":1.41}
{"ab":"base","case":"generate","round":2,"tok_s":100,"decode_step_ms":1.4}
{"ab":"base","case":"generate","round":3,"tok_s":110,"decode_step_ms":1.3}
{"ab":"p12","case":"generate","round":3,"tok_s":106,"decode_step_ms":1.39}
{"ab":"this","case":"generate","round":3,"tok_s":119,"decode_step_ms":1.21}
{"ab":"base","case":"grpo","round":1,"step":0,"step_s":1,"generated_tokens":1000}
{"ab":"base","case":"grpo","round":1,"step":1,"step_s":10,"generated_tokens":1000}
{"ab":"p12","case":"grpo","round":1,"step":1,"step_s":5,"generated_tokens":1000}
{"ab":"this","case":"grpo","round":1,"step":1,"step_s":4,"generated_tokens":1000}
{"ab":"base","case":"train","round":1,"tok_s":50}
{"ab":"this","case":"train","round":1,"tok_s":55}
)",
                         "base p12 this");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = [&] {
    std::vector<std::string> v;
    std::stringstream ss(r.out);
    for (std::string l; std::getline(ss, l);) v.push_back(l);
    return v;
  }();
  ASSERT_EQ(lines.size(), 5u) << r.out;
  EXPECT_NE(lines[0].find("p12/base"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("this/base"), std::string::npos) << lines[0];
  // medians 100, 105, 120; ratios 1.050, 1.200
  EXPECT_NE(lines[1].find("generate                    100        105        120        1.050        1.200"),
            std::string::npos) << lines[1];
  EXPECT_NE(lines[2].find("decode step, ms        1.4000     1.4000     1.2000"), std::string::npos) << lines[2];
  // 100, 200, 250 tok/s (the warm-up step's 1,000 tok/s is left out)
  EXPECT_NE(lines[3].find("grpo                        100        200        250        2.000        2.500"),
            std::string::npos) << lines[3];
  EXPECT_NE(lines[4].find("train                missing: p12"), std::string::npos) << lines[4];
}

TEST(BenchAb, ALineThatIsNotJsonIsNamedByFileAndLine) {
  r1::test::TempDir d;
  const auto r = summary(d, "{\"ab\":\"base\",\"case\":\"c\",\"round\":1,\"tok_s\":1}\n{\"ab\": oops\n", "base this");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("ab.jsonl:2: not a JSON line"), std::string::npos) << r.err;
}

}  // namespace
