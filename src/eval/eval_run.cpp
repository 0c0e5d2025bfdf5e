#include "eval/eval_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/timer.h"
#include "eval/eval_report.h"
#include "eval/generate_scored.h"
#include "eval/pass_at_k.h"
#include "reward/reflection.h"
#include "run/run_inputs.h"

namespace r1::eval {

nlohmann::json eval_recipe_defaults() {
  nlohmann::json data = run::data_section("data/math500.jsonl", "math500");
  data["limit"] = 0;  // evaluate the first N problems only (0: all)
  return {
      {"device", "cpu"},
      {"model", run::model_section()},
      {"data", data},
      {"reward", run::reward_section("math")},  // decides "correct", with eval.threshold
      {"eval",
       {{"k", 4},  // samples per problem (the paper: 64 for AIME)
        {"temperature", 0.6}, {"top_p", 0.95}, {"top_k", 0},  // the paper's setting; temperature 0: greedy, k=1
        {"max_completion_tokens", 2048}, {"max_prompt_tokens", 0},  // 0: no limit (longer prompts are skipped)
        {"batch", 64}, {"seed", 1234},
        {"pass_k", nlohmann::json::array()},  // k' values for pass@k' (empty: powers of two below k, and k)
        {"threshold", 1.0},                   // a sample is correct when its reward reaches this
        {"vote", "verifier"},                 // cons@k: answers are one vote when verifier-equivalent, or "string"
        {"save_completions", true}}},         // completion text in samples.jsonl
      {"run", run::run_section("eval")},
  };
}

namespace {

// eval.* as sampling settings; greedy decoding gives k identical samples, so it samples once.
SamplingSpec sampling_spec(const run::Recipe& r) {
  SamplingSpec s;
  s.k = r.get<int>("eval.k");
  s.temperature = float(r.get<double>("eval.temperature"));
  s.top_p = float(r.get<double>("eval.top_p"));
  s.top_k = r.get<int>("eval.top_k");
  s.max_completion_tokens = r.get<int>("eval.max_completion_tokens");
  s.max_prompt_tokens = r.get<int>("eval.max_prompt_tokens");
  s.batch = r.get<int>("eval.batch");
  s.seed = uint64_t(r.get<int64_t>("eval.seed"));
  R1_CHECK(s.k >= 1, "recipe key 'eval.k' must be >= 1 (got {})", s.k);
  R1_CHECK(s.temperature >= 0, "recipe key 'eval.temperature' must be >= 0 (got {})", s.temperature);
  R1_CHECK(s.top_p > 0 && s.top_p <= 1, "recipe key 'eval.top_p' must be in (0, 1] (got {})", s.top_p);
  R1_CHECK(s.top_k >= 0, "recipe key 'eval.top_k' must be >= 0 (got {})", s.top_k);
  R1_CHECK(s.max_completion_tokens >= 1, "recipe key 'eval.max_completion_tokens' must be >= 1");
  R1_CHECK(s.max_prompt_tokens >= 0, "recipe key 'eval.max_prompt_tokens' must be >= 0 (0: no limit)");
  R1_CHECK(s.batch >= 1, "recipe key 'eval.batch' must be >= 1 (got {})", s.batch);
  if (s.temperature == 0 && s.k > 1) {
    log::warn("eval.temperature=0 is greedy decoding: all {} samples would be the same; using k=1", s.k);
    s.k = 1;
  }
  return s;
}

// eval.pass_k: integers written as strings ("[1, 8]" in YAML), each between 1 and k; 1 always.
std::vector<int> pass_ks(const run::Recipe& r, int k, bool greedy) {
  const auto list = r.get<std::vector<std::string>>("eval.pass_k");
  if (list.empty() || greedy) return default_pass_ks(k);
  std::vector<int> ks = {1};
  for (const std::string& s : list) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    R1_CHECK(used > 0 && used == s.size(), "recipe key 'eval.pass_k': '{}' is not an integer", s);
    R1_CHECK(v >= 1 && v <= k, "recipe key 'eval.pass_k': pass@{} needs 1 <= k' <= eval.k ({})", v, k);
    ks.push_back(v);
  }
  std::sort(ks.begin(), ks.end());
  ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
  return ks;
}

std::string benchmark_name(const run::Recipe& r) {
  const std::string preset = r.get<std::string>("data.preset");
  if (preset != "custom") return preset;
  return std::filesystem::path(r.get<std::string>("data.path")).stem().string();
}

std::string model_name(const run::Recipe& r) {
  const std::string path = r.get<std::string>("model.path");
  return path.empty() ? "random " + r.get<std::string>("model.init_preset") : path;
}

std::string sample_rows(const std::vector<data::Problem>& problems, const std::vector<ProblemSamples>& scored,
                        const std::vector<ProblemOutcome>& outcomes, bool completions) {
  std::string out;
  for (size_t p = 0; p < outcomes.size(); ++p) {
    const ProblemOutcome& o = outcomes[p];
    for (size_t s = 0; s < o.samples.size(); ++s) {
      const SampleOutcome& so = o.samples[s];
      nlohmann::json row = {{"problem", problems[p].id}, {"sample", s},
                            {"answer", so.answer ? nlohmann::json(*so.answer) : nlohmann::json(nullptr)},
                            {"correct", so.correct}, {"reward", so.reward}, {"length", so.tokens},
                            {"truncated", so.truncated}, {"voted", int(s) == o.vote.winner}};
      if (problems[p].meta.is_object() && problems[p].meta.contains("id")) row["source_id"] = problems[p].meta["id"];
      if (completions) row["completion"] = scored[p].samples[s].text;
      out += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
  }
  return out;
}

}  // namespace

std::string run_eval(const run::Recipe& r) {
  auto reward = run::make_recipe_reward(r);
  return run_eval(r, *reward);
}

std::string run_eval(const run::Recipe& r, const reward::Reward& reward) {
  // Everything that can be wrong with the inputs fails here, before any compute.
  const Device device = run::recipe_device(r);
  std::unique_ptr<text::Codec> codec = run::load_codec(r);
  std::vector<data::Problem> problems = run::load_problems(r);
  const int64_t limit = r.get<int64_t>("data.limit");
  R1_CHECK(limit >= 0, "recipe key 'data.limit' must be >= 0 (0: all problems)");
  if (limit > 0 && size_t(limit) < problems.size()) problems.resize(size_t(limit));
  run::PromptRenderer render = run::make_renderer(r);
  const bool greedy = r.get<double>("eval.temperature") == 0;
  const SamplingSpec spec = sampling_spec(r);
  const std::vector<int> ks = pass_ks(r, spec.k, greedy);
  const double threshold = r.get<double>("eval.threshold");
  const std::string vote_name = r.get<std::string>("eval.vote");
  R1_CHECK(vote_name == "verifier" || vote_name == "string",
           "recipe key 'eval.vote' must be verifier or string (got '{}')", vote_name);
  const VoteRule rule = parse_vote_rule(vote_name);
  std::unique_ptr<model::Transformer> m = run::load_or_init_model(r, *codec, device, spec.seed, false);
  const std::string bench = benchmark_name(r);
  const std::string dir = run::run_path(r);
  std::filesystem::create_directories(dir);
  fs::write_file_atomic(fs::join(dir, "config.yaml"), r.to_yaml());

  Timer wall;
  // Counts sequences; problems skipped for their prompt length never arrive, finish() closes the line.
  Progress bar("eval " + bench, int64_t(problems.size()) * spec.k, "seq");
  int64_t shown = 0;
  std::vector<ProblemSamples> scored =
      generate_scored(*m, *codec, reward, problems, render, spec, [&](int64_t done, int64_t) {
        bar.update(done - shown);
        shown = done;
      });
  bar.finish();
  std::vector<ProblemOutcome> outcomes = judge(scored, threshold, rule);
  int64_t generated = 0;
  for (size_t p = 0; p < outcomes.size(); ++p)
    for (size_t s = 0; s < outcomes[p].samples.size(); ++s) {
      outcomes[p].samples[s].reflective = reward::reflection_rate({scored[p].samples[s].text}) > 0;
      generated += outcomes[p].samples[s].tokens;
    }
  const double seconds = wall.seconds();

  const Metrics overall = summarize(outcomes, spec.k, ks);
  fmt::print("{}", format_table("benchmark", {{bench, overall}}));
  nlohmann::json report = {
      {"benchmark", bench}, {"data", r.get<std::string>("data.path")}, {"model", model_name(r)},
      {"reward", reward.name()}, {"threshold", threshold}, {"vote", vote_name}, {"pass_k", ks},
      {"sampling",
       {{"k", spec.k}, {"temperature", spec.temperature}, {"top_p", spec.top_p}, {"top_k", spec.top_k},
        {"max_completion_tokens", spec.max_completion_tokens}, {"max_prompt_tokens", spec.max_prompt_tokens},
        {"seed", spec.seed}}},
      {"metrics", metrics_json(overall)},
      {"seconds", seconds}, {"generated_tokens", generated},
      {"tokens_per_second", seconds > 0 ? double(generated) / seconds : 0.0}};
  // MATH-500 breakdowns (any data whose problems carry these meta fields).
  for (const auto& [key, field] : {std::pair{"subject", "by_subject"}, std::pair{"level", "by_level"}}) {
    auto groups = group_by_meta(problems, key);
    if (groups.empty()) continue;
    std::vector<std::pair<std::string, Metrics>> rows;
    for (const auto& [name, which] : groups) {
      rows.push_back({name, summarize(outcomes, which, spec.k, ks)});
      report[field][name] = metrics_json(rows.back().second);
    }
    fmt::print("\n{}", format_table(key, rows));
  }
  std::vector<int64_t> skipped;
  for (size_t p = 0; p < outcomes.size(); ++p)
    if (outcomes[p].skipped) skipped.push_back(problems[p].id);
  report["skipped_problems"] = skipped;
  if (!skipped.empty())
    log::warn("{} problems have prompts over eval.max_prompt_tokens ({}): counted wrong", skipped.size(),
              spec.max_prompt_tokens);

  fs::write_file_atomic(fs::join(dir, "eval.json"), report.dump(2) + "\n");
  fs::write_file_atomic(fs::join(dir, "samples.jsonl"),
                        sample_rows(problems, scored, outcomes, r.get<bool>("eval.save_completions")));
  nlohmann::json summary = metrics_json(overall);
  summary["benchmark"] = bench;
  summary["eval"] = fs::join(dir, "eval.json");
  run::write_summary(dir, summary);
  log::info("eval: {} ({:.0f} s, {:.0f} tokens/s)", fs::join(dir, "eval.json"), seconds,
            report["tokens_per_second"].get<double>());
  return dir;
}

}  // namespace r1::eval
