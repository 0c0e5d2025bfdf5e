#include "reward/math_equivalence.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "reward/latex_normalize.h"
#include "reward/latex_to_ginac.h"
#include "reward/math_expr.h"
#include "reward/reward.h"

namespace r1::reward {
namespace {

using C = std::complex<double>;

std::string no_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

bool integral(C a) { return a.imag() == 0 && std::abs(a.real()) < 9e15 && a.real() == std::round(a.real()); }

bool close_enough(C a, C b, double rel_tol) {
  // Two integers are equal or not: 11111111100 and 11111111101 are within any relative tolerance.
  if (integral(a) && integral(b)) return a == b;
  double scale = std::max(std::abs(a), std::abs(b));
  if (scale < 1e-300) return true;
  return std::abs(a - b) <= rel_tol * scale;
}

Decision yes(const char* check) { return {true, check, ""}; }
Decision no(const char* check, std::string reason) { return {false, check, std::move(reason)}; }

// Values for free symbols: irrational-looking, distinct per symbol and point, inside the usual domains
// (positive, below 1 for arcsin) so both sides evaluate.
std::map<std::string, C> point(const std::vector<std::string>& syms, int k) {
  std::map<std::string, C> at;
  for (size_t i = 0; i < syms.size(); ++i)
    at[syms[i]] = C(0.3137 + 0.1713 * double(k) + 0.0731 * double(i) + 0.0101 * double(k * i), 0);
  return at;
}

Decision scalar_equal(const std::string& g, const std::string& p, const EquivalenceOptions& o, bool equation) {
  if (!equation && no_spaces(g) == no_spaces(p)) return yes("exact");
  if (g.find("\\infty") != std::string::npos || p.find("\\infty") != std::string::npos)
    return no("exact", "infinities differ");
  auto eg = parse_latex(g), ep = parse_latex(p);
  if (!eg || !ep) {
    counters().parse_failures++;
    return no("parse", std::string("cannot parse ") + (!eg ? "gold '" + g + "'" : "answer '" + p + "'"));
  }
  std::vector<std::string> syms;
  collect_symbols(*eg, syms);
  collect_symbols(*ep, syms);
  if (syms.empty() && !equation) {
    auto vg = evaluate(*eg, {}), vp = evaluate(*ep, {});
    if (!vg || !vp) return no("numeric", "cannot evaluate");
    return close_enough(*vg, *vp, o.rel_tol) ? yes("numeric") : no("numeric", "values differ");
  }
  // Screen at a few points: a difference there is a proof of inequality; agreement goes to GiNaC.
  std::optional<C> ratio;
  for (int k = 0; k < 3; ++k) {
    auto at = point(syms, k);
    auto vg = evaluate(*eg, at), vp = evaluate(*ep, at);
    if (!vg || !vp) continue;
    if (!equation) {
      if (!close_enough(*vg, *vp, o.rel_tol)) return no("points", "values differ at a sample point");
    } else if (std::abs(*vp) > 1e-12) {  // equations: lhs − rhs agree up to a constant factor
      C r = *vg / *vp;
      if (ratio && !close_enough(*ratio, r, o.rel_tol)) return no("points", "equations differ at a sample point");
      ratio = r;
    }
  }
  if (!o.symbolic) return no("points", "symbolic check disabled");
  Verdict v = symbolic_check(*eg, *ep, equation, o.symbolic_timeout_ms);
  if (v == Verdict::Equal) return yes("symbolic");
  return no("symbolic", std::string("symbolic: ") + verdict_name(v));
}

Decision equation_equal(const Answer& g, const Answer& p, const EquivalenceOptions& o) {
  auto diff = [](const Answer& e) { return "(" + e.items[0].text + ")-(" + e.items[1].text + ")"; };
  return scalar_equal(diff(g), diff(p), o, true);
}

// Unordered: every gold item matched by a distinct predicted item (backtracking; lists are short).
bool match_all(const std::vector<Answer>& g, const std::vector<Answer>& p, const EquivalenceOptions& o) {
  if (g.size() != p.size()) return false;
  std::vector<std::vector<int>> eq(g.size(), std::vector<int>(p.size(), -1));
  std::vector<bool> used(p.size(), false);
  std::function<bool(size_t)> go = [&](size_t i) {
    if (i == g.size()) return true;
    for (size_t j = 0; j < p.size(); ++j) {
      if (used[j]) continue;
      if (eq[i][j] < 0) eq[i][j] = equivalent(g[i], p[j], o).equal ? 1 : 0;
      if (eq[i][j] == 0) continue;
      used[j] = true;
      if (go(i + 1)) return true;
      used[j] = false;
    }
    return false;
  };
  return go(0);
}

}  // namespace

Decision equivalent(const Answer& g, const Answer& p, const EquivalenceOptions& o) {
  if (g.kind == Answer::Text || p.kind == Answer::Text) {
    auto key = [](const Answer& a) { return a.kind == Answer::Text ? a.text : text_key(a.text); };
    return key(g) == key(p) && !key(g).empty() ? yes("text") : no("text", "texts differ");
  }
  if (g.kind == Answer::Choice || p.kind == Answer::Choice)
    return g.kind == p.kind && g.text == p.text ? yes("choice") : no("choice", "choices differ");
  // A one-element set is its element ("x = 2" against "2").
  if ((g.kind == Answer::Set) != (p.kind == Answer::Set)) {
    const Answer& s = g.kind == Answer::Set ? g : p;
    const Answer& x = g.kind == Answer::Set ? p : g;
    if (s.items.size() == 1) return &s == &g ? equivalent(s.items[0], x, o) : equivalent(x, s.items[0], o);
  }
  if (g.kind != p.kind)
    return no("structure", std::string("kinds differ: ") + kind_name(g.kind) + " vs " + kind_name(p.kind));
  switch (g.kind) {
    case Answer::Scalar: return scalar_equal(g.text, p.text, o, false);
    case Answer::Equation: return equation_equal(g, p, o);
    case Answer::Sequence:
      if (g.open != p.open || g.close != p.close) return no("structure", "brackets differ (open/closed ends)");
      [[fallthrough]];
    case Answer::Matrix:
      if (g.items.size() != p.items.size() || g.rows != p.rows || g.cols != p.cols)
        return no("structure", "sizes differ");
      for (size_t i = 0; i < g.items.size(); ++i)
        if (!equivalent(g.items[i], p.items[i], o).equal)
          return no("structure", "element " + std::to_string(i + 1) + " differs");
      return yes("structure");
    case Answer::Set:
    case Answer::Union:
      return match_all(g.items, p.items, o) ? yes("structure") : no("structure", "elements differ");
    default: break;
  }
  return no("structure", "unhandled kind");
}

Decision equivalent(const std::string& gold, const std::string& pred, const EquivalenceOptions& o) {
  std::string g = normalize_latex(gold), p = normalize_latex(pred);
  if (no_spaces(g) == no_spaces(p) && !g.empty()) return yes("exact");
  return equivalent(parse_answer(g), parse_answer(p), o);
}

}  // namespace r1::reward
