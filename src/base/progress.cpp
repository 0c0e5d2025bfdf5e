#include "base/progress.h"

#include "base/log.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace r1 {

namespace {
std::string hms(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  int t = int(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
                   : fmt::format("{:02}:{:02}", t / 60, t % 60);
}
}  // namespace

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(2)) {}

void Progress::update(int64_t n, const std::string& status) {
  done_ += n;
  status_ = status;
  double t = timer_.seconds();
  if (t < quiet_s_) return;
  // On a terminal redraw at 10 Hz; in a log every 10 s, so long jobs still show life.
  if (t - last_draw_ >= (tty_ ? 0.1 : 10.0) || done_ >= total_) draw(false);
}

void Progress::finish() {
  if (!finished_ && (drawn_ || timer_.seconds() >= quiet_s_)) draw(true);
  finished_ = true;
}

void Progress::draw(bool final) {
  final = final || done_ >= total_;
  finished_ = finished_ || final;
  double t = timer_.seconds();
  last_draw_ = t;
  drawn_ = true;
  if (!log::settings().info) return;  // a rank other than 0 of a job
  double rate = t > 0 ? done_ / t : 0.0;
  double eta = rate > 0 ? (total_ - done_) / rate : -1.0;
  int pct = total_ > 0 ? int(100.0 * done_ / total_) : 100;
  const int width = 24;
  int fill = total_ > 0 ? int(width * done_ / total_) : width;
  std::string bar(size_t(fill), '#');
  bar.resize(size_t(width), '.');
  std::string line = fmt::format("{} [{}] {:3}% {}/{} {:.1f} {}/s elapsed {} eta {}{}{}", label_, bar,
                                 pct, done_, total_, rate, unit_, hms(t), hms(final ? 0 : eta),
                                 status_.empty() ? "" : "  ", status_);
  if (tty_) {
    fmt::print(stderr, "\r\033[K{}{}", line, final ? "\n" : "");
  } else {
    fmt::print(stderr, "{}\n", line);
  }
  std::fflush(stderr);
}

}  // namespace r1
