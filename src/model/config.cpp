#include "model/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <numbers>

#include "base/error.h"
#include "base/strings.h"
#include "base/fs.h"

namespace r1::model {

using nlohmann::json;

namespace {

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> t = {"qwen2", "llama", "qwen3"};
  return t;
}

std::string join_list(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

void check_model_type(const std::string& t, const std::string& source) {
  const auto& ok = supported_model_types();
  R1_CHECK(std::find(ok.begin(), ok.end(), t) != ok.end(),
           "{}: unsupported model_type '{}' (supported: {})", source, t, join_list(ok));
}

// The values that follow from the model type (qwen2 always has q/k/v biases; qwen3 always has
// per-head RMSNorm on q and k).
void apply_model_type_defaults(ModelConfig& c) {
  c.attention_bias = c.model_type == "qwen2";
  c.qk_norm = c.model_type == "qwen3";
}

// A key that is absent or null counts as absent.
const json* find_key(const json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string shown(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

int as_int(const json& v, const std::string& key, const std::string& source) {
  if (v.is_number_integer() || v.is_number_unsigned()) {
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      R1_CHECK(u <= uint64_t(INT32_MAX), "{}: key '{}' = {} is out of range", source, key, u);
      return int(u);
    }
    int64_t x = v.get<int64_t>();
    R1_CHECK(x >= INT32_MIN && x <= INT32_MAX, "{}: key '{}' = {} is out of range", source, key, x);
    return int(x);
  }
  if (v.is_number_float()) {  // 32768.0 is accepted; 1.5 is not
    double d = v.get<double>();
    R1_CHECK(std::floor(d) == d && std::fabs(d) <= double(INT32_MAX),
             "{}: key '{}' must be an integer (got {})", source, key, shown(v));
    return int(d);
  }
  fail("{}: key '{}' must be an integer (got {})", source, key, shown(v));
}

double as_double(const json& v, const std::string& key, const std::string& source) {
  R1_CHECK(v.is_number(), "{}: key '{}' must be a number (got {})", source, key, shown(v));
  return v.get<double>();
}

bool as_bool(const json& v, const std::string& key, const std::string& source) {
  R1_CHECK(v.is_boolean(), "{}: key '{}' must be true or false (got {})", source, key, shown(v));
  return v.get<bool>();
}

std::string as_string(const json& v, const std::string& key, const std::string& source) {
  R1_CHECK(v.is_string(), "{}: key '{}' must be a string (got {})", source, key, shown(v));
  return v.get<std::string>();
}

int required_int(const json& j, const std::string& key, const std::string& source) {
  const json* v = find_key(j, key);
  R1_CHECK(v, "{}: missing key '{}'", source, key);
  return as_int(*v, key, source);
}

int optional_int(const json& j, const std::string& key, const std::string& source, int dflt) {
  const json* v = find_key(j, key);
  return v ? as_int(*v, key, source) : dflt;
}

double optional_double(const json& j, const std::string& key, const std::string& source,
                       double dflt) {
  const json* v = find_key(j, key);
  return v ? as_double(*v, key, source) : dflt;
}

bool optional_bool(const json& j, const std::string& key, const std::string& source, bool dflt) {
  const json* v = find_key(j, key);
  return v ? as_bool(*v, key, source) : dflt;
}

// Reads rope scaling from an object holding rope_type (or the older "type") and its parameters;
// `where` is the key path for messages ("rope_scaling" or "rope_parameters").
RopeScaling parse_rope(const json& r, const std::string& where, const std::string& source) {
  R1_CHECK(r.is_object(), "{}: key '{}' must be an object or null (got {})", source, where,
           shown(r));
  RopeScaling rs;
  std::string type = "default";
  if (const json* t = find_key(r, "rope_type")) {
    type = as_string(*t, where + ".rope_type", source);
  } else if (const json* t2 = find_key(r, "type")) {
    type = as_string(*t2, where + ".type", source);
  }
  if (type == "default") return rs;
  R1_CHECK(type == "llama3", "{}: unsupported rope type '{}' in '{}' (supported: default, llama3)",
           source, type, where);
  auto req_d = [&](const char* k) {
    const json* v = find_key(r, k);
    R1_CHECK(v, "{}: missing key '{}.{}' (required for llama3 rope scaling)", source, where, k);
    return as_double(*v, where + "." + k, source);
  };
  rs.type = "llama3";
  rs.factor = req_d("factor");
  rs.low_freq_factor = req_d("low_freq_factor");
  rs.high_freq_factor = req_d("high_freq_factor");
  const json* om = find_key(r, "original_max_position_embeddings");
  R1_CHECK(om,
           "{}: missing key '{}.original_max_position_embeddings' (required for llama3 rope "
           "scaling)",
           source, where);
  rs.original_max_position_embeddings =
      as_int(*om, where + ".original_max_position_embeddings", source);
  return rs;
}

void validate(const ModelConfig& c, const std::string& source) {
  check_model_type(c.model_type, source);
  auto pos = [&](int v, const char* k) {
    R1_CHECK(v > 0, "{}: '{}' must be > 0 (got {})", source, k, v);
  };
  pos(c.vocab_size, "vocab_size");
  pos(c.hidden_size, "hidden_size");
  pos(c.intermediate_size, "intermediate_size");
  pos(c.num_hidden_layers, "num_hidden_layers");
  pos(c.num_attention_heads, "num_attention_heads");
  pos(c.num_key_value_heads, "num_key_value_heads");
  pos(c.head_dim, "head_dim");
  pos(c.max_position_embeddings, "max_position_embeddings");
  R1_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
           "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", source,
           c.num_attention_heads, c.num_key_value_heads);
  R1_CHECK(c.head_dim % 2 == 0, "{}: head_dim ({}) must be even for rotary embeddings", source,
           c.head_dim);
  R1_CHECK(c.rms_norm_eps > 0 && std::isfinite(c.rms_norm_eps),
           "{}: 'rms_norm_eps' must be > 0 (got {})", source, c.rms_norm_eps);
  R1_CHECK(c.rope_theta > 0 && std::isfinite(c.rope_theta), "{}: 'rope_theta' must be > 0 (got {})",
           source, c.rope_theta);
  R1_CHECK(c.hidden_act == "silu", "{}: unsupported hidden_act '{}' (supported: silu)", source,
           c.hidden_act);
  R1_CHECK(c.num_labels >= 0, "{}: 'num_labels' must be >= 0 (got {})", source, c.num_labels);
  if (c.rope_scaling.type == "llama3") {
    const RopeScaling& r = c.rope_scaling;
    R1_CHECK(r.factor > 0, "{}: rope_scaling.factor must be > 0 (got {})", source, r.factor);
    R1_CHECK(r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor,
             "{}: rope_scaling needs 0 < low_freq_factor < high_freq_factor (got {} and {})",
             source, r.low_freq_factor, r.high_freq_factor);
    R1_CHECK(r.original_max_position_embeddings > 0,
             "{}: rope_scaling.original_max_position_embeddings must be > 0 (got {})", source,
             r.original_max_position_embeddings);
  } else {
    R1_CHECK(c.rope_scaling.type == "default",
             "{}: unsupported rope type '{}' (supported: default, llama3)", source,
             c.rope_scaling.type);
  }
}

// 0 for a causal LM; for an architecture "*ForSequenceClassification", the number of labels as HF
// counts them: id2label's size, else num_labels, else transformers' default of 2.
int parse_num_labels(const json& j, const std::string& source) {
  const json* arch = find_key(j, "architectures");
  bool classifier = false;
  if (arch && arch->is_array())
    for (const json& a : *arch) {
      const std::string suffix = "ForSequenceClassification";
      classifier |= a.is_string() && a.get<std::string>().size() > suffix.size() &&
                    a.get<std::string>().ends_with(suffix);
    }
  if (!classifier) return 0;
  int n = 2;
  if (const json* labels = find_key(j, "id2label")) {
    R1_CHECK(labels->is_object(), "{}: key 'id2label' must be an object (got {})", source, shown(*labels));
    n = int(labels->size());
  } else if (find_key(j, "num_labels")) {
    n = required_int(j, "num_labels", source);
  }
  R1_CHECK(n >= 1, "{}: a sequence classifier needs at least one label (got {})", source, n);
  return n;
}

const char* architecture_name(const ModelConfig& c) {
  const bool cls = c.has_score_head();
  if (c.model_type == "qwen2") return cls ? "Qwen2ForSequenceClassification" : "Qwen2ForCausalLM";
  if (c.model_type == "llama") return cls ? "LlamaForSequenceClassification" : "LlamaForCausalLM";
  if (c.model_type == "qwen3") return cls ? "Qwen3ForSequenceClassification" : "Qwen3ForCausalLM";
  return nullptr;
}

int parse_int_value(const std::string& key, const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  R1_CHECK(ec == std::errc() && p == s.data() + s.size() && !s.empty(),
           "config key '{}': '{}' is not an integer", key, s);
  return v;
}

double parse_double_value(const std::string& key, const std::string& s) {
  char* end = nullptr;
  double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  R1_CHECK(!s.empty() && end == s.c_str() + s.size() && std::isfinite(v),
           "config key '{}': '{}' is not a number", key, s);
  return v;
}

bool parse_bool_value(const std::string& key, const std::string& s) {
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  fail("config key '{}': '{}' is not a boolean (use true or false)", key, s);
}

}  // namespace

std::vector<float> ModelConfig::rope_inv_freq() const {
  // As transformers computes it, in float32: inv_freq = 1 / theta^(arange(0, HD, 2) / HD), then
  // _compute_llama3_parameters for llama3 scaling.
  const int half = head_dim / 2;
  std::vector<float> inv(size_t(std::max(half, 0)));
  for (int j = 0; j < half; ++j) {
    float e = float(2 * j) / float(head_dim);
    float p = float(std::pow(double(float(rope_theta)), double(e)));
    inv[size_t(j)] = 1.0f / p;
  }
  if (rope_scaling.type != "llama3") return inv;
  // The same float32 operations in the same order (torch evaluates `a / t` for a Python scalar a
  // as reciprocal(t) * a).
  const RopeScaling& r = rope_scaling;
  const float factor = float(r.factor);
  const float low = float(r.low_freq_factor);
  const float high_minus_low = float(r.high_freq_factor - r.low_freq_factor);
  const float old_ctx = float(r.original_max_position_embeddings);
  const float low_freq_wavelen =
      float(double(r.original_max_position_embeddings) / r.low_freq_factor);
  const float high_freq_wavelen =
      float(double(r.original_max_position_embeddings) / r.high_freq_factor);
  const float two_pi = float(2.0 * std::numbers::pi);
  for (float& f : inv) {
    const float wavelen = (1.0f / f) * two_pi;
    if (wavelen > low_freq_wavelen) {
      f = f / factor;  // low frequency: interpolated by the full factor
    } else if (!(wavelen < high_freq_wavelen)) {
      const float smooth = ((1.0f / wavelen) * old_ctx - low) / high_minus_low;
      f = (1.0f - smooth) * f / factor + smooth * f;
    }  // else high frequency: unchanged
  }
  return inv;
}

int ModelConfig::pad_or_eos() const {
  if (pad_token_id >= 0) return pad_token_id;
  return eos_token_ids.empty() ? -1 : eos_token_ids[0];
}

long long ModelConfig::num_parameters() const {
  const long long V = vocab_size, C = hidden_size, I = intermediate_size;
  const long long Q = q_dim(), KV = kv_dim(), HD = head_dim;
  long long n = V * C;
  if (has_score_head()) n += 1LL * num_labels * C;  // the score head replaces the lm_head
  else if (!tie_word_embeddings) n += V * C;
  long long layer = 2 * C;                  // input and post-attention RMSNorm
  layer += C * Q + 2 * C * KV + Q * C;      // q, k, v, o
  if (attention_bias) layer += Q + 2 * KV;  // q, k, v biases
  if (qk_norm) layer += 2 * HD;             // q_norm, k_norm
  layer += 3 * C * I;                       // gate, up, down
  n += layer * num_hidden_layers;
  n += C;  // final norm
  return n;
}

ModelConfig config_from_json(const json& j, const std::string& source) {
  R1_CHECK(j.is_object(), "{}: a config must be a JSON object (got {})", source, shown(j));
  ModelConfig c;
  const json* mt = find_key(j, "model_type");
  R1_CHECK(mt, "{}: missing key 'model_type' (supported: {})", source,
           join_list(supported_model_types()));
  c.model_type = as_string(*mt, "model_type", source);
  check_model_type(c.model_type, source);

  c.vocab_size = required_int(j, "vocab_size", source);
  c.hidden_size = required_int(j, "hidden_size", source);
  c.intermediate_size = required_int(j, "intermediate_size", source);
  c.num_hidden_layers = required_int(j, "num_hidden_layers", source);
  c.num_attention_heads = required_int(j, "num_attention_heads", source);
  R1_CHECK(c.hidden_size > 0, "{}: 'hidden_size' must be > 0 (got {})", source, c.hidden_size);
  R1_CHECK(c.num_attention_heads > 0, "{}: 'num_attention_heads' must be > 0 (got {})", source,
           c.num_attention_heads);
  c.num_key_value_heads = optional_int(j, "num_key_value_heads", source, c.num_attention_heads);
  if (const json* hd = find_key(j, "head_dim")) {
    c.head_dim = as_int(*hd, "head_dim", source);
  } else {
    R1_CHECK(c.hidden_size % c.num_attention_heads == 0,
             "{}: hidden_size ({}) is not divisible by num_attention_heads ({}) and no head_dim is "
             "given",
             source, c.hidden_size, c.num_attention_heads);
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  // HF defaults: Qwen2Config / Qwen3Config 32768, LlamaConfig 2048.
  c.max_position_embeddings =
      optional_int(j, "max_position_embeddings", source, c.model_type == "llama" ? 2048 : 32768);
  c.rms_norm_eps = optional_double(j, "rms_norm_eps", source, 1e-6);
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", source, false);

  apply_model_type_defaults(c);
  if (c.model_type != "qwen2") c.attention_bias = optional_bool(j, "attention_bias", source, false);
  // "qk_norm" is not an HF key: r1 writes it only for a config whose qk_norm differs from what
  // its model_type implies (set with override_config), so such a config survives a round trip.
  c.qk_norm = optional_bool(j, "qk_norm", source, c.qk_norm);

  if (const json* act = find_key(j, "hidden_act"))
    c.hidden_act = as_string(*act, "hidden_act", source);
  R1_CHECK(c.hidden_act == "silu", "{}: unsupported hidden_act '{}' (supported: silu)", source,
           c.hidden_act);
  R1_CHECK(!optional_bool(j, "mlp_bias", source, false),
           "{}: 'mlp_bias' true is not supported (the MLP has no biases)", source);
  R1_CHECK(!optional_bool(j, "use_sliding_window", source, false),
           "{}: 'use_sliding_window' true is not supported (full attention only)", source);

  c.bos_token_id = optional_int(j, "bos_token_id", source, -1);
  if (const json* eos = find_key(j, "eos_token_id")) {
    if (eos->is_array()) {
      for (size_t i = 0; i < eos->size(); ++i)
        c.eos_token_ids.push_back(as_int((*eos)[i], fmt::format("eos_token_id[{}]", i), source));
    } else {
      c.eos_token_ids.push_back(as_int(*eos, "eos_token_id", source));
    }
  }
  c.pad_token_id = optional_int(j, "pad_token_id", source, -1);
  c.num_labels = parse_num_labels(j, source);
  if (const json* d = find_key(j, "torch_dtype")) {
    c.torch_dtype = as_string(*d, "torch_dtype", source);
  } else if (const json* d2 = find_key(j, "dtype")) {
    c.torch_dtype = as_string(*d2, "dtype", source);
  }

  // Rope: transformers v5 writes rope_parameters {rope_type, rope_theta, ...}; older configs
  // write a top-level rope_theta and rope_scaling (null or {rope_type|type, ...}).
  c.rope_theta = optional_double(j, "rope_theta", source, 10000.0);
  if (const json* rp = find_key(j, "rope_parameters")) {
    c.rope_scaling = parse_rope(*rp, "rope_parameters", source);
    if (const json* th = find_key(*rp, "rope_theta"))
      c.rope_theta = as_double(*th, "rope_parameters.rope_theta", source);
  } else if (const json* rs = find_key(j, "rope_scaling")) {
    c.rope_scaling = parse_rope(*rs, "rope_scaling", source);
  }

  validate(c, source);
  return c;
}

ModelConfig load_config(const std::string& path) {
  std::string text = fs::read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  return config_from_json(j, path);
}

json config_to_json(const ModelConfig& c) {
  json j = json::object();
  const char* arch = architecture_name(c);
  R1_CHECK(arch, "config: unsupported model_type '{}' (supported: {})", c.model_type,
           join_list(supported_model_types()));
  j["architectures"] = json::array({arch});
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "llama3") {
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", c.rope_scaling.factor},
        {"low_freq_factor", c.rope_scaling.low_freq_factor},
        {"high_freq_factor", c.rope_scaling.high_freq_factor},
        {"original_max_position_embeddings", c.rope_scaling.original_max_position_embeddings},
    };
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2") j["attention_bias"] = c.attention_bias;
  if (c.model_type == "llama") {
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  }
  if (c.model_type == "qwen2" || c.model_type == "qwen3") {
    j["use_sliding_window"] = false;
    j["sliding_window"] = nullptr;
    j["max_window_layers"] = c.num_hidden_layers;
  }
  if (c.qk_norm != (c.model_type == "qwen3")) j["qk_norm"] = c.qk_norm;  // r1 extension
  j["hidden_act"] = c.hidden_act;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["bos_token_id"] = c.bos_token_id >= 0 ? json(c.bos_token_id) : json(nullptr);
  if (c.eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  if (c.has_score_head()) {
    // HF pools a classifier's output at the last token that is not pad_token_id, so it needs one.
    json id2label = json::object(), label2id = json::object();
    for (int i = 0; i < c.num_labels; ++i) {
      id2label[std::to_string(i)] = fmt::format("LABEL_{}", i);
      label2id[fmt::format("LABEL_{}", i)] = i;
    }
    j["id2label"] = id2label;
    j["label2id"] = label2id;
    j["pad_token_id"] = c.pad_or_eos() >= 0 ? json(c.pad_or_eos()) : json(nullptr);
  } else if (c.pad_token_id >= 0) {
    j["pad_token_id"] = c.pad_token_id;
  }
  j["torch_dtype"] = c.torch_dtype;
  return j;
}

void save_config(const ModelConfig& c, const std::string& path) {
  fs::write_file_atomic(path, config_to_json(c).dump(2) + "\n");
}

std::vector<std::string> preset_names() { return {"tiny", "10m", "qwen2.5-0.5b", "qwen2.5-1.5b"}; }

ModelConfig preset_config(const std::string& name, const std::string& model_type) {
  check_model_type(model_type, "preset '" + name + "'");
  ModelConfig c;
  c.model_type = model_type;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  if (name == "tiny") {
    c.vocab_size = 256;
    c.hidden_size = 64;
    c.intermediate_size = 176;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 512;
    c.rope_theta = 10000.0;
  } else if (name == "10m") {
    // 8192 x 256 tied embeddings (2.1M) + 6 layers of 1.34M (the MLP, 3 x 256 x 1536, dominates):
    // 10.2M parameters for qwen2 (10.16M llama, 10.17M qwen3).
    c.vocab_size = 8192;
    c.hidden_size = 256;
    c.intermediate_size = 1536;
    c.num_hidden_layers = 6;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 2048;
    c.rope_theta = 10000.0;
  } else if (name == "qwen2.5-0.5b") {
    c.vocab_size = 151936;
    c.hidden_size = 896;
    c.intermediate_size = 4864;
    c.num_hidden_layers = 24;
    c.num_attention_heads = 14;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 32768;
    c.rope_theta = 1000000.0;
    c.bos_token_id = 151643;
    c.eos_token_ids = {151643};
  } else if (name == "qwen2.5-1.5b") {
    c.vocab_size = 151936;
    c.hidden_size = 1536;
    c.intermediate_size = 8960;
    c.num_hidden_layers = 28;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 2;
    c.max_position_embeddings = 32768;
    c.rope_theta = 1000000.0;
    c.bos_token_id = 151643;
    c.eos_token_ids = {151643};
  } else {
    fail("unknown model preset '{}' (known: {})", name, join_list(preset_names()));
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  apply_model_type_defaults(c);
  validate(c, "preset '" + name + "'");
  return c;
}

// Rules: each key is its config.json name. Setting hidden_size or num_attention_heads recomputes
// head_dim = hidden_size / num_attention_heads (so set head_dim last if it must differ).
// Setting model_type resets attention_bias and qk_norm to that type's values (qwen2: biases;
// qwen3: qk_norm), so set model_type before either of them. qwen2 cannot drop its biases.
// The whole config is validated after each change, with the key named in the message.
void override_config(ModelConfig& c, const std::string& key, const std::string& value) {
  static const std::vector<std::string> keys = {"vocab_size",
                                                "hidden_size",
                                                "intermediate_size",
                                                "num_hidden_layers",
                                                "num_attention_heads",
                                                "num_key_value_heads",
                                                "head_dim",
                                                "max_position_embeddings",
                                                "rms_norm_eps",
                                                "rope_theta",
                                                "tie_word_embeddings",
                                                "attention_bias",
                                                "qk_norm",
                                                "model_type",
                                                "bos_token_id",
                                                "eos_token_id",
                                                "torch_dtype"};
  ModelConfig n = c;
  auto recompute_head_dim = [&] {
    R1_CHECK(n.num_attention_heads > 0 && n.hidden_size % n.num_attention_heads == 0,
             "config key '{}': hidden_size ({}) must be divisible by num_attention_heads ({})", key,
             n.hidden_size, n.num_attention_heads);
    n.head_dim = n.hidden_size / n.num_attention_heads;
  };
  if (key == "vocab_size") {
    n.vocab_size = parse_int_value(key, value);
  } else if (key == "hidden_size") {
    n.hidden_size = parse_int_value(key, value);
    recompute_head_dim();
  } else if (key == "intermediate_size") {
    n.intermediate_size = parse_int_value(key, value);
  } else if (key == "num_hidden_layers") {
    n.num_hidden_layers = parse_int_value(key, value);
  } else if (key == "num_attention_heads") {
    n.num_attention_heads = parse_int_value(key, value);
    recompute_head_dim();
  } else if (key == "num_key_value_heads") {
    n.num_key_value_heads = parse_int_value(key, value);
  } else if (key == "head_dim") {
    n.head_dim = parse_int_value(key, value);
  } else if (key == "max_position_embeddings") {
    n.max_position_embeddings = parse_int_value(key, value);
  } else if (key == "rms_norm_eps") {
    n.rms_norm_eps = parse_double_value(key, value);
  } else if (key == "rope_theta") {
    n.rope_theta = parse_double_value(key, value);
  } else if (key == "tie_word_embeddings") {
    n.tie_word_embeddings = parse_bool_value(key, value);
  } else if (key == "attention_bias") {
    n.attention_bias = parse_bool_value(key, value);
    R1_CHECK(n.attention_bias || n.model_type != "qwen2",
             "config key 'attention_bias': qwen2 always has q/k/v biases (use model_type=llama "
             "for a model without them)");
  } else if (key == "qk_norm") {
    n.qk_norm = parse_bool_value(key, value);
  } else if (key == "model_type") {
    check_model_type(value, "config key 'model_type'");
    n.model_type = value;
    apply_model_type_defaults(n);
  } else if (key == "bos_token_id") {
    n.bos_token_id = parse_int_value(key, value);
  } else if (key == "eos_token_id") {  // one id or a comma-separated list
    n.eos_token_ids.clear();
    size_t start = 0;
    while (true) {
      size_t comma = value.find(',', start);
      n.eos_token_ids.push_back(parse_int_value(key, value.substr(start, comma - start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else if (key == "torch_dtype") {
    R1_CHECK(value == "float32" || value == "bfloat16" || value == "float16",
             "config key 'torch_dtype': '{}' is not one of float32, bfloat16, float16", value);
    n.torch_dtype = value;
  } else {
    std::string best;
    size_t best_d = SIZE_MAX;
    size_t limit = 0;
    for (const auto& k : keys) {
      size_t d = edit_distance(key, k);
      if (d < best_d)
        best_d = d, best = k, limit = std::max<size_t>(3, std::max(key.size(), k.size()) / 2);
    }
    if (best_d <= limit)  // close enough to be a typo or an abbreviation
      fail("unknown config key '{}' (did you mean '{}'?)", key, best);
    fail("unknown config key '{}' (known: {})", key, join_list(keys));
  }
  validate(n, fmt::format("config key '{}'={}", key, value));
  c = std::move(n);
}

}  // namespace r1::model
