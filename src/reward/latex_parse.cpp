// LaTeX → Expr: a recursive-descent parser over the normalised answer.
//   sum     := product (('+' | '-') product)*
//   product := unary (('*' | \cdot | \times | '/' | \div | <implicit>) unary)*
//   unary   := ('-' | '+') unary | power
//   power   := postfix ('^' exponent)?        right-associative
//   postfix := atom '!'*
#include <cctype>
#include <algorithm>
#include <set>

#include "reward/math_expr.h"

namespace r1::reward {
namespace {

struct Token {
  enum Kind { Num, Letter, Cmd, Char, End } kind;
  std::string text;
};

std::vector<Token> tokenize(const std::string& s, bool& ok) {
  std::vector<Token> t;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isspace(c)) {
      ++i;
    } else if (std::isdigit(c) || (c == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      size_t e = i;
      bool dot = false;
      while (e < s.size() && (std::isdigit(static_cast<unsigned char>(s[e])) || (s[e] == '.' && !dot))) {
        dot = dot || s[e] == '.';
        ++e;
      }
      t.push_back({Token::Num, s.substr(i, e - i)});
      i = e;
    } else if (std::isalpha(c)) {
      t.push_back({Token::Letter, std::string(1, char(c))});
      ++i;
    } else if (c == '\\') {
      size_t e = i + 1;
      while (e < s.size() && std::isalpha(static_cast<unsigned char>(s[e]))) ++e;
      if (e == i + 1) {
        if (e < s.size() && (s[e] == '{' || s[e] == '}')) {
          ok = false;  // \{ \}: a set, not a scalar
          return t;
        }
        ++i;  // a stray backslash
        continue;
      }
      t.push_back({Token::Cmd, s.substr(i + 1, e - i - 1)});
      i = e;
    } else if (std::string("+-*/^_()[]{}!|'=").find(char(c)) != std::string::npos) {  // '=': sum bounds only
      t.push_back({Token::Char, std::string(1, char(c))});
      ++i;
    } else {
      ok = false;  // ',', '=', '<', non-ASCII: not a scalar expression
      return t;
    }
  }
  t.push_back({Token::End, ""});
  return t;
}

const std::set<std::string> kFunctions = {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos",
                                          "arctan", "sinh", "cosh", "tanh", "ln", "log", "exp"};
const std::set<std::string> kGreek = {"alpha", "beta", "gamma", "delta", "theta", "phi", "varphi",
                                      "lambda", "mu", "omega", "sigma", "tau", "rho", "psi", "epsilon"};

struct ParseError {};

class Parser {
 public:
  Parser(std::vector<Token> t, const ParseLimits& lim) : t_(std::move(t)), lim_(lim) {}

  Expr parse() {
    Expr e = sum();
    if (peek().kind != Token::End) throw ParseError{};
    return e;
  }

 private:
  std::vector<Token> t_;
  size_t p_ = 0;
  int depth_ = 0, nodes_ = 0;
  const ParseLimits& lim_;

  const Token& peek(size_t k = 0) const { return t_[std::min(p_ + k, t_.size() - 1)]; }
  bool is_char(const char* c, size_t k = 0) const { return peek(k).kind == Token::Char && peek(k).text == c; }
  bool is_cmd(const char* c) const { return peek().kind == Token::Cmd && peek().text == c; }
  void expect_char(const char* c) {
    if (!is_char(c)) throw ParseError{};
    ++p_;
  }
  Expr node(Expr::Kind k, std::vector<Expr> kids = {}, std::string text = "") {
    if (++nodes_ > lim_.max_nodes) throw ParseError{};
    return Expr{k, std::move(text), std::move(kids)};
  }
  struct Depth {
    Parser& p;
    explicit Depth(Parser& q) : p(q) {
      if (++p.depth_ > p.lim_.max_depth) throw ParseError{};
    }
    ~Depth() { --p.depth_; }
  };

  Expr sum() {
    Depth d(*this);
    std::vector<Expr> terms{product()};
    while (is_char("+") || is_char("-")) {
      bool minus = peek().text == "-";
      ++p_;
      Expr t = product();
      terms.push_back(minus ? node(Expr::Neg, {t}) : t);
    }
    return terms.size() == 1 ? terms[0] : node(Expr::Add, terms);
  }

  bool starts_atom() const {
    const Token& k = peek();
    if (k.kind == Token::Num || k.kind == Token::Letter) return true;
    if (k.kind == Token::Char) return k.text == "(" || k.text == "{" || k.text == "[" || k.text == "|";
    if (k.kind == Token::Cmd)
      return k.text == "frac" || k.text == "sqrt" || k.text == "pi" || k.text == "infty" ||
             k.text == "binom" || k.text == "text" || k.text == "sum" || k.text == "prod" ||
             kFunctions.count(k.text) || kGreek.count(k.text);
    return false;
  }

  Expr product() {
    Depth d(*this);
    std::vector<Expr> factors{unary()};
    for (;;) {
      if (is_char("*") || is_cmd("cdot") || is_cmd("times")) {
        ++p_;
        factors.push_back(unary());
      } else if (is_char("/") || is_cmd("div")) {
        ++p_;
        Expr den = unary();
        Expr num = factors.size() == 1 ? factors[0] : node(Expr::Mul, factors);
        factors = {node(Expr::Div, {num, den})};
      } else if (starts_atom() && !(is_char("|") && abs_open_)) {
        factors.push_back(power());
      } else {
        break;
      }
    }
    return factors.size() == 1 ? factors[0] : node(Expr::Mul, factors);
  }

  Expr unary() {
    Depth d(*this);
    if (is_char("-")) {
      ++p_;
      return node(Expr::Neg, {unary()});
    }
    if (is_char("+")) {
      ++p_;
      return unary();
    }
    return power();
  }

  Expr exponent() {
    if (is_char("{")) return group("{", "}");
    if (is_char("-")) {
      ++p_;
      return node(Expr::Neg, {exponent()});
    }
    return postfix();
  }

  Expr power() {
    Depth d(*this);
    Expr base = postfix();
    if (is_char("^")) {
      ++p_;
      Expr ex = exponent();
      if (is_char("^")) {  // a^b^c = a^(b^c)
        ++p_;
        ex = node(Expr::Pow, {ex, exponent()});
      }
      return node(Expr::Pow, {base, ex});
    }
    return base;
  }

  Expr postfix() {
    Expr a = atom();
    while (is_char("!")) {
      ++p_;
      a = node(Expr::Factorial, {a});
    }
    return a;
  }

  Expr group(const char* open, const char* close) {
    expect_char(open);
    bool saved = abs_open_;
    abs_open_ = false;
    Expr e = sum();
    abs_open_ = saved;
    expect_char(close);
    return e;
  }

  // The argument of \sin, \log, ...: a parenthesised group, or one factor with its power ("\sin 2x" is
  // sin(2x): the implicit product that follows is absorbed, as readers do).
  Expr function_argument() {
    if (is_char("(")) return group("(", ")");
    if (is_char("{")) return group("{", "}");
    std::vector<Expr> f{power()};
    while ((peek().kind == Token::Num || peek().kind == Token::Letter) && f.size() < 4) f.push_back(power());
    return f.size() == 1 ? f[0] : node(Expr::Mul, f);
  }

  Expr atom() {
    Depth d(*this);
    const Token k = peek();
    if (k.kind == Token::Num) {
      ++p_;
      if (is_char("_")) throw ParseError{};  // 204_5: a numeral in another base, compared as text
      return node(Expr::Number, {}, k.text);
    }
    if (k.kind == Token::Letter) {
      ++p_;
      std::string name = k.text;
      if (is_char("_")) {  // x_1, a_{n}
        ++p_;
        if (peek().kind == Token::Num || peek().kind == Token::Letter) {
          name += "_" + peek().text;
          ++p_;
        } else {
          throw ParseError{};
        }
      }
      const bool bound = std::find(bound_.begin(), bound_.end(), name) != bound_.end();  // \sum_{i=0}
      if (name == "i" && !bound) return node(Expr::I);
      if (name == "e" && !bound) return node(Expr::E);
      return node(Expr::Symbol, {}, name);
    }
    if (k.kind == Token::Char) {
      if (k.text == "(") return group("(", ")");
      if (k.text == "{") return group("{", "}");
      if (k.text == "[") return group("[", "]");
      if (k.text == "|" && !abs_open_) {
        ++p_;
        abs_open_ = true;
        Expr inner = sum();
        abs_open_ = false;
        expect_char("|");
        return node(Expr::Func, {inner}, "abs");
      }
      throw ParseError{};
    }
    if (k.kind == Token::Cmd) {
      ++p_;
      if (k.text == "frac") {
        Expr a = group("{", "}");
        Expr b = group("{", "}");
        return node(Expr::Div, {a, b});
      }
      if (k.text == "binom") {
        Expr a = group("{", "}");
        Expr b = group("{", "}");
        return node(Expr::Func, {a, b}, "binom");
      }
      if (k.text == "sqrt") {
        if (is_char("[")) {
          Expr n = group("[", "]");
          Expr x = group("{", "}");
          return node(Expr::Func, {x, n}, "root");
        }
        return node(Expr::Func, {group("{", "}")}, "sqrt");
      }
      if (k.text == "text") return group("{", "}");  // \text{...} inside an expression: its content
      if (k.text == "sum" || k.text == "prod") return big_operator(k.text);
      if (k.text == "pi") return node(Expr::Pi);
      if (k.text == "infty") return node(Expr::Infinity);
      if (kGreek.count(k.text)) return node(Expr::Symbol, {}, k.text);
      if (kFunctions.count(k.text)) {
        std::optional<Expr> power_of;  // \sin^2 x = (\sin x)^2
        std::optional<Expr> base;      // \log_2 8
        if (k.text == "log" && is_char("_")) {
          ++p_;
          base = is_char("{") ? group("{", "}") : postfix();
        }
        if (is_char("^")) {
          ++p_;
          power_of = exponent();
        }
        Expr arg = function_argument();
        Expr f = base ? node(Expr::Div, {node(Expr::Func, {arg}, "ln"), node(Expr::Func, {*base}, "ln")})
                      : node(Expr::Func, {arg}, k.text == "log" ? "ln" : k.text);
        return power_of ? node(Expr::Pow, {f, *power_of}) : f;
      }
    }
    throw ParseError{};
  }

  // \sum_{k=1}^{10} k^2: {variable, lower, upper, body}; the body is the product that follows.
  Expr big_operator(const std::string& op) {
    expect_char("_");
    expect_char("{");
    if (peek().kind != Token::Letter) throw ParseError{};
    Expr var = node(Expr::Symbol, {}, peek().text);
    ++p_;
    expect_char("=");
    Expr lo = sum();
    expect_char("}");
    expect_char("^");
    Expr hi = is_char("{") ? group("{", "}") : postfix();
    bound_.push_back(var.text);
    Expr body = product();
    bound_.pop_back();
    return node(Expr::Func, {var, lo, hi, body}, op);
  }

  bool abs_open_ = false;
  std::vector<std::string> bound_;  // summation variables in scope: "i" there is not the imaginary unit
};

}  // namespace

std::optional<Expr> parse_latex(const std::string& s, const ParseLimits& lim) {
  if (s.empty() || s.size() > lim.max_chars) return std::nullopt;
  bool ok = true;
  std::vector<Token> t = tokenize(s, ok);
  if (!ok) return std::nullopt;
  try {
    return Parser(std::move(t), lim).parse();
  } catch (const ParseError&) {
    return std::nullopt;
  }
}

void collect_symbols(const Expr& e, std::vector<std::string>& out) {
  if (e.kind == Expr::Symbol && std::find(out.begin(), out.end(), e.text) == out.end()) out.push_back(e.text);
  if (is_big_operator(e)) {  // the summation variable is bound: only the bounds, and the body's others
    collect_symbols(e.kids[1], out);
    collect_symbols(e.kids[2], out);
    std::vector<std::string> inner;
    collect_symbols(e.kids[3], inner);
    for (const std::string& s : inner)
      if (s != e.kids[0].text && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    return;
  }
  for (const Expr& k : e.kids) collect_symbols(k, out);
}

bool contains_infinity(const Expr& e) {
  if (e.kind == Expr::Infinity) return true;
  for (const Expr& k : e.kids)
    if (contains_infinity(k)) return true;
  return false;
}

}  // namespace r1::reward
