#pragma once
// Reflection words in completions: the "aha" behaviour R1 reports ("wait", "let me check", ...), a
// statistic of the text that training metrics and evaluation reports share.
#include <string>
#include <vector>

namespace r1::reward {

// The share of completions that use at least one reflection word (case-insensitive).
double reflection_rate(const std::vector<std::string>& completions);

}  // namespace r1::reward
