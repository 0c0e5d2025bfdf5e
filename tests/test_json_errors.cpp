// Errors from nested JSON/YAML access name the file and the key path: each reader of an HF file,
// a dataset or a recipe is given a crafted bad file and its message is checked.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "base/error.h"
#include "base/json_at.h"
#include "data/jsonl_dataset.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "run/recipe.h"
#include "test_util.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace r1 {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT AN r1::Error: ") + e.what();
  }
  return "(no error)";
}

// A small valid tokenizer.json with one field replaced by `patch` (a JSON pointer and a value).
std::string tokenizer_with(const std::string& pointer, const nlohmann::json& value) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "added_tokens": [{"id": 4, "content": "<x>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]}})");
  j[nlohmann::json::json_pointer(pointer)] = value;
  return j.dump();
}

std::string load_tokenizer_error(const test::TempDir& dir, const std::string& content) {
  std::ofstream(dir.file("tokenizer.json")) << content;
  return error_of([&] { text::Tokenizer::load(dir.path()); });
}

TEST(JsonErrors, JsonAtNamesFileAndPath) {
  nlohmann::json j = nlohmann::json::parse(R"({"a": {"b": [1, "x"]}})");
  JsonAt root(j, "f.json");
  EXPECT_EQ(root.at("a").at("b").at(0).int64(), 1);
  EXPECT_EQ(error_of([&] { root.at("a").at("b").at(1).int64(); }), "f.json: a.b[1]: expected an integer, got string \"x\"");
  EXPECT_EQ(error_of([&] { root.at("a").at("c"); }), "f.json: a: missing key 'c'");
  EXPECT_EQ(error_of([&] { root.at("a").at("b").at(5); }), "f.json: a.b: has 2 elements, no [5]");
  EXPECT_EQ(error_of([&] { root.at("a").at("b").str_or("k", ""); }), "f.json: a.b: expected an object, got an array");
  EXPECT_EQ(root.at("a").str_or("missing", "dflt"), "dflt");
}

TEST(JsonErrors, TokenizerJsonWrongTypesNameFileAndKey) {
  test::TempDir dir;
  const std::string file = dir.file("tokenizer.json");
  ASSERT_EQ(load_tokenizer_error(dir, tokenizer_with("/model/type", "BPE")), "(no error)");
  struct Case {
    std::string pointer;
    nlohmann::json value;
    std::string expect;  // the message after "<file>: "
  };
  const std::vector<Case> cases = {
      // Today's bare "[json.exception.invalid_iterator.207] cannot use key() for non-object iterators".
      {"/model/vocab", nlohmann::json::array({"a", "b"}), "model.vocab: expected an object, got an array"},
      {"/model/vocab/b", "1", "model.vocab.b: expected an integer, got string \"1\""},
      {"/model/merges", "a b", "model.merges: expected an array, got string \"a b\""},
      {"/model/merges/0", 7, "model.merges[0]: expected a merge 'a b' or [a, b], got number 7"},
      {"/model/type", 3, "model.type: expected a string, got number 3"},
      {"/model/dropout", "none", "model.dropout: expected a number, got string \"none\""},
      {"/added_tokens/0/id", "4", "added_tokens[0].id: expected an integer, got string \"4\""},
      {"/added_tokens/0/special", "yes", "added_tokens[0].special: expected true or false, got string \"yes\""},
      {"/added_tokens/0", "<x>", "added_tokens[0]: expected an object, got string \"<x>\""},
      {"/added_tokens", nlohmann::json::object(), "added_tokens: expected an array, got an object"},
      {"/pre_tokenizer/pretokenizers/0/pattern/Regex", 5,
       "pre_tokenizer.pretokenizers[0].pattern.Regex: expected a string, got number 5"},
      {"/pre_tokenizer/pretokenizers/1/use_regex", 1,
       "pre_tokenizer.pretokenizers[1].use_regex: expected true or false, got number 1"},
      {"/pre_tokenizer/pretokenizers", "x", "pre_tokenizer.pretokenizers: expected an array, got string \"x\""},
      {"/normalizer", nlohmann::json::array(), "normalizer: expected an object, got an array"},
      {"/decoder/type", false, "decoder.type: expected a string, got boolean false"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(load_tokenizer_error(dir, tokenizer_with(c.pointer, c.value)), file + ": " + c.expect) << c.pointer;
  }
  EXPECT_EQ(load_tokenizer_error(dir, "[1, 2]"), file + ": expected an object, got an array");
  EXPECT_EQ(load_tokenizer_error(dir, tokenizer_with("/model/vocab/b", 1 << 30)),
            file + ": model.vocab.b: vocab id 1073741824 is out of range [0, 65540)");
}

TEST(JsonErrors, TokenizerConfigWrongTypesNameFileAndKey) {
  test::TempDir dir;
  const std::string file = dir.file("tokenizer_config.json");
  auto error_with = [&](const std::string& cfg) {
    std::ofstream(file) << cfg;
    return error_of([&] { text::ChatTemplate::load(dir.path(), ""); });
  };
  EXPECT_EQ(error_with(R"({"chat_template": "{{ 1 }}", "eos_token": 5})"),
            file + ": eos_token: expected a token string or {\"content\": ...}, got number 5");
  EXPECT_EQ(error_with(R"({"chat_template": "{{ 1 }}", "bos_token": {"lstrip": false}})"),
            file + ": bos_token: missing key 'content'");
  EXPECT_EQ(error_with(R"({"chat_template": [{"name": "default"}]})"), file + ": chat_template[0]: missing key 'template'");
  EXPECT_EQ(error_with(R"({"chat_template": [{"name": "default", "template": 1}]})"),
            file + ": chat_template[0].template: expected a string, got number 1");
  EXPECT_EQ(error_with(R"({"chat_template": 3})"),
            file + ": chat_template: expected a template string or a list of {name, template}, got number 3");
  EXPECT_EQ(error_with(R"(["x"])"), file + ": expected an object, got an array");
}

TEST(JsonErrors, ConfigJsonWrongTypeNamesFileAndKey) {
  test::TempDir dir;
  const std::string file = dir.file("config.json");
  model::save_config(model::preset_config(model::preset_names().front()), file);
  nlohmann::json j = nlohmann::json::parse(std::ifstream(file));
  j["hidden_size"] = "64";
  std::ofstream(file) << j.dump();
  std::string msg = error_of([&] { model::load_config(file); });
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  EXPECT_NE(msg.find("'hidden_size'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"64\""), std::string::npos) << msg;
}

TEST(JsonErrors, SafetensorsHeaderWrongTypeNamesFileAndTensor) {
  test::TempDir dir;
  const std::string file = dir.file("model.safetensors");
  const std::string header = R"({"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})";
  std::ofstream out(file, std::ios::binary);
  uint64_t n = header.size();
  char len[8];
  std::memcpy(len, &n, 8);
  out.write(len, 8);
  out << header << std::string(8, '\0');
  out.close();
  std::string msg = error_of([&] { model::SafetensorsReader r(file); });
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'w': shape"), std::string::npos) << msg;
}

TEST(JsonErrors, JsonlRowWrongTypeNamesFileLineAndField) {
  test::TempDir dir;
  const std::string file = dir.file("d.jsonl");
  std::ofstream(file) << "{\"problem\": \"1+1\", \"answer\": \"2\"}\n{\"problem\": [1], \"answer\": \"2\"}\n";
  std::string msg = error_of([&] { data::load_jsonl_problems(file, data::preset_fields("math500")); });
  EXPECT_EQ(msg, file + " line 2: missing string field 'problem'");
}

// A number beyond double (1e999) is nlohmann's out_of_range, not a parse_error: the readers that
// caught only parse errors let it escape and end the process (found by fuzz_jsonl_rows).
TEST(JsonErrors, NumberBeyondDoubleNamesTheFile) {
  test::TempDir dir;
  const std::string jsonl = dir.file("d.jsonl");
  std::ofstream(jsonl) << "{\"problem\": \"1+1\", \"answer\": 1e999}\n";
  std::string msg = error_of([&] { data::load_jsonl_problems(jsonl, data::preset_fields("math500")); });
  EXPECT_NE(msg.find(jsonl + " line 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("number overflow"), std::string::npos) << msg;

  const std::string config = dir.file("config.json");
  std::ofstream(config) << R"({"model_type": "qwen2", "hidden_size": 1e999})";
  msg = error_of([&] { model::load_config(config); });
  EXPECT_NE(msg.find(config), std::string::npos) << msg;
  EXPECT_EQ(msg.find("NOT AN r1::Error"), std::string::npos) << msg;

  const std::string st = dir.file("model.safetensors");
  const std::string header = R"({"w": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 0]}})";
  std::ofstream out(st, std::ios::binary);
  uint64_t n = header.size();
  char len[8];
  std::memcpy(len, &n, 8);
  out.write(len, 8);
  out << header;
  out.close();
  msg = error_of([&] { model::SafetensorsReader r(st); });
  EXPECT_NE(msg.find(st), std::string::npos) << msg;
  EXPECT_EQ(msg.find("NOT AN r1::Error"), std::string::npos) << msg;

  msg = load_tokenizer_error(dir, R"({"model": {"type": "BPE", "vocab": {"a": 1e999}}})");
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("NOT AN r1::Error"), std::string::npos) << msg;
}

TEST(JsonErrors, YamlRecipeWrongTypeNamesFileLineAndKey) {
  test::TempDir dir;
  const std::string file = dir.file("r.yaml");
  std::ofstream(file) << "train:\n  lr: 0.1\n  steps: many\n";
  run::Recipe r(nlohmann::json::parse(R"({"train": {"lr": 0.01, "steps": 10}})"));
  std::string msg = error_of([&] { r.load_yaml(file); });
  EXPECT_NE(msg.find(file + " line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'train.steps'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace r1

namespace r1 {
namespace {

// fuzz/yaml_recipe: a string that is not UTF-8 could not be written back as YAML (config.yaml).
TEST(JsonErrors, YamlRecipeStringNotUtf8NamesFileLineAndKey) {
  test::TempDir dir;
  const std::string file = dir.file("r.yaml");
  std::ofstream(file) << "out: ok\ndata:\n  fields: [q\xDD\xDF" "a]\n";
  run::Recipe r(nlohmann::json::parse(R"({"out": "", "data": {"fields": ["a"]}})"));
  std::string msg = error_of([&] { r.load_yaml(file); });
  EXPECT_EQ(msg, file + " line 3: key 'data.fields' is not valid UTF-8");
}

// The same through an override (the fuzzer: `data.fields=` and bytes 0xF9, which to_yaml() wrote back
// as U+FFFD; fuzz/regressions/yaml_recipe/override_not_utf8).
TEST(JsonErrors, RecipeOverrideNotUtf8NamesTheKey) {
  run::Recipe r(nlohmann::json::parse(R"({"out": "", "data": {"fields": ["a"]}})"));
  EXPECT_EQ(error_of([&] { r.set("data.fields=ab\xF9\xF9;c"); }),
            "override of key 'data.fields': not valid UTF-8 (byte 14)");
  EXPECT_EQ(error_of([&] { r.set("out=x\xE2\x82"); }), "override of key 'out': not valid UTF-8 (byte 5)");
  r.set("out=caf\xC3\xA9");
  EXPECT_EQ(r.values()["out"], "caf\xC3\xA9");
}

}  // namespace
}  // namespace r1
