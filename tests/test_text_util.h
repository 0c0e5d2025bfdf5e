#pragma once
// Shared by the text/ tests: the real tokenizers (fetched by scripts/fetch_test_data.sh), loaded once
// per test program, and the golden JSON-lines files made by tools/tokenizer/make_goldens.py.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace r1::test {

inline const char* kTokenizerNames[] = {"qwen3", "llama3", "deepseek_v3"};

std::string tokenizer_dir(const std::string& name);            // tests/data/tokenizers/<name>
const text::Tokenizer& real_tokenizer(const std::string& name);  // fails the test with a hint if missing
std::vector<nlohmann::ordered_json> golden_lines(const std::string& file);  // tests/fixtures/tokenizer/<file>

}  // namespace r1::test
