#include "reward/latex_normalize.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string_view>
#include <vector>

#include "reward/pattern.h"

namespace r1::reward {

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
}

size_t group_end(const std::string& s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      ++i;
      continue;
    }
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) return i + 1;
  }
  return std::string::npos;
}

namespace {

bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// Removes a LaTeX command only when it stands alone (\left not \leftarrow).
void remove_command(std::string& s, std::string_view cmd) {
  for (size_t p = 0; (p = s.find(cmd, p)) != std::string::npos;) {
    size_t e = p + cmd.size();
    if (e < s.size() && is_alpha(s[e]) && is_alpha(cmd.back())) {
      p = e;
      continue;
    }
    s.erase(p, cmd.size());
  }
}

// \frac12 → \frac{1}{2}, \sqrt2 → \sqrt{2}: brace the one-token arguments LaTeX allows.
// (Built into a new string: in-place inserts trip a GCC 12 -Wrestrict false positive.)
std::string brace_arguments(const std::string& s, const std::string& cmd, int nargs) {
  std::string out;
  size_t i = 0;
  for (size_t p; (p = s.find(cmd, i)) != std::string::npos;) {
    size_t j = p + cmd.size();
    out.append(s, i, j - i);
    i = j;
    if (j < s.size() && is_alpha(s[j])) continue;  // \fracx is not \frac
    if (cmd == "\\sqrt" && j < s.size() && s[j] == '[') {  // \sqrt[3]{x}: index first
      size_t close = s.find(']', j);
      if (close == std::string::npos) break;
      out.append(s, j, close + 1 - j);
      i = j = close + 1;
    }
    for (int a = 0; a < nargs; ++a) {
      while (j < s.size() && s[j] == ' ') ++j;
      if (j >= s.size()) break;
      size_t e;
      if (s[j] == '{') {
        e = group_end(s, j);
        if (e == std::string::npos) break;
        out.append(s, j, e - j);
      } else {
        e = j + 1;
        if (s[j] == '\\')  // \frac\pi2
          while (e < s.size() && is_alpha(s[e])) ++e;
        out += '{';
        out.append(s, j, e - j);
        out += '}';
      }
      i = j = e;
    }
  }
  out.append(s, std::min(i, s.size()), std::string::npos);
  return out;
}

// "10,\!080" and "1,600": digit groups of three after commas are one number, unless the answer
// has brackets (then "(2,12)" or "(12,102)" are pairs, not thousands).
void remove_thousands(std::string& s) {
  if (s.find(',') == std::string::npos || s.find_first_of("()[]{}") != std::string::npos) return;
  static const Pattern number(R"((^|[^\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,]))");
  std::string out;
  size_t done = 0;
  while (auto m = number.find(s, done)) {
    std::string n = m->group(2);
    n.erase(std::remove(n.begin(), n.end(), ','), n.end());
    out.append(s, done, m->begin() - done);
    out += m->group(1) + n;
    done = m->end();
  }
  s = out + s.substr(done);
}

// Spacing commands: \! goes, \, \; \: "\ " and ~ become a space. "\\\\" (a row break) is kept whole: read
// as "\\" + "\ ", a matrix's rows would run together.
std::string remove_spacing(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '\\') {
      out += "\\\\";
      ++i;
    } else if (s[i] == '\\' && i + 1 < s.size() && std::strchr("!,;: ", s[i + 1])) {
      if (s[i + 1] != '!') out += ' ';
      ++i;
    } else {
      out += s[i] == '~' ? ' ' : s[i];
    }
  }
  return out;
}

// One spelling per relation: \geq, \geqslant, >= -> \ge; \leq... -> \le; \gt, \lt -> >, <; \neq, != -> \ne.
// Commands only where they end (\left was removed before; \leqslant is not \le + "qslant").
void normalize_relations(std::string& s) {
  static const std::vector<std::pair<std::string, std::string>> commands = {
      {"\\geqslant", "\\ge "}, {"\\leqslant", "\\le "}, {"\\geq", "\\ge "}, {"\\leq", "\\le "},
      {"\\gt", ">"},           {"\\lt", "<"},           {"\\neq", "\\ne "}, {"\\ge", "\\ge "},
      {"\\le", "\\le "},       {"\\ne", "\\ne "}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    bool done = false;
    if (s[i] == '\\')
      for (const auto& [from, to] : commands)
        if (s.compare(i, from.size(), from) == 0 &&
            (i + from.size() == s.size() || !is_alpha(s[i + from.size()]))) {
          out += to;
          i += from.size();
          done = true;
          break;
        }
    if (done) continue;
    if (s.compare(i, 2, ">=") == 0 || s.compare(i, 2, "<=") == 0 || s.compare(i, 2, "!=") == 0) {
      out += s[i] == '>' ? "\\ge " : s[i] == '<' ? "\\le " : "\\ne ";
      i += 2;
      continue;
    }
    out += s[i++];
  }
  s = out;
}

// \text{ cm}^2, \mbox{ inches}: units after a value carry no information for the check.
void remove_units(std::string& s) {
  for (const char* cmd : {"\\text{", "\\mbox{", "\\textrm{", "\\mathrm{"}) {
    for (size_t p = 0; (p = s.find(cmd, p)) != std::string::npos;) {
      size_t open = p + std::strlen(cmd) - 1, e = group_end(s, open);
      if (e == std::string::npos) return;
      std::string inner = trim(s.substr(open + 1, e - open - 2));
      bool wordy = !inner.empty();
      for (char c : inner) wordy = wordy && (is_alpha(c) || c == ' ' || c == '.');
      // Only strip units that follow a value; "\text{or}" separates solutions; whole-text answers stay.
      bool after_value = p > 0 && trim(s.substr(0, p)).size() > 0;
      if (!wordy || !after_value || inner == "or" || inner == "and") {
        p = e;
        continue;
      }
      if (e < s.size() && s[e] == '^') {  // the unit's exponent: cm^2
        size_t x = e + 1;
        x = (x < s.size() && s[x] == '{') ? group_end(s, x) : x + 1;
        if (x != std::string::npos) e = std::min(x, s.size());
      }
      s.erase(p, e - p);
    }
  }
}

}  // namespace

std::string normalize_latex(const std::string& answer) {
  std::string s = trim(answer);
  // Math delimiters around the whole answer.
  static constexpr std::pair<std::string_view, std::string_view> delimiters[] = {
      {"$$", "$$"}, {"$", "$"}, {"\\(", "\\)"}, {"\\[", "\\]"}};
  for (auto [open, close] : delimiters)
    if (s.size() >= open.size() + close.size() && s.starts_with(open) && s.ends_with(close))
      s = trim(s.substr(open.size(), s.size() - open.size() - close.size()));
  // Unicode spellings models emit (all start with a byte above 0x7F: most answers have none).
  static constexpr std::pair<std::string_view, std::string_view> unicode[] = {
      {"−", "-"},      {"×", "\\times "}, {"÷", "\\div "},    {"π", "\\pi "}, {"∞", "\\infty "},
      {"√", "\\sqrt"}, {"°", ""},         {"·", "\\cdot "},   {"≤", "\\le "}, {"≥", "\\ge "},
      {"∪", "\\cup "}, {"≠", "\\ne "},    {"≈", "\\approx "}, {"±", "\\pm "}, {"∓", "\\mp "}};
  if (std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
    for (auto [from, to] : unicode) replace_all(s, from, to);
  for (const char* c : {"\\displaystyle", "\\left", "\\right", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr",
                        "\\big", "\\Big", "\\quad", "\\qquad", "\\limits"})
    remove_command(s, c);
  // "10,\\!080" and MATH's own "14{,}916": explicit thousands separators, unambiguous even inside brackets.
  static const Pattern explicit_sep(R"((\d)(?:,\\!|\s*\{\s*,\s*\})\s*(\d{3}))");
  // (The regular expressions run only where their text can be: a verifier scores thousands of answers a
  // step.)
  if (s.find(',') != std::string::npos)
    for (std::string prev; prev != s;) prev = s, s = explicit_sep.replace_all(s, "$1$2");
  s = remove_spacing(s);
  replace_all(s, "\\dfrac", "\\frac");
  replace_all(s, "\\tfrac", "\\frac");
  replace_all(s, "\\cfrac", "\\frac");
  replace_all(s, "\\textnormal{", "\\text{");
  replace_all(s, "\\textup{", "\\text{");
  normalize_relations(s);
  replace_all(s, "\\dbinom", "\\binom");
  replace_all(s, "\\tbinom", "\\binom");
  replace_all(s, "\\textbf{", "\\text{");
  replace_all(s, "\\textit{", "\\text{");
  replace_all(s, "\\mathbf{", "{");
  replace_all(s, "\\boldsymbol{", "{");
  replace_all(s, "\\inf ", "\\infty ");
  if (s.ends_with("\\inf")) s += "ty";
  for (const char* deg : {"^{\\circ}", "^\\circ", "\\circ", "\\degree", "^{\\circ }"}) replace_all(s, deg, "");
  for (const char* sym : {"\\%", "%", "\\$", "$"}) replace_all(s, sym, "");
  // "28 percent", "28 pct": the percent sign written as a word.
  static const Pattern percent_word(R"((\d)\s*(?:\\text\{\s*)?(?:per ?cent(?:age)?|pct)\b\}?)");
  if (s.find("per") != std::string::npos || s.find("pct") != std::string::npos)
    s = percent_word.replace_all(s, "$1");
  remove_units(s);
  s = brace_arguments(s, "\\frac", 2);
  s = brace_arguments(s, "\\binom", 2);
  s = brace_arguments(s, "\\sqrt", 1);
  remove_thousands(s);
  // Collapse whitespace; drop a sentence-ending period.
  std::string out;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  out = trim(out);
  while (!out.empty() && out.back() == '.') out.pop_back();
  replace_all(out, "+\\infty", "\\infty");
  // Subscripts of one token: 204_{5} → 204_5, x_{1} → x_1.
  // Mixed numbers, as MATH writes them: "137 \\frac{1}{2}" is 137 + 1/2, not a product.
  static const Pattern mixed(R"((-?)(\d+) ?\\frac\{(\d+)\}\{(\d+)\})");
  if (out.find("\\frac") != std::string::npos)
    if (auto m = mixed.match_whole(out))
      out = m->group(1) + "(" + m->group(2) + "+\\frac{" + m->group(3) + "}{" + m->group(4) + "})";
  static const Pattern one_token_sub(R"(_\{([A-Za-z0-9])\})");
  if (out.find("_{") != std::string::npos) out = one_token_sub.replace_all(out, "_$1");
  return trim(out);
}

}  // namespace r1::reward
