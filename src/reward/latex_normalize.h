#pragma once
// One canonical spelling for a LaTeX answer, so that the exact-string check catches most matches and
// the parser sees a small language: no \left/\right, \dfrac → \frac, \frac12 → \frac{1}{2}, no units,
// degrees, percent or dollar signs, no thousands separators.
#include <string>
#include <string_view>

namespace r1::reward {

std::string normalize_latex(const std::string& answer);

// Replaces every occurrence of `from` in s with `to`.
void replace_all(std::string& s, std::string_view from, std::string_view to);

// Index just past the balanced {...} group opening at s[open] (npos if unbalanced).
size_t group_end(const std::string& s, size_t open);

}  // namespace r1::reward
