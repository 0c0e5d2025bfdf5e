#include "reward/math_equivalence.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>

#include "reward/latex_normalize.h"
#include "reward/latex_to_ginac.h"
#include "reward/math_expr.h"
#include "reward/pattern.h"
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

// Unordered: every gold item matched by a distinct predicted item, a perfect bipartite matching found
// by augmenting paths (Kuhn): at most n^2 equivalence checks (each once) and n^3 steps. Backtracking
// over the items was factorial when many are alike and one is not (the math_answer fuzzer found a
// completion that hung: MathLongInput.SetsOfAlikeItemsMatchInPolynomialTime).
bool match_all(const std::vector<Answer>& g, const std::vector<Answer>& p, const EquivalenceOptions& o) {
  if (g.size() != p.size()) return false;
  const size_t n = g.size();
  std::vector<std::vector<int>> eq(n, std::vector<int>(n, -1));
  auto equal = [&](size_t i, size_t j) {
    if (eq[i][j] < 0) eq[i][j] = equivalent(g[i], p[j], o).equal ? 1 : 0;
    return eq[i][j] == 1;
  };
  std::vector<size_t> owner(n, n);  // the gold item each predicted item is matched to; n: none yet
  std::vector<bool> seen;           // predicted items visited by this augmenting search
  std::function<bool(size_t)> augment = [&](size_t i) {
    for (size_t j = 0; j < n; ++j) {
      if (seen[j] || !equal(i, j)) continue;
      seen[j] = true;
      if (owner[j] == n || augment(owner[j])) {
        owner[j] = i;
        return true;
      }
    }
    return false;
  };
  for (size_t i = 0; i < n; ++i) {
    seen.assign(n, false);
    if (!augment(i)) return false;  // no matching covers gold item i with the ones before it
  }
  return true;
}

Answer scalar(const std::string& text) {
  Answer a;
  a.text = text;
  return a;
}

bool pairwise(const std::vector<Answer>& g, const std::vector<Answer>& p, const EquivalenceOptions& o) {
  if (g.size() != p.size()) return false;
  for (size_t i = 0; i < g.size(); ++i)
    if (!equivalent(g[i], p[i], o).equal) return false;
  return true;
}

// A labelled list's values in tuple order: its own ("(p,q) = (3,2)"), or the question's; nullopt
// when neither is known (the labels alone do not say which value comes first).
std::optional<std::vector<Answer>> in_tuple_order(const Answer& l, const EquivalenceOptions& o) {
  if (l.ordered_labels) return l.items;
  if (o.label_order.size() != l.items.size()) return std::nullopt;
  std::vector<Answer> out;
  for (const std::string& name : o.label_order) {
    auto it = std::find_if(l.items.begin(), l.items.end(), [&](const Answer& a) { return a.label == name; });
    if (it == l.items.end()) return std::nullopt;
    out.push_back(*it);
  }
  return out;
}

bool is_vector(const Answer& m) { return m.kind == Answer::Matrix && (m.rows == 1 || m.cols == 1); }
bool is_tuple(const Answer& a) { return a.kind == Answer::Sequence && a.open == '(' && a.close == ')'; }

// Answers of different kinds that still say the same: a labelled list against a tuple or a set,
// an equation against "y = ...", a column vector against a tuple, a ratio against its value.
std::optional<Decision> across_kinds(const Answer& g, const Answer& p, const EquivalenceOptions& o) {
  for (int flip = 0; flip < 2; ++flip) {
    const Answer& a = flip ? p : g;  // compare(a, b) keeps gold first
    const Answer& b = flip ? g : p;
    auto same = [&](const Answer& x, const Answer& y) {
      return flip ? equivalent(y, x, o) : equivalent(x, y, o);
    };
    auto all_same = [&](const std::vector<Answer>& x, const std::vector<Answer>& y) {
      return flip ? pairwise(y, x, o) : pairwise(x, y, o);
    };
    if (a.kind == Answer::Labelled && is_tuple(b)) {
      auto ordered = in_tuple_order(a, o);
      if (!ordered) return no("labels", "the order of the labelled values is not known");
      return all_same(*ordered, b.items) ? yes("labels") : no("labels", "labelled values differ");
    }
    if (a.kind == Answer::Labelled && (b.kind == Answer::Set || b.kind == Answer::Union))
      return (flip ? match_all(b.items, a.items, o) : match_all(a.items, b.items, o))
                 ? yes("labels")
                 : no("labels", "values differ");
    if (a.kind == Answer::Equation && b.kind == Answer::Scalar && !b.label.empty()) {
      Answer eq;
      eq.kind = Answer::Equation;
      eq.items = {scalar(b.label), scalar(b.text)};
      return flip ? equation_equal(eq, a, o) : equation_equal(a, eq, o);
    }
    if (is_vector(a) && is_tuple(b))
      return all_same(a.items, b.items) ? yes("structure") : no("structure", "vector entries differ");
    if (a.kind == Answer::Ratio && b.kind == Answer::Scalar && a.items.size() == 2)
      return same(scalar("\\frac{" + a.items[0].text + "}{" + a.items[1].text + "}"), b);
  }
  return std::nullopt;
}

// Same labels (in any order), each with an equivalent value.
Decision labelled_equal(const Answer& g, const Answer& p, const EquivalenceOptions& o) {
  if (g.items.size() != p.items.size()) return no("labels", "different numbers of labelled values");
  for (const Answer& gi : g.items) {
    auto it =
        std::find_if(p.items.begin(), p.items.end(), [&](const Answer& x) { return x.label == gi.label; });
    if (it == p.items.end()) return no("labels", "no value for " + gi.label);
    if (!equivalent(gi, *it, o).equal) return no("labels", "the value of " + gi.label + " differs");
  }
  return yes("labels");
}

// Whether "A \approx B" is honest: B is A rounded to B's decimals (so B may stand for the answer).
bool rounds_to(const std::string& a, const std::string& b) {
  auto ea = parse_latex(a), eb = parse_latex(b);
  if (!ea || !eb) return false;
  auto va = evaluate(*ea, {}), vb = evaluate(*eb, {});
  if (!va || !vb || va->imag() != 0 || vb->imag() != 0) return false;
  size_t dot = b.find('.');
  const int decimals = dot == std::string::npos ? 0 : int(b.size() - dot - 1);
  return std::abs(va->real() - vb->real()) <= 0.5 * std::pow(10.0, -decimals) * (1 + 1e-9);
}

Decision as_written(const Answer& g, const Answer& p, const EquivalenceOptions& o);

}  // namespace

Decision equivalent(const Answer& g, const Answer& p, const EquivalenceOptions& o) {
  Decision d = as_written(g, p, o);
  // "2\sqrt{2} \approx 2.83" against the gold 2.83: the approximation counts when it is the value rounded.
  if (!d.equal && !p.approx.empty() && p.kind == Answer::Scalar && rounds_to(p.text, p.approx) &&
      equivalent(g, parse_answer(p.approx), o).equal)
    return yes("approx");
  return d;
}

namespace {

Decision as_written(const Answer& g, const Answer& p, const EquivalenceOptions& o) {
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
  if (g.kind != p.kind) {
    if (auto d = across_kinds(g, p, o)) return *d;
    return no("structure", std::string("kinds differ: ") + kind_name(g.kind) + " vs " + kind_name(p.kind));
  }
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
    case Answer::Relation:
      if (g.ops != p.ops) return no("structure", "relations differ");
      return pairwise(g.items, p.items, o) ? yes("structure") : no("structure", "operands differ");
    case Answer::Ratio:
      return pairwise(g.items, p.items, o) ? yes("structure") : no("structure", "ratio terms differ");
    case Answer::Labelled:
      return labelled_equal(g, p, o);
    default: break;
  }
  return no("structure", "unhandled kind");
}

}  // namespace

std::vector<std::string> label_order_in(const std::string& question) {
  static const Pattern tuple(
      R"(\(\s*((?:\\?[A-Za-z]+(?:_[A-Za-z0-9])?)(?:\s*,\s*\\?[A-Za-z]+(?:_[A-Za-z0-9])?)+)\s*\))");
  std::vector<std::string> order;
  size_t from = 0;
  while (auto m = tuple.find(question, from)) {
    order.clear();
    for (const std::string& name : split_top(m->group(1), ",")) order.push_back(label_key(name));
    from = m->end();
  }
  return order;
}

Decision equivalent(const std::string& gold, const std::string& pred, const EquivalenceOptions& o) {
  std::string g = normalize_latex(gold), p = normalize_latex(pred);
  if (no_spaces(g) == no_spaces(p) && !g.empty()) return yes("exact");
  return equivalent(parse_answer(g), parse_answer(p), o);
}

}  // namespace r1::reward
