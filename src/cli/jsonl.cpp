#include "cli/jsonl.h"

#include "base/error.h"

namespace r1::cli {

namespace {
// One line as a JSON object, or an error naming the source and line.
nlohmann::json parse_line(std::string line, int no, const std::string& source) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  R1_CHECK(line.find_first_not_of(" \t") != std::string::npos, "{} line {}: empty line", source, no);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{} line {}: invalid JSON: {}", source, no, e.what());
  }
  R1_CHECK(j.is_object(), "{} line {}: expected a JSON object", source, no);
  return j;
}
}  // namespace

std::vector<JsonLine> read_jsonl(std::istream& in, const std::string& source) {
  std::vector<JsonLine> out;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) out.push_back({no, parse_line(line, no, source)});
  return out;
}

std::vector<JsonLine> read_jsonl_lenient(std::istream& in, const std::string& source,
                                         std::vector<nlohmann::json>& errors) {
  std::vector<JsonLine> out;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    try {
      out.push_back({no, parse_line(line, no, source)});
    } catch (const Error& e) {
      errors.push_back({{"line", no}, {"error", e.what()}});
    }
  }
  return out;
}

std::vector<int32_t> int_array(const JsonLine& l, const std::string& key, const std::string& source,
                               int64_t lo, int64_t hi) {
  auto it = l.value.find(key);
  R1_CHECK(it != l.value.end(), "{} line {}: missing key '{}'", source, l.line_no, key);
  R1_CHECK(it->is_array(), "{} line {}: '{}' must be an array of integers", source, l.line_no, key);
  std::vector<int32_t> ids;
  ids.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& v = (*it)[i];
    R1_CHECK(v.is_number_integer(), "{} line {}: {}[{}] is not an integer", source, l.line_no, key, i);
    int64_t x = v.get<int64_t>();
    R1_CHECK(x >= lo && x < hi, "{} line {}: {}[{}] = {} is outside [{}, {})", source, l.line_no, key, i, x,
             lo, hi);
    ids.push_back(int32_t(x));
  }
  return ids;
}

std::vector<std::vector<int32_t>> read_id_lines(std::istream& in, const std::string& source,
                                                const model::ModelConfig& c) {
  std::vector<std::vector<int32_t>> seqs;
  for (const JsonLine& l : read_jsonl(in, source)) {
    seqs.push_back(int_array(l, "ids", source, 0, c.vocab_size));
    R1_CHECK(!seqs.back().empty(), "{} line {}: 'ids' is empty", source, l.line_no);
    R1_CHECK(c.max_position_embeddings <= 0 || int64_t(seqs.back().size()) <= c.max_position_embeddings,
             "{} line {}: {} ids exceed max_position_embeddings {}", source, l.line_no, seqs.back().size(),
             c.max_position_embeddings);
  }
  return seqs;
}

}  // namespace r1::cli
