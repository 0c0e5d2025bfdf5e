// src/train/recipe: typed defaults, YAML merge, command-line overrides, strict errors, round trip.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "test_util.h"
#include "run/recipe.h"

using r1::test::TempDir;
using r1::run::Recipe;
using json = nlohmann::json;

namespace {

json schema() {
  return json{
      {"seed", 7},
      {"name", "run"},
      {"grpo", {{"group_size", 8}, {"beta", 0.04}, {"clip", {{"low", 0.2}, {"high", 0.28}}}}},
      {"train", {{"lr", 1e-6}, {"steps", 100}, {"bf16", true}, {"rewards", {"format", "math"}}}},
  };
}

std::string write(const TempDir& dir, const std::string& name, const std::string& text) {
  std::string path = dir.file(name);
  std::ofstream(path) << text;
  return path;
}

// The message of the r1::Error that `f` throws; fails the test if it throws nothing.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const r1::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an r1::Error";
  return "";
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

}  // namespace

TEST(Recipe, Defaults) {
  Recipe r(schema());
  EXPECT_EQ(r.get<int>("seed"), 7);
  EXPECT_EQ(r.get<std::string>("name"), "run");
  EXPECT_EQ(r.get<int>("grpo.group_size"), 8);
  EXPECT_DOUBLE_EQ(r.get<double>("grpo.clip.high"), 0.28);
  EXPECT_DOUBLE_EQ(r.get<double>("train.lr"), 1e-6);
  EXPECT_TRUE(r.get<bool>("train.bf16"));
  EXPECT_EQ(r.get<std::vector<std::string>>("train.rewards"), (std::vector<std::string>{"format", "math"}));
  EXPECT_EQ(r.values(), schema());
  EXPECT_EQ(r.get<json>("grpo.clip"), (json{{"low", 0.2}, {"high", 0.28}}));
  EXPECT_EQ(r.keys().size(), 10u);
  EXPECT_EQ(r.type_of("train.rewards"), Recipe::Type::StringList);
  EXPECT_TRUE(r.has("grpo.clip.low"));
  EXPECT_FALSE(r.has("grpo.clip.mid"));

  std::string err = error_of([&] { r.get<int>("grpo.group_sise"); });
  EXPECT_HAS(err, "unknown key 'grpo.group_sise' (did you mean 'grpo.group_size'?)");
  err = error_of([&] { r.get<int>("name"); });
  EXPECT_HAS(err, "'name'");
}

TEST(Recipe, BadSchema) {
  EXPECT_THROW(Recipe(json::array()), r1::Error);
  EXPECT_THROW(Recipe(json{{"a.b", 1}}), r1::Error);
  EXPECT_THROW(Recipe(json{{"a", nullptr}}), r1::Error);
  EXPECT_THROW(Recipe(json{{"a", {1, 2}}}), r1::Error);
}

TEST(Recipe, YamlMergeNested) {
  TempDir dir;
  Recipe r(schema());
  r.load_yaml(write(dir, "r.yaml",
                    "# a comment\n"
                    "grpo:\n"
                    "  group_size: 16\n"
                    "  clip:\n"
                    "    high: 0.3\n"
                    "train:\n"
                    "  lr: 1e-3\n"
                    "  bf16: false\n"
                    "  rewards: [math, \"code, python\"]\n"
                    "name: my run\n"
                    "train.steps: 5\n"));
  EXPECT_EQ(r.get<int>("grpo.group_size"), 16);
  EXPECT_DOUBLE_EQ(r.get<double>("grpo.beta"), 0.04);  // untouched sibling keeps its default
  EXPECT_DOUBLE_EQ(r.get<double>("grpo.clip.low"), 0.2);
  EXPECT_DOUBLE_EQ(r.get<double>("grpo.clip.high"), 0.3);
  EXPECT_DOUBLE_EQ(r.get<double>("train.lr"), 1e-3);
  EXPECT_FALSE(r.get<bool>("train.bf16"));
  EXPECT_EQ(r.get<std::vector<std::string>>("train.rewards"),
            (std::vector<std::string>{"math", "code, python"}));
  EXPECT_EQ(r.get<std::string>("name"), "my run");
  EXPECT_EQ(r.get<int>("train.steps"), 5);
  EXPECT_EQ(r.get<int>("seed"), 7);

  // A second file merges over the first; an empty file changes nothing.
  r.load_yaml(write(dir, "r2.yaml", "grpo: {beta: 0}\ntrain:\n  steps: 1e3\n  lr: 2\n"));
  EXPECT_EQ(r.get<int>("grpo.group_size"), 16);
  EXPECT_DOUBLE_EQ(r.get<double>("grpo.beta"), 0.0);
  EXPECT_TRUE(r.at("grpo.beta").is_number_float());  // an integer where a number is expected
  EXPECT_EQ(r.get<int>("train.steps"), 1000);        // an integral number where an integer is expected
  EXPECT_DOUBLE_EQ(r.get<double>("train.lr"), 2.0);
  json before = r.values();
  r.load_yaml(write(dir, "empty.yaml", "# nothing\n"));
  EXPECT_EQ(r.values(), before);
}

TEST(Recipe, OverridesOfEachType) {
  Recipe r(schema());
  r.set("train.lr=1e-5");
  EXPECT_DOUBLE_EQ(r.get<double>("train.lr"), 1e-5);
  r.set("train.lr=3");
  EXPECT_DOUBLE_EQ(r.get<double>("train.lr"), 3.0);
  r.set("grpo.group_size=-4");
  EXPECT_EQ(r.get<int>("grpo.group_size"), -4);
  r.set("train.steps=2e3");
  EXPECT_EQ(r.get<int64_t>("train.steps"), 2000);
  r.set("train.bf16=false");
  EXPECT_FALSE(r.get<bool>("train.bf16"));
  r.set("train.bf16=true");
  EXPECT_TRUE(r.get<bool>("train.bf16"));
  r.set("name=a=b c");  // strings are verbatim, after the first '='
  EXPECT_EQ(r.get<std::string>("name"), "a=b c");
  r.set("name=");
  EXPECT_EQ(r.get<std::string>("name"), "");
  r.set("train.rewards=format, math,code");
  EXPECT_EQ(r.get<std::vector<std::string>>("train.rewards"),
            (std::vector<std::string>{"format", "math", "code"}));
  r.set("train.rewards=[a, \"b,c\"]");
  EXPECT_EQ(r.get<std::vector<std::string>>("train.rewards"), (std::vector<std::string>{"a", "b,c"}));
  r.set("train.rewards=");
  EXPECT_TRUE(r.get<std::vector<std::string>>("train.rewards").empty());
  r.set("train.rewards=[]");
  EXPECT_TRUE(r.get<std::vector<std::string>>("train.rewards").empty());
}

TEST(Recipe, UnknownYamlKeyNamesLineAndSuggestion) {
  TempDir dir;
  Recipe r(schema());
  std::string path = write(dir, "recipe.yaml",
                           "seed: 1\n"
                           "grpo:\n"
                           "  beta: 0.1\n"
                           "\n"
                           "  group_sise: 4\n");
  std::string err = error_of([&] { r.load_yaml(path); });
  EXPECT_HAS(err, path + " line 5: unknown key 'grpo.group_sise' (did you mean 'grpo.group_size'?)");

  // A misspelt section is caught at the section, and a key far from any spelling still gets a hint by
  // its last component.
  err = error_of([&] { r.load_yaml(write(dir, "b.yaml", "trian:\n  lr: 1\n")); });
  EXPECT_HAS(err, "line 1: unknown key 'trian' (did you mean 'train'?)");
  err = error_of([&] { r.load_yaml(write(dir, "c.yaml", "seed: 2\nlr: 1\n")); });
  EXPECT_HAS(err, "line 2: unknown key 'lr' (did you mean 'train.lr'?)");
  err = error_of([&] { r.load_yaml(write(dir, "d.yaml", "completely_unrelated_thing: 1\n")); });
  EXPECT_HAS(err, "unknown key 'completely_unrelated_thing'");
  EXPECT_EQ(err.find("did you mean"), std::string::npos) << err;
  // A section given a scalar, a key set twice.
  err = error_of([&] { r.load_yaml(write(dir, "e.yaml", "grpo: 3\n")); });
  EXPECT_HAS(err, "'grpo' is a section");
  err = error_of([&] { r.load_yaml(write(dir, "f.yaml", "train:\n  lr: 1\ntrain.lr: 2\n")); });
  EXPECT_HAS(err, "line 3: key 'train.lr' is set twice");
}

TEST(Recipe, UnknownOverrideKeyWithSuggestion) {
  Recipe r(schema());
  std::string err = error_of([&] { r.set("train.lrr=1e-6"); });
  EXPECT_HAS(err, "override 'train.lrr=1e-6': unknown key 'train.lrr' (did you mean 'train.lr'?)");
  err = error_of([&] { r.set("grpo.clip=0.2"); });
  EXPECT_HAS(err, "'grpo.clip' is a section");
  err = error_of([&] { r.set("train.lr"); });
  EXPECT_HAS(err, "expected KEY=VALUE");
  err = error_of([&] { r.set("=3"); });
  EXPECT_HAS(err, "key is empty");
}

TEST(Recipe, TypeErrors) {
  TempDir dir;
  Recipe r(schema());
  std::string err =
      error_of([&] { r.load_yaml(write(dir, "a.yaml", "seed: 1\ngrpo:\n  group_size: eight\n")); });
  EXPECT_HAS(err, "line 3: key 'grpo.group_size' expects an integer, got eight");
  err = error_of([&] { r.load_yaml(write(dir, "b.yaml", "grpo:\n  group_size: 1.5\n")); });
  EXPECT_HAS(err, "line 2: key 'grpo.group_size' expects an integer, got 1.5");
  err = error_of([&] { r.load_yaml(write(dir, "c.yaml", "train:\n  lr: \"1e-3\"\n")); });
  EXPECT_HAS(err, "line 2: key 'train.lr' expects a number, got the quoted string \"1e-3\"");
  err = error_of([&] { r.load_yaml(write(dir, "d.yaml", "train:\n  bf16: yes\n")); });
  EXPECT_HAS(err, "line 2: key 'train.bf16' expects a boolean (true/false), got yes");
  err = error_of([&] { r.load_yaml(write(dir, "e.yaml", "train:\n  bf16: 'true'\n")); });
  EXPECT_HAS(err, "key 'train.bf16' expects a boolean");
  err = error_of([&] { r.load_yaml(write(dir, "f.yaml", "train:\n  rewards: math\n")); });
  EXPECT_HAS(err, "key 'train.rewards' expects a list of strings, got math");
  err = error_of([&] { r.load_yaml(write(dir, "g.yaml", "name: [a]\n")); });
  EXPECT_HAS(err, "key 'name' expects a string, got a list");
  // .nan is refused where a number is due (a check like lr >= 0 would pass it); .inf is a number.
  err = error_of([&] { r.load_yaml(write(dir, "n.yaml", "seed: 3\ntrain:\n  lr: .NAN\n")); });
  EXPECT_HAS(err, "line 3: key 'train.lr' expects a number, got .NAN");
  EXPECT_HAS(error_of([&] { r.set("train.lr=.nan"); }), "key 'train.lr' expects a number, got '.nan'");
  EXPECT_NO_THROW(r.set("train.lr=-.inf"));
  r.set("train.lr=1e-6");  // the default again
  err = error_of([&] { r.load_yaml(write(dir, "h.yaml", "seed: 99999999999999999999\n")); });
  EXPECT_HAS(err, "key 'seed' expects an integer");
  // A file that fails part-way applies nothing, not even the keys before the error.
  err = error_of([&] { r.load_yaml(write(dir, "i.yaml", "seed: 3\ngrpo:\n  group_size: x\n")); });
  EXPECT_HAS(err, "line 3");
  EXPECT_EQ(r.get<int>("seed"), 7);
  EXPECT_EQ(r.values(), schema());

  err = error_of([&] { r.set("grpo.group_size=abc"); });
  EXPECT_HAS(err, "override 'grpo.group_size=abc': key 'grpo.group_size' expects an integer, got 'abc'");
  err = error_of([&] { r.set("grpo.group_size=1.5"); });
  EXPECT_HAS(err, "expects an integer, got '1.5'");
  err = error_of([&] { r.set("train.lr=fast"); });
  EXPECT_HAS(err, "key 'train.lr' expects a number, got 'fast'");
  err = error_of([&] { r.set("train.bf16=1"); });
  EXPECT_HAS(err, "key 'train.bf16' expects a boolean (true/false), got '1'");
  err = error_of([&] { r.set("train.rewards=a,,b"); });
  EXPECT_HAS(err, "empty item");
  err = error_of([&] { r.set("train.rewards=[a, [b]]"); });
  EXPECT_HAS(err, "expects a list of strings");
}

TEST(Recipe, ToYamlRoundTrip) {
  TempDir dir;
  Recipe r(schema());
  r.set("train.lr=1.2345678901234567e-7");
  r.set("grpo.beta=3");
  r.set("name=tricky: \"quoted\" # not a comment\n2nd line");
  r.set("train.rewards=[\"true\", \"1e-3\", \"\", \"a, b\"]");
  r.set("seed=-12");
  r.set("train.bf16=false");
  std::string yaml = r.to_yaml();
  // Schema order: sections and keys come out in the order the schema iterates them.
  EXPECT_LT(yaml.find("grpo:"), yaml.find("train:")) << yaml;

  Recipe fresh(schema());
  fresh.load_yaml(write(dir, "resolved.yaml", yaml));
  EXPECT_EQ(fresh.values(), r.values()) << yaml;
  EXPECT_EQ(fresh.to_yaml(), yaml);

  // Defaults round-trip too, including an empty list and an empty section.
  Recipe d(json{{"list", json::array()}, {"empty", json::object()}, {"x", 1.0}, {"big", 1e300}});
  Recipe d2(json{{"list", {"z"}}, {"empty", json::object()}, {"x", 5.5}, {"big", 0.0}});
  d2.load_yaml(write(dir, "d.yaml", d.to_yaml()));
  EXPECT_EQ(d2.values(), d.values()) << d.to_yaml();
}

TEST(Recipe, MissingFileAndSyntaxError) {
  TempDir dir;
  Recipe r(schema());
  std::string missing = dir.file("nope.yaml");
  std::string err = error_of([&] { r.load_yaml(missing); });
  EXPECT_HAS(err, "cannot open recipe file '" + missing + "'");

  std::string path = write(dir, "broken.yaml", "seed: 1\ntrain:\n  rewards: [a, b\n  lr: 2\n");
  err = error_of([&] { r.load_yaml(path); });
  EXPECT_HAS(err, path + " line ");
  EXPECT_HAS(err, "YAML syntax error");

  path = write(dir, "bad_indent.yaml", "seed: 1\nname: a\n  bad: 2\n");
  err = error_of([&] { r.load_yaml(path); });
  EXPECT_HAS(err, path + " line 3: YAML syntax error");

  err = error_of([&] { r.load_yaml(write(dir, "list.yaml", "- a\n- b\n")); });
  EXPECT_HAS(err, "must be a mapping");
}
