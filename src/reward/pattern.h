#pragma once
// Regular expressions over model output. std::regex recurses once per character a repeat matches, so
// a long line of output ("the answer is 1 aaaa…", 100 kB) overflows the stack and kills the process;
// PCRE2 keeps its backtracking state on the heap, under a limit. Byte mode (model output need not be
// valid UTF-8), ECMAScript-like: `$` matches only at the very end.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace r1::reward {

class Pattern {
 public:
  // A pattern that does not compile is an r1::Error naming it.
  explicit Pattern(std::string_view regex);
  ~Pattern();
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;

  struct Match {
    std::string_view subject;
    std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) of the match, then of each group
    // Group i's text (0: the whole match); "" when the group took no part in the match.
    std::string group(size_t i) const;
    size_t begin() const { return spans[0].first; }
    size_t end() const { return spans[0].second; }
  };

  // The whole of s matches.
  std::optional<Match> match_whole(std::string_view s) const;
  // The first match starting at or after `from` (`^` still means the start of s).
  std::optional<Match> find(std::string_view s, size_t from = 0) const;
  // Every match, left to right, not overlapping, replaced by `with`, where $1..$9 stand for groups.
  std::string replace_all(std::string_view s, std::string_view with) const;

  // A subject that needs more than this many backtracking steps, or this much memory, is taken as
  // not matching (none of the patterns here comes near it on real text).
  static constexpr uint32_t kMatchLimit = 10'000'000;
  static constexpr uint32_t kHeapLimitKiB = 64 * 1024;

 private:
  std::optional<Match> run(std::string_view s, size_t from, uint32_t options) const;
  void* code_;
};

}  // namespace r1::reward
