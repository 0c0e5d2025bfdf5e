#include "eval/pass_at_k.h"

#include "base/error.h"

namespace r1::eval {

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  R1_CHECK(n >= 1 && c >= 0 && c <= n && k >= 1 && k <= n,
           "pass_at_k: need 0 <= c <= n and 1 <= k <= n (n={}, c={}, k={})", n, c, k);
  if (n - c < k) return 1.0;
  // prod_{i=n-c+1}^{n} (1 - k / i), the numerically stable form of C(n-c, k) / C(n, k).
  double miss = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) miss *= 1.0 - double(k) / double(i);
  return 1.0 - miss;
}

std::vector<int> default_pass_ks(int n) {
  R1_CHECK(n >= 1, "pass@k: need at least one sample per problem (got {})", n);
  std::vector<int> ks;
  for (int k = 1; k < n; k *= 2) ks.push_back(k);
  ks.push_back(n);
  return ks;
}

}  // namespace r1::eval
