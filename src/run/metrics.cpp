#include "run/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "run/tensorboard.h"

namespace r1::run {

namespace {

void write_all(int fd, const std::string& s, const std::string& path) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    R1_CHECK(n >= 0, "cannot write {}: {}", path, std::strerror(errno));
    off += size_t(n);
  }
}

}  // namespace

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

MetricsWriter::MetricsWriter(const std::string& run_dir, std::optional<int64_t> resume_step, bool tensorboard)
    : path_(fs::join(run_dir, "metrics.jsonl")) {
  // Keep the lines up to the resumed step, verbatim; a line that does not parse can only be the one
  // a crash cut short.
  std::vector<nlohmann::json> kept;
  std::string kept_text;
  if (resume_step && fs::exists(path_)) {
    std::istringstream in(fs::read_file(path_));
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) {
        log::warn("{}:{}: dropping a line that is not a complete metrics record", path_, lineno);
        continue;
      }
      if (j["step"].get<int64_t>() > *resume_step) continue;
      kept_text += line + "\n";
      kept.push_back(std::move(j));
    }
  }
  fs::write_file_atomic(path_, kept_text);

  // The event files are rebuilt from metrics.jsonl rather than edited: TFRecord has no way to
  // drop records, and TensorBoard would otherwise show the abandoned steps after the checkpoint.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(run_dir, ec)) {
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0)
      std::filesystem::remove(e.path(), ec);
  }

  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  R1_CHECK(fd_ >= 0, "cannot open {}: {}", path_, std::strerror(errno));

  if (tensorboard) {
    tb_ = std::make_unique<TensorBoardWriter>(run_dir, unix_time());
    for (const nlohmann::json& j : kept) {
      const int64_t step = j["step"].get<int64_t>();
      const double t = j.contains("time") && j["time"].is_number() ? j["time"].get<double>() : unix_time();
      for (const auto& [k, v] : j.items())
        if (k != "step" && k != "time" && v.is_number()) tb_->add_scalar(k, step, v.get<float>(), t);
    }
    tb_->flush();
  }
}

MetricsWriter::~MetricsWriter() {
  tb_.reset();
  if (fd_ >= 0) ::close(fd_);
}

void MetricsWriter::log(int64_t step, const Scalars& values) {
  const double now = unix_time();
  nlohmann::ordered_json j;
  j["step"] = step;
  j["time"] = std::round(now * 1000.0) / 1000.0;
  for (const auto& [k, v] : values)  // checked first, so a bad name logs nothing at all
    R1_CHECK(k != "step" && k != "time" && !k.empty(), "metrics: '{}' is not a valid metric name", k);
  for (const auto& [k, v] : values) {
    if (std::isfinite(v))
      j[k] = v;
    else
      j[k] = nullptr;
    if (tb_) tb_->add_scalar(k, step, float(v), now);
  }
  // One write(2) per line: a crash cannot interleave or split two records, only cut the last one.
  write_all(fd_, j.dump() + "\n", path_);
  if (tb_) tb_->flush();
}

}  // namespace r1::run
