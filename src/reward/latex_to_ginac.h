#pragma once
// The symbolic check: Expr → GiNaC, then normal(expand(a − b)) == 0. GiNaC is not thread-safe and
// its simplification can run for ever on adversarial input, so the check runs in a forked child with
// a wall-clock deadline: a hang or crash there costs the child, never the trainer.
#include <ginac/ginac.h>

#include <map>
#include <string>

#include "reward/math_expr.h"

namespace r1::reward {

// Throws std::runtime_error for what GiNaC cannot or should not hold (infinity, huge powers).
GiNaC::ex to_ginac(const Expr& e, std::map<std::string, GiNaC::symbol>& symbols);

// Sines and cosines of arguments linear in the symbols (with rational coefficients), written as
// rational functions of z = exp(i·x/q): sin(u) = (E − 1/E)/2i, cos(u) = (E + 1/E)/2 with E = exp(i·u).
// Trigonometric identities (tan² y + 1 = sec² y, sin 2x = 2 sin x cos x) become rational identities
// that normal() decides exactly. Other functions are left as they are.
GiNaC::ex trig_as_exponentials(const GiNaC::ex& e);

enum class Verdict { Equal, NotEqual, Timeout, Error };
const char* verdict_name(Verdict v);

// proportional: equations a = 0 and b = 0 are the same when a/b is a nonzero constant.
Verdict symbolic_check(const Expr& a, const Expr& b, bool proportional, int timeout_ms);

}  // namespace r1::reward
