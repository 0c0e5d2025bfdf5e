#include "reward/math_answer.h"

#include <cctype>
#include <regex>

#include "reward/latex_normalize.h"

namespace r1::reward {
namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

bool is_open(char c) { return c == '(' || c == '[' || c == '{'; }
bool is_close(char c) { return c == ')' || c == ']' || c == '}'; }

// Whether the bracket opening at s[0] closes at the last character (so it encloses everything).
bool encloses_all(const std::string& s) {
  if (s.size() < 2 || !is_open(s[0]) || !is_close(s.back())) return false;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (is_open(s[i])) ++depth;
    if (is_close(s[i]) && --depth == 0) return i + 1 == s.size();
  }
  return false;
}

// The content of a whole-answer \text{...}, or nullopt.
bool whole_text(const std::string& s, std::string& inner) {
  if (!s.starts_with("\\text{")) return false;
  size_t e = group_end(s, 5);
  if (e != s.size()) return false;
  inner = trim(s.substr(6, s.size() - 7));
  return true;
}

bool choice_letter(const std::string& s, std::string& letter) {
  static const std::regex choice(R"(^\(?([A-E])\)?$)");
  std::smatch m;
  if (!std::regex_match(s, m, choice)) return false;
  letter = m[1].str();
  return true;
}

Answer make(Answer::Kind k, std::string text = "") {
  Answer a;
  a.kind = k;
  a.text = std::move(text);
  return a;
}

// Items of a list; nested solution sets ("1 \pm \sqrt5") are spliced in.
Answer set_of(const std::vector<std::string>& parts, Answer::Kind kind) {
  Answer a = make(kind);
  for (const std::string& p : parts) {
    Answer item = parse_answer(trim(p));
    if (item.kind == Answer::Set && kind == Answer::Set)
      a.items.insert(a.items.end(), item.items.begin(), item.items.end());
    else
      a.items.push_back(item);
  }
  return a;
}

Answer matrix(const std::string& s) {
  static const std::regex env(R"(^\\begin\{([pbvBV]?matrix|array)\}(\{[^}]*\})?(.*)\\end\{\1\}$)");
  std::smatch m;
  if (!std::regex_match(s, m, env)) return make(Answer::Scalar, s);
  Answer a = make(Answer::Matrix);
  for (const std::string& row : split_top(m[3].str(), "\\\\")) {
    if (trim(row).empty()) continue;
    std::vector<std::string> cells = split_top(row, "&");
    if (a.rows > 0 && int(cells.size()) != a.cols) return make(Answer::Scalar, s);
    a.cols = int(cells.size());
    ++a.rows;
    for (const std::string& c : cells) a.items.push_back(parse_answer(trim(c)));
  }
  return a;
}

// "x = 3" → "3" and "x \in [1, 2]" → "[1, 2]": a name on the left carries no information.
bool strip_variable(const std::string& s, const std::string& sep, std::string& rhs) {
  std::vector<std::string> parts = split_top(s, sep);
  if (parts.size() < 2) return false;
  static const std::regex name(R"(^([A-Za-z](_[A-Za-z0-9])?|\\[a-z]+|\\text\{[^}]*\}|[A-Za-z]\([A-Za-z]\))$)");
  std::string lhs = trim(parts[0]);
  if (!std::regex_match(lhs, name)) return false;
  rhs = trim(s.substr(s.find(sep, parts[0].size()) + sep.size()));
  return true;
}

}  // namespace

const char* kind_name(Answer::Kind k) {
  static const char* names[] = {"scalar", "sequence", "set", "union", "matrix", "text", "choice", "equation"};
  return names[k];
}

std::vector<std::string> split_top(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '}')) {
      depth += s[i + 1] == '{' ? 1 : -1;
      ++i;
      continue;
    }
    if (depth == 0 && s.compare(i, sep.size(), sep) == 0) {
      out.push_back(s.substr(start, i - start));
      start = i + sep.size();
      i += sep.size() - 1;
      continue;
    }
    if (is_open(s[i])) ++depth;
    if (is_close(s[i])) --depth;
  }
  out.push_back(s.substr(start));
  return out;
}

std::string text_key(const std::string& s) {
  std::string t = s, out;
  for (const char* c : {"\\text", "\\mathrm", "\\mbox"}) replace_all(t, c, "");
  for (char c : t)
    if (std::isalnum(static_cast<unsigned char>(c))) out += char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Answer parse_answer(const std::string& in) {
  std::string s = trim(in), inner, letter;
  if (whole_text(s, inner)) {
    if (choice_letter(inner, letter)) return make(Answer::Choice, letter);
    return make(Answer::Text, text_key(inner));
  }
  if (choice_letter(s, letter)) return make(Answer::Choice, letter);
  if (s.starts_with("\\begin{")) return matrix(s);
  if (auto parts = split_top(s, "\\cup"); parts.size() > 1) return set_of(parts, Answer::Union);
  // Solution lists: "x = 1 or x = 2", "1 \text{ and } 2".
  for (const char* word : {"\\text{ or }", "\\text{or}", "\\text{ and }", "\\text{and}", " or ", " and "})
    replace_all(s, word, ",");
  if (s.starts_with("\\{") && s.ends_with("\\}"))
    return set_of(split_top(s.substr(2, s.size() - 4), ","), Answer::Set);
  if (encloses_all(s) && s[0] != '{') {
    std::vector<std::string> parts = split_top(s.substr(1, s.size() - 2), ",");
    if (parts.size() > 1) {
      Answer a = set_of(parts, Answer::Sequence);
      a.open = s[0];
      a.close = s.back();
      return a;
    }
  }
  if (auto parts = split_top(s, ","); parts.size() > 1) return set_of(parts, Answer::Set);
  std::string rhs;
  if (strip_variable(s, "\\in", rhs)) return parse_answer(rhs);
  if (auto parts = split_top(s, "="); parts.size() > 1) {
    if (strip_variable(s, "=", rhs)) return parse_answer(rhs);
    Answer eq = make(Answer::Equation);
    eq.items = {make(Answer::Scalar, trim(parts[0])), make(Answer::Scalar, trim(parts[parts.size() - 1]))};
    return eq;
  }
  for (const char* pm : {"\\pm", "\\mp"}) {
    size_t p = s.find(pm);
    if (p != std::string::npos && s.find(pm, p + 1) == std::string::npos) {
      std::string plus = s, minus = s;
      plus.replace(p, 3, "+");
      minus.replace(p, 3, "-");
      return set_of({plus, minus}, Answer::Set);
    }
  }
  return make(Answer::Scalar, s);
}

}  // namespace r1::reward
