#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace r1::test {

TempDir::TempDir() {
  char tmpl[] = "/tmp/r1test.XXXXXX";
  char* p = mkdtemp(tmpl);
  path_ = p ? p : "";
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

RunResult run_r1(const std::string& args, const std::string& input) {
  TempDir io;
  {
    std::ofstream(io.file("in")) << input;
  }
  std::string cmd = std::string(R1_BINARY) + " " + args + " <" + io.file("in") + " >" + io.file("out") + " 2>" +
                    io.file("err");
  int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(io.file("out"));
  r.err = slurp(io.file("err"));
  return r;
}

std::string source_path(const std::string& rel) { return std::string(R1_SOURCE_DIR) + "/" + rel; }

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(in, l))
    if (!l.empty()) lines.push_back(l);
  return lines;
}

}  // namespace r1::test
