#pragma once
// Shared by the fuzz targets: bad input may only end in r1::Error (a clear message naming the file
// or key); any other exception escaping a parser is a finding, so it is left to terminate the run.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include "base/error.h"

namespace r1::fuzz {

template <typename F>
void expect_only_r1_errors(F&& f) {
  try {
    f();
  } catch (const r1::Error&) {
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A file holding the input, for readers that take a path; one per process, rewritten each run.
inline const std::string& input_file(std::string_view bytes, const std::string& suffix) {
  static const std::string path = "/tmp/r1_fuzz_" + std::to_string(getpid()) + suffix;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
  return path;
}

// Splits "a\n---\nb" at the first separator line: (a, b); no separator gives (all, "").
inline std::pair<std::string_view, std::string_view> split_once(std::string_view s) {
  const std::string_view sep = "\n---\n";
  size_t at = s.find(sep);
  if (at == std::string_view::npos) return {s, {}};
  return {s.substr(0, at), s.substr(at + sep.size())};
}

}  // namespace r1::fuzz
