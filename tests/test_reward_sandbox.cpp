// The code sandbox: each limit proven by a program that tries to break it. Tests that would be unsafe
// without a protection (the fork bomb) are skipped with the reason when the protection is missing.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "reward/code_reward.h"
#include "reward/sandbox.h"
#include "test_util.h"

using namespace r1::reward;

namespace {

SandboxResult python(const std::string& code, SandboxLimits l = {}, const std::string& in = "") {
  Sandbox box;
  box.write_file("main.py", code);
  return box.run({"/usr/bin/python3", "-I", "-S", "main.py"}, in, l);
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
  const SandboxSupport s = sandbox_support();
  std::printf("[ sandbox ] namespaces=%d private_root=%d nproc_enforced=%d seccomp=%d missing: %s\n",
              s.namespaces, s.private_root, s.nproc_enforced, s.seccomp, joined(s.missing).c_str());
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

TEST(Sandbox, JobDirectoryNameIsRandom) {
  Sandbox a, b;
  static const std::regex name(R"(^/tmp/r1sbx-[0-9a-f]{32}/work$)");
  EXPECT_TRUE(std::regex_match(a.dir(), name)) << a.dir();
  EXPECT_NE(a.dir(), b.dir());
  EXPECT_NE(a.uid(), b.uid());
}

// Only the system directories and the job's own files are there; the root is read-only.
TEST(Sandbox, PrivateRootShowsOnlySystemDirectoriesAndTheJob) {
  if (!sandbox_support().private_root)
    GTEST_SKIP() << "no private root here: " << joined(sandbox_support().missing);
  r1::test::TempDir host;  // a host file the program must not see
  std::ofstream(host.file("secret.txt")) << "expected output";
  Sandbox box;
  box.write_file("mine.txt", "job file");
  box.write_file("look.py", R"(import os, sys
print(sorted(os.listdir('/')))
print(sorted(os.listdir('/tmp')))
print(sorted(os.listdir('/dev')))
for p in sys.argv[1:]:
    print(p, os.path.exists(p))
for p in ['/x', '/usr/x', '/etc/x', '/tmp/made.txt']:
    try:
        open(p, 'w').write('x')
        print('wrote', p)
    except OSError as e:
        print('denied', p, e.errno)
print(sorted(os.listdir('/proc'))[:3], len([d for d in os.listdir('/proc') if d.isdigit()]))
)");
  SandboxResult r = box.run({"/usr/bin/python3", "-I", "-S", "look.py", host.file("secret.txt"), "/work",
                             "/root", "/etc/passwd", "/home", "/sys/kernel"},
                            "", {});
  ASSERT_TRUE(r.ok()) << r.err;
  std::printf("[ sandbox ] %s", r.out.c_str());
  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 14u) << r.out;
  EXPECT_EQ(lines[0], "['bin', 'dev', 'etc', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr']");
  EXPECT_EQ(lines[1], "['look.py', 'mine.txt']");
  EXPECT_EQ(lines[2], "['null', 'random', 'shm', 'urandom', 'zero']");
  for (int i = 3; i < 9; ++i) EXPECT_TRUE(lines[size_t(i)].ends_with(" False")) << lines[size_t(i)];
  EXPECT_EQ(lines[9], "denied /x 30");  // EROFS
  EXPECT_EQ(lines[10], "denied /usr/x 30");
  EXPECT_TRUE(lines[11].starts_with("denied /etc/x")) << lines[11];
  EXPECT_EQ(lines[12], "wrote /tmp/made.txt");
  EXPECT_TRUE(lines[13].ends_with(" 1")) << "only the program itself in /proc: " << lines[13];
  EXPECT_TRUE(std::filesystem::exists(box.dir() + "/made.txt"));
}

TEST(Sandbox, OutputFloodIsKilled) {
  SandboxLimits l;
  l.output_bytes = 1 << 16;
  SandboxResult r = python("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)\n", l);
  EXPECT_TRUE(r.output_exceeded);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.out.size(), size_t(1) << 16);
  EXPECT_LT(r.wall_seconds, 2.0);
}

// Descriptors handed to a run: a pipe as stdin, one as stdout, extra ones from 4; a cancel
// descriptor stops the program when its far end closes.
TEST(Sandbox, PassedDescriptorsAndCancel) {
  int in[2], out[2], extra[2], cancel[2];
  for (int* p : {in, out, extra, cancel}) ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  ASSERT_EQ(::write(in[1], "ping\n", 5), 5);
  ::close(in[1]);
  Sandbox box;
  box.write_file(
      "io.py",
      "import os, sys, time\nline = sys.stdin.readline().strip()\nprint(line + '-out', flush=True)\n"
      "os.write(4, (line + '-extra').encode())\nos.close(4)\ntime.sleep(100)\n");
  std::thread closer([&] {
    char buf[64] = {};
    ::usleep(200000);
    [[maybe_unused]] ssize_t n = ::read(extra[0], buf, sizeof buf);
    ::close(cancel[1]);  // cancel once the program has spoken
  });
  SandboxLimits l;
  l.wall_seconds = 20;
  SandboxResult r = box.run({"/usr/bin/python3", "-I", "-S", "io.py"}, "", l,
                            SandboxIo{in[0], out[1], {extra[1]}, cancel[0]});
  closer.join();
  EXPECT_TRUE(r.cancelled);
  EXPECT_FALSE(r.timed_out);
  EXPECT_LT(r.wall_seconds, 5.0);
  char buf[64] = {};
  EXPECT_GT(::read(out[0], buf, sizeof buf), 0);
  EXPECT_STREQ(buf, "ping-out\n");
  for (int fd : {out[0], extra[0], cancel[0]}) ::close(fd);
}

TEST(Sandbox, InfiniteLoopStoppedByCpuLimit) {
  SandboxLimits l;
  l.cpu_seconds = 1;
  l.wall_seconds = 120;  // far above 1 CPU-second even on a machine loaded many times over
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
  SandboxResult r = box.run(
      {"/usr/bin/python3", "-I", "-S", "w.py", outside, host_tmp, "/var/tmp/r1_escape", "/etc/r1_escape"}, "",
      {});
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
  const SandboxSupport s = sandbox_support();
  // Without a uid of its own RLIMIT_NPROC is not enforced (root) or shared with this user: unsafe to run.
  if (!s.nproc_enforced || !s.namespaces) GTEST_SKIP() << "unsafe here: " << joined(s.missing);
  SandboxLimits l;
  l.processes = 16;
  l.wall_seconds = 2;
  Sandbox box;
  box.write_file("bomb.py", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n");
  SandboxResult r = box.run({"/usr/bin/python3", "-I", "-S", "bomb.py"}, "", l);
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

// The harness's pair stops at a test that hangs or ends the solution's process; a fresh pair runs
// the tests after it, so one bad test costs only itself.
TEST(CodeReward, AStuckOrFatalTestFailsAloneAndTheRestStillRun) {
  CodeOptions o;
  o.run.wall_seconds = 1.0;
  CodeReward code(o);
  nlohmann::json tests = {{"asserts",
                           {"assert add(1, 2) == 3", "assert stuck() == 1", "assert add(2, 2) == 4",
                            "assert fatal() == 1", "assert add(3, 3) == 6", "assert add(3, 3) == 7"}}};
  Result r =
      code.score({"```python\nimport os\ndef add(a, b):\n    return a + b\ndef stuck():\n    while True:\n"
                  "        pass\ndef fatal():\n    os._exit(3)\n```",
                  "", tests});
  EXPECT_DOUBLE_EQ(r.reward, 3.0 / 6.0) << r.details.dump();
  const auto& t = r.details["tests"];
  EXPECT_EQ(t[1]["reason"], "timed out after 1s");
  EXPECT_EQ(t[3]["reason"], "the solution's process ended");
  EXPECT_EQ(t[5]["reason"], "assertion failed");
}
