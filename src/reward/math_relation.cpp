// Names, inequalities and ratios: the parts of parse_answer that read relations between values.
#include <algorithm>

#include "reward/latex_normalize.h"
#include "reward/math_answer.h"
#include "reward/math_expr.h"
#include "reward/pattern.h"

namespace r1::reward {
namespace {

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

Answer scalar(const std::string& text) {
  Answer a;
  a.text = text;
  return a;
}

// Top-level relation symbols, in order, and the operands between them.
struct Chain {
  std::vector<std::string> operands, ops;
};

std::optional<Chain> split_relations(const std::string& s) {
  static const std::vector<std::pair<std::string, std::string>> symbols = {
      {"\\le", "\\le"}, {"\\ge", "\\ge"}, {"\\ne", "\\ne"}, {"<", "<"}, {">", ">"}};
  Chain c;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char ch = s[i];
    if (ch == '\\' && i + 1 < s.size() && (s[i + 1] == '{' || s[i + 1] == '}')) {
      depth += s[i + 1] == '{' ? 1 : -1;
      ++i;
      continue;
    }
    if (ch == '(' || ch == '[' || ch == '{') ++depth;
    if (ch == ')' || ch == ']' || ch == '}') --depth;
    if (depth != 0) continue;
    for (const auto& [text, op] : symbols) {
      if (s.compare(i, text.size(), text) != 0) continue;
      if (text[0] == '\\' && i + text.size() < s.size() &&
          std::isalpha(static_cast<unsigned char>(s[i + text.size()])))
        continue;  // \left, \neq... (normalised away) or another command
      c.operands.push_back(trim(s.substr(start, i - start)));
      c.ops.push_back(op);
      start = i + text.size();
      i = start - 1;
      break;
    }
  }
  if (c.ops.empty()) return std::nullopt;
  c.operands.push_back(trim(s.substr(start)));
  for (const std::string& o : c.operands)
    if (o.empty()) return std::nullopt;
  return c;
}

bool constant(const std::string& s) {
  if (s == "\\infty" || s == "-\\infty") return true;
  auto e = parse_latex(s);
  if (!e) return false;
  std::vector<std::string> syms;
  collect_symbols(*e, syms);
  return syms.empty();
}

Answer interval(const std::string& lo, bool lo_closed, const std::string& hi, bool hi_closed,
                const std::string& var) {
  Answer a;
  a.kind = Answer::Sequence;
  a.open = lo_closed ? '[' : '(';
  a.close = hi_closed ? ']' : ')';
  a.items = {scalar(lo), scalar(hi)};
  a.label = label_key(var);
  return a;
}

}  // namespace

bool is_name(const std::string& in) {
  static const Pattern name(
      R"((\\?[A-Za-z]+('|_[A-Za-z0-9]|_\{[A-Za-z0-9]+\})?|\\text\{[^}]*\}|\{[A-Za-z]\}|[A-Za-z]\([A-Za-z]\)|)"
      R"((m ?)?\\angle ?[A-Z]{1,3}|\\overline\{[A-Z]{2}\}|[A-Za-z]+ ?: ?[A-Za-z]+))");
  // Constants and functions are not names: "\pi \approx 3.14" is an approximation of \pi.
  static const std::vector<std::string> not_names = {"\\pi",  "\\infty", "e",      "i",     "\\sqrt",
                                                     "\\sin", "\\cos",   "\\tan",  "\\log", "\\ln",
                                                     "\\exp", "\\cdot",  "\\times"};
  std::string s = trim(in);
  return !s.empty() && s.size() <= 30 &&
         std::find(not_names.begin(), not_names.end(), s) == not_names.end() && name.match_whole(s).has_value();
}

std::string label_key(const std::string& in) {
  std::string s = in, out;
  for (const char* c : {"\\text", "\\mathrm", "\\overline"}) replace_all(s, c, "");
  for (char c : s)
    if (c != ' ' && c != '{' && c != '}') out += c;
  return out;
}

std::optional<std::vector<std::string>> name_tuple(const std::string& in) {
  std::string s = trim(in);
  if (s.size() < 5 || s.front() != '(' || s.back() != ')') return std::nullopt;
  std::vector<std::string> names = split_top(s.substr(1, s.size() - 2), ",");
  if (names.size() < 2) return std::nullopt;
  for (std::string& n : names) {
    n = trim(n);
    if (!is_name(n)) return std::nullopt;
  }
  return names;
}

std::optional<Answer> parse_relation(const std::string& s) {
  std::optional<Chain> c = split_relations(s);
  if (!c) return std::nullopt;
  // One direction: "a > b \ge c" is read as "c \le b < a".
  bool down =
      std::all_of(c->ops.begin(), c->ops.end(), [](const std::string& o) { return o == ">" || o == "\\ge"; });
  if (down) {
    std::reverse(c->operands.begin(), c->operands.end());
    std::reverse(c->ops.begin(), c->ops.end());
    for (std::string& o : c->ops) o = o == ">" ? "<" : "\\le";
  }
  const auto& v = c->operands;
  const auto& op = c->ops;
  auto lt = [](const std::string& o) { return o == "<" || o == "\\le"; };
  // One variable against constants: the solution set as an interval (or two).
  if (op.size() == 1 && op[0] == "\\ne" && is_name(v[0]) != is_name(v[1])) {
    const std::string& var = is_name(v[0]) ? v[0] : v[1];
    const std::string& at = is_name(v[0]) ? v[1] : v[0];
    if (constant(at)) {
      Answer u;
      u.kind = Answer::Union;
      u.items = {interval("-\\infty", false, at, false, var), interval(at, false, "\\infty", false, var)};
      u.label = label_key(var);
      return u;
    }
  }
  if (op.size() == 1 && lt(op[0])) {
    bool closed = op[0] == "\\le";
    if (is_name(v[0]) && constant(v[1])) return interval("-\\infty", false, v[1], closed, v[0]);
    if (is_name(v[1]) && constant(v[0])) return interval(v[0], closed, "\\infty", false, v[1]);
  }
  if (op.size() == 2 && lt(op[0]) && lt(op[1]) && is_name(v[1]) && constant(v[0]) && constant(v[2]))
    return interval(v[0], op[0] == "\\le", v[2], op[1] == "\\le", v[1]);
  Answer r;
  r.kind = Answer::Relation;
  for (const std::string& o : v) r.items.push_back(scalar(o));
  r.ops = op;
  return r;
}

std::optional<Answer> parse_ratio(const std::string& s) {
  std::vector<std::string> parts = split_top(s, ":");
  if (parts.size() < 2) return std::nullopt;
  Answer r;
  r.kind = Answer::Ratio;
  for (const std::string& p : parts) {
    std::string t = trim(p);
    if (t.empty() || !parse_latex(t)) return std::nullopt;
    r.items.push_back(scalar(t));
  }
  return r;
}

}  // namespace r1::reward
