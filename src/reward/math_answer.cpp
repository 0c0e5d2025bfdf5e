#include "reward/math_answer.h"

#include <cctype>

#include "reward/latex_normalize.h"
#include "reward/pattern.h"

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
  static const Pattern choice(R"(\(?([A-E])\)?)");
  auto m = choice.match_whole(s);
  if (!m) return false;
  letter = m->group(1);
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

// A bare list "a, b, c": a set of values; named values with distinct names ("p = 3, q = 2",
// "AB = 4, CD = 5") a labelled list; inequalities ("x < -1, x > 2") the union of their intervals.
Answer list_of(const std::vector<std::string>& parts) {
  bool relations = true;
  for (const std::string& p : parts) relations = relations && parse_relation(trim(p)).has_value();
  Answer a = set_of(parts, relations ? Answer::Union : Answer::Set);
  if (relations) return a;
  bool named = a.items.size() >= 2, distinct = true;
  for (size_t i = 0; i < a.items.size() && named; ++i) {
    named = !a.items[i].label.empty();
    for (size_t j = 0; j < i && named; ++j) distinct = distinct && a.items[j].label != a.items[i].label;
  }
  if (named && distinct) a.kind = Answer::Labelled;
  return a;
}

// "x \in [1, 2]" → "[1, 2]": the name carries no information.
bool strip_member(const std::string& s, std::string& rhs) {
  std::vector<std::string> parts = split_top(s, "\\in");
  if (parts.size() != 2 || !is_name(trim(parts[0]))) return false;
  rhs = trim(parts[1]);
  return true;
}

Answer labelled(Answer a, const std::string& name) {
  a.label = label_key(name);
  return a;
}

// "name = value", "name = e1 = e2 = value" (the last is the answer), "(p,q) = (3,2)", or an equation.
Answer equals(const std::vector<std::string>& parts) {
  const std::string lhs = trim(parts[0]), value = trim(parts.back());
  if (is_name(lhs)) return labelled(parse_answer(value), lhs);
  if (auto names = name_tuple(lhs)) {
    Answer v = parse_answer(value);
    if (v.kind == Answer::Sequence && v.open == '(' && v.items.size() == names->size()) {
      v.kind = Answer::Labelled;
      v.ordered_labels = true;
      for (size_t i = 0; i < names->size(); ++i) v.items[i].label = label_key((*names)[i]);
    }
    return v;
  }
  if (parts.size() >= 3) return parse_answer(value);  // a chain of equal expressions
  Answer eq = make(Answer::Equation);
  eq.items = {make(Answer::Scalar, lhs), make(Answer::Scalar, value)};
  return eq;
}

}  // namespace

const char* kind_name(Answer::Kind k) {
  static const char* names[] = {"scalar", "sequence", "set",      "union", "matrix",  "text",
                                "choice", "equation", "relation", "ratio", "labelled"};
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
  std::string s = trim(in), inner, letter, rhs;
  if (whole_text(s, inner)) {
    if (choice_letter(inner, letter)) return make(Answer::Choice, letter);
    return make(Answer::Text, text_key(inner));
  }
  if (choice_letter(s, letter)) return make(Answer::Choice, letter);
  // "x \approx 3.14" is 3.14; "\frac{1}{3} \approx 0.33" is the exact value before the approximation.
  if (auto parts = split_top(s, "\\approx"); parts.size() > 1) {
    const std::string lhs = trim(parts[0]), approximation = trim(parts[1]);
    if (lhs.empty()) return parse_answer(approximation);
    if (is_name(lhs)) return labelled(parse_answer(approximation), lhs);
    Answer exact = parse_answer(lhs);
    exact.approx = approximation;
    return exact;
  }
  // Solution lists: "2; 3", "x = 1 or x = 2", "1 \text{ and } 2".
  if (auto parts = split_top(s, ";"); parts.size() > 1) {
    s.clear();
    for (const std::string& p : parts) s += (s.empty() ? "" : ", ") + trim(p);
  }
  if (s.find("\\begin{") != std::string::npos) {
    if (auto m = parse_matrix_expression(s)) return *m;
  }
  if (auto parts = split_top(s, "\\cup"); parts.size() > 1) return set_of(parts, Answer::Union);
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
  if (auto parts = split_top(s, ","); parts.size() > 1) return list_of(parts);
  if (strip_member(s, rhs)) return parse_answer(rhs);
  if (auto r = parse_relation(s)) return *r;
  if (auto parts = split_top(s, "="); parts.size() > 1) return equals(parts);
  if (auto r = parse_ratio(s)) return *r;
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
