#include "pipeline/addition_task.h"

#include "base/fs.h"
#include "base/rng.h"
#include "data/arithmetic.h"
#include "run/run_dir.h"
#include "run/run_inputs.h"

namespace r1::pipeline {

nlohmann::json addition_recipe_defaults() {
  return {{"task",
           {{"digits", 3},
            {"train_problems", 4000},
            {"test_problems", 200},
            {"cold_start_examples", 1000},
            {"direct_share", 0.0},  // cold-start answers given bare, without the worked reasoning
            {"seed", 1}}},
          {"run", run::run_section("addition")}};
}

namespace {
std::string problems_jsonl(const std::vector<data::Problem>& ps) {
  std::string out;
  for (const auto& p : ps) out += nlohmann::json{{"question", p.question}, {"answer", p.answer}}.dump() + "\n";
  return out;
}
}  // namespace

std::string run_addition(const run::Recipe& r) {
  const int digits = r.get<int>("task.digits");
  const uint64_t seed = uint64_t(r.get<int>("task.seed"));
  const int64_t n_train = r.get<int>("task.train_problems"), n_test = r.get<int>("task.test_problems");
  const int64_t n_cold = r.get<int>("task.cold_start_examples");
  const double direct = r.get<double>("task.direct_share");
  R1_CHECK(n_train > 0 && n_test > 0 && n_cold >= 0, "addition: problem counts must be positive");
  // Test ids start far above the training ids, and their seed differs, as the r1 demo does; no
  // training or cold-start problem adds the same two numbers as a test problem.
  const std::vector<data::Problem> test = data::addition_problems(n_test, digits, seed + 7919, 1 << 30);
  const std::vector<data::Problem> train = data::without_held_out(data::addition_problems(n_train, digits, seed, 0), test);
  run::RunDir run(run::run_path(r));
  run.write_config(r.to_yaml());
  fs::write_file_atomic(run.file("train.jsonl"), problems_jsonl(train));
  fs::write_file_atomic(run.file("test.jsonl"), problems_jsonl(test));
  // Cold-start examples come from their own problems (ids after the training set's), so the RL
  // stage still meets problems it has not seen solved.
  const std::vector<data::Problem> cold =
      data::without_held_out(data::addition_problems(n_cold, digits, seed + 104729, n_train), test);
  Rng pick(seed, 23);
  std::string sft;
  for (const auto& p : cold) {
    const std::string completion =
        pick.uniform() < direct ? "<answer>" + p.answer + "</answer>" : data::addition_solution(p);
    sft += nlohmann::json{{"prompt", p.question + "="}, {"completion", completion}}.dump() + "\n";
  }
  fs::write_file_atomic(run.file("cold_start.jsonl"), sft);
  run::write_summary(run.path(), {{"digits", digits},
                                  {"train_problems", int64_t(train.size())},
                                  {"test_problems", n_test},
                                  {"cold_start_examples", int64_t(cold.size())}});
  return run.path();
}

}  // namespace r1::pipeline
