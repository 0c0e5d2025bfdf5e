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

// Threads that score at once. The symbolic check forks (reward/symbolic_check.cpp); in the
// sanitizer stage's build (GCC 12's ASan, whose allocator takes no locks around fork) a child
// forked while another scoring thread held the allocator's lock waited forever: a trivial check
// ('p - q' against '- q+p') ran into its deadline twice, at random. glibc's own malloc is safe
// across fork, so the other builds score on two threads, as training does.
#ifdef R1_SANITIZED
inline constexpr int kScoreThreads = 1;
#else
inline constexpr int kScoreThreads = 2;
#endif

}  // namespace r1::test
