#pragma once
// Metrics over ranks: named sums whose keys may differ between ranks (a rank that scored nothing
// has no per-component rewards), reduced to the same map on every rank.
#include <map>
#include <string>

#include "dist/comm.h"

namespace r1::dist {

// Each key's sum over the ranks that have it (the union of keys on every rank); host comms only.
void all_reduce_sums(Comm& comm, std::map<std::string, double>& sums);

}  // namespace r1::dist
