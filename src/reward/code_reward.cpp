#include "reward/code_reward.h"

#include <algorithm>
#include <cctype>

#include "base/error.h"

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

nlohmann::json sandbox_details(const SandboxResult& r) {
  nlohmann::json j = {{"exit_code", r.exit_code}, {"signal", r.signal}, {"timed_out", r.timed_out},
                      {"wall_s", r.wall_seconds}};
  if (!r.err.empty()) j["stderr"] = tail(r.err);
  return j;
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

Result CodeReward::score(const Sample& s) const {
  Result r;
  auto finish = [&](double reward) {
    r.reward = reward;
    return r;
  };
  const nlohmann::json& t = s.tests;
  if (!t.is_object() || (!t.contains("cases") && !t.contains("asserts"))) {
    r.details["reason"] = "no tests: 'tests' must be an object with 'cases' and/or 'asserts'";
    return finish(0.0);
  }
  auto block = last_code_block(s.completion);
  if (!block) {
    r.details["reason"] = "no fenced code block";
    return finish(0.0);
  }
  std::string lang = canonical_language(t.value("language", block->language.empty() ? "python" : block->language));
  r.details["language"] = lang;
  if (lang != "python" && lang != "cpp") {
    r.details["reason"] = "unsupported language '" + lang + "'";
    return finish(0.0);
  }
  Sandbox box;
  // One program per assert (so the reward is a fraction), one run of the main program per case.
  std::vector<std::string> sources;
  struct Test {
    size_t source;
    std::string input, output;
    bool compare_output;
  };
  std::vector<Test> tests;
  sources.push_back(block->code);
  if (t.contains("cases"))
    for (const auto& c : t["cases"])
      tests.push_back({0, c.value("input", ""), c.value("output", ""), true});
  if (t.contains("asserts"))
    for (const auto& a : t["asserts"]) {
      sources.push_back(block->code + "\n\n" + a.get<std::string>() + "\n");
      tests.push_back({sources.size() - 1, "", "", false});
    }
  if (tests.empty()) {
    r.details["reason"] = "tests are empty";
    return finish(0.0);
  }
  // Build (C++) or write (Python) each distinct source.
  std::vector<std::vector<std::string>> argv(sources.size());
  std::vector<std::string> build_error(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    std::string name = "prog" + std::to_string(i);
    if (lang == "python") {
      box.write_file(name + ".py", sources[i]);
      argv[i] = {o_.python, "-I", "-S", "/tmp/" + name + ".py"};
      continue;
    }
    box.write_file(name + ".cpp", sources[i]);
    SandboxResult c = box.run({o_.gxx, "-O1", "-std=c++17", "-o", name, name + ".cpp"}, "", o_.compile);
    if (!c.ok()) build_error[i] = c.timed_out ? "compile timed out" : "compile failed: " + tail(c.err);
    argv[i] = {"/tmp/" + name};
    r.details["sandbox"]["protections"] = c.protections;
    r.details["sandbox"]["missing"] = c.missing;
  }
  int passed = 0;
  nlohmann::json results = nlohmann::json::array();
  for (const Test& test : tests) {
    nlohmann::json tr;
    if (!build_error[test.source].empty()) {
      tr = {{"passed", false}, {"reason", build_error[test.source]}};
    } else {
      SandboxResult run = box.run(argv[test.source], test.input, o_.run);
      bool ok = run.ok() && (!test.compare_output || canonical_output(run.out) == canonical_output(test.output));
      tr = sandbox_details(run);
      tr["passed"] = ok;
      if (!ok && run.ok()) tr["reason"] = "wrong output";
      if (run.timed_out) tr["reason"] = "wall-clock timeout";
      r.details["sandbox"]["protections"] = run.protections;
      r.details["sandbox"]["missing"] = run.missing;
    }
    passed += tr["passed"].get<bool>();
    results.push_back(tr);
  }
  r.details["passed"] = passed;
  r.details["total"] = tests.size();
  r.details["tests"] = results;
  return finish(double(passed) / double(tests.size()));
}

}  // namespace r1::reward
