#pragma once
// Recipes: nested settings with typed defaults, merged from YAML files and "key=value" overrides.
//
// The schema is a JSON object of defaults. Objects nest into sections; every leaf is a bool, an integer,
// a number, a string, or an array of strings, and its default fixes its type. Keys are addressed by
// dotted paths ("train.lr"). Loading is strict: an unknown key or a wrong type is an r1::Error that names
// where it came from (file and line, or the override) and, for unknown keys, the nearest valid key.
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/error.h"

namespace r1::run {

class Recipe {
 public:
  enum class Type { Bool, Integer, Number, String, StringList };

  // The schema: every valid key with its default. Throws r1::Error on a malformed schema (not an object,
  // a null or nested-array leaf, a key that is empty or contains '.').
  explicit Recipe(nlohmann::json defaults);

  // Merges a YAML file over the current values. An empty file changes nothing. Sections may be written
  // nested or as dotted keys ("train.lr: 1e-3"). Errors: "FILE line N: unknown key 'K' (did you mean
  // 'V'?)", "FILE line N: key 'K' expects an integer, got 1.5", a missing file, or a YAML syntax error
  // with its line. Quoted scalars are strings and are never taken as numbers or bools.
  void load_yaml(const std::string& path);

  // One command-line override "train.lr=1e-6", parsed by the default's type: bool (true/false),
  // integer (or an integral number such as 1e3), number, string (verbatim), list of strings
  // (comma-separated "a,b", or a YAML flow sequence "[a, b]"; an empty value is the empty list).
  void set(const std::string& assignment);

  // Command-line arguments in order: an argument with '=' is an override (set), any other a YAML file
  // (load_yaml), so `r1 CMD recipe.yaml train.lr=1e-6` and `r1 CMD train.lr=1e-6` both work.
  void apply_args(const std::vector<std::string>& args);

  // The value at a dotted path (a leaf or a whole section); throws if absent or not convertible to T.
  template <typename T>
  T get(const std::string& dotted) const {
    const nlohmann::json& v = at(dotted);
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception& e) {
      fail("recipe key '{}' ({}) cannot be read as the requested type: {}", dotted, v.dump(), e.what());
    }
  }
  const nlohmann::json& at(const std::string& dotted) const;
  bool has(const std::string& dotted) const;

  const nlohmann::json& values() const { return values_; }
  // The schema's leaf paths in schema order (nlohmann::json keeps object keys sorted).
  std::vector<std::string> keys() const;
  Type type_of(const std::string& dotted) const;  // throws for an unknown key or a section

  // The fully resolved recipe as YAML, keys in schema order; load_yaml() of it reproduces values().
  std::string to_yaml() const;

 private:
  struct Leaf {
    std::vector<std::string> parts;
    Type type;
  };
  void index_schema(const nlohmann::json& node, const std::string& prefix, std::vector<std::string>& parts);
  std::string unknown_key_message(const std::string& key) const;
  void assign(const std::string& path, nlohmann::json value);

  nlohmann::json values_;
  std::vector<std::string> order_;                // leaf paths, schema order
  std::unordered_map<std::string, Leaf> leaves_;  // dotted path -> leaf
  std::vector<std::string> sections_;             // dotted paths of sections, schema order
};

}  // namespace r1::run
