// The code sandbox: each limit proven by a program that tries to break it. Tests that would be unsafe
// without a protection (the fork bomb) are skipped with the reason when the protection is missing.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "reward/code_reward.h"
#include "reward/sandbox.h"
#include "test_util.h"

using namespace r1::reward;

namespace {

SandboxResult python(const std::string& code, SandboxLimits l = {}, const std::string& in = "") {
  Sandbox box;
  box.write_file("main.py", code);
  return box.run({"/usr/bin/python3", "-I", "-S", "/tmp/main.py"}, in, l);
}

// Processes owned by `uid` anywhere on the host.
int processes_of(uid_t uid) {
  int n = 0;
  std::string field = fmt::format("\t{}\t", uid);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    std::ifstream f(e.path() / "status");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("Uid:", 0) == 0) n += line.find(field) != std::string::npos;
  }
  return n;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "; ";
  return s;
}

}  // namespace

TEST(Sandbox, ReportsItsProtections) {
  const SandboxSupport& s = sandbox_support();
  std::printf("[ sandbox ] namespaces=%d nproc_enforced=%d seccomp=%d missing: %s\n", s.namespaces,
              s.nproc_enforced, s.seccomp, joined(s.missing).c_str());
  SandboxResult r = python("print(input()[::-1])", {}, "olleh\n");
  EXPECT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "hello\n");
  EXPECT_FALSE(r.protections.empty());
}

TEST(Sandbox, PrivateDirRemovedAfterwards) {
  std::string dir;
  {
    Sandbox box;
    dir = box.dir();
    box.write_file("x", "y");
    EXPECT_TRUE(std::filesystem::exists(dir + "/x"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(Sandbox, InfiniteLoopStoppedByCpuLimit) {
  SandboxLimits l;
  l.cpu_seconds = 1;
  l.wall_seconds = 10;
  SandboxResult r = python("while True:\n    pass\n", l);
  EXPECT_FALSE(r.ok());
  EXPECT_TRUE(r.signal == SIGXCPU || r.signal == SIGKILL) << "signal " << r.signal;
  EXPECT_FALSE(r.timed_out) << "the CPU limit, not the wall clock, should stop it";
}

TEST(Sandbox, SleeperKilledAtWallDeadline) {
  SandboxLimits l;
  l.wall_seconds = 0.5;
  SandboxResult r = python("import time\ntime.sleep(100)\n", l);
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(r.wall_seconds, 2.0);
}

TEST(Sandbox, TenGigabyteAllocationFails) {
  SandboxResult r = python("x = bytearray(10 * 1024**3)\nprint('allocated')\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out.find("allocated"), std::string::npos);
  EXPECT_NE(r.err.find("MemoryError"), std::string::npos) << r.err;
}

TEST(Sandbox, WritesOutsideTheTempDirAreContained) {
  r1::test::TempDir host_dir;  // root-owned, 0700, outside the sandbox's dir
  std::string outside = host_dir.file("escape.txt");
  std::string host_tmp = "/tmp/r1_sandbox_escape_" + std::to_string(::getpid());
  Sandbox box;
  box.write_file("w.py", "import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('x')\n"
                         "        print('wrote', p)\n    except OSError as e:\n        print('denied', p, type(e).__name__)\n");
  SandboxResult r = box.run({"/usr/bin/python3", "-I", "-S", "/tmp/w.py", outside, host_tmp, "/var/tmp/r1_escape", "/etc/r1_escape"},
              "", {});
  std::printf("[ sandbox ] %s", r.out.c_str());
  EXPECT_TRUE(r.ok()) << r.err;
  EXPECT_FALSE(std::filesystem::exists(outside));
  EXPECT_FALSE(std::filesystem::exists("/etc/r1_escape"));
  if (sandbox_support().namespaces) {  // /tmp and /var/tmp are the private dir inside the sandbox
    EXPECT_FALSE(std::filesystem::exists(host_tmp));
    EXPECT_FALSE(std::filesystem::exists("/var/tmp/r1_escape"));
  } else {
    std::filesystem::remove(host_tmp);
    std::printf("[ sandbox ] no mount namespace: world-writable /tmp is not private here\n");
  }
  // File size limit: a 10 MB write under a 1 MB RLIMIT_FSIZE stops at 1 MB.
  SandboxLimits l;
  l.file_bytes = 1 << 20;
  SandboxResult big = box.run({"/usr/bin/python3", "-I", "-S", "-c", "open('big', 'wb').write(b'x' * (10 << 20))"}, "", l);
  EXPECT_FALSE(big.ok());
  EXPECT_LE(std::filesystem::file_size(box.dir() + "/big"), size_t(1) << 20);
}

TEST(Sandbox, NetworkSocketsDenied) {
  SandboxResult r = python(
      "import socket\nfor fam in (socket.AF_INET, socket.AF_INET6):\n    try:\n"
      "        s = socket.socket(fam, socket.SOCK_STREAM)\n        s.settimeout(1)\n"
      "        s.connect(('127.0.0.1', 80) if fam == socket.AF_INET else ('::1', 80))\n        print('connected')\n"
      "    except OSError as e:\n        print('blocked', e.errno)\n");
  EXPECT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out.find("connected"), std::string::npos);
  EXPECT_EQ(r.out, "blocked 1\nblocked 1\n") << "EPERM from seccomp expected";
}

TEST(Sandbox, ParentEnvironmentInvisible) {
  ::setenv("R1_SANDBOX_SECRET", "hunter2-secret", 1);
  SandboxResult r = python(
      "import os, glob\nprint(sorted(os.environ))\nfound = 'hunter2-secret' in str(os.environ)\n"
      "for p in glob.glob('/proc/*/environ'):\n    try:\n        found = found or b'hunter2-secret' in open(p, 'rb').read()\n"
      "    except OSError:\n        pass\nprint('found' if found else 'not found')\n");
  ::unsetenv("R1_SANDBOX_SECRET");
  EXPECT_TRUE(r.ok()) << r.err;
  EXPECT_NE(r.out.find("not found"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("R1_SANDBOX_SECRET"), std::string::npos) << r.out;
}

TEST(Sandbox, ForkBombContained) {
  const SandboxSupport& s = sandbox_support();
  // Without a uid of its own RLIMIT_NPROC is not enforced (root) or shared with this user: unsafe to run.
  if (!s.nproc_enforced || !s.namespaces) GTEST_SKIP() << "unsafe here: " << joined(s.missing);
  SandboxLimits l;
  l.processes = 16;
  l.wall_seconds = 2;
  Sandbox box;
  box.write_file("bomb.py", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n");
  SandboxResult r = box.run({"/usr/bin/python3", "-I", "-S", "/tmp/bomb.py"}, "", l);
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(r.wall_seconds, 4.5);
  // Host unaffected: nothing of the bomb survives, and we can still start processes.
  for (int i = 0; i < 250 && processes_of(box.uid()) > 0; ++i) ::usleep(20000);  // namespace teardown
  EXPECT_EQ(processes_of(box.uid()), 0);
  EXPECT_EQ(python("print('alive')").out, "alive\n");
}

TEST(CodeReward, LastFencedBlock) {
  auto b = last_code_block("text\n```python\nprint(1)\n```\nmore\n```cpp\nint main(){}\n```\n");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->language, "cpp");
  EXPECT_EQ(b->code, "int main(){}\n");
  EXPECT_FALSE(last_code_block("no code").has_value());
}

TEST(CodeReward, PythonCasesAndAssertsGiveTheFractionPassed) {
  CodeReward code;
  nlohmann::json tests = {{"cases", {{{"input", "2 3\n"}, {"output", "5\n"}}, {{"input", "1 1\n"}, {"output", "3"}}}},
                          {"asserts", {"assert add(2, 2) == 4", "assert add(1, 1) == 3"}}};
  Result r = code.score({"```python\ndef add(a, b):\n    return a + b\nif __name__ == '__main__':\n"
                         "    import sys\n    a, b = map(int, sys.stdin.read().split() or [0, 0])\n    print(add(a, b))\n```",
                         "", tests});
  EXPECT_DOUBLE_EQ(r.reward, 0.5) << r.details.dump();
  EXPECT_EQ(r.details["passed"], 2);
}

TEST(CodeReward, CppCompiledAndRun) {
  CodeReward code;
  nlohmann::json tests = {{"cases", {{{"input", "4\n"}, {"output", "16\n"}}, {{"input", "5\n"}, {"output", "25"}}}}};
  Result r = code.score({"```cpp\n#include <iostream>\nint main(){long x; std::cin >> x; std::cout << x*x << \"\\n\";}\n```",
                         "", tests});
  EXPECT_DOUBLE_EQ(r.reward, 1.0) << r.details.dump();
  Result bad = code.score({"```cpp\nint main( { syntax error\n```", "", tests});
  EXPECT_EQ(bad.reward, 0.0);
  EXPECT_NE(bad.details["tests"][0]["reason"].get<std::string>().find("compile failed"), std::string::npos);
}

TEST(CodeReward, MissingPiecesScoreZeroWithReason) {
  CodeReward code;
  EXPECT_EQ(code.score({"no code here", "", {{"cases", {{{"input", ""}, {"output", "1"}}}}}}).details["reason"],
            "no fenced code block");
  EXPECT_EQ(code.score({"```python\nprint(1)\n```", "", nullptr}).reward, 0.0);
}
