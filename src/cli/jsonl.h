#pragma once
// JSON-lines input for the r1 subcommands: every line is parsed and checked before any work, so a
// bad line is reported by number and nothing is written.
#include <nlohmann/json.hpp>

#include <istream>
#include <string>
#include <vector>

#include "model/config.h"

namespace r1::cli {

struct JsonLine {
  int line_no;  // 1-based
  nlohmann::json value;
};

// Reads all lines of `in`; an empty or unparsable line is an error naming `source` and the line.
std::vector<JsonLine> read_jsonl(std::istream& in, const std::string& source);

// As read_jsonl, but a bad line does not stop the others: it is returned in `errors` as
// {"line": n, "error": "..."} and skipped.
std::vector<JsonLine> read_jsonl_lenient(std::istream& in, const std::string& source,
                                         std::vector<nlohmann::json>& errors);

// The integer array `key` of a line; errors name the source, line and offending element.
std::vector<int32_t> int_array(const JsonLine& l, const std::string& key, const std::string& source,
                               int64_t lo, int64_t hi);

// Every line of `in` as a token sequence {"ids": [...]} for model `c`: ids inside the vocabulary, not
// empty, no longer than max_position_embeddings. All lines are checked before any is returned.
std::vector<std::vector<int32_t>> read_id_lines(std::istream& in, const std::string& source,
                                                const model::ModelConfig& c);

}  // namespace r1::cli
