#include "reward/latex_to_ginac.h"

#include <stdexcept>

namespace r1::reward {

using GiNaC::ex;
using GiNaC::numeric;

namespace {

// Decimal literals become exact rationals: "0.0000672" = 672/10^7 (numeric("0.0000672") would float).
ex exact_number(const std::string& lit) {
  std::string digits;
  int frac = -1;
  for (char c : lit) {
    if (c == '.') frac = 0;
    else {
      digits += c;
      if (frac >= 0) ++frac;
    }
  }
  if (digits.size() > 80) throw std::runtime_error("number too long");
  ex n = numeric(digits.c_str());
  if (frac > 0) n = n / GiNaC::pow(numeric(10), frac);
  return n;
}

}  // namespace

ex to_ginac(const Expr& e, std::map<std::string, GiNaC::symbol>& symbols) {
  std::vector<ex> v;
  for (const Expr& k : e.kids) v.push_back(to_ginac(k, symbols));
  switch (e.kind) {
    case Expr::Number: return exact_number(e.text);
    case Expr::Symbol: {
      auto it = symbols.find(e.text);
      if (it == symbols.end()) it = symbols.emplace(e.text, GiNaC::symbol(e.text)).first;
      return it->second;
    }
    case Expr::Pi: return GiNaC::Pi;
    case Expr::E: return GiNaC::exp(ex(1));
    case Expr::I: return GiNaC::I;
    case Expr::Infinity: throw std::runtime_error("infinity is compared structurally");
    case Expr::Add: {
      ex s = 0;
      for (const ex& x : v) s += x;
      return s;
    }
    case Expr::Mul: {
      ex s = 1;
      for (const ex& x : v) s *= x;
      return s;
    }
    case Expr::Div: return v[0] / v[1];
    case Expr::Neg: return -v[0];
    case Expr::Pow: {
      // 2^{10^{10}} would try to build a ten-billion-bit integer.
      if (GiNaC::is_a<numeric>(v[1]) && GiNaC::abs(GiNaC::ex_to<numeric>(v[1])) > 10000)
        throw std::runtime_error("exponent too large");
      return GiNaC::pow(v[0], v[1]);
    }
    case Expr::Factorial: {
      if (GiNaC::is_a<numeric>(v[0]) && GiNaC::abs(GiNaC::ex_to<numeric>(v[0])) > 2000)
        throw std::runtime_error("factorial too large");
      return GiNaC::factorial(v[0]);
    }
    case Expr::Func: {
      const std::string& f = e.text;
      const ex& x = v[0];
      if (f == "sqrt") return GiNaC::pow(x, ex(numeric(1, 2)));
      if (f == "root") return GiNaC::pow(x, 1 / v[1]);
      if (f == "abs") return GiNaC::abs(x);
      if (f == "sin") return GiNaC::sin(x);
      if (f == "cos") return GiNaC::cos(x);
      // Tangent-family functions in sines and cosines, so normal() can cancel them against each other.
      if (f == "tan") return GiNaC::sin(x) / GiNaC::cos(x);
      if (f == "cot") return GiNaC::cos(x) / GiNaC::sin(x);
      if (f == "sec") return 1 / GiNaC::cos(x);
      if (f == "csc") return 1 / GiNaC::sin(x);
      if (f == "arcsin") return GiNaC::asin(x);
      if (f == "arccos") return GiNaC::acos(x);
      if (f == "arctan") return GiNaC::atan(x);
      if (f == "sinh") return GiNaC::sinh(x);
      if (f == "cosh") return GiNaC::cosh(x);
      if (f == "tanh") return GiNaC::tanh(x);
      if (f == "ln") return GiNaC::log(x);
      if (f == "exp") return GiNaC::exp(x);
      if (f == "binom") return GiNaC::binomial(x, v[1]);
      throw std::runtime_error("unknown function " + f);
    }
  }
  throw std::runtime_error("unknown expression kind");
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Equal: return "equal";
    case Verdict::NotEqual: return "not equal";
    case Verdict::Timeout: return "timeout";
    case Verdict::Error: return "error";
  }
  return "?";
}

}  // namespace r1::reward
