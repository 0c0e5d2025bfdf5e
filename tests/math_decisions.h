// Options for tests of the math verifier's decisions at scale (real datasets, every answer form).
#pragma once

#include "reward/math_reward.h"

namespace r1::test {

// These tests check what the verifier decides, not its deadline (test_reward_math.cpp tests that a
// symbolic check past it scores 0): here a check that ran out of time would read as a wrong
// decision. The sanitizer stage runs them ~10x slower, on a machine that may be busy, so the
// deadline is far away.
inline reward::MathOptions math_decisions_only() {
  reward::MathOptions o;
  o.equivalence.symbolic_timeout_ms = 120000;
  return o;
}

}  // namespace r1::test
