#pragma once
// A small expression tree for normalised LaTeX answers. One parse feeds both checks: the numeric one
// (complex doubles, in-process, thread-safe) and the symbolic one (GiNaC, in a child process).
#include <complex>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace r1::reward {

struct Expr {
  enum Kind { Number, Symbol, Pi, E, I, Infinity, Add, Mul, Div, Pow, Neg, Func, Factorial };
  Kind kind = Number;
  std::string text;  // Number: decimal literal; Symbol: name; Func: sin, cos, ..., sqrt, abs, sum, prod
  std::vector<Expr> kids;
};

struct ParseLimits {
  size_t max_chars = 400;
  int max_depth = 40;
  int max_nodes = 400;
};

// Parses one scalar expression (no commas, no '='); nullopt when it is not one, or exceeds the limits.
std::optional<Expr> parse_latex(const std::string& s, const ParseLimits& lim = {});

// Names of the free symbols in e.
void collect_symbols(const Expr& e, std::vector<std::string>& out);

// Value of e with symbols set from `at` (missing symbols are an error: nullopt).
std::optional<std::complex<double>> evaluate(const Expr& e, const std::map<std::string, std::complex<double>>& at);

bool contains_infinity(const Expr& e);

// \sum or \prod: Func "sum" / "prod" with kids {variable, lower bound, upper bound, body}.
inline bool is_big_operator(const Expr& e) {
  return e.kind == Expr::Func && (e.text == "sum" || e.text == "prod");
}
constexpr long kMaxSumTerms = 100000;  // a sum with more terms is not evaluated

}  // namespace r1::reward
