#pragma once
// Shared helpers for the tests: temporary directories and running the r1 binary.
#include <string>
#include <vector>

namespace r1::test {

// A fresh directory under /tmp, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code;
  std::string out, err;
};
// Runs `build/r1 ARGS` with `input` on stdin; captures stdout and stderr.
RunResult run_r1(const std::string& args, const std::string& input = "");

std::string source_path(const std::string& rel);  // path inside the source tree
std::vector<std::string> read_lines(const std::string& path);

}  // namespace r1::test
