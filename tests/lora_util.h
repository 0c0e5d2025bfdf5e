#pragma once
// LoRA adapters for the tests: on every linear, with A and B both random (B = 0, PEFT's start,
// would leave A without a gradient and the adapted model equal to the base).
#include <cstdint>
#include <vector>

#include "base/rng.h"
#include "model/transformer.h"

namespace r1::test {

// Rank 4, alpha 8, `dropout` on the adapters' input; every adapter weight uniform in [-0.2, 0.2].
inline void add_random_lora(model::Transformer& m, double dropout = 0.0, uint64_t seed = 17) {
  model::LoraConfig l;
  l.rank = 4;
  l.alpha = 8;
  l.dropout = dropout;
  l.targets = {"all-linear"};
  m.add_lora(l, 3);
  std::vector<float> a = m.adapter_host();
  Rng rng(seed);
  for (float& v : a) v = 0.2f * (float(rng.next_u32() % 2001) / 1000.0f - 1.0f);
  m.set_adapter(a.data());
}

}  // namespace r1::test
