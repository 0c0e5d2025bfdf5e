#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <numbers>

#include "base/error.h"
#include "base/fs.h"
#include "model/config.h"

using nlohmann::json;
using r1::model::ModelConfig;

namespace {

// Real config.json files, as published on the Hugging Face hub.
const char* kQwen25_05B = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

const char* kLlama32_1B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

const char* kQwen3_06B = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// transformers v5 layout: "dtype" and rope_parameters (rope_theta moves inside).
const char* kLlamaV5 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "bos_token_id": 128000,
  "dtype": "bfloat16",
  "eos_token_id": 128001,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05,
  "rope_parameters": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rope_type": "llama3"
  },
  "tie_word_embeddings": true,
  "transformers_version": "5.0.0",
  "vocab_size": 128256
})";

const char* kQwen3V5 = R"({
  "architectures": ["Qwen3ForCausalLM"],
  "dtype": "float32",
  "head_dim": 16,
  "hidden_size": 64,
  "intermediate_size": 176,
  "model_type": "qwen3",
  "num_attention_heads": 4,
  "num_hidden_layers": 2,
  "num_key_value_heads": 2,
  "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
  "vocab_size": 256
})";

ModelConfig parse(const char* text) {
  return r1::model::config_from_json(json::parse(text), "config.json");
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const r1::Error& e) {
    return e.what();
  }
  return "<no error>";
}

// The error message from parsing `base` with `patch` merged in (null values delete keys).
std::string parse_error(const char* base, const json& patch) {
  json j = json::parse(base);
  j.merge_patch(patch);
  return error_of([&] { r1::model::config_from_json(j, "bad/config.json"); });
}

void expect_same(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings,
            b.rope_scaling.original_max_position_embeddings);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.attention_bias, b.attention_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.hidden_act, b.hidden_act);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

ModelConfig round_trip(const ModelConfig& c) {
  // Through text, as a file would go.
  return r1::model::config_from_json(json::parse(r1::model::config_to_json(c).dump(2)), "rt");
}

// The llama3 rope formula in double precision, written out from its definition.
std::vector<double> llama3_inv_freq_double(double theta, int hd, double factor, double low,
                                           double high, double orig) {
  std::vector<double> r;
  for (int j = 0; j < hd / 2; ++j) {
    double inv = 1.0 / std::pow(theta, 2.0 * j / hd);
    double wavelen = 2 * std::numbers::pi / inv;
    if (wavelen > orig / low) {
      inv = inv / factor;
    } else if (wavelen >= orig / high) {
      double smooth = (orig / wavelen - low) / (high - low);
      inv = (1 - smooth) * inv / factor + smooth * inv;
    }
    r.push_back(inv);
  }
  return r;
}

}  // namespace

TEST(Config, ParsesQwen25) {
  ModelConfig c = parse(kQwen25_05B);
  EXPECT_EQ(c.model_type, "qwen2");
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.intermediate_size, 4864);
  EXPECT_EQ(c.num_hidden_layers, 24);
  EXPECT_EQ(c.num_attention_heads, 14);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 64);  // derived
  EXPECT_EQ(c.q_dim(), 896);
  EXPECT_EQ(c.kv_dim(), 128);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.attention_bias);  // qwen2 always has q/k/v biases
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151643});
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.num_parameters(), 494032768LL);  // the published count
}

TEST(Config, ParsesLlama32WithLlama3Rope) {
  ModelConfig c = parse(kLlama32_1B);
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.num_parameters(), 1235814400LL);  // the published count
}

TEST(Config, ParsesQwen3) {
  ModelConfig c = parse(kQwen3_06B);
  EXPECT_EQ(c.model_type, "qwen3");
  EXPECT_EQ(c.head_dim, 128);  // explicit, not 1024 / 16
  EXPECT_EQ(c.q_dim(), 2048);
  EXPECT_EQ(c.kv_dim(), 1024);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);  // written as an integer in the file
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{151645});
  EXPECT_EQ(c.num_parameters(), 596049920LL);  // 0.6B, 0.44B without embeddings
}

TEST(Config, ParsesTransformersV5Layout) {
  ModelConfig v5 = parse(kLlamaV5);
  EXPECT_EQ(v5.torch_dtype, "bfloat16");
  EXPECT_DOUBLE_EQ(v5.rope_theta, 500000.0);
  EXPECT_EQ(v5.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(v5.rope_scaling.factor, 32.0);
  EXPECT_EQ(v5.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(v5.rope_inv_freq(), parse(kLlama32_1B).rope_inv_freq());

  ModelConfig q = parse(kQwen3V5);
  EXPECT_EQ(q.torch_dtype, "float32");
  EXPECT_DOUBLE_EQ(q.rope_theta, 1e6);
  EXPECT_EQ(q.rope_scaling.type, "default");
  EXPECT_TRUE(q.qk_norm);
  // Defaults for what the file leaves out.
  EXPECT_EQ(q.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(q.rms_norm_eps, 1e-6);
  EXPECT_FALSE(q.tie_word_embeddings);
  EXPECT_EQ(q.bos_token_id, -1);
  EXPECT_TRUE(q.eos_token_ids.empty());
}

TEST(Config, DefaultsForOptionalKeys) {
  ModelConfig c = parse(R"({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
      "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4})");
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_EQ(c.torch_dtype, "float32");
  // Legacy "type" key and explicit "default" rope type both mean no scaling.
  json j = json::parse(kQwen25_05B);
  j["rope_scaling"] = {{"type", "default"}};
  EXPECT_EQ(r1::model::config_from_json(j, "x").rope_scaling.type, "default");
  j["rope_scaling"] = {{"type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  EXPECT_EQ(r1::model::config_from_json(j, "x").rope_scaling.type, "llama3");
}

TEST(Config, RopeInvFreqDefault) {
  ModelConfig c = parse(kQwen25_05B);
  auto inv = c.rope_inv_freq();
  ASSERT_EQ(inv.size(), 32u);
  for (int j = 0; j < 32; ++j) {
    double want = 1.0 / std::pow(1e6, 2.0 * j / 64);
    EXPECT_NEAR(inv[j], want, want * 1e-6) << j;
  }
  EXPECT_EQ(inv[0], 1.0f);
}

TEST(Config, RopeInvFreqLlama3) {
  ModelConfig c = parse(kLlama32_1B);
  auto inv = c.rope_inv_freq();
  auto want = llama3_inv_freq_double(500000.0, 64, 32.0, 1.0, 4.0, 8192.0);
  ASSERT_EQ(inv.size(), want.size());
  int high = 0, medium = 0, low = 0;
  for (size_t j = 0; j < inv.size(); ++j) {
    EXPECT_NEAR(inv[j], want[j], want[j] * 2e-6) << "j=" << j;
    double base = 1.0 / std::pow(500000.0, 2.0 * double(j) / 64);
    double wavelen = 2 * std::numbers::pi / base;
    if (wavelen < 2048) {
      ++high;
      EXPECT_NEAR(inv[j], base, base * 2e-6);  // untouched
    } else if (wavelen > 8192) {
      ++low;
      EXPECT_NEAR(inv[j], base / 32, base / 32 * 2e-6);  // divided by the factor
    } else {
      ++medium;
      EXPECT_LT(inv[j], base);
      EXPECT_GT(inv[j], base / 32);
    }
  }
  // Each of the three bands is exercised.
  EXPECT_GT(high, 0);
  EXPECT_GT(medium, 0);
  EXPECT_GT(low, 0);

  // Another shape, with a medium band of several entries.
  ModelConfig d = c;
  d.head_dim = 128;
  d.rope_theta = 10000.0;
  d.rope_scaling.factor = 8.0;
  d.rope_scaling.original_max_position_embeddings = 4096;
  auto inv2 = d.rope_inv_freq();
  auto want2 = llama3_inv_freq_double(10000.0, 128, 8.0, 1.0, 4.0, 4096.0);
  ASSERT_EQ(inv2.size(), 64u);
  for (size_t j = 0; j < inv2.size(); ++j) EXPECT_NEAR(inv2[j], want2[j], want2[j] * 2e-6) << j;
}

TEST(Config, ErrorsNameTheKey) {
  EXPECT_NE(parse_error(kQwen25_05B, {{"hidden_size", nullptr}})
                .find("bad/config.json: missing key 'hidden_size'"),
            std::string::npos);
  EXPECT_NE(parse_error(kQwen25_05B, {{"vocab_size", nullptr}}).find("missing key 'vocab_size'"),
            std::string::npos);
  std::string e = parse_error(kQwen25_05B, {{"model_type", "mistral"}});
  EXPECT_NE(e.find("bad/config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("'mistral'"), std::string::npos) << e;
  EXPECT_NE(e.find("qwen2, llama, qwen3"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"hidden_size", "abc"}});
  EXPECT_NE(e.find("'hidden_size'"), std::string::npos) << e;
  EXPECT_NE(e.find("integer"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"rms_norm_eps", "small"}});
  EXPECT_NE(e.find("'rms_norm_eps'"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"tie_word_embeddings", 1}});
  EXPECT_NE(e.find("'tie_word_embeddings'"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"num_hidden_layers", 2.5}});
  EXPECT_NE(e.find("'num_hidden_layers'"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"hidden_act", "gelu"}});
  EXPECT_NE(e.find("hidden_act 'gelu'"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"num_key_value_heads", 3}});
  EXPECT_NE(e.find("multiple of num_key_value_heads"), std::string::npos) << e;
  e = parse_error(kQwen3_06B, {{"head_dim", 127}});
  EXPECT_NE(e.find("head_dim (127) must be even"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"hidden_size", 0}});
  EXPECT_NE(e.find("'hidden_size' must be > 0"), std::string::npos) << e;
  e = parse_error(kQwen25_05B, {{"use_sliding_window", true}});
  EXPECT_NE(e.find("use_sliding_window"), std::string::npos) << e;
  e = error_of([] { r1::model::config_from_json(json::array(), "arr.json"); });
  EXPECT_NE(e.find("arr.json"), std::string::npos) << e;
}

TEST(Config, RejectsUnsupportedRope) {
  for (const char* t : {"linear", "dynamic", "longrope"}) {
    std::string e =
        parse_error(kQwen25_05B, {{"rope_scaling", {{"rope_type", t}, {"factor", 4.0}}}});
    EXPECT_NE(e.find(std::string("unsupported rope type '") + t + "'"), std::string::npos) << e;
    EXPECT_NE(e.find("bad/config.json"), std::string::npos) << e;
    e = parse_error(kLlamaV5, {{"rope_parameters", {{"rope_type", t}}}});
    EXPECT_NE(e.find(std::string("'") + t + "'"), std::string::npos) << e;
  }
  // The legacy "type" spelling too.
  std::string e = parse_error(kQwen25_05B, {{"rope_scaling", {{"type", "dynamic"}}}});
  EXPECT_NE(e.find("'dynamic'"), std::string::npos) << e;
  // llama3 without its parameters.
  e = parse_error(kLlama32_1B, {{"rope_scaling", {{"factor", nullptr}}}});
  EXPECT_NE(e.find("rope_scaling.factor"), std::string::npos) << e;
  e = parse_error(kLlama32_1B, {{"rope_scaling", 3}});
  EXPECT_NE(e.find("'rope_scaling'"), std::string::npos) << e;
}

TEST(Config, ToJsonLayout) {
  ModelConfig q = parse(kQwen25_05B);
  json j = r1::model::config_to_json(q);
  EXPECT_EQ(j["architectures"], json::array({"Qwen2ForCausalLM"}));
  EXPECT_EQ(j["model_type"], "qwen2");
  EXPECT_TRUE(j["rope_scaling"].is_null());
  EXPECT_EQ(j["rope_theta"], 1e6);
  EXPECT_EQ(j["eos_token_id"], 151643);  // single id as an int
  EXPECT_EQ(j["bos_token_id"], 151643);
  EXPECT_EQ(j["torch_dtype"], "bfloat16");
  EXPECT_EQ(j["use_sliding_window"], false);
  EXPECT_EQ(j["max_window_layers"], 24);
  EXPECT_EQ(j["hidden_act"], "silu");
  EXPECT_EQ(j["use_cache"], true);
  EXPECT_EQ(j["head_dim"], 64);
  EXPECT_EQ(j["tie_word_embeddings"], true);
  EXPECT_EQ(j["attention_dropout"], 0.0);
  EXPECT_EQ(j["initializer_range"], 0.02);
  EXPECT_FALSE(j.contains("qk_norm"));

  json l = r1::model::config_to_json(parse(kLlama32_1B));
  EXPECT_EQ(l["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(l["attention_bias"], false);
  EXPECT_EQ(l["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(l["rope_scaling"]["factor"], 32.0);
  EXPECT_EQ(l["rope_scaling"]["low_freq_factor"], 1.0);
  EXPECT_EQ(l["rope_scaling"]["high_freq_factor"], 4.0);
  EXPECT_EQ(l["rope_scaling"]["original_max_position_embeddings"], 8192);
  EXPECT_EQ(l["eos_token_id"], json::array({128001, 128008, 128009}));
  EXPECT_FALSE(l.contains("use_sliding_window"));

  json q3 = r1::model::config_to_json(parse(kQwen3_06B));
  EXPECT_EQ(q3["architectures"], json::array({"Qwen3ForCausalLM"}));
  EXPECT_EQ(q3["head_dim"], 128);
  EXPECT_EQ(q3["attention_bias"], false);
  EXPECT_FALSE(q3.contains("qk_norm"));
}

TEST(Config, RoundTrip) {
  for (const char* text : {kQwen25_05B, kLlama32_1B, kQwen3_06B, kLlamaV5, kQwen3V5}) {
    ModelConfig c = parse(text);
    expect_same(c, round_trip(c));
  }
  for (const auto& name : r1::model::preset_names()) {
    for (const char* t : {"qwen2", "llama", "qwen3"}) {
      SCOPED_TRACE(name + " " + t);
      ModelConfig c = r1::model::preset_config(name, t);
      expect_same(c, round_trip(c));
    }
  }
  // Through a file: 2-space indented, loaded back the same.
  char tmpl[] = "/tmp/r1_config_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string path = r1::fs::join(dir, "config.json");
  ModelConfig c = parse(kLlama32_1B);
  r1::model::save_config(c, path);
  std::string text = r1::fs::read_file(path);
  EXPECT_NE(text.find("\n  \"model_type\": \"llama\""), std::string::npos) << text;
  expect_same(c, r1::model::load_config(path));
  std::filesystem::remove_all(dir);
}

TEST(Config, LoadErrorsNameTheFile) {
  char tmpl[] = "/tmp/r1_config_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string missing = r1::fs::join(dir, "nope.json");
  std::string e = error_of([&] { r1::model::load_config(missing); });
  EXPECT_NE(e.find(missing), std::string::npos) << e;
  std::string bad = r1::fs::join(dir, "config.json");
  r1::fs::write_file_atomic(bad, "{\"model_type\": \"qwen2\",");
  e = error_of([&] { r1::model::load_config(bad); });
  EXPECT_NE(e.find(bad + ": invalid JSON"), std::string::npos) << e;
  r1::fs::write_file_atomic(bad, "{\"model_type\": \"qwen2\"}");
  e = error_of([&] { r1::model::load_config(bad); });
  EXPECT_NE(e.find(bad + ": missing key 'vocab_size'"), std::string::npos) << e;
  std::filesystem::remove_all(dir);
}

TEST(Config, Presets) {
  ModelConfig tiny = r1::model::preset_config("tiny");
  EXPECT_EQ(tiny.model_type, "qwen2");
  EXPECT_EQ(tiny.vocab_size, 256);
  EXPECT_EQ(tiny.hidden_size, 64);
  EXPECT_EQ(tiny.intermediate_size, 176);
  EXPECT_EQ(tiny.num_hidden_layers, 2);
  EXPECT_EQ(tiny.num_attention_heads, 4);
  EXPECT_EQ(tiny.num_key_value_heads, 2);
  EXPECT_EQ(tiny.head_dim, 16);
  EXPECT_EQ(tiny.max_position_embeddings, 512);
  EXPECT_TRUE(tiny.tie_word_embeddings);
  EXPECT_TRUE(tiny.attention_bias);
  // 256*64 + 2*(128 + 64*64+64 + 2*(64*32+32) + 64*64 + 3*64*176) + 64
  EXPECT_EQ(tiny.num_parameters(), 16384 + 2 * (128 + 4160 + 4160 + 4096 + 33792) + 64);

  for (const char* t : {"qwen2", "llama", "qwen3"}) {
    ModelConfig c = r1::model::preset_config("10m", t);
    EXPECT_GE(c.num_parameters(), 9'000'000) << t;
    EXPECT_LE(c.num_parameters(), 11'000'000) << t;
    EXPECT_EQ(c.vocab_size, 8192);
    EXPECT_EQ(c.hidden_size, 256);
    EXPECT_EQ(c.num_hidden_layers, 6);
    EXPECT_EQ(c.max_position_embeddings, 2048);
  }
  ModelConfig q05 = r1::model::preset_config("qwen2.5-0.5b");
  EXPECT_EQ(q05.num_parameters(), 494032768LL);
  EXPECT_EQ(q05.head_dim, 64);
  EXPECT_DOUBLE_EQ(q05.rope_theta, 1e6);
  EXPECT_EQ(q05.max_position_embeddings, 32768);
  EXPECT_EQ(r1::model::preset_config("qwen2.5-1.5b").num_parameters(), 1543714304LL);

  ModelConfig l = r1::model::preset_config("tiny", "llama");
  EXPECT_FALSE(l.attention_bias);
  EXPECT_FALSE(l.qk_norm);
  ModelConfig q3 = r1::model::preset_config("tiny", "qwen3");
  EXPECT_FALSE(q3.attention_bias);
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.head_dim, 16);
  EXPECT_EQ(r1::model::config_to_json(q3)["head_dim"], 16);
  EXPECT_EQ(q3.num_parameters(), l.num_parameters() + 2 * 2 * 16);

  std::string e = error_of([] { r1::model::preset_config("huge"); });
  EXPECT_NE(e.find("'huge'"), std::string::npos) << e;
  EXPECT_NE(e.find("tiny, 10m, qwen2.5-0.5b, qwen2.5-1.5b"), std::string::npos) << e;
  e = error_of([] { r1::model::preset_config("tiny", "gpt2"); });
  EXPECT_NE(e.find("'gpt2'"), std::string::npos) << e;
}

TEST(Config, Override) {
  ModelConfig c = r1::model::preset_config("tiny");
  r1::model::override_config(c, "num_hidden_layers", "3");
  EXPECT_EQ(c.num_hidden_layers, 3);
  r1::model::override_config(c, "hidden_size", "128");
  EXPECT_EQ(c.head_dim, 32);  // hidden / heads
  r1::model::override_config(c, "num_attention_heads", "8");
  EXPECT_EQ(c.head_dim, 16);
  r1::model::override_config(c, "head_dim", "64");
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.q_dim(), 512);
  r1::model::override_config(c, "rope_theta", "1e6");
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  r1::model::override_config(c, "rms_norm_eps", "1e-5");
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  r1::model::override_config(c, "tie_word_embeddings", "false");
  EXPECT_FALSE(c.tie_word_embeddings);
  r1::model::override_config(c, "model_type", "qwen3");
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  r1::model::override_config(c, "attention_bias", "true");
  EXPECT_TRUE(c.attention_bias);
  expect_same(c, round_trip(c));
  // qk_norm off the model type's default survives a round trip (an r1-only key).
  r1::model::override_config(c, "model_type", "llama");
  r1::model::override_config(c, "qk_norm", "true");
  EXPECT_TRUE(c.qk_norm);
  expect_same(c, round_trip(c));
  r1::model::override_config(c, "eos_token_id", "5,7");
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{5, 7}));
}

TEST(Config, OverrideErrors) {
  ModelConfig c = r1::model::preset_config("tiny");
  const ModelConfig before = c;
  std::string e = error_of([&] { r1::model::override_config(c, "hiden_size", "128"); });
  EXPECT_NE(e.find("unknown config key 'hiden_size' (did you mean 'hidden_size'?)"),
            std::string::npos)
      << e;
  e = error_of([&] { r1::model::override_config(c, "num_layers", "4"); });
  EXPECT_NE(e.find("did you mean 'num_hidden_layers'?"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "xyz", "4"); });
  EXPECT_NE(e.find("unknown config key 'xyz' (known: vocab_size, hidden_size"), std::string::npos)
      << e;
  e = error_of([&] { r1::model::override_config(c, "hidden_size", "abc"); });
  EXPECT_NE(e.find("'hidden_size'"), std::string::npos) << e;
  EXPECT_NE(e.find("'abc'"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "vocab_size", "12x"); });
  EXPECT_NE(e.find("'vocab_size'"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "rope_theta", "big"); });
  EXPECT_NE(e.find("'rope_theta'"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "tie_word_embeddings", "yes"); });
  EXPECT_NE(e.find("'tie_word_embeddings'"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "num_attention_heads", "3"); });
  EXPECT_NE(e.find("divisible"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "num_key_value_heads", "3"); });
  EXPECT_NE(e.find("multiple of num_key_value_heads"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "head_dim", "15"); });
  EXPECT_NE(e.find("must be even"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "vocab_size", "0"); });
  EXPECT_NE(e.find("'vocab_size' must be > 0"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "model_type", "gpt2"); });
  EXPECT_NE(e.find("'gpt2'"), std::string::npos) << e;
  e = error_of([&] { r1::model::override_config(c, "attention_bias", "false"); });
  EXPECT_NE(e.find("qwen2 always has"), std::string::npos) << e;
  // A failed override leaves the config as it was.
  expect_same(c, before);
}
