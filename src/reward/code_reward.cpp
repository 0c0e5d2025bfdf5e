#include "reward/code_reward.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>

#include "base/error.h"
#include "reward/code_harness.h"

namespace r1::reward {
namespace {

std::string canonical_language(std::string l) {
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (l == "py" || l == "python3") return "python";
  if (l == "c++" || l == "cxx" || l == "cc") return "cpp";
  return l;
}

// Output comparison ignores trailing whitespace on each line and trailing blank lines.
std::string canonical_output(const std::string& s) {
  std::string out, line;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '\n') {
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
      out += line + "\n";
      line.clear();
    } else {
      line += s[i];
    }
  }
  while (out.size() >= 2 && out[out.size() - 1] == '\n' && out[out.size() - 2] == '\n') out.pop_back();
  return out;
}

std::string tail(const std::string& s, size_t n = 300) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

nlohmann::json run_details(const SandboxResult& r) {
  nlohmann::json j = {{"exit_code", r.exit_code}, {"signal", r.signal}, {"timed_out", r.timed_out},
                      {"wall_s", r.wall_seconds}};
  if (!r.err.empty()) j["stderr"] = tail(r.err);
  return j;
}

void note_sandbox(nlohmann::json& details, const SandboxResult& r) {
  details["sandbox"]["protections"] = r.protections;
  details["sandbox"]["missing"] = r.missing;
}

struct Case {
  std::string input, output;
};

// The tests object, checked: nullopt and a reason when it is malformed.
std::optional<std::string> read_tests(const nlohmann::json& t, std::vector<Case>& cases,
                                      std::vector<std::string>& asserts) {
  if (!t.is_object() || (!t.contains("cases") && !t.contains("asserts")))
    return "no tests: 'tests' must be an object with 'cases' and/or 'asserts'";
  if (t.contains("cases")) {
    if (!t["cases"].is_array()) return "tests: 'cases' must be a list";
    for (const auto& c : t["cases"]) {
      if (!c.is_object() || !c.value("input", nlohmann::json("")).is_string() ||
          !c.value("output", nlohmann::json("")).is_string())
        return "tests: each case must be {\"input\": string, \"output\": string}";
      cases.push_back({c.value("input", ""), c.value("output", "")});
    }
  }
  if (t.contains("asserts")) {
    if (!t["asserts"].is_array()) return "tests: 'asserts' must be a list";
    for (const auto& a : t["asserts"]) {
      if (!a.is_string()) return "tests: each assert must be a string";
      asserts.push_back(a.get<std::string>());
    }
  }
  if (cases.empty() && asserts.empty()) return "tests are empty";
  return std::nullopt;
}

}  // namespace

std::optional<CodeBlock> last_code_block(const std::string& text) {
  std::optional<CodeBlock> last;
  size_t p = 0;
  for (;;) {
    size_t open = text.find("```", p);
    if (open == std::string::npos) break;
    size_t eol = text.find('\n', open);
    if (eol == std::string::npos) break;
    size_t close = text.find("```", eol + 1);
    if (close == std::string::npos) break;
    std::string tag = text.substr(open + 3, eol - open - 3);
    tag.erase(std::remove_if(tag.begin(), tag.end(), [](unsigned char c) { return std::isspace(c); }), tag.end());
    last = CodeBlock{canonical_language(tag), text.substr(eol + 1, close - eol - 1)};
    p = close + 3;
  }
  return last;
}

CodeReward::CodeReward(CodeOptions o) : o_(std::move(o)) {
  if (o_.allow_unsandboxed) return;
  const SandboxSupport s = sandbox_support();
  R1_CHECK(s.complete(),
           "code reward: refusing to run model-written code: the sandbox is missing {}. Run where every "
           "protection works, or accept the risk with --allow-unsandboxed (r1 reward) or "
           "reward.allow_unsandboxed: true (recipes)",
           fmt::join(s.missing, "; "));
}

Result CodeReward::score(const Sample& s) const {
  Result r;
  std::vector<Case> cases;
  std::vector<std::string> asserts;
  if (auto bad = read_tests(s.tests, cases, asserts)) {
    r.details["reason"] = *bad;
    return r;
  }
  auto block = last_code_block(s.completion);
  if (!block) {
    r.details["reason"] = "no fenced code block";
    return r;
  }
  std::string lang =
      canonical_language(s.tests.value("language", block->language.empty() ? "python" : block->language));
  r.details["language"] = lang;
  if (lang != "python" && lang != "cpp") {
    r.details["reason"] = "unsupported language '" + lang + "'";
    return r;
  }
  SandboxOptions sandbox;
  sandbox.allow_unsandboxed = o_.allow_unsandboxed;
  nlohmann::json results = nlohmann::json::array();
  if (!cases.empty()) {
    Sandbox box(sandbox);
    std::vector<std::string> argv;
    std::string build_error;
    if (lang == "python") {
      box.write_file("main.py", block->code);
      argv = {o_.python, "-I", "-S", "main.py"};
    } else {
      box.write_file("prog.cpp", block->code);
      SandboxResult c = box.run({o_.gxx, "-O1", "-std=c++17", "-o", "prog", "prog.cpp"}, "", o_.compile);
      note_sandbox(r.details, c);
      if (!c.ok())
        build_error = c.setup_failed ? "sandbox: " + fmt::format("{}", fmt::join(c.missing, "; "))
                      : c.timed_out  ? "compile timed out"
                                     : "compile failed: " + tail(c.err);
      argv = {"./prog"};
    }
    for (const Case& c : cases) {
      if (!build_error.empty()) {
        results.push_back({{"passed", false}, {"reason", build_error}});
        continue;
      }
      SandboxResult run = box.run(argv, c.input, o_.run);
      note_sandbox(r.details, run);
      bool ok = run.ok() && canonical_output(run.out) == canonical_output(c.output);
      nlohmann::json tr = run_details(run);
      tr["passed"] = ok;
      if (!ok)
        tr["reason"] = run.setup_failed      ? "sandbox: " + fmt::format("{}", fmt::join(run.missing, "; "))
                       : run.timed_out       ? "wall-clock timeout"
                       : run.output_exceeded ? "output limit exceeded"
                       : run.ok()            ? "wrong output"
                                             : "the program failed";
      results.push_back(tr);
    }
  }
  if (!asserts.empty() && lang != "python") {
    for (size_t i = 0; i < asserts.size(); ++i)
      results.push_back(
          {{"passed", false}, {"reason", "asserts run on Python solutions; C++ tests use cases"}});
  } else if (!asserts.empty()) {
    nlohmann::json sandbox_used;
    for (const TestVerdict& v :
         run_python_tests(block->code, asserts, {o_.python, o_.run, sandbox}, &sandbox_used)) {
      nlohmann::json tr = {{"passed", v.passed}};
      if (!v.passed) tr["reason"] = v.reason;
      results.push_back(tr);
    }
    r.details["sandbox"] = sandbox_used;
  }
  int passed = 0;
  for (const auto& t : results) passed += t["passed"].get<bool>();
  r.details["passed"] = passed;
  r.details["total"] = results.size();
  r.details["tests"] = results;
  r.reward = double(passed) / double(results.size());
  return r;
}

}  // namespace r1::reward
