#include "cli/jsonl.h"

#include "base/error.h"

namespace r1::cli {

std::vector<JsonLine> read_jsonl(std::istream& in, const std::string& source) {
  std::vector<JsonLine> out;
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    R1_CHECK(line.find_first_not_of(" \t") != std::string::npos, "{} line {}: empty line", source, no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{} line {}: invalid JSON: {}", source, no, e.what());
    }
    R1_CHECK(j.is_object(), "{} line {}: expected a JSON object", source, no);
    out.push_back({no, std::move(j)});
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

}  // namespace r1::cli
