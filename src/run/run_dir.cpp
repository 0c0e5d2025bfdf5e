#include "run/run_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"

namespace r1::run {

namespace stdfs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  R1_CHECK(step >= 0, "run directory: step {} must be >= 0", step);
  return fmt::format("step_{:06d}", step);
}

// "step_<digits>" -> step; anything else (step_000010.tmp.123, notes, ...) -> nullopt.
std::optional<int64_t> parse_step_name(const std::string& name) {
  constexpr std::string_view prefix = "step_";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  const char* b = name.data() + prefix.size();
  const char* e = name.data() + name.size();
  int64_t v = 0;
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e || !std::all_of(b, e, [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return v;
}

void fsync_path(const stdfs::path& p, bool dir) {
  fs::file_op_point();
  int fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  R1_CHECK(fd >= 0, "cannot open {} to sync it: {}", p.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  R1_CHECK(rc == 0, "cannot sync {}: {}", p.string(), std::strerror(e));
}

// Data must be on disk before the rename that publishes it, or a power loss could leave a
// "complete" checkpoint with empty files.
void fsync_tree(const stdfs::path& root) {
  for (const auto& e : stdfs::recursive_directory_iterator(root)) {
    if (e.is_regular_file())
      fsync_path(e.path(), false);
    else if (e.is_directory())
      fsync_path(e.path(), true);
  }
  fsync_path(root, true);
}

void make_dirs(const std::string& p) {
  std::error_code ec;
  stdfs::create_directories(p, ec);
  R1_CHECK(!ec && stdfs::is_directory(p), "cannot create directory {}: {}", p,
           ec ? ec.message() : "a file of that name exists");
}

// Leftovers of a crashed save: step_N.tmp.<pid> / step_N.old.<pid> of a process that is gone.
bool is_stale_leftover(const std::string& name) {
  for (const char* tag : {".tmp.", ".old."}) {
    const size_t at = name.rfind(tag);
    if (at == std::string::npos || !parse_step_name(name.substr(0, at))) continue;
    const std::string pid_s = name.substr(at + std::strlen(tag));
    int pid = 0;
    auto [p, ec] = std::from_chars(pid_s.data(), pid_s.data() + pid_s.size(), pid);
    if (ec != std::errc() || p != pid_s.data() + pid_s.size() || pid <= 0) continue;
    return pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
  }
  return false;
}

}  // namespace

RunDir::RunDir(std::string path) : path_(std::move(path)) {
  make_dirs(path_);
  make_dirs(file("samples"));
  make_dirs(file("checkpoints"));
}

std::string RunDir::file(const std::string& name) const { return fs::join(path_, name); }

void RunDir::write_config(std::string_view yaml) const { fs::write_file_atomic(file("config.yaml"), yaml); }

void RunDir::write_samples(int64_t step, const std::vector<nlohmann::json>& rows) const {
  std::string text;
  // Model output may hold invalid UTF-8 (a byte-level model, a cut character): replace, never throw.
  for (const nlohmann::json& r : rows) text += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  fs::write_file_atomic(fs::join(file("samples"), step_name(step) + ".jsonl"), text);
}

std::string RunDir::checkpoint_path(int64_t step) const {
  return fs::join(file("checkpoints"), step_name(step));
}

std::vector<CheckpointRef> RunDir::complete_checkpoints() const {
  std::vector<CheckpointRef> out;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(file("checkpoints"), ec)) {
    const auto step = parse_step_name(e.path().filename().string());
    if (!step || !e.is_directory()) continue;
    if (!stdfs::is_regular_file(e.path() / kCompleteMarker)) continue;
    out.push_back({*step, e.path().string()});
  }
  R1_CHECK(!ec, "cannot list {}: {}", file("checkpoints"), ec.message());
  std::sort(out.begin(), out.end(),
            [](const CheckpointRef& a, const CheckpointRef& b) { return a.step < b.step; });
  return out;
}

std::optional<CheckpointRef> RunDir::latest_checkpoint() const {
  auto all = complete_checkpoints();
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::string RunDir::commit_checkpoint(int64_t step, const std::function<void(const std::string& dir)>& write,
                                      int keep_last) const {
  const std::string final_path = checkpoint_path(step);
  const std::string pid = std::to_string(::getpid());
  const std::string tmp = final_path + ".tmp." + pid;
  std::error_code ec;
  stdfs::remove_all(tmp, ec);
  fs::file_op_point();
  make_dirs(tmp);
  try {
    write(tmp);
    fs::write_file_atomic(fs::join(tmp, kCompleteMarker), fmt::format("{{\"step\": {}}}\n", step));
    fsync_tree(tmp);
  } catch (...) {
    stdfs::remove_all(tmp, ec);
    throw;
  }

  // rename(2) cannot replace a non-empty directory: move an older save of this step aside first.
  // A crash between the two renames leaves only the earlier checkpoints, never a partial one.
  const std::string old = final_path + ".old." + pid;
  const bool replacing = stdfs::exists(final_path);
  if (replacing) {
    stdfs::remove_all(old, ec);
    fs::file_op_point();
    R1_CHECK(::rename(final_path.c_str(), old.c_str()) == 0, "cannot move {} aside: {}", final_path,
             std::strerror(errno));
  }
  fs::file_op_point();
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const int e = errno;
    stdfs::remove_all(tmp, ec);
    fail("cannot rename {} to {}: {}", tmp, final_path, std::strerror(e));
  }
  fsync_path(file("checkpoints"), true);
  if (replacing) {
    fs::file_op_point();
    stdfs::remove_all(old, ec);
  }

  if (keep_last > 0) {
    auto all = complete_checkpoints();
    size_t excess = all.size() > size_t(keep_last) ? all.size() - size_t(keep_last) : 0;
    for (const CheckpointRef& c : all) {
      if (excess == 0) break;
      if (c.step == step) continue;
      // Renamed aside first: a crash during the removal leaves a stale leftover, never a listed
      // checkpoint with half its files gone.
      const std::string doomed = c.path + ".old." + pid;
      fs::file_op_point();
      if (::rename(c.path.c_str(), doomed.c_str()) != 0) {
        log::warn("cannot remove old checkpoint {}: {}", c.path, std::strerror(errno));
        continue;
      }
      fs::file_op_point();
      stdfs::remove_all(doomed, ec);
      if (ec) log::warn("cannot remove old checkpoint {}: {}", c.path, ec.message());
      --excess;
    }
  }
  for (const auto& e : stdfs::directory_iterator(file("checkpoints"), ec)) {
    const std::string name = e.path().filename().string();
    if (is_stale_leftover(name)) stdfs::remove_all(e.path(), ec);
  }
  return final_path;
}

}  // namespace r1::run
