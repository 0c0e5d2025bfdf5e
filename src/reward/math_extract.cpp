#include "reward/math_extract.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>
#include <string_view>
#include <unordered_set>

#include "reward/pattern.h"

namespace r1::reward {
namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// Content of the balanced {...} group opening at s[open]; nullopt if the braces never close.
std::optional<std::string> brace_group(const std::string& s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '}')) {
      ++i;  // \{ and \} are literal braces (sets), not grouping
      continue;
    }
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return s.substr(open + 1, i - open - 1);
  }
  return std::nullopt;
}

// For each '{' of s, where its group closes (npos when it never does), with \{ and \} literal as in
// brace_group. One pass: calling brace_group for each box took quadratic time on "\boxed{\boxed{...".
std::vector<size_t> group_closes(const std::string& s) {
  std::vector<size_t> close(s.size(), std::string::npos), open;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '}')) {
      ++i;
      continue;
    }
    if (s[i] == '{') open.push_back(i);
    if (s[i] == '}' && !open.empty()) close[open.back()] = i, open.pop_back();
  }
  return close;
}

// s[from, from + prefix.size()) equals prefix, ignoring ASCII case.
bool starts_with_nocase(const std::string& s, size_t from, std::string_view prefix) {
  if (s.size() - from < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[from + i])) != prefix[i]) return false;
  return true;
}

// The boxed answer of s: the last box, or the last row of boxes joined as one list.
std::optional<Extracted> boxed(const std::string& s) {
  std::vector<std::string> row = last_boxed_row(s);
  if (row.empty()) return std::nullopt;
  Extracted e{row.back(), "boxed", {}};
  if (row.size() > 1) {
    e.text.clear();
    for (const std::string& b : row) e.text += (e.text.empty() ? "" : ", ") + b;
    e.boxes = row;
  }
  return e;
}

std::optional<Extracted> answer_tag(const std::string& s, const ExtractOptions& o) {
  size_t close = s.rfind(o.answer_close);
  if (close == std::string::npos) return std::nullopt;
  size_t open = s.rfind(o.answer_open, close);
  if (open == std::string::npos) return std::nullopt;
  std::string inner = s.substr(open + o.answer_open.size(), close - open - o.answer_open.size());
  if (auto b = boxed(inner)) return b;  // "<answer>The answer is \boxed{5}</answer>"
  return Extracted{value_in_sentence(trim(inner)), "answer_tag", {}};
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "The answer is 5." / "final answer is: $\frac12$" — up to the end of the line or sentence.
std::optional<std::string> answer_is(const std::string& s) {
  std::string l = lower(s);
  size_t best = std::string::npos, len = 0;
  for (const char* key : {"answer is", "answer:"}) {
    size_t p = l.rfind(key);
    if (p != std::string::npos && (best == std::string::npos || p > best)) best = p, len = std::strlen(key);
  }
  if (best == std::string::npos) return std::nullopt;
  std::string rest = s.substr(best + len);
  size_t nl = rest.find('\n');
  if (nl != std::string::npos) rest = rest.substr(0, nl);
  rest = trim(rest);
  if (!rest.empty() && rest[0] == ':') rest = trim(rest.substr(1));
  if (auto b = last_boxed(rest)) return b;
  // A sentence ends at ". " — but not inside a number like 3.5.
  for (size_t i = 0; i + 1 < rest.size(); ++i)
    if (rest[i] == '.' && rest[i + 1] == ' ') {
      rest = rest.substr(0, i);
      break;
    }
  while (!rest.empty() && (rest.back() == '.' || rest.back() == ' ')) rest.pop_back();
  rest = value_in_sentence(rest);
  if (rest.size() >= 2 && rest.front() == '$' && rest.back() == '$') rest = rest.substr(1, rest.size() - 2);
  rest = trim(rest);
  if (rest.empty()) return std::nullopt;
  return rest;
}

// Letters outside $...$ and outside LaTeX commands: a sentence, not a formula.
bool has_prose(const std::string& s) {
  bool math = false;
  int run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '$') math = !math, run = 0;
    if (math) continue;
    if (c == '\\') {  // skip the command's name
      while (i + 1 < s.size() && std::isalpha(static_cast<unsigned char>(s[i + 1]))) ++i;
      run = 0;
      continue;
    }
    run = std::isalpha(static_cast<unsigned char>(c)) ? run + 1 : 0;
    if (run >= 3) return true;
  }
  return false;
}

std::optional<std::string> hash_answer(const std::string& s) {
  size_t p = s.rfind("####");
  if (p == std::string::npos) return std::nullopt;
  std::string rest = s.substr(p + 4);
  size_t nl = rest.find('\n');
  if (nl != std::string::npos) rest = rest.substr(0, nl);
  rest = trim(rest);
  if (rest.empty()) return std::nullopt;
  return rest;
}

// Words after a number that only name its unit ("cubic units", "ways"), not math ("pi", "squared").
bool unit_words(const std::string& words) {
  static const std::vector<std::string> math = {"pi",        "sqrt", "squared", "cubed", "times", "plus",
                                                "minus",     "over", "divided", "root",  "roots", "power",
                                                "factorial", "and",  "or",      "not"};
  std::istringstream in(lower(words));
  int n = 0;
  for (std::string w; in >> w; ++n)
    if (w.size() < 3 || std::find(math.begin(), math.end(), w) != math.end()) return false;
  return n > 0;
}

}  // namespace

std::vector<std::string> last_boxed_row(const std::string& s) {
  struct Box {
    size_t start, end;
    std::string_view content;
  };
  std::vector<Box> boxes;
  std::vector<size_t> closes;  // made at the first braced box
  // The next \boxed and \fbox at or after p, each searched again only once passed (searching both
  // from every box scanned the rest of s once per box when one kind is absent).
  size_t a = s.find("\\boxed"), b = s.find("\\fbox");
  for (size_t p = 0;;) {
    if (a < p) a = s.find("\\boxed", p);  // npos is never < p: an absent kind is not searched again
    if (b < p) b = s.find("\\fbox", p);
    size_t at = std::min(a, b);
    if (at == std::string::npos) break;
    size_t i = at + (at == a ? 6 : 5);
    while (i < s.size() && s[i] == ' ') ++i;
    if (i < s.size() && s[i] == '{') {
      if (closes.empty()) closes = group_closes(s);
      if (closes[i] != std::string::npos)
        boxes.push_back({at, closes[i] + 1, std::string_view(s).substr(i + 1, closes[i] - i - 1)});
    } else {
      size_t e = i;
      while (e < s.size() && s[e] != ' ' && s[e] != '$' && s[e] != '\n') ++e;
      if (e > i) boxes.push_back({at, e, std::string_view(s).substr(i, e - i)});
    }
    p = at + 1;
  }
  if (boxes.empty()) return {};
  // Walk back from the last box while only connectives separate the boxes.
  size_t first = boxes.size() - 1;
  while (first > 0) {
    const Box& prev = boxes[first - 1];
    if (prev.end > boxes[first].start) break;  // nested boxes
    std::string gap = lower(s.substr(prev.end, boxes[first].start - prev.end));
    if (gap.size() > 60) break;
    for (const char* connective : {"\\text{", "\\quad", "\\qquad", "\\(", "\\)", "\\[", "\\]", "\\\\", "}",
                                   "$", ",", ";", "&", "and", "or"})
      for (size_t q; (q = gap.find(connective)) != std::string::npos;) gap.erase(q, std::strlen(connective));
    if (gap.find_first_not_of(" \t\r\n") != std::string::npos) break;
    --first;
  }
  std::vector<std::string> row;
  std::unordered_set<std::string> seen;
  for (size_t i = first; i < boxes.size(); ++i)
    if (std::string b = trim(std::string(boxes[i].content)); seen.insert(b).second) row.push_back(std::move(b));
  return row;
}

std::string value_in_sentence(const std::string& in) {
  std::string s = trim(in);
  if (!has_prose(s)) return s;
  // After the last " is " (or "are", "equals", "=") outside math: "The volume of $V$ is 120".
  std::string l = lower(s);
  size_t best = std::string::npos, len = 0;
  bool math = false;
  for (size_t i = 0; i < l.size(); ++i) {
    if (l[i] == '$') math = !math;
    if (math) continue;
    for (const char* copula : {" is ", " are ", " equals ", " was ", " be ", " = "})
      if (l.compare(i, std::strlen(copula), copula) == 0) best = i, len = std::strlen(copula);
  }
  std::string rest = best == std::string::npos ? s : trim(s.substr(best + len));
  size_t from = 0;  // past the fillers: "therefore 120", "approximately $3.5$"
  for (bool again = true; again;) {
    again = false;
    for (std::string_view filler : {"therefore ", "thus ", "then ", "so ", "exactly ", "approximately ", "about ",
                                    "equal to ", "given by ", "just ", "simply ", "now ", "also "}) {
      if (starts_with_nocase(rest, from, filler)) {
        from += filler.size();
        while (from < rest.size() && std::string_view(" \t\r\n").find(rest[from]) != std::string_view::npos) ++from;
        again = true;
      }
    }
  }
  if (from > 0) rest.erase(0, from);
  // "$120$ cubic units" → the formula; "120 cubic units" → the number.
  if (rest.starts_with("$")) {
    size_t close = rest.find('$', 1);
    if (close != std::string::npos) return trim(rest.substr(1, close - 1));
  }
  static const Pattern number_then_words(R"(([-+]?[0-9][0-9.,/]*)\s+([A-Za-z][A-Za-z ]*))");
  if (auto m = number_then_words.match_whole(rest); m && unit_words(m->group(2))) return m->group(1);
  return rest;
}

std::optional<std::string> last_boxed(const std::string& s) {
  size_t best = std::string::npos, skip = 0;
  for (const char* key : {"\\boxed", "\\fbox"}) {
    size_t p = s.rfind(key);
    if (p != std::string::npos && (best == std::string::npos || p > best)) best = p, skip = std::strlen(key);
  }
  if (best == std::string::npos) return std::nullopt;
  size_t i = best + skip;
  while (i < s.size() && s[i] == ' ') ++i;
  if (i < s.size() && s[i] == '{') return brace_group(s, i);
  // "\boxed 5": one token up to a space or '$'.
  size_t e = i;
  while (e < s.size() && s[e] != ' ' && s[e] != '$' && s[e] != '\n') ++e;
  if (e == i) return std::nullopt;
  return s.substr(i, e - i);
}

std::optional<Extracted> extract_answer(const std::string& completion, const ExtractOptions& o) {
  for (const std::string& m : o.methods) {
    std::optional<Extracted> a;
    auto plain = [&](std::optional<std::string> t) {
      if (t) a = Extracted{*t, m, {}};
    };
    if (m == "boxed")
      a = boxed(completion);
    else if (m == "answer_tag") a = answer_tag(completion, o);
    else if (m == "answer_is")
      plain(answer_is(completion));
    else if (m == "hash")
      plain(hash_answer(completion));
    if (a && !trim(a->text).empty() && a->text.size() <= o.max_chars) {
      a->text = trim(a->text);
      return a;
    }
  }
  return std::nullopt;
}

}  // namespace r1::reward
