#pragma once
// Errors with context: every failure names the file, key, tensor or line it is about.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace r1 {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace r1

// R1_CHECK(cond, "message {}", x): throws r1::Error with the message when cond is false.
#define R1_CHECK(cond, ...)                  \
  do {                                       \
    if (!(cond)) ::r1::fail(__VA_ARGS__);    \
  } while (0)
