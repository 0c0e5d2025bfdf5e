#pragma once
// File helpers. Outputs are written to a temporary name and renamed into place, so a crash or an
// error never leaves a half-written checkpoint or result behind.
#include <string>
#include <string_view>

namespace r1::fs {

std::string read_file(const std::string& path);
void write_file_atomic(const std::string& path, std::string_view bytes);

// A file written piece by piece under a temporary name and renamed into place by commit(), for
// outputs too large to hold in memory (a model's weights). Destroyed uncommitted, it removes the
// temporary file, so an error midway leaves nothing at `path`.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(std::string_view bytes);
  void commit();  // flush to disk, then rename into place

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};
bool exists(const std::string& path);
// Joins a directory and a file name with one '/'.
std::string join(const std::string& dir, const std::string& name);

}  // namespace r1::fs
