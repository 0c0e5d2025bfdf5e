// r1 reward: score completions with the rule-based rewards.
// stdin: {"completion": ..., "answer": ..., "tests": ..., "prompt": ...} per line ("prompt" optional: math
// reads from it the order of the named values asked for); stdout: {"reward": x, ...details}.
#include <iostream>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/jsonl.h"
#include "reward/composite.h"

namespace r1::cli {

void add_reward(CLI::App& app) {
  struct Opts {
    std::string spec = "math";
    int threads = 0;
    std::string methods = "boxed,answer_tag,answer_is,hash";
    double rel_tol = 1e-6;
    int symbolic_timeout_ms = 3000;
    bool require_format = false, lenient = false, prompt_opens_think = false, metrics = false;
    bool allow_unsandboxed = false;
    std::string language = "en";
    double run_seconds = 5.0;
    double deadline_s = 120.0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("reward", "score completions with rule-based rewards (JSONL stdin -> stdout)");
  cmd->add_option("--reward,-r", o->spec, "math|format|language|code, or a weighted sum: math+format:0.5")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "scoring threads (0: all cores)")->capture_default_str();
  cmd->add_option("--extract", o->methods, "answer forms allowed, in priority order")->capture_default_str();
  cmd->add_option("--rel-tol", o->rel_tol, "numeric check: relative tolerance")->capture_default_str();
  cmd->add_option("--symbolic-timeout-ms", o->symbolic_timeout_ms, "deadline of one GiNaC check")
      ->capture_default_str();
  cmd->add_flag("--require-format", o->require_format, "math credit only when the format holds");
  cmd->add_flag("--lenient-format", o->lenient, "format: think block then answer block anywhere");
  cmd->add_flag("--prompt-opens-think", o->prompt_opens_think, "the prompt ends with <think>");
  cmd->add_option("--language", o->language, "language reward: target language (en, zh, ...)")
      ->capture_default_str();
  cmd->add_option("--run-seconds", o->run_seconds, "code: wall-clock limit per test run")->capture_default_str();
  cmd->add_option("--deadline-s", o->deadline_s,
                  "per-sample deadline of every rule reward, run in a worker process that is killed at it "
                  "(0: in-process, no deadline)")
      ->capture_default_str();
  cmd->add_flag("--allow-unsandboxed", o->allow_unsandboxed,
                "code: run model code even where the sandbox lacks a protection (at your own risk)");
  cmd->add_flag("--metrics", o->metrics, "print failure counters to stderr at the end");
  cmd->callback([o] {
    reward::RewardConfig cfg;
    cfg.format.strict = !o->lenient;
    cfg.format.prompt_opens_think = o->prompt_opens_think;
    cfg.math.format = cfg.format;
    cfg.math.require_format = o->require_format;
    cfg.math.extract.methods.clear();
    for (size_t s = 0, e; s <= o->methods.size(); s = e + 1) {
      e = std::min(o->methods.find(',', s), o->methods.size());
      if (e > s) cfg.math.extract.methods.push_back(o->methods.substr(s, e - s));
    }
    cfg.math.equivalence.rel_tol = o->rel_tol;
    cfg.math.equivalence.symbolic_timeout_ms = o->symbolic_timeout_ms;
    cfg.language.target = o->language;
    cfg.language.format = cfg.format;
    cfg.code.run.wall_seconds = o->run_seconds;
    cfg.code.allow_unsandboxed = o->allow_unsandboxed;
    cfg.deadline_s = o->deadline_s;
    auto reward = reward::make_reward(o->spec, cfg);
    // Read and check every line first: a bad line stops the command before anything is written.
    std::vector<reward::Sample> samples;
    for (const JsonLine& l : read_jsonl(std::cin, "stdin")) {
      auto c = l.value.find("completion");
      R1_CHECK(c != l.value.end() && c->is_string(), "stdin line {}: 'completion' must be a string", l.line_no);
      reward::Sample s{c->get<std::string>(), "", l.value.value("tests", nlohmann::json())};
      if (auto a = l.value.find("answer"); a != l.value.end()) {
        R1_CHECK(a->is_string() || a->is_number(), "stdin line {}: 'answer' must be a string or a number",
                 l.line_no);
        s.answer = a->is_string() ? a->get<std::string>() : a->dump();
      }
      if (auto q = l.value.find("prompt"); q != l.value.end()) {
        R1_CHECK(q->is_string(), "stdin line {}: 'prompt' must be a string", l.line_no);
        s.prompt = q->get<std::string>();
      }
      samples.push_back(std::move(s));
    }
    std::string out;
    for (reward::Result& r : reward::score_batch(*reward, samples, o->threads)) {
      nlohmann::json j = {{"reward", r.reward}};
      j.update(r.details);
      out += j.dump() + "\n";
    }
    std::cout << out << std::flush;
    if (o->metrics) std::cerr << reward::counters().snapshot().dump() << "\n";
  });
}

}  // namespace r1::cli
