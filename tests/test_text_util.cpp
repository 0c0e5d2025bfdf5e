#include "test_text_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>

#include "test_util.h"

namespace r1::test {

std::string tokenizer_dir(const std::string& name) { return source_path("tests/data/tokenizers/" + name); }

const text::Tokenizer& real_tokenizer(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<text::Tokenizer>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  auto& t = loaded[name];
  if (!t) {
    std::string dir = tokenizer_dir(name);
    if (!std::filesystem::exists(dir + "/tokenizer.json"))
      throw std::runtime_error(dir + "/tokenizer.json is missing: run scripts/fetch_test_data.sh");
    t = text::Tokenizer::load(dir);
  }
  return *t;
}

std::vector<nlohmann::ordered_json> golden_lines(const std::string& file) {
  std::string path = source_path("tests/fixtures/tokenizer/" + file);
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<nlohmann::ordered_json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::ordered_json::parse(line));
  return out;
}

}  // namespace r1::test
