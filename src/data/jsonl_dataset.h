#pragma once
// Problems from JSON-lines files with a field mapping, and presets for the benchmark files shipped
// in data/: gsm8k (question, answer after "####"), math500 / aime24 / amc23 (problem, answer), with
// the fields reports break results down by kept in Problem::meta (MATH-500 subject and level, the
// AIME/AMC problem ids).
#include <string>
#include <vector>

#include "data/problem.h"

namespace r1::data {

struct JsonlFields {
  std::string question = "question";
  std::string answer = "answer";
  bool gsm8k_answer = false;  // the gold is the text after "####", thousands separators removed
  std::string type;           // optional string field holding the prompt type (Problem::type); "" = none
  std::vector<std::string> meta;  // fields copied into Problem::meta when a row has them
};

// Field mapping of a preset name ("gsm8k", "math500", "aime24", "amc23"); others are an error.
JsonlFields preset_fields(const std::string& preset);

// Every row must be an object with both fields (string, or number for the answer); a bad row is an
// error naming the file and line, raised before anything else is done. Ids are the 0-based row numbers
// (a dataset's own "id" field, when a preset keeps it, goes to meta). Numeric answers print without
// a trailing ".0" (AMC stores 27.0).
std::vector<Problem> load_jsonl_problems(const std::string& path, const JsonlFields& fields);

}  // namespace r1::data
