#pragma once
// Math accuracy: 1 when the extracted final answer is equivalent to the gold answer, else 0.
#include "reward/format_reward.h"
#include "reward/math_equivalence.h"
#include "reward/math_extract.h"
#include "reward/reward.h"

namespace r1::reward {

struct MathOptions {
  ExtractOptions extract;
  EquivalenceOptions equivalence;
  // Reward-hacking guard: no accuracy credit unless the output format holds.
  bool require_format = false;
  FormatOptions format;
};

class MathReward : public Reward {
 public:
  explicit MathReward(MathOptions o = {});
  std::string name() const override { return "math"; }
  Result score(const Sample& s) const override;

 private:
  MathOptions o_;
};

}  // namespace r1::reward
