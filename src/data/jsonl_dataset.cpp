#include "data/jsonl_dataset.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace r1::data {

JsonlFields preset_fields(const std::string& preset) {
  if (preset == "gsm8k") return {"question", "answer", true};
  if (preset == "math500") return {"problem", "answer", false, "", {"subject", "level"}};
  if (preset == "aime24" || preset == "amc23") return {"problem", "answer", false, "", {"id"}};
  fail("unknown dataset preset '{}' (gsm8k, math500, aime24, amc23)", preset);
}

namespace {
std::string gsm8k_gold(const std::string& solution, const std::string& where) {
  auto pos = solution.rfind("####");
  R1_CHECK(pos != std::string::npos, "{}: the answer has no '####' final line", where);
  std::string a;
  for (char c : solution.substr(pos + 4))
    if (c != ',' && c != ' ' && c != '\n' && c != '\r') a += c;
  R1_CHECK(!a.empty(), "{}: empty answer after '####'", where);
  return a;
}

// Numbers print without a trailing ".0" (AMC answers are stored as 27.0).
std::string as_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  double d = v.get<double>();
  // Integral values print as integers while they are exact in a double (a cast beyond int64 is UB).
  if (std::fabs(d) < 9.0e15 && d == std::floor(d)) return std::to_string(int64_t(d));
  return v.dump();
}
}  // namespace

std::vector<Problem> load_jsonl_problems(const std::string& path, const JsonlFields& f) {
  std::ifstream in(path);
  R1_CHECK(in, "cannot open dataset {}", path);
  std::vector<Problem> out;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + " line " + std::to_string(no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
      fail("{}: invalid JSON: {}", where, e.what());
    }
    R1_CHECK(j.is_object(), "{}: expected a JSON object", where);
    R1_CHECK(j.contains(f.question) && j[f.question].is_string(), "{}: missing string field '{}'", where, f.question);
    R1_CHECK(j.contains(f.answer) && (j[f.answer].is_string() || j[f.answer].is_number()),
             "{}: missing answer field '{}'", where, f.answer);
    std::string answer = as_text(j[f.answer]);
    if (f.gsm8k_answer) answer = gsm8k_gold(answer, where);
    Problem p{int64_t(out.size()), j[f.question].get<std::string>(), answer, "", nullptr};
    if (!f.type.empty() && j.contains(f.type)) {
      R1_CHECK(j[f.type].is_string(), "{}: field '{}' (the prompt type) must be a string", where, f.type);
      p.type = j[f.type].get<std::string>();
    }
    for (const std::string& key : f.meta)
      if (j.contains(key)) p.meta[key] = j[key];
    out.push_back(std::move(p));
  }
  R1_CHECK(!out.empty(), "dataset {} has no rows", path);
  return out;
}

}  // namespace r1::data
