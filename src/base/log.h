#pragma once
// Logging to stderr, so stdout stays clean for JSONL output. In a job of several ranks (mpirun)
// rank 0 prints everything; the others print only warnings, prefixed with their rank
// (dist::init sets this up).
#include <fmt/format.h>

#include <cstdio>
#include <string>

namespace r1::log {

struct Settings {
  bool info = true;    // info lines and progress bars
  std::string prefix;  // before every line, e.g. "[rank 1] "
};
inline Settings& settings() {
  static Settings s;
  return s;
}

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (!settings().info) return;
  fmt::print(stderr, "{}{}\n", settings().prefix, fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stderr, "{}warning: {}\n", settings().prefix, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace r1::log
