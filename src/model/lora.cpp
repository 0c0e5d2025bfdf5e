#include "model/lora.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/error.h"

namespace r1::model {

using nlohmann::json;

namespace {

const std::vector<std::string>& linear_names() {
  static const std::vector<std::string> n = {"q_proj",    "k_proj",   "v_proj",   "o_proj",
                                             "q_a_proj",  "q_b_proj", "kv_a_proj_with_mqa",
                                             "kv_b_proj", "gate_proj", "up_proj", "down_proj"};
  return n;
}

// "self_attn.q_proj" -> "q_proj"
std::string leaf(const std::string& module) { return module.substr(module.rfind('.') + 1); }

}  // namespace

float LoraConfig::scale() const {
  return float(rslora ? alpha / std::sqrt(double(rank)) : alpha / double(rank));
}

std::vector<std::string> LoraConfig::modules() const {
  const bool all = std::find(targets.begin(), targets.end(), "all-linear") != targets.end();
  std::set<std::string> by_path;
  for (const auto& [layer, names] : layer_modules) by_path.insert(names.begin(), names.end());
  std::vector<std::string> out;
  for (const std::string& n : linear_names())
    if (all || by_path.count(n) || std::find(targets.begin(), targets.end(), n) != targets.end()) out.push_back(n);
  return out;
}

void validate(const LoraConfig& c, const std::string& what) {
  R1_CHECK(c.rank >= 1, "{}: LoRA rank must be >= 1 (got {})", what, c.rank);
  R1_CHECK(std::isfinite(c.alpha) && c.alpha > 0, "{}: LoRA alpha must be > 0 (got {})", what, c.alpha);
  R1_CHECK(c.dropout >= 0 && c.dropout < 1, "{}: LoRA dropout must be in [0, 1) (got {})", what, c.dropout);
  R1_CHECK(!c.targets.empty() || !c.layer_modules.empty(), "{}: LoRA needs at least one target module", what);
  for (const std::string& t : c.targets) {
    const auto& n = linear_names();
    R1_CHECK(t == "all-linear" || std::find(n.begin(), n.end(), t) != n.end(),
             "{}: unknown LoRA target module '{}' (valid: all-linear, {})", what, t, fmt::join(n, ", "));
  }
}

std::vector<ParamSpec> lora_specs(const ModelConfig& model, const LoraConfig& lora) {
  const std::vector<std::string> modules = lora.modules();
  // Modules named by full paths must be named on every layer (or also by their bare name).
  for (const std::string& m : modules) {
    if (std::find(lora.targets.begin(), lora.targets.end(), m) != lora.targets.end() ||
        std::find(lora.targets.begin(), lora.targets.end(), "all-linear") != lora.targets.end())
      continue;
    int listed = 0;
    for (const auto& [layer, names] : lora.layer_modules) listed += names.count(m) ? 1 : 0;
    R1_CHECK(listed == model.num_hidden_layers,
             "{}: target_modules names {} on {} of the model's {} layers; adapters on a subset of the layers "
             "are not supported",
             lora.origin, m, listed, model.num_hidden_layers);
  }
  for (const auto& [layer, names] : lora.layer_modules)
    R1_CHECK(layer < model.num_hidden_layers, "{}: target_modules names layer {}, but the model has {} layers",
             lora.origin, layer, model.num_hidden_layers);
  std::vector<ParamSpec> specs;
  int64_t off = 0;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    specs.push_back({std::move(name), std::move(shape), off});
    off += (specs.back().numel() + 15) / 16 * 16;
  };
  LayerWeights probe;  // only its visit order matters here
  for (int l = 0; l < model.num_hidden_layers; ++l) {
    const std::string prefix = "base_model.model.model.layers." + std::to_string(l) + ".";
    visit_layer_linears(probe, model, l, [&](Linear&, const std::string& module, int64_t in, int64_t out) {
      if (std::find(modules.begin(), modules.end(), leaf(module)) == modules.end()) return;
      add(prefix + module + ".lora_A.weight", {lora.rank, in});
      add(prefix + module + ".lora_B.weight", {out, lora.rank});
    });
  }
  return specs;
}

std::string lora_config_json(const LoraConfig& c, const std::string& base_model) {
  json j = {{"peft_type", "LORA"},
            {"task_type", "CAUSAL_LM"},
            {"base_model_name_or_path", base_model},
            {"r", c.rank},
            {"lora_alpha", c.alpha},
            {"lora_dropout", c.dropout},
            {"target_modules", c.modules()},
            {"use_rslora", c.rslora},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"use_dora", false},
            {"init_lora_weights", true},
            {"inference_mode", true},
            {"modules_to_save", nullptr},
            {"layers_to_transform", nullptr},
            {"rank_pattern", json::object()},
            {"alpha_pattern", json::object()}};
  return j.dump(2) + "\n";
}

LoraConfig lora_config_from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", source, e.what());
  }
  R1_CHECK(j.is_object(), "{}: must be a JSON object", source);
  auto get = [&](const char* key) -> const json* {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto expect = [&](const char* key, bool ok, const char* what) {
    R1_CHECK(ok, "{}: key '{}' {}", source, key, what);
  };
  const json* type = get("peft_type");
  expect("peft_type", type && type->is_string() && type->get<std::string>() == "LORA", "must be \"LORA\"");
  // What r1 does not implement is refused, never silently ignored.
  if (const json* v = get("use_dora")) expect("use_dora", v->is_boolean() && !v->get<bool>(), "(DoRA) is not supported");
  if (const json* v = get("bias")) expect("bias", v->is_string() && v->get<std::string>() == "none", "must be \"none\"");
  if (const json* v = get("fan_in_fan_out")) expect("fan_in_fan_out", v->is_boolean() && !v->get<bool>(), "must be false");
  for (const char* k : {"modules_to_save", "layers_to_transform", "layer_replication"})
    expect(k, get(k) == nullptr || (get(k)->is_array() && get(k)->empty()), "is not supported (must be null)");
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    expect(k, get(k) == nullptr || (get(k)->is_object() && get(k)->empty()), "is not supported (must be {})");
  LoraConfig c;
  const json* r = get("r");
  expect("r", r && r->is_number_integer(), "must be an integer");
  c.rank = r->get<int>();
  const json* alpha = get("lora_alpha");
  expect("lora_alpha", alpha && alpha->is_number(), "must be a number");
  c.alpha = alpha->get<double>();
  if (const json* d = get("lora_dropout")) {
    expect("lora_dropout", d->is_number(), "must be a number");
    c.dropout = d->get<double>();
  }
  if (const json* rs = get("use_rslora")) {
    expect("use_rslora", rs->is_boolean(), "must be true or false");
    c.rslora = rs->get<bool>();
  }
  const json* t = get("target_modules");
  expect("target_modules", t && (t->is_array() || (t->is_string() && t->get<std::string>() == "all-linear")),
         "must be a list of module names or \"all-linear\" (regular expressions are not supported)");
  c.targets.clear();
  if (t->is_string()) {
    c.targets.push_back("all-linear");
  } else {
    // A bare module name, or a full path "model.layers.N.self_attn.q_proj" (PEFT's expansion of
    // "all-linear"; its matching is by suffix, so any prefix before "layers.N." is the same).
    static const std::regex path(R"((?:.*\.)?layers\.(\d+)\.(?:self_attn|mlp)\.(\w+))");
    for (const json& m : *t) {
      expect("target_modules", m.is_string(), "must hold strings");
      const std::string name = m.get<std::string>();
      std::smatch sm;
      if (name.find('.') != std::string::npos && std::regex_match(name, sm, path)) {
        const std::string module = sm[2].str();
        const auto& n = linear_names();
        R1_CHECK(std::find(n.begin(), n.end(), module) != n.end(),
                 "{}: unknown LoRA target module '{}' in '{}' (valid: {})", source, module, name, fmt::join(n, ", "));
        c.layer_modules[std::stoi(sm[1].str())].insert(module);
      } else {
        c.targets.push_back(name);
      }
    }
  }
  c.origin = source;
  validate(c, source);
  return c;
}

}  // namespace r1::model
