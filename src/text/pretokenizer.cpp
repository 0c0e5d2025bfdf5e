#include "text/pretokenizer.h"

#include "base/error.h"

namespace r1::text {

namespace {
// GPT-2's pattern, used by ByteLevel when use_regex is true.
const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Span {
  uint32_t begin, end;
  bool is_match;
};

// The text of one piece cut into matched and unmatched spans, then grouped as HF's
// SplitDelimiterBehavior says.
void split_piece(const PreTokenizerStep& st, std::string_view text, const Piece& p, std::vector<Piece>& out) {
  thread_local std::vector<std::pair<uint32_t, uint32_t>> m;
  m.clear();
  st.regex->find_all(text, p.begin, p.end, m);
  std::vector<Span> spans;
  uint32_t prev = p.begin;
  for (auto [b, e] : m) {
    if (prev != b) spans.push_back({prev, b, st.invert});
    spans.push_back({b, e, !st.invert});
    prev = e;
  }
  if (prev != p.end) spans.push_back({prev, p.end, st.invert});

  std::vector<Span> groups;
  bool previous_match = false;
  switch (st.behavior) {
    case SplitBehavior::Isolated: groups.swap(spans); break;
    case SplitBehavior::Removed:
      for (const Span& s : spans)
        if (!s.is_match) groups.push_back(s);
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !groups.empty()) groups.back().end = s.end;
        else groups.push_back(s);
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !groups.empty()) groups.back().begin = it->begin;
        else groups.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(groups.begin(), groups.end());
      break;
    case SplitBehavior::Contiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !groups.empty()) groups.back().end = s.end;
        else groups.push_back(s);
        previous_match = s.is_match;
      }
      break;
  }
  bool first = true;
  for (const Span& g : groups) {
    if (g.begin == g.end) continue;
    out.push_back({g.begin, g.end, first && p.prefix_space && g.begin == p.begin});
    first = false;
  }
}

SplitBehavior parse_behavior(const std::string& b, const std::string& file) {
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  fail("{}: Split behavior '{}' is not supported", file, b);
}

void add(PreTokenizer& pt, const JsonAt& j) {
  if (j.is_null()) return;
  std::string type = j.str_or("type", "");
  if (type == "Sequence") {
    j.at("pretokenizers").each([&](const JsonAt& s) { add(pt, s); });
  } else if (type == "Split") {
    PreTokenizerStep st{PreTokenizerStep::Kind::Split, nullptr};
    const JsonAt pat = j.at("pattern");
    std::string where = j.where() + ": pre_tokenizer Split";
    if (auto re = pat.find("Regex")) {
      st.regex = std::make_shared<Regex>(re->str(), where);
    } else {
      // A String pattern is literal text: quote it for PCRE2.
      st.regex = std::make_shared<Regex>("\\Q" + pat.at("String").str() + "\\E", where);
    }
    st.behavior = parse_behavior(j.str_or("behavior", "Isolated"), j.where());
    st.invert = j.bool_or("invert", false);
    pt.steps.push_back(std::move(st));
  } else if (type == "ByteLevel") {
    PreTokenizerStep st{PreTokenizerStep::Kind::ByteLevel, nullptr};
    st.add_prefix_space = j.bool_or("add_prefix_space", true);
    if (j.bool_or("use_regex", true)) st.regex = std::make_shared<Regex>(kGpt2Pattern, j.where() + ": ByteLevel");
    pt.steps.push_back(std::move(st));
  } else {
    fail("{}: pre_tokenizer type '{}' is not supported (supported: Split, ByteLevel, Sequence)", j.where(), type);
  }
}
}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<Piece>& out) const {
  out.clear();
  if (text.empty()) return;
  out.push_back({0, uint32_t(text.size()), false});
  std::vector<Piece> next;
  for (const PreTokenizerStep& st : steps) {
    next.clear();
    for (const Piece& p : out) {
      if (st.kind == PreTokenizerStep::Kind::ByteLevel) {
        Piece q = p;
        // HF prepends a space unless the piece already starts with one.
        if (st.add_prefix_space && !q.prefix_space && text[q.begin] != ' ') q.prefix_space = true;
        if (st.regex) split_piece(st, text, q, next);
        else next.push_back(q);
      } else {
        split_piece(st, text, p, next);
      }
    }
    out.swap(next);
  }
}

PreTokenizer parse_pre_tokenizer(const JsonAt& j) {
  PreTokenizer pt;
  add(pt, j);
  return pt;
}

}  // namespace r1::text
