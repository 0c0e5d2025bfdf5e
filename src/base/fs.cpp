#include "base/fs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace r1::fs {

namespace {
namespace stdfs = std::filesystem;

// -1: not read from the environment yet; 0: off; n > 0: SIGKILL at the n-th file operation.
std::atomic<long> g_kill_countdown{-1};

void sync_path(const std::string& p, bool dir) {
  file_op_point();
  int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  R1_CHECK(fd >= 0, "cannot open {} to sync it: {}", p, std::strerror(errno));
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  R1_CHECK(rc == 0, "cannot sync {}: {}", p, std::strerror(e));
}

// name is "<base>.tmp.<pid>" or "<base>.old.<pid>" of a process that no longer runs.
bool is_dead_leftover_of(const std::string& name, const std::string& base) {
  for (const char* tag : {".tmp.", ".old."}) {
    const std::string prefix = base + tag;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    int pid = 0;
    const char* b = name.data() + prefix.size();
    const char* e = name.data() + name.size();
    auto [p, ec] = std::from_chars(b, e, pid);
    if (ec != std::errc() || p != e || pid <= 0) continue;
    return pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
  }
  return false;
}
}  // namespace

void set_kill_after_file_ops(long n) { g_kill_countdown = n > 0 ? n : 0; }

void file_op_point() {
  long n = g_kill_countdown.load();
  if (n < 0) {
    const char* env = std::getenv("R1_KILL_AFTER_FILE_OPS");
    long v = env ? std::strtol(env, nullptr, 10) : 0;
    long expected = -1;
    g_kill_countdown.compare_exchange_strong(expected, v > 0 ? v : 0);
    n = g_kill_countdown.load();
  }
  if (n == 0) return;
  if (g_kill_countdown.fetch_sub(1) == 1) ::kill(::getpid(), SIGKILL);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  R1_CHECK(in, "cannot open {}: {}", path, std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

AtomicFile::AtomicFile(std::string path)
    : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(getpid())) {
  file_op_point();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  R1_CHECK(fd_ >= 0, "cannot create {}: {}", tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

void AtomicFile::write(std::string_view bytes) {
  R1_CHECK(fd_ >= 0, "{}: written after commit", path_);
  size_t off = 0;
  while (off < bytes.size()) {
    file_op_point();
    ssize_t n = ::write(fd_, bytes.data() + off, bytes.size() - off);
    R1_CHECK(n >= 0 || errno == EINTR, "cannot write {}: {}", tmp_, std::strerror(errno));
    if (n > 0) off += size_t(n);
  }
}

void AtomicFile::commit() {
  R1_CHECK(fd_ >= 0, "{}: committed twice", path_);
  const int fd = fd_;
  fd_ = -1;
  file_op_point();
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    fail("cannot flush {}: {}", tmp_, std::strerror(e));
  }
  file_op_point();
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    fail("cannot rename {} to {}: {}", tmp_, path_, std::strerror(e));
  }
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

void write_dir_atomic(const std::string& dir, const std::function<void(const std::string& tmp)>& write,
                      const std::function<bool(const std::string& name)>& keep_old) {
  stdfs::path final_path = stdfs::path(dir).lexically_normal();
  if (final_path.filename().empty()) final_path = final_path.parent_path();
  const std::string base = final_path.filename().string();
  const stdfs::path parent = final_path.has_parent_path() ? final_path.parent_path() : stdfs::path(".");
  std::error_code ec;
  stdfs::create_directories(parent, ec);
  R1_CHECK(!ec, "cannot create directory {}: {}", parent.string(), ec.message());
  for (const auto& e : stdfs::directory_iterator(parent, ec))
    if (is_dead_leftover_of(e.path().filename().string(), base)) stdfs::remove_all(e.path(), ec);

  const std::string pid = std::to_string(::getpid());
  const std::string tmp = final_path.string() + ".tmp." + pid;
  const std::string old = final_path.string() + ".old." + pid;
  stdfs::remove_all(tmp, ec);
  file_op_point();
  stdfs::create_directories(tmp, ec);
  R1_CHECK(!ec, "cannot create directory {}: {}", tmp, ec.message());
  const bool replacing = stdfs::is_directory(final_path);
  try {
    write(tmp);
    if (replacing && keep_old) {  // carry over the old directory's other files (hard links: no copy)
      for (const auto& e : stdfs::directory_iterator(final_path)) {
        const stdfs::path to = stdfs::path(tmp) / e.path().filename();
        if (!e.is_regular_file() || stdfs::exists(to) || !keep_old(e.path().filename().string())) continue;
        file_op_point();
        stdfs::create_hard_link(e.path(), to, ec);
        if (ec) stdfs::copy_file(e.path(), to);
      }
    }
    for (const auto& e : stdfs::directory_iterator(tmp))
      if (e.is_regular_file()) sync_path(e.path().string(), false);
    sync_path(tmp, true);
  } catch (...) {
    stdfs::remove_all(tmp, ec);
    throw;
  }
  // rename(2) cannot replace a non-empty directory: the old one goes aside first. A crash between
  // the renames leaves no `dir` (and both complete copies beside it), never a partial one.
  if (replacing) {
    file_op_point();
    R1_CHECK(::rename(final_path.c_str(), old.c_str()) == 0, "cannot move {} aside: {}", final_path.string(),
             std::strerror(errno));
  }
  file_op_point();
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int e = errno;
    stdfs::remove_all(tmp, ec);
    fail("cannot rename {} to {}: {}", tmp, final_path.string(), std::strerror(e));
  }
  sync_path(parent.string(), true);
  if (replacing) {
    file_op_point();
    stdfs::remove_all(old, ec);
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

}  // namespace r1::fs
