#pragma once
// pass@k as the R1 paper (after Chen et al. 2021) reports it: from n samples of which c are correct,
// the chance that k of them drawn without replacement contain a correct one.
#include <cstdint>
#include <vector>

namespace r1::eval {

// Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k). Needs 0 <= c <= n, 1 <= k <= n.
double pass_at_k(int64_t n, int64_t c, int64_t k);

// The k' values reported by default for n samples: the powers of two below n, and n itself.
std::vector<int> default_pass_ks(int n);

}  // namespace r1::eval
