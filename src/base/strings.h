#pragma once
// Small string helpers shared across layers.
#include <cstddef>
#include <string_view>

namespace r1 {

// Levenshtein distance, for "did you mean ...?" suggestions on unknown keys.
size_t edit_distance(std::string_view a, std::string_view b);

}  // namespace r1
