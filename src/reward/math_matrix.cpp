// Matrices: one environment (pmatrix, bmatrix, array, ...) or arithmetic on them ("2M", "M + N",
// "M N", "\frac{t}{6} M"). Arithmetic is done on the cells' LaTeX, so each resulting cell is an
// expression the scalar checks compare like any other ("(1)(2)+(3)(4)" against "14").
#include <optional>

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

// A matrix environment starting at s[at] ("\begin{...}"): its cells and where it ends.
std::optional<Answer> environment(const std::string& s, size_t at, size_t& end) {
  static const Pattern begin(R"(^\\begin\{([pbvBV]?matrix|array)\})");
  auto m = begin.find(std::string_view(s).substr(at));
  if (!m) return std::nullopt;
  const std::string name = m->group(1), close = "\\end{" + name + "}";
  size_t body = at + m->end();
  if (name == "array" && body < s.size() && s[body] == '{') {  // the column spec: {cc}, {c|c}
    body = group_end(s, body);
    if (body == std::string::npos) return std::nullopt;
  }
  size_t stop = s.find(close, body);
  if (stop == std::string::npos) return std::nullopt;
  end = stop + close.size();
  std::string content = s.substr(body, stop - body);
  replace_all(content, "\\hline", "");
  Answer a;
  a.kind = Answer::Matrix;
  for (const std::string& row : split_top(content, "\\\\")) {
    if (trim(row).empty()) continue;
    std::vector<std::string> cells = split_top(row, "&");
    if (a.rows > 0 && int(cells.size()) != a.cols) return std::nullopt;
    a.cols = int(cells.size());
    ++a.rows;
    for (const std::string& c : cells) a.items.push_back(parse_answer(trim(c)));
  }
  if (a.rows == 0) return std::nullopt;
  return a;
}

// ---- arithmetic: a value is a scalar (LaTeX) or a matrix of LaTeX cells ----

// A scalar (rows == 0: cells[0] is its LaTeX) or a rows × cols matrix of LaTeX cells.
struct Value {
  int rows = 0, cols = 0;
  std::vector<std::string> cells;
  bool matrix() const { return rows > 0; }
};

Value scalar_value(const std::string& latex) { return Value{0, 0, {latex}}; }

std::optional<Value> add(const Value& a, const Value& b, bool minus) {
  if (a.rows != b.rows || a.cols != b.cols) return std::nullopt;  // a matrix plus a scalar is not defined
  Value z = a;
  for (size_t i = 0; i < z.cells.size(); ++i)
    z.cells[i] = "(" + a.cells[i] + (minus ? ")-(" : ")+(") + b.cells[i] + ")";
  return z;
}

std::optional<Value> multiply(const Value& a, const Value& b) {
  if (!a.matrix() || !b.matrix()) {  // a scalar times a scalar or a matrix
    const std::string& k = a.matrix() ? b.cells[0] : a.cells[0];
    Value z = a.matrix() ? a : b;
    for (std::string& c : z.cells) c = "(" + k + ")(" + c + ")";
    return z;
  }
  if (a.cols != b.rows) return std::nullopt;
  Value z{a.rows, b.cols, {}};
  for (int i = 0; i < a.rows; ++i)
    for (int j = 0; j < b.cols; ++j) {
      std::string sum;
      for (int k = 0; k < a.cols; ++k)
        sum +=
            (k ? "+(" : "(") + a.cells[size_t(i * a.cols + k)] + ")(" + b.cells[size_t(k * b.cols + j)] + ")";
      z.cells.push_back("(" + sum + ")");
    }
  return z;
}

struct Token {
  enum Kind { Operand, Plus, Minus, Times } kind;
  Value value;
};

// Splits the text between matrices into operators and scalar operands ("\frac{t}{6}", "2").
bool scalar_tokens(const std::string& text, std::vector<Token>& out) {
  std::string t = trim(text);
  size_t start = 0;
  int depth = 0;
  auto flush = [&](size_t end) {
    std::string chunk = trim(t.substr(start, end - start));
    if (chunk.empty()) return true;
    if (!parse_latex(chunk)) return false;
    out.push_back({Token::Operand, scalar_value(chunk)});
    return true;
  };
  for (size_t i = 0; i < t.size(); ++i) {
    char c = t[i];
    if (c == '(' || c == '{' || c == '[') ++depth;
    if (c == ')' || c == '}' || c == ']') --depth;
    if (depth != 0) continue;
    std::optional<Token::Kind> op;
    size_t len = 1;
    if (c == '+') op = Token::Plus;
    if (c == '-') op = Token::Minus;
    if (c == '*') op = Token::Times;
    for (const char* cmd : {"\\cdot", "\\times"})
      if (t.compare(i, std::string(cmd).size(), cmd) == 0) op = Token::Times, len = std::string(cmd).size();
    if (!op) continue;
    if (!flush(i)) return false;
    out.push_back({*op, Value{}});
    start = i + len;
    i = start - 1;
  }
  return flush(t.size());
}

// expr := ['-'] term (('+' | '-') term)*;  term := operand (['*'] operand)*
std::optional<Value> evaluate(const std::vector<Token>& t) {
  size_t p = 0;
  auto term = [&]() -> std::optional<Value> {
    if (p >= t.size() || t[p].kind != Token::Operand) return std::nullopt;
    Value v = t[p++].value;
    while (p < t.size() && (t[p].kind == Token::Operand || t[p].kind == Token::Times)) {
      if (t[p].kind == Token::Times) ++p;
      if (p >= t.size() || t[p].kind != Token::Operand) return std::nullopt;
      auto m = multiply(v, t[p++].value);
      if (!m) return std::nullopt;
      v = *m;
    }
    return v;
  };
  bool negate = p < t.size() && t[p].kind == Token::Minus;
  if (negate) ++p;
  auto v = term();
  if (!v) return std::nullopt;
  if (negate) v = multiply(scalar_value("-1"), *v);
  while (v && p < t.size()) {
    if (t[p].kind != Token::Plus && t[p].kind != Token::Minus) return std::nullopt;
    bool minus = t[p++].kind == Token::Minus;
    auto rhs = term();
    if (!rhs) return std::nullopt;
    v = add(*v, *rhs, minus);
  }
  return v;
}

}  // namespace

std::optional<Answer> parse_matrix_expression(const std::string& in) {
  std::string s = trim(in);
  // "[\begin{array}...\end{array}]", "(\begin{pmatrix}...\end{pmatrix})": brackets around one matrix.
  if (s.size() > 2 && (s[0] == '[' || s[0] == '(') && (s.back() == ']' || s.back() == ')')) {
    std::string inner = trim(s.substr(1, s.size() - 2));
    size_t end = 0;
    if (inner.starts_with("\\begin{") && environment(inner, 0, end) && end == inner.size()) s = inner;
  }
  std::vector<Token> tokens;
  std::optional<Answer> only;
  int matrices = 0;
  size_t pos = 0;
  for (size_t at; (at = s.find("\\begin{", pos)) != std::string::npos;) {
    size_t end = 0;
    auto m = environment(s, at, end);
    if (!m) return std::nullopt;
    if (!scalar_tokens(s.substr(pos, at - pos), tokens)) return std::nullopt;
    Value g{m->rows, m->cols, {}};
    for (const Answer& c : m->items) g.cells.push_back(c.kind == Answer::Scalar ? c.text : "");
    tokens.push_back({Token::Operand, g});
    only = *m;
    ++matrices;
    pos = end;
  }
  if (!scalar_tokens(s.substr(pos), tokens)) return std::nullopt;
  if (matrices == 0) return std::nullopt;
  if (matrices == 1 && tokens.size() == 1) return only;  // one matrix, cells of any kind
  for (const Token& t : tokens)
    for (const std::string& c : t.value.cells)
      if (t.value.matrix() && c.empty()) return std::nullopt;  // arithmetic needs scalar cells
  auto v = evaluate(tokens);
  if (!v || !v->matrix()) return std::nullopt;
  const Value& g = *v;
  Answer a;
  a.kind = Answer::Matrix;
  a.rows = g.rows;
  a.cols = g.cols;
  for (const std::string& c : g.cells) {
    Answer cell;
    cell.text = c;
    a.items.push_back(cell);
  }
  return a;
}

}  // namespace r1::reward
