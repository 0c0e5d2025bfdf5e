#pragma once
// File helpers. Outputs are written to a temporary name and renamed into place, so a crash or an
// error never leaves a half-written checkpoint or result behind.
#include <functional>
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

// Writes directory `dir` as a whole: write(tmp) fills a fresh sibling directory, which is synced and
// renamed into place, so `dir` is at every instant absent, its old complete self, or the new complete
// one. Files of an old `dir` that write() did not produce and keep_old(name) accepts (a tokenizer
// beside the weights) are carried over. Leftovers of a killed earlier call (dir.tmp.<pid>,
// dir.old.<pid> of a dead process) are removed.
void write_dir_atomic(const std::string& dir, const std::function<void(const std::string& tmp)>& write,
                      const std::function<bool(const std::string& name)>& keep_old = {});

// Crash-consistency tests: the writers call this before each file operation (create, write, sync,
// rename, remove); after set_kill_after_file_ops(n), or with R1_KILL_AFTER_FILE_OPS=n in the
// environment, the n-th call kills the process with SIGKILL, as a crash at that point would.
void file_op_point();
void set_kill_after_file_ops(long n);  // <= 0: never
// Joins a directory and a file name with one '/'.
std::string join(const std::string& dir, const std::string& name);

}  // namespace r1::fs
