#pragma once
// tokenizer.json's "pre_tokenizer": Split (the file's regex, run by PCRE2) and ByteLevel, alone or in a
// Sequence. Splits text into pieces ("words") that BPE encodes independently.
#include "base/json_at.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace r1::text {

// A piece of the text: bytes [begin, end), with a space in front when ByteLevel's add_prefix_space
// asked for one.
struct Piece {
  uint32_t begin, end;
  bool prefix_space = false;
};

class Regex;  // PCRE2 pattern, compiled once (JIT), matched from any thread

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokenizerStep {
  enum class Kind { Split, ByteLevel } kind;
  std::shared_ptr<const Regex> regex;  // Split's pattern, or ByteLevel's GPT-2 pattern when use_regex
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel only
};

class PreTokenizer {
 public:
  std::vector<PreTokenizerStep> steps;
  // Pieces of `text` (offsets are into text); empty pieces are dropped.
  void split(std::string_view text, std::vector<Piece>& out) const;
};

// Errors name the unsupported type and `file`.
// `j` is tokenizer.json's "pre_tokenizer" (null: none); errors name its file and key path.
PreTokenizer parse_pre_tokenizer(const JsonAt& j);

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-empty matches of the pattern in s[begin, end), as byte offsets into s.
  void find_all(std::string_view s, uint32_t begin, uint32_t end,
                std::vector<std::pair<uint32_t, uint32_t>>& out) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace r1::text
