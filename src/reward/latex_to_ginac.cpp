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

ex big_operator(const Expr& e, std::map<std::string, GiNaC::symbol>& symbols);

// \sum / \prod with integer bounds, expanded term by term (the variable is a symbol of its own).
ex big_operator(const Expr& e, std::map<std::string, GiNaC::symbol>& symbols) {
  ex lo = to_ginac(e.kids[1], symbols), hi = to_ginac(e.kids[2], symbols);
  if (!GiNaC::is_a<numeric>(lo) || !GiNaC::is_a<numeric>(hi) || !GiNaC::ex_to<numeric>(lo).is_integer() ||
      !GiNaC::ex_to<numeric>(hi).is_integer())
    throw std::runtime_error("a sum needs integer bounds");
  const long a = GiNaC::ex_to<numeric>(lo).to_long(), b = GiNaC::ex_to<numeric>(hi).to_long();
  if (b - a >= 2000) throw std::runtime_error("sum too long");
  std::map<std::string, GiNaC::symbol> inner = symbols;
  GiNaC::symbol k("k_bound");
  inner.insert_or_assign(e.kids[0].text, k);
  ex body = to_ginac(e.kids[3], inner);
  for (auto& [name, sym] : inner)  // symbols the body introduced are the caller's too
    if (name != e.kids[0].text) symbols.emplace(name, sym);
  ex acc = e.text == "sum" ? ex(0) : ex(1);
  for (long i = a; i <= b; ++i) acc = e.text == "sum" ? acc + body.subs(k == i) : acc * body.subs(k == i);
  return acc;
}

}  // namespace

ex to_ginac(const Expr& e, std::map<std::string, GiNaC::symbol>& symbols) {
  if (is_big_operator(e)) return big_operator(e, symbols);
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

namespace {

// The trigonometric arguments of e: each symbol's coefficients must be rational for the rewrite;
// the least common denominator per symbol sets its z = exp(i·x/q).
struct TrigArguments : GiNaC::map_function {
  std::map<GiNaC::ex, GiNaC::numeric, GiNaC::ex_is_less> denominator;  // symbol → lcm of denominators
  GiNaC::lst symbols_of(const ex& u) {
    GiNaC::lst out;
    for (GiNaC::const_preorder_iterator i = u.preorder_begin(); i != u.preorder_end(); ++i)
      if (GiNaC::is_a<GiNaC::symbol>(*i)) out.append(*i);
    out.sort();
    out.unique();
    return out;
  }
  // u = Σ a_s·s + c with rational a_s and c free of symbols; false otherwise.
  bool linear(const ex& u, std::map<GiNaC::ex, GiNaC::numeric, GiNaC::ex_is_less>& coeff, ex& c) {
    ex x = u.expand();
    c = x;
    for (const ex& s : symbols_of(x)) {
      ex a = x.coeff(s, 1);
      if (!GiNaC::is_a<numeric>(a) || !GiNaC::ex_to<numeric>(a).is_rational()) return false;
      coeff[s] = GiNaC::ex_to<numeric>(a);
      c -= a * s;
    }
    c = c.expand();
    for (const ex& s : symbols_of(x))
      if (c.has(s)) return false;
    return true;
  }
  ex operator()(const ex& e) override {
    if (GiNaC::is_the_function<GiNaC::sin_SERIAL>(e) || GiNaC::is_the_function<GiNaC::cos_SERIAL>(e)) {
      std::map<GiNaC::ex, GiNaC::numeric, GiNaC::ex_is_less> coeff;
      ex c;
      if (linear(e.op(0), coeff, c))
        for (const auto& [s, a] : coeff) {
          auto it = denominator.find(s);
          numeric d = a.denom();
          denominator[s] = it == denominator.end() ? d : GiNaC::lcm(it->second, d);
        }
    }
    return e.map(*this);
  }
};

struct TrigRewrite : GiNaC::map_function {
  TrigArguments& args;
  std::map<GiNaC::ex, GiNaC::symbol, GiNaC::ex_is_less> z;  // symbol → z standing for exp(i·s/q)
  explicit TrigRewrite(TrigArguments& a) : args(a) {}
  ex operator()(const ex& e) override {
    const bool is_sin = GiNaC::is_the_function<GiNaC::sin_SERIAL>(e),
               is_cos = GiNaC::is_the_function<GiNaC::cos_SERIAL>(e);
    if (!is_sin && !is_cos) return e.map(*this);
    std::map<GiNaC::ex, GiNaC::numeric, GiNaC::ex_is_less> coeff;
    ex c;
    if (!args.linear(e.op(0), coeff, c)) return e.map(*this);
    ex E = GiNaC::cos(c) + GiNaC::I * GiNaC::sin(c);
    for (const auto& [s, a] : coeff) {
      auto it = z.find(s);
      if (it == z.end())
        it = z.emplace(s, GiNaC::symbol("z_" + GiNaC::ex_to<GiNaC::symbol>(s).get_name())).first;
      E *= GiNaC::pow(it->second, a * args.denominator.at(s));
    }
    return is_sin ? (E - 1 / E) / (2 * GiNaC::I) : (E + 1 / E) / 2;
  }
};

}  // namespace

ex trig_as_exponentials(const ex& e) {
  TrigArguments args;
  args(e);
  TrigRewrite rewrite(args);
  return rewrite(e);
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
