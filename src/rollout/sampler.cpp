#include "rollout/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/error.h"
#include "base/rng.h"

namespace r1::rollout {

double sample_uniform(uint64_t seed, int64_t prompt, int64_t sample, int64_t step) {
  uint32_t r[4];
  const uint64_t hi = (uint64_t(uint32_t(prompt)) << 32) | uint32_t(sample);
  Philox::generate(seed, hi, uint64_t(step), r);
  return uniform53(r);
}

void check_sampling(const SamplingParams& p) {
  R1_CHECK(p.temperature >= 0 && p.top_p > 0 && p.top_p <= 1 && p.top_k >= 0,
           "sampling: temperature must be >= 0, top_p in (0, 1], top_k >= 0 (got {}, {}, {})", p.temperature,
           p.top_p, p.top_k);
}

Draw sample_token(const float* logits, int64_t V, const SamplingParams& p, double u,
                  std::vector<float>& scratch) {
  R1_CHECK(V > 0, "sample_token: empty vocabulary");
  check_sampling(p);
  const bool greedy = p.temperature == 0.0f;
  const double inv_t = greedy ? 1.0 : 1.0 / double(p.temperature);
  // Log-sum-exp of the tempered logits, for the reported log-prob.
  float mx = logits[0];
  int64_t argmax = 0;
  for (int64_t i = 1; i < V; ++i)
    if (logits[i] > mx) mx = logits[argmax = i];
  double sum = 0;
  scratch.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) {
    const float e = float(std::exp((double(logits[i]) - mx) * inv_t));
    scratch[size_t(i)] = e;
    sum += e;
  }
  const double log_z = double(mx) * inv_t + std::log(sum);
  auto logprob_of = [&](int64_t t) { return float(double(logits[t]) * inv_t - log_z); };
  if (greedy) return {int32_t(argmax), logprob_of(argmax)};

  // Truncation keeps a set of tokens; the draw below runs over it in id order either way.
  double mass = sum;
  if ((p.top_k > 0 && p.top_k < V) || p.top_p < 1.0f) {
    // The kept set, in probability order (ties by id, so it is deterministic): the top-k, then
    // within it the smallest prefix whose probability reaches top_p of its mass (as HF applies them).
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    auto by_prob = [&](int32_t a, int32_t b) {
      return scratch[size_t(a)] != scratch[size_t(b)] ? scratch[size_t(a)] > scratch[size_t(b)] : a < b;
    };
    int64_t keep = V;
    if (p.top_k > 0 && p.top_k < V) {
      keep = p.top_k;
      std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_prob);
    } else {
      std::sort(order.begin(), order.end(), by_prob);
    }
    if (p.top_p < 1.0f) {
      double kept = 0;
      for (int64_t i = 0; i < keep; ++i) kept += scratch[size_t(order[size_t(i)])];
      double acc = 0;
      for (int64_t i = 0; i < keep; ++i) {
        acc += scratch[size_t(order[size_t(i)])];
        if (acc >= double(p.top_p) * kept) {
          keep = i + 1;
          break;
        }
      }
    }
    for (int64_t i = keep; i < V; ++i) scratch[size_t(order[size_t(i)])] = 0.0f;
    mass = 0;
    for (int64_t i = 0; i < V; ++i) mass += scratch[size_t(i)];
  }
  // The distribution sampled from: the kept tokens' share of the tempered mass taken out.
  const double log_kept = p.sampled_logprobs && mass != sum ? std::log(mass / sum) : 0.0;
  auto drawn = [&](int64_t t) -> Draw { return {int32_t(t), float(double(logprob_of(t)) - log_kept)}; };

  // Inverse CDF in id order (not probability order): the same law, and a parallel prefix sum over
  // ids (the GPU sampler) reproduces it.
  const double target = u * mass;
  double acc = 0;
  int64_t last_nonzero = argmax;  // always kept
  for (int64_t i = 0; i < V; ++i) {
    if (scratch[size_t(i)] <= 0) continue;
    acc += scratch[size_t(i)];
    last_nonzero = i;
    if (acc > target) return drawn(i);
  }
  return drawn(last_nonzero);  // rounding at the very top
}

}  // namespace r1::rollout
