#pragma once
// The config.json keys, each declared once as a row of one table (config_keys.cpp). The table
// drives parsing, validation, writing, `r1 init --set` and docs/CONFIG.md (config_engine.cpp,
// config_doc.cpp). Adding a key is one row there and its field in ModelConfig.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/config.h"

namespace r1::model {

// Where a key's value lives: a function giving the member's address, so that nested members
// (rope_scaling.factor) work like top-level ones. The member's type is the key's type.
template <class T>
using Member = T* (*)(ModelConfig&);
#define R1_MEMBER(path) (+[](ModelConfig& c) { return &c.path; })

// A value written for transformers that r1 does not model (attention_dropout: 0.0).
struct Fixed {
  nlohmann::json value;
};
// A value written from other keys and never read (architectures, max_window_layers).
struct Computed {
  nlohmann::json (*value)(const ModelConfig&);
};
// A nested object (rope_scaling): its members are the rows named "<object>.<member>".
struct Object {};

using Field = std::variant<Member<int>, Member<double>, Member<bool>, Member<std::string>,
                           Member<std::vector<int>>, Fixed, Computed, Object>;

enum class Check { None, Positive, NonNegative };

enum class Write {
  Always,         // in every config.json the key applies to
  UnlessDefault,  // only when its value differs from its default
  NullIfDefault,  // null when at its default (bos_token_id, eos_token_id)
};

// The key applies only when another (string) key holds one of `values` (space-separated).
struct When {
  std::string_view key;
  std::string_view values;
};

struct ConfigKey {
  std::string_view name;  // as in config.json; "rope_scaling.factor" for a member of an object
  Field field;
  std::string_view doc;         // one line for docs/CONFIG.md
  std::string_view types = "";  // the model_types that read and write it (space-separated; "": all)
  When when = {};
  bool required = false;
  Check check = Check::None;
  std::vector<std::string_view> choices = {};  // the supported values of a string key
  std::string_view noun = "";                  // how messages name the value ("rope type")
  // The names read, the first present one wins ("rope_parameters.rope_theta", "rope_theta");
  // relative to the object for a member. Empty: the name itself (its last part for a member).
  std::vector<std::string_view> read_as = {};
  // The default when it depends on other keys; otherwise ModelConfig's member initialiser is.
  void (*derive)(ModelConfig&, const std::string& source) = nullptr;
  std::string_view default_doc = "";  // the derived default in words, for the docs
  std::string_view follows = "";      // keys whose --set derives it again unless it is set too
  Write write = Write::Always;
  bool one_or_many = false;  // an id list that config.json holds as one int when it has one id
  bool must_match = false;   // a Fixed key: any other value in a file is an error
  // For a value spread over several config.json entries (num_labels: architectures, id2label).
  void (*read)(const nlohmann::json& j, ModelConfig& c, const std::string& source) = nullptr;
  void (*write_to)(const ModelConfig& c, nlohmann::json& j) = nullptr;
};

// Every key, in the order of docs/CONFIG.md. A member row follows its object's row.
const std::vector<ConfigKey>& config_keys();
// The row named `name`, or nullptr.
const ConfigKey* find_config_key(std::string_view name);
// The model_types r1 supports, in the order messages list them.
const std::vector<std::string_view>& model_types();
// The checks across keys (heads divisible by KV heads, even head_dim, ...); errors start with source.
void check_key_relations(const ModelConfig& c, const std::string& source);

// A key's value type in words: "int", "float", "bool", "string", "int list", "object", ...
std::string key_type_name(const ConfigKey& k);
// Whether the key applies to this config (its model_type and `when`).
bool key_applies(const ConfigKey& k, const ModelConfig& c);
// Whether --set may set it: a plain value held in ModelConfig.
bool key_settable(const ConfigKey& k);
// The key's value in c as JSON (null for an Object).
nlohmann::json key_value(const ConfigKey& k, const ModelConfig& c);
// Its default for c: derived from c's other keys, or ModelConfig's initialiser.
nlohmann::json key_default(const ConfigKey& k, const ModelConfig& c);

}  // namespace r1::model
