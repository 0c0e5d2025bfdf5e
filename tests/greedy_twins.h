#pragma once
// Greedy rollouts of the same requests by the CPU and the GPU twin (the rollout engine on each:
// paged cache, a prompt's blocks shared by its samples, captured decode graphs on the GPU), and how
// far the two agree: the tokens equal before each completion's first difference.
#include <cstdint>
#include <vector>

#include "base/rng.h"
#include "rollout/engine.h"
#include "twin_models.h"

namespace r1::test {

struct GreedyTwins {
  std::vector<r1::rollout::Request> requests;  // 4 random prompts of 5, 7, 9, 11 tokens, 2 samples each
  std::vector<r1::rollout::Completion> cpu, gpu;
  int matched = 0, total = 0;  // tokens equal before the first difference, tokens generated
};

inline GreedyTwins greedy_twins(const Pair& p, int max_new_tokens = 8) {
  GreedyTwins g;
  const int V = p.cpu.config().vocab_size;
  r1::Rng rng(4);
  for (int i = 0; i < 4; ++i) {
    r1::rollout::Request r;
    for (int t = 0; t < 5 + 2 * i; ++t) r.prompt.push_back(int32_t(rng.next_u32() % uint32_t(V)));
    r.n = 2;  // the second sample shares the prompt's cache blocks (copy-on-write of the partial one)
    g.requests.push_back(r);
  }
  r1::rollout::GenerateParams gp;
  gp.sampling.temperature = 0;
  gp.max_new_tokens = max_new_tokens;
  r1::rollout::Engine ec(p.cpu, {4, 32, 64}), eg(p.gpu, {4, 32, 64});
  g.cpu = ec.generate(g.requests, gp);
  g.gpu = eg.generate(g.requests, gp);
  for (size_t i = 0; i < g.cpu.size() && i < g.gpu.size(); ++i) {
    size_t k = 0;
    while (k < g.cpu[i].tokens.size() && k < g.gpu[i].tokens.size() && g.cpu[i].tokens[k] == g.gpu[i].tokens[k]) ++k;
    g.matched += int(k);
    g.total += int(g.cpu[i].tokens.size());
  }
  return g;
}

}  // namespace r1::test
