#include "dist/named_sums.h"

#include <set>
#include <vector>

#include "base/error.h"

namespace r1::dist {

void all_reduce_sums(Comm& comm, std::map<std::string, double>& sums) {
  if (comm.size() == 1) return;
  R1_CHECK(!comm.on_device(), "all_reduce_sums: host comms only (got {})", comm.backend());
  // Keys travel as one '\n'-joined string per rank; metric names never hold a newline.
  std::string mine;
  for (const auto& [k, v] : sums) {
    R1_CHECK(k.find('\n') == std::string::npos, "all_reduce_sums: a key holds a newline");
    mine += k + '\n';
  }
  std::set<std::string> keys;
  for (const std::string& joined : comm.all_gather_strings(mine))
    for (size_t a = 0, b; (b = joined.find('\n', a)) != std::string::npos; a = b + 1) keys.insert(joined.substr(a, b - a));
  std::vector<double> values;
  for (const std::string& k : keys) {
    auto it = sums.find(k);
    values.push_back(it == sums.end() ? 0.0 : it->second);
  }
  comm.all_reduce(values.data(), int64_t(values.size()), Type::F64);
  size_t i = 0;
  for (const std::string& k : keys) sums[k] = values[i++];
}

}  // namespace r1::dist
