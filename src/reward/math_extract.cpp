#include "reward/math_extract.h"

#include <algorithm>
#include <cctype>
#include <cstring>

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

std::optional<std::string> answer_tag(const std::string& s, const ExtractOptions& o) {
  size_t close = s.rfind(o.answer_close);
  if (close == std::string::npos) return std::nullopt;
  size_t open = s.rfind(o.answer_open, close);
  if (open == std::string::npos) return std::nullopt;
  std::string inner = s.substr(open + o.answer_open.size(), close - open - o.answer_open.size());
  if (auto b = last_boxed(inner)) return b;  // "<answer>The answer is \boxed{5}</answer>"
  return trim(inner);
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
  if (rest.size() >= 2 && rest.front() == '$' && rest.back() == '$') rest = rest.substr(1, rest.size() - 2);
  rest = trim(rest);
  if (rest.empty()) return std::nullopt;
  return rest;
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

}  // namespace

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
    std::optional<std::string> a;
    if (m == "boxed") a = last_boxed(completion);
    else if (m == "answer_tag") a = answer_tag(completion, o);
    else if (m == "answer_is") a = answer_is(completion);
    else if (m == "hash") a = hash_answer(completion);
    if (a && !trim(*a).empty() && a->size() <= o.max_chars) return Extracted{trim(*a), m};
  }
  return std::nullopt;
}

}  // namespace r1::reward
