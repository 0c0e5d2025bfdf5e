// The sandbox fails closed. Each protection is taken away for real, by running the reward in a process
// whose seccomp filter denies the system call that sets it up (as a machine without it would): the
// code reward must then refuse to run code, naming what is missing, unless told to accept the risk.
// These tests run on any machine, whatever the sandbox can do there.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "reward/code_reward.h"
#include "reward/composite.h"
#include "reward/sandbox.h"
#include "test_util.h"
#include "run/recipe.h"
#include "run/run_inputs.h"

using namespace r1::reward;

namespace {

// A protection and the system calls whose denial takes it away.
struct Denial {
  const char* protection;  // as the sandbox names it
  std::function<void(scmp_filter_ctx)> deny;
};

std::vector<Denial> denials() {
  std::vector<Denial> d = {
      {"namespaces",
       [](scmp_filter_ctx c) { seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 0); }},
      {"private root",
       [](scmp_filter_ctx c) { seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pivot_root), 0); }},
      {"seccomp",
       [](scmp_filter_ctx c) {
         seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_SECCOMP));
         seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(seccomp), 0);
       }},
      {"rlimits",
       [](scmp_filter_ctx c) {
         seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prlimit64), 1, SCMP_A2(SCMP_CMP_NE, 0));
         seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setrlimit), 0);
       }},
  };
  if (::geteuid() == 0)  // the uid of its own is a root-only protection
    d.push_back({"unprivileged uid", [](scmp_filter_ctx c) {
                   seccomp_rule_add(c, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(setgroups), 0);
                 }});
  return d;
}

// In a forked child: install the denial, then run `body`, whose string comes back to the caller.
std::string in_child_without(const Denial& d, const std::function<std::string()>& body) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    d.deny(ctx);
    if (seccomp_load(ctx) != 0) ::_exit(3);
    std::string out;
    try {
      out = body();
    } catch (const std::exception& e) {
      out = std::string("threw: ") + e.what();
    }
    for (size_t off = 0; off < out.size();) {
      ssize_t w = ::write(fds[1], out.data() + off, out.size() - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << d.protection << ": the child failed, status " << st;
  return out;
}

// `r1 ARGS` under the denial, stdin from `input`.
r1::test::RunResult r1_without(const Denial& d, const std::string& args, const std::string& input) {
  r1::test::TempDir io;
  std::ofstream(io.file("in")) << input;
  std::string cmd = std::string(R1_BINARY) + " " + args + " <" + io.file("in") + " >" + io.file("out") +
                    " 2>" + io.file("err");
  std::string status = in_child_without(d, [&] { return std::to_string(std::system(cmd.c_str())); });
  auto slurp = [](const std::string& f) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  int st = std::atoi(status.c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(io.file("out")), slurp(io.file("err"))};
}

const std::string kHonest =
    R"({"completion": "```python\nprint(sum(map(int, input().split())))\n```", "tests": {"cases": [{"input": "2 3\n", "output": "5\n"}]}})"
    "\n";

}  // namespace

TEST(RewardFailClosed, CodeRewardRefusesWhenAProtectionIsMissing) {
  for (const Denial& d : denials()) {
    auto r = r1_without(d, "reward --reward code", kHonest);
    EXPECT_NE(r.exit_code, 0) << d.protection << ": ran without it: " << r.out;
    EXPECT_TRUE(r.out.empty()) << d.protection;
    EXPECT_NE(r.err.find("refusing to run model-written code"), std::string::npos)
        << d.protection << ": " << r.err;
    EXPECT_NE(r.err.find(d.protection), std::string::npos) << d.protection << " not named in: " << r.err;
    EXPECT_NE(r.err.find("--allow-unsandboxed"), std::string::npos) << r.err;
    std::printf("[ fail-closed ] without %s: %s", d.protection,
                r.err.substr(r.err.find("code reward")).c_str());
  }
}

TEST(RewardFailClosed, AllowUnsandboxedRunsAndSaysWhatIsMissing) {
  for (const Denial& d : denials()) {
    auto r = r1_without(d, "reward --reward code --allow-unsandboxed", kHonest);
    ASSERT_EQ(r.exit_code, 0) << d.protection << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["reward"], 1.0) << d.protection << ": " << r.out;
    std::string missing = j["sandbox"]["missing"].dump();
    EXPECT_NE(missing.find(d.protection), std::string::npos) << d.protection << " not listed: " << missing;
  }
}

// The sandbox itself, not only the reward's check at construction: a run whose protection fails to
// set up never starts the program (a marker file it would write stays absent).
TEST(RewardFailClosed, SandboxRunNeverStartsTheProgramWithoutAProtection) {
  for (const Denial& d : denials()) {
    std::string out = in_child_without(d, [] {
      nlohmann::json j;
      for (bool allow : {false, true}) {
        SandboxOptions o;
        o.allow_unsandboxed = allow;
        Sandbox box(o);
        SandboxResult r = box.run({"/bin/sh", "-c", "echo started > marker"}, "", {});
        j[allow ? "allowed" : "refused"] = {{"setup_failed", r.setup_failed},
                                            {"ok", r.ok()},
                                            {"missing", r.missing},
                                            {"started", std::ifstream(box.dir() + "/marker").good()}};
      }
      return j.dump();
    });
    auto j = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << d.protection << ": " << out;
    EXPECT_TRUE(j["refused"]["setup_failed"].get<bool>()) << d.protection << ": " << out;
    EXPECT_FALSE(j["refused"]["started"].get<bool>()) << d.protection << ": the program ran: " << out;
    EXPECT_NE(j["refused"]["missing"].dump().find(d.protection), std::string::npos) << out;
    EXPECT_TRUE(j["allowed"]["ok"].get<bool>()) << d.protection << ": " << out;
    EXPECT_TRUE(j["allowed"]["started"].get<bool>()) << d.protection << ": " << out;
  }
}

TEST(RewardFailClosed, RecipeKeyAllowUnsandboxed) {
  const Denial& d = denials()[0];  // no namespaces
  // The parent probes first (as any earlier test in the same process does): the child, which lost a
  // protection after the fork, must probe again rather than inherit the parent's answer.
  (void)sandbox_support();
  std::string out = in_child_without(d, [] {
    std::string said;
    for (const char* allow : {"false", "true"}) {
      r1::run::Recipe r(nlohmann::json{{"reward", r1::run::reward_section("code")}});
      r.set(std::string("reward.allow_unsandboxed=") + allow);
      try {
        r1::run::make_recipe_reward(r);
        said += std::string(allow) + ": built\n";
      } catch (const std::exception& e) {
        said += std::string(allow) + ": " + e.what() + "\n";
      }
    }
    return said;
  });
  EXPECT_NE(out.find("false: code reward: refusing to run model-written code"), std::string::npos) << out;
  EXPECT_NE(out.find("reward.allow_unsandboxed: true"), std::string::npos) << out;
  EXPECT_NE(out.find("true: built"), std::string::npos) << out;
}

// Without root the sandbox uses a user namespace of its own: where the kernel allows one, everything
// holds (the process limit is then counted in that namespace); where it does not, the reward refuses.
TEST(RewardFailClosed, WithoutRootEitherFullySandboxedOrRefused) {
  if (::geteuid() != 0 || std::system("command -v setpriv > /dev/null") != 0)
    GTEST_SKIP() << "needs root (to drop it) and setpriv";
  // (The shell, still root, opens the input and output files; r1 runs as uid 65534.)
  auto r = r1::test::run_command("setpriv --reuid=65534 --regid=65534 --clear-groups " +
                                     std::string(R1_BINARY) + " reward --reward code",
                                 kHonest);
  if (r.exit_code != 0) {
    EXPECT_NE(r.err.find("refusing to run model-written code"), std::string::npos) << r.err;
    std::printf("[ fail-closed ] as uid 65534: refused: %s", r.err.c_str());
    return;
  }
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["reward"], 1.0) << r.out;
  EXPECT_TRUE(j["sandbox"]["missing"].empty()) << r.out;
  EXPECT_NE(j["sandbox"]["protections"].dump().find("process limit counted in its own user namespace"),
            std::string::npos)
      << r.out;
}
