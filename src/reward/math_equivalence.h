#pragma once
// Are two answers the same? Checked in order of cost: exact string (normalised), numeric (constant
// values at a relative precision), symbolic (GiNaC, with a deadline), and for structured answers the
// same chain element by element (tuples in order, sets as a matching, intervals with their ends).
#include <string>
#include <vector>

#include "reward/math_answer.h"

namespace r1::reward {

struct EquivalenceOptions {
  double rel_tol = 1e-6;          // numeric: |a − b| ≤ rel_tol · max(|a|, |b|)
  bool symbolic = true;           // GiNaC for expressions with free symbols
  int symbolic_timeout_ms = 3000; // wall-clock deadline of one symbolic check
  // The order of named values the question asks for ("Enter the ordered pair $(m,b)$" → m, b), so
  // "b = -13, m = \frac32" can be read as the tuple (\frac32, -13). Empty: such answers match only
  // tuples they name themselves, "(m,b) = (\frac32, -13)".
  std::vector<std::string> label_order;
};

// The last tuple of names in a question: "(p, q, r)" → {"p", "q", "r"}; empty when there is none.
std::vector<std::string> label_order_in(const std::string& question);

struct Decision {
  bool equal = false;
  std::string check;   // which check decided: exact, numeric, points, symbolic, text, choice, structure
  std::string reason;  // why not equal (or why no check could decide)
};

Decision equivalent(const std::string& gold, const std::string& pred, const EquivalenceOptions& o = {});

// The same on already-parsed answers.
Decision equivalent(const Answer& gold, const Answer& pred, const EquivalenceOptions& o);

}  // namespace r1::reward
