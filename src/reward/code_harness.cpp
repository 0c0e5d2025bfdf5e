#include "reward/code_harness.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <thread>

#include <fmt/ranges.h>

#include <algorithm>

#include "base/error.h"

namespace r1::reward {
namespace {

std::string tail(const std::string& s, size_t n = 300) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() { R1_CHECK(::pipe2(fd, O_CLOEXEC) == 0, "code harness: pipe: {}", std::strerror(errno)); }
  ~Pipe() {
    for (int f : fd)
      if (f >= 0) ::close(f);
  }
  int release(int end) {  // hand one end to Sandbox::run, which closes it
    int f = fd[end];
    fd[end] = -1;
    return f;
  }
};

struct Launch {
  std::vector<std::optional<TestVerdict>> verdicts;  // by test index; nullopt: no verdict came
  SandboxResult runner, evaluator;
};

// One runner + evaluator pair over tests[first..]. The evaluator's verdict lines name test indices.
Launch launch(const std::string& solution, const std::vector<std::string>& tests, size_t first,
              const HarnessOptions& o) {
  const size_t count = tests.size() - first;
  Sandbox runner_box(o.sandbox), evaluator_box(o.sandbox);  // two uids: neither can touch the other
  runner_box.write_file("solution.py", solution);
  runner_box.write_file("runner.py", kHarnessRunnerPy);
  nlohmann::json job = {{"tests", nlohmann::json::array()},
                        {"load_seconds", o.limits.wall_seconds},
                        {"test_seconds", o.limits.wall_seconds}};
  for (size_t i = first; i < tests.size(); ++i) job["tests"].push_back({{"index", i}, {"code", tests[i]}});
  evaluator_box.write_file("tests.json", job.dump());
  evaluator_box.write_file("evaluator.py", kHarnessEvaluatorPy);

  // Each process may spend a test's budget per test, and one more to start.
  SandboxLimits each = o.limits;
  each.cpu_seconds = o.limits.cpu_seconds * int(count + 1);
  each.wall_seconds = o.limits.wall_seconds * double(count + 1) + 2.0;
  Pipe requests, replies, cancel;
  Launch out;
  std::exception_ptr runner_error;
  SandboxIo runner_io{requests.release(0), replies.release(1), {}, cancel.fd[0]};
  std::thread runner([&] {
    try {
      out.runner = runner_box.run({o.python, "-I", "-S", "runner.py"}, "", each, runner_io);
    } catch (...) {
      runner_error = std::current_exception();
    }
  });
  try {
    out.evaluator = evaluator_box.run({o.python, "-I", "-S", "evaluator.py"}, "", each,
                                      SandboxIo{-1, -1, {requests.release(1), replies.release(0)}, -1});
  } catch (...) {
    ::close(cancel.release(1));
    runner.join();
    throw;
  }
  ::close(cancel.release(1));  // the evaluator is done: stop the runner now, whatever it is doing
  runner.join();
  if (runner_error) std::rethrow_exception(runner_error);

  out.verdicts.resize(tests.size());
  const std::string& text = out.evaluator.out;
  for (size_t start = 0, nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    nlohmann::json v = nlohmann::json::parse(text.substr(start, nl - start), nullptr, false);
    if (!v.is_object() || !v.contains("i") || !v["i"].is_number_unsigned()) continue;
    size_t i = v["i"].get<size_t>();
    if (i < first || i >= tests.size()) continue;
    out.verdicts[i] = TestVerdict{v.value("pass", false), v.value("why", std::string())};
  }
  return out;
}

void record(const Launch& l, nlohmann::json* sandbox) {
  if (!sandbox) return;
  (*sandbox)["protections"] = l.evaluator.protections;
  std::vector<std::string> missing = l.runner.missing;
  for (const std::string& m : l.evaluator.missing)
    if (std::find(missing.begin(), missing.end(), m) == missing.end()) missing.push_back(m);
  (*sandbox)["missing"] = missing;
}

// Why a launch gave no verdict for the test it stopped at.
std::string no_verdict_reason(const Launch& l) {
  const SandboxResult& e = l.evaluator;
  if (e.timed_out) return "the evaluator ran out of time";
  return fmt::format("the evaluator ended without a verdict (exit {}, signal {}): {}", e.exit_code, e.signal,
                     tail(e.err));
}

}  // namespace

std::vector<TestVerdict> run_python_tests(const std::string& solution, const std::vector<std::string>& tests,
                                          const HarnessOptions& o, nlohmann::json* sandbox) {
  std::vector<TestVerdict> verdicts(tests.size());
  size_t next = 0;
  while (next < tests.size()) {
    Launch l = launch(solution, tests, next, o);
    record(l, sandbox);
    if (l.runner.setup_failed || l.evaluator.setup_failed) {  // a protection is missing: nothing runs
      const SandboxResult& failed = l.runner.setup_failed ? l.runner : l.evaluator;
      for (size_t i = next; i < tests.size(); ++i)
        verdicts[i] = TestVerdict{false, "sandbox: " + fmt::format("{}", fmt::join(failed.missing, "; "))};
      break;
    }
    size_t stop = next;
    while (stop < tests.size() && l.verdicts[stop]) verdicts[stop] = *l.verdicts[stop], ++stop;
    if (stop == next) {  // no progress: this test fails, so every launch moves on by at least one
      verdicts[stop] = TestVerdict{false, no_verdict_reason(l)};
      ++stop;
    }
    next = stop;
  }
  return verdicts;
}

}  // namespace r1::reward
