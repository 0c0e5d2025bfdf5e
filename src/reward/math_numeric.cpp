// Numeric evaluation of an Expr in complex doubles: the fast check that decides almost every answer
// without GiNaC, and the random-point screen in front of the symbolic check.
#include <algorithm>
#include <cmath>

#include "reward/math_expr.h"

namespace r1::reward {
namespace {

using C = std::complex<double>;

std::optional<C> eval(const Expr& e, const std::map<std::string, C>& at);

// \sum_{k=lo}^{hi} body (or \prod) with integer bounds, term by term.
std::optional<C> big_operator(const Expr& e, const std::map<std::string, C>& at) {
  auto lo = eval(e.kids[1], at), hi = eval(e.kids[2], at);
  if (!lo || !hi || lo->imag() != 0 || hi->imag() != 0) return std::nullopt;
  const double a = lo->real(), b = hi->real();
  if (a != std::round(a) || b != std::round(b) || b - a >= double(kMaxSumTerms)) return std::nullopt;
  const bool sum = e.text == "sum";
  C acc = sum ? C(0) : C(1);
  std::map<std::string, C> inner = at;
  for (double k = a; k <= b; ++k) {
    inner[e.kids[0].text] = C(k, 0);
    auto term = eval(e.kids[3], inner);
    if (!term) return std::nullopt;
    acc = sum ? acc + *term : acc * *term;
  }
  return acc;
}

std::optional<C> eval(const Expr& e, const std::map<std::string, C>& at) {
  if (is_big_operator(e)) return big_operator(e, at);
  std::vector<C> v;
  for (const Expr& k : e.kids) {
    auto x = eval(k, at);
    if (!x) return std::nullopt;
    v.push_back(*x);
  }
  switch (e.kind) {
    case Expr::Number: return C(std::strtod(e.text.c_str(), nullptr), 0);
    case Expr::Symbol: {
      auto it = at.find(e.text);
      if (it == at.end()) return std::nullopt;
      return it->second;
    }
    case Expr::Pi: return C(M_PI, 0);
    case Expr::E: return C(M_E, 0);
    case Expr::I: return C(0, 1);
    case Expr::Infinity: return std::nullopt;  // compared structurally, never numerically
    case Expr::Add: {
      C s = 0;
      for (C x : v) s += x;
      return s;
    }
    case Expr::Mul: {
      C s = 1;
      for (C x : v) s *= x;
      return s;
    }
    case Expr::Div:
      if (v[1] == C(0)) return std::nullopt;
      return v[0] / v[1];
    case Expr::Neg: return -v[0];
    case Expr::Pow: {
      // Real base and integer exponent stay exact-ish and real ((-8)^(1/3) is taken as the real root
      // below for roots, but a general complex power otherwise).
      if (v[1].imag() == 0 && v[1].real() == std::round(v[1].real()) && std::abs(v[1].real()) < 1e6)
        return std::pow(v[0], int(v[1].real()));
      if (v[0].imag() == 0 && v[0].real() > 0 && v[1].imag() == 0) return C(std::pow(v[0].real(), v[1].real()), 0);
      return std::pow(v[0], v[1]);
    }
    case Expr::Factorial: {
      if (v[0].imag() != 0 || v[0].real() < 0 || v[0].real() != std::round(v[0].real()) || v[0].real() > 170)
        return std::nullopt;
      return C(std::tgamma(v[0].real() + 1), 0);
    }
    case Expr::Func: {
      const std::string& f = e.text;
      C x = v[0];
      if (f == "sqrt") return std::sqrt(x);
      if (f == "root") {  // odd roots of negative reals are real, as in \sqrt[3]{-8} = -2
        double n = v[1].real();
        if (x.imag() == 0 && x.real() < 0 && n == std::round(n) && int(n) % 2 == 1)
          return C(-std::pow(-x.real(), 1.0 / n), 0);
        return std::pow(x, 1.0 / v[1]);
      }
      if (f == "abs") return C(std::abs(x), 0);
      if (f == "sin") return std::sin(x);
      if (f == "cos") return std::cos(x);
      if (f == "tan") return std::tan(x);
      if (f == "cot") return 1.0 / std::tan(x);
      if (f == "sec") return 1.0 / std::cos(x);
      if (f == "csc") return 1.0 / std::sin(x);
      if (f == "arcsin") return std::asin(x);
      if (f == "arccos") return std::acos(x);
      if (f == "arctan") return std::atan(x);
      if (f == "sinh") return std::sinh(x);
      if (f == "cosh") return std::cosh(x);
      if (f == "tanh") return std::tanh(x);
      if (f == "ln") return x == C(0) ? std::optional<C>() : std::log(x);
      if (f == "exp") return std::exp(x);
      if (f == "binom") {
        double n = x.real(), k = v[1].real();
        if (x.imag() != 0 || v[1].imag() != 0 || k < 0 || n < k || k != std::round(k) || n > 1e6)
          return std::nullopt;
        return C(std::round(std::exp(std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1))), 0);
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::complex<double>> evaluate(const Expr& e, const std::map<std::string, std::complex<double>>& at) {
  auto v = eval(e, at);
  if (!v || !std::isfinite(v->real()) || !std::isfinite(v->imag())) return std::nullopt;
  return v;
}

}  // namespace r1::reward
