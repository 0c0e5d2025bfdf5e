#pragma once
// ModelConfig: the architecture as data, read from and written to HF config.json.
// qwen2, llama and qwen3 differ only in these fields, not in code.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace r1::model {

struct RopeScaling {
  std::string type = "default";  // "default" | "llama3"  (others are rejected at load)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;  // "qwen2" | "llama" | "qwen3"
  int vocab_size = 0;
  int hidden_size = 0;        // C
  int intermediate_size = 0;  // I
  int num_hidden_layers = 0;  // L
  int num_attention_heads = 0;  // NH
  int num_key_value_heads = 0;  // NKV
  int head_dim = 0;           // HD (hidden_size / NH unless given)
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // biases on q, k, v (qwen2: always)
  bool qk_norm = false;         // RMSNorm on each head of q and k before RoPE (qwen3)
  std::string hidden_act = "silu";
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  int pad_token_id = -1;  // -1: none given
  std::string torch_dtype = "float32";
  // 0: a causal LM (lm_head). > 0: a sequence classifier (*ForSequenceClassification) whose
  // `score` head maps the final hidden state to num_labels outputs; a reward model has 1.
  int num_labels = 0;

  int q_dim() const { return num_attention_heads * head_dim; }
  int kv_dim() const { return num_key_value_heads * head_dim; }
  bool has_score_head() const { return num_labels > 0; }
  // The pad id HF's sequence classifiers pool by: pad_token_id, else the first EOS, else -1.
  int pad_or_eos() const;
  // Rotary inverse frequencies (HD/2), with rope scaling applied, as HF computes them.
  std::vector<float> rope_inv_freq() const;
  // Number of parameters (tied embeddings counted once).
  long long num_parameters() const;
};

// Parses config.json text; `source` names the file in error messages.
ModelConfig config_from_json(const nlohmann::json& j, const std::string& source);
ModelConfig load_config(const std::string& path);
// The HF config.json for this config (what transformers and vLLM read).
nlohmann::json config_to_json(const ModelConfig& c);
void save_config(const ModelConfig& c, const std::string& path);

// Size presets for `r1 init`: "tiny" (~0.1M, tests), "10m" (~10M, demos and benchmarks),
// "qwen2.5-0.5b", "qwen2.5-1.5b" (real shapes). Unknown names list the known ones.
ModelConfig preset_config(const std::string& name, const std::string& model_type = "qwen2");
std::vector<std::string> preset_names();
// Sets one field by its config.json key from a string ("hidden_size=128"); unknown keys are errors.
void override_config(ModelConfig& c, const std::string& key, const std::string& value);

}  // namespace r1::model
