// The config.json key table: its rows are well formed, docs/CONFIG.md is generated from it,
// `--set` / model.init_overrides apply all settings before checking, and the real presets hold
// the published config.json values.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/fs.h"
#include "model/config.h"
#include "model/config_keys.h"
#include "test_util.h"
#include "text/codec.h"
#include "run/recipe.h"
#include "run/run_inputs.h"

using nlohmann::json;
using r1::model::ConfigKey;
using r1::model::ModelConfig;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const r1::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// Everything a config.json would hold, so two configs compare key by key.
json written(const ModelConfig& c) { return r1::model::config_to_json(c); }

}  // namespace

TEST(ConfigTable, RowsAreWellFormed) {
  std::set<std::string_view> seen;
  for (const ConfigKey& k : r1::model::config_keys()) {
    SCOPED_TRACE(std::string(k.name));
    EXPECT_TRUE(seen.insert(k.name).second) << "declared twice";
    EXPECT_FALSE(k.doc.empty());
    EXPECT_EQ(k.derive != nullptr,
              !k.default_doc.empty() && !std::holds_alternative<r1::model::Computed>(k.field))
        << "a derived default is described in default_doc";
    // A member follows its object; a condition names a key declared before it.
    const size_t dot = k.name.find('.');
    if (dot != std::string_view::npos) {
      const ConfigKey* parent = r1::model::find_config_key(k.name.substr(0, dot));
      ASSERT_NE(parent, nullptr);
      EXPECT_TRUE(std::holds_alternative<r1::model::Object>(parent->field));
      EXPECT_TRUE(seen.count(parent->name));
    }
    if (!k.when.key.empty()) {
      EXPECT_TRUE(seen.count(k.when.key)) << k.when.key;
    }
    for (size_t start = 0; start < k.follows.size();) {
      const size_t end = std::min(k.follows.find(' ', start), k.follows.size());
      EXPECT_NE(r1::model::find_config_key(k.follows.substr(start, end - start)), nullptr);
      start = end + 1;
    }
    if (!k.choices.empty()) {
      EXPECT_EQ(r1::model::key_type_name(k), "string");
    }
  }
  EXPECT_EQ(r1::model::find_config_key("hidden_size")->name, "hidden_size");
  EXPECT_EQ(r1::model::find_config_key("no_such_key"), nullptr);
}

TEST(ConfigTable, DocsAreUpToDate) {
  const std::string path = r1::test::source_path("docs/CONFIG.md");
  const std::string want = r1::model::config_reference_markdown();
  ASSERT_TRUE(r1::fs::exists(path)) << "run: build/r1 init --list-keys > docs/CONFIG.md";
  EXPECT_EQ(r1::fs::read_file(path), want)
      << "docs/CONFIG.md is out of date with the key table: run build/r1 init --list-keys > docs/CONFIG.md";
  // Every key and every preset is in it.
  for (const ConfigKey& k : r1::model::config_keys())
    EXPECT_NE(want.find("| `" + std::string(k.name) + "` |"), std::string::npos) << k.name;
  for (const std::string& p : r1::model::preset_names())
    EXPECT_NE(want.find("| `" + p + "` |"), std::string::npos) << p;
}

TEST(ConfigTable, UnknownKeysAreIgnoredKnownKeysChecked) {
  json j = written(r1::model::preset_config("tiny", "llama"));
  j["transformers_version"] = "4.51.0";
  j["some_future_key"] = {{"x", 1}};
  j["sliding_window"] = 4096;  // a written-only key: not read
  EXPECT_EQ(written(r1::model::config_from_json(j, "c.json")),
            written(r1::model::preset_config("tiny", "llama")));
  j["mlp_bias"] = true;
  EXPECT_NE(error_of([&] {
              r1::model::config_from_json(j, "c.json");
            }).find("c.json: 'mlp_bias' true is not supported (the MLP has no biases)"),
            std::string::npos);
  // mlp_bias is not a qwen2 key: transformers' Qwen2 ignores it, and so does r1.
  j["model_type"] = "qwen2";
  EXPECT_TRUE(r1::model::config_from_json(j, "c.json").attention_bias);
}

// The case from issue 18: a 7B shape over a preset of another head count. One at a time,
// hidden_size=3584 is checked against the preset's 12 heads; together the result is valid.
TEST(ConfigTable, SettingsApplyTogether) {
  const ModelConfig base = r1::model::preset_config("qwen2.5-1.5b");
  ModelConfig one_by_one = base;
  EXPECT_NE(
      error_of([&] { r1::model::override_config(one_by_one, "hidden_size", "3584"); }).find("divisible"),
      std::string::npos);

  const std::vector<std::string> to_7b = {"hidden_size=3584",
                                          "num_attention_heads=28",
                                          "num_key_value_heads=4",
                                          "intermediate_size=18944",
                                          "vocab_size=152064",
                                          "tie_word_embeddings=false",
                                          "max_position_embeddings=131072"};
  ModelConfig c = base;
  r1::model::apply_config_settings(c, to_7b, "--set");
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(written(c), written(r1::model::preset_config("qwen2.5-7b")));
  // Any order gives the same config.
  ModelConfig reversed = base;
  r1::model::apply_config_settings(reversed, {to_7b.rbegin(), to_7b.rend()}, "--set");
  EXPECT_EQ(written(reversed), written(c));

  // A derived key follows what it derives from unless it is set too, wherever it stands.
  ModelConfig hd = base;
  r1::model::apply_config_settings(hd, {"head_dim=64", "hidden_size=3584", "num_attention_heads=28"},
                                   "--set");
  EXPECT_EQ(hd.head_dim, 64);
  ModelConfig t = r1::model::preset_config("tiny");
  r1::model::apply_config_settings(t, {"attention_bias=true", "model_type=llama"}, "--set");
  EXPECT_TRUE(t.attention_bias);
  EXPECT_FALSE(t.qk_norm);
  r1::model::apply_config_settings(t, {"model_type=qwen3"}, "--set");
  EXPECT_FALSE(t.attention_bias);  // follows model_type again
  EXPECT_TRUE(t.qk_norm);
}

TEST(ConfigTable, SettingErrorsLeaveTheConfig) {
  const ModelConfig base = r1::model::preset_config("qwen2.5-1.5b");
  ModelConfig c = base;
  std::string e = error_of([&] {
    r1::model::apply_config_settings(c, {"hidden_size=3584", "num_attention_heads=27"}, "--set");
  });
  EXPECT_NE(e.find("--set hidden_size=3584 num_attention_heads=27: "), std::string::npos) << e;
  EXPECT_NE(e.find("not divisible"), std::string::npos) << e;
  e = error_of([&] { r1::model::apply_config_settings(c, {"hidden_size"}, "--set"); });
  EXPECT_NE(e.find("--set: 'hidden_size' is not KEY=VALUE"), std::string::npos) << e;
  e = error_of([&] { r1::model::apply_config_settings(c, {"architectures=x"}, "--set"); });
  EXPECT_NE(e.find("config key 'architectures' is not set this way"), std::string::npos) << e;
  e = error_of([&] { r1::model::apply_config_settings(c, {"torch_dtype=float64"}, "--set"); });
  EXPECT_NE(e.find("unsupported torch_dtype 'float64' (supported: float32, bfloat16, float16)"),
            std::string::npos)
      << e;
  EXPECT_EQ(written(c), written(base));
}

TEST(ConfigTable, NestedRopeKeysAreSetByDottedNames) {
  ModelConfig c = r1::model::preset_config("tiny", "llama");
  std::string e = error_of([&] { r1::model::apply_config_settings(c, {"rope_scaling.factor=8"}, "--set"); });
  EXPECT_NE(e.find("config key 'rope_scaling.factor' does not apply"), std::string::npos) << e;
  EXPECT_NE(e.find("only when rope_scaling.rope_type is llama3"), std::string::npos) << e;
  r1::model::apply_config_settings(c,
                                   {"rope_scaling.factor=8", "rope_scaling.rope_type=llama3",
                                    "rope_scaling.original_max_position_embeddings=256"},
                                   "--set");
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  const json j = written(c);
  EXPECT_EQ(j["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(j["rope_scaling"]["original_max_position_embeddings"], 256);
  EXPECT_EQ(written(r1::model::config_from_json(j, "rt")), j);
  e = error_of([&] { r1::model::apply_config_settings(c, {"rope_scaling.rope_type=dynamic"}, "--set"); });
  EXPECT_NE(e.find("unsupported rope type 'dynamic'"), std::string::npos) << e;
}

// A recipe's model.init_overrides goes through the same path: all keys, then one check.
TEST(ConfigTable, RecipeInitOverridesApplyTogether) {
  r1::run::Recipe r(json{{"model", r1::run::model_section()}});
  r.set("model.init_overrides=[hidden_size=60, num_attention_heads=6]");  // 60 / 4 heads = 15: odd
  r1::text::ByteCodec codec;
  auto m = r1::run::load_or_init_model(r, codec, r1::Device::CPU, 1, /*trainable=*/false);
  EXPECT_EQ(m->config().head_dim, 10);
  EXPECT_EQ(m->config().num_attention_heads, 6);
  r.set("model.init_overrides=[hidden_size=60, num_attention_heads=7]");
  const std::string e = error_of([&] { r1::run::load_or_init_model(r, codec, r1::Device::CPU, 1, false); });
  EXPECT_NE(e.find("recipe key 'model.init_overrides' vocab_size=257 hidden_size=60 num_attention_heads=7: "),
            std::string::npos)
      << e;
  // An explicit vocab_size among the overrides wins over the codec's.
  r.set("model.init_overrides=[vocab_size=300]");
  EXPECT_EQ(r1::run::load_or_init_model(r, codec, r1::Device::CPU, 1, false)->config().vocab_size, 300);
}

namespace {

// The published config.json of each base model (Hugging Face hub), the keys r1 reads.
struct Published {
  const char* preset;
  long long parameters;  // the published count, exactly as the weights hold it
  const char* config;
};

const Published kPublished[] = {
    {"qwen2.5-3b", 3'085'938'688LL, R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
      "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
      "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 32768,
      "max_window_layers": 36, "model_type": "qwen2", "num_attention_heads": 16, "num_hidden_layers": 36,
      "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768,
      "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
      "vocab_size": 151936})"},
    {"qwen2.5-7b", 7'615'616'512LL, R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
      "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
      "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 131072,
      "max_window_layers": 28, "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28,
      "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
      "vocab_size": 152064})"},
    {"qwen2.5-14b", 14'770'033'664LL, R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
      "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 5120,
      "initializer_range": 0.02, "intermediate_size": 13824, "max_position_embeddings": 131072,
      "max_window_layers": 48, "model_type": "qwen2", "num_attention_heads": 40, "num_hidden_layers": 48,
      "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": 131072,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
      "vocab_size": 152064})"},
    {"qwen2.5-32b", 32'763'876'352LL, R"({"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
      "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 5120,
      "initializer_range": 0.02, "intermediate_size": 27648, "max_position_embeddings": 131072,
      "max_window_layers": 64, "model_type": "qwen2", "num_attention_heads": 40, "num_hidden_layers": 64,
      "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": 131072,
      "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
      "vocab_size": 152064})"},
    {"llama-3.1-8b", 8'030'261'248LL, R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false,
      "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu",
      "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
      "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32,
      "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
      "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
      "vocab_size": 128256})"},
};

}  // namespace

TEST(ConfigPresets, MatchThePublishedConfigs) {
  for (const Published& p : kPublished) {
    SCOPED_TRACE(p.preset);
    ModelConfig preset = r1::model::preset_config(p.preset);
    const ModelConfig published = r1::model::config_from_json(json::parse(p.config), p.preset);
    EXPECT_EQ(preset.num_parameters(), p.parameters);
    EXPECT_EQ(published.num_parameters(), p.parameters);
    preset.torch_dtype = published.torch_dtype;  // r1 init writes the dtype it stores
    EXPECT_EQ(written(preset), written(published));
  }
  // Rounded as the model cards give them.
  EXPECT_NEAR(r1::model::preset_config("qwen2.5-7b").num_parameters() / 1e9, 7.62, 0.005);
  EXPECT_NEAR(r1::model::preset_config("qwen2.5-32b").num_parameters() / 1e9, 32.76, 0.005);
  EXPECT_NEAR(r1::model::preset_config("llama-3.1-8b").num_parameters() / 1e9, 8.03, 0.005);
  // The preset's own architecture unless another is asked for.
  EXPECT_EQ(r1::model::preset_config("llama-3.1-8b").model_type, "llama");
  EXPECT_EQ(r1::model::preset_config("llama-3.1-8b", "qwen3").model_type, "qwen3");
  EXPECT_EQ(r1::model::preset_config("llama-3.1-8b").rope_inv_freq(),
            r1::model::config_from_json(json::parse(kPublished[4].config), "llama").rope_inv_freq());
}
