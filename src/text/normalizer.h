#pragma once
// tokenizer.json's "normalizer": none, NFC/NFKC/NFD/NFKD, or a Sequence of those.
#include "base/json_at.h"

#include <string>
#include <string_view>
#include <vector>

namespace r1::text {

struct Normalizer {
  enum class Form { NFC, NFKC, NFD, NFKD };
  std::vector<Form> steps;  // empty: the identity
  bool identity() const { return steps.empty(); }
  std::string apply(std::string_view s) const;
};

// Errors name the unsupported type and `file`.
// `j` is tokenizer.json's "normalizer" (null: none); errors name its file and key path.
Normalizer parse_normalizer(const JsonAt& j);

}  // namespace r1::text
