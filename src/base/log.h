#pragma once
// Logging to stderr, so stdout stays clean for JSONL output.
#include <fmt/format.h>

#include <cstdio>

namespace r1::log {

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stderr, "{}\n", fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  fmt::print(stderr, "warning: {}\n", fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace r1::log
