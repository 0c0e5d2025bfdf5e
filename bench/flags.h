#pragma once
// The benchmarks' command lines. A program names its usage once; read() walks argv, giving each flag
// and its value to the program (its switches take none); the converters check a value's form and
// range. Anything wrong prints "<program>: <why>", the usage line, and exits with status 2; the
// message names the flag and the value. Header-only: each bench/*.cpp is its own program.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

namespace r1::bench {

class Flags {
 public:
  Flags(const char* program, const char* usage) : program_(program), usage_(usage) {}

  [[noreturn]] void fail(const std::string& why) const {
    std::fprintf(stderr, "%s: %s\nusage: %s %s\n", program_, why.c_str(), program_, usage_);
    std::exit(2);
  }

  // Calls on(flag, value) for each flag of argv in order: a flag named in `switches` with an empty
  // value, any other with the argument after it (a missing one fails). on returns false for a flag
  // it does not know, which fails.
  template <class On>
  void read(int argc, char** argv, std::initializer_list<const char*> switches, On&& on) const {
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      bool bare = false;
      for (const char* s : switches) bare = bare || k == s;
      std::string v;
      if (!bare) {
        if (i + 1 >= argc) fail("missing value for " + k);
        v = argv[++i];
      }
      if (!on(k, v)) fail("unknown flag " + k);
    }
  }

  // A whole number in [lo, hi].
  long whole(const std::string& flag, const std::string& v, long lo, long hi) const {
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || errno == ERANGE || n < lo || n > hi)
      fail("bad value for " + flag + ": " + v + " (a whole number from " + std::to_string(lo) + " to " +
           std::to_string(hi) + ")");
    return n;
  }
  // A number in [lo, hi].
  double real(const std::string& flag, const std::string& v, double lo, double hi) const {
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end || !(x >= lo && x <= hi)) fail("bad value for " + flag + ": " + v);
    return x;
  }
  // Comma-separated values, empty ones dropped; at least one.
  std::vector<std::string> list(const std::string& flag, const std::string& v) const {
    std::vector<std::string> out;
    std::string x;
    for (size_t at = 0; at <= v.size(); ++at) {
      if (at == v.size() || v[at] == ',') {
        if (!x.empty()) out.push_back(x);
        x.clear();
      } else {
        x += v[at];
      }
    }
    if (out.empty()) fail("no value for " + flag);
    return out;
  }
  // Comma-separated whole numbers, each in [lo, hi].
  std::vector<long> wholes(const std::string& flag, const std::string& v, long lo, long hi) const {
    std::vector<long> out;
    for (const std::string& x : list(flag, v)) out.push_back(whole(flag, x, lo, hi));
    return out;
  }
  // v, when it is one of `allowed`.
  std::string one_of(const std::string& flag, const std::string& v, std::initializer_list<const char*> allowed) const {
    std::string names;
    for (const char* a : allowed) {
      if (v == a) return v;
      names += names.empty() ? a : std::string(", ") + a;
    }
    fail("bad value for " + flag + ": " + v + " (one of " + names + ")");
  }

 private:
  const char* program_;
  const char* usage_;
};

}  // namespace r1::bench
