#pragma once
// ModelConfig: the architecture as data, read from and written to HF config.json.
// qwen2, llama and qwen3 differ only in these fields, not in code.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace r1::model {

// The defaults below are the defaults of config.json keys a file leaves out (config_keys.cpp
// declares each key once and derives the defaults that depend on other keys).
struct RopeScaling {
  std::string type = "default";  // "default" | "llama3" | "yarn"  (others are rejected at load)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
  // yarn (transformers' _compute_yarn_parameters): the frequency ramp's bounds in rotations, and
  // the attention-scale corrections (0: not given).
  double beta_fast = 32.0, beta_slow = 1.0;
  double mscale = 0.0, mscale_all_dim = 0.0, attention_factor = 0.0;
};

// Mixture-of-experts MLP layers (qwen3_moe, deepseek_v3). num_experts = 0: every layer is dense.
struct MoeConfig {
  int num_experts = 0;           // E routed experts (qwen3_moe num_experts, deepseek_v3 n_routed_experts)
  int num_experts_per_tok = 0;   // K chosen per token
  int moe_intermediate_size = 0; // each expert's SwiGLU width
  bool norm_topk_prob = false;   // renormalise the K weights to sum to 1
  // qwen3_moe: layer l is sparse when (l + 1) % decoder_sparse_step == 0 and l is not in mlp_only_layers.
  int decoder_sparse_step = 1;
  std::vector<int> mlp_only_layers;
  double router_aux_loss_coef = 0.001;  // read and written, unused (no auxiliary loss in RL)
  // deepseek_v3: the first first_k_dense_replace layers are dense; shared experts of width
  // n_shared_experts * moe_intermediate_size; sigmoid scores, group-limited choice.
  int first_k_dense_replace = 0;
  int n_shared_experts = 0;
  int n_group = 1, topk_group = 1;
  double routed_scaling_factor = 1.0;
};

// Multi-head latent attention (deepseek_v3).
struct MlaConfig {
  int q_lora_rank = 0;  // 0 (null in config.json): a plain q_proj
  int kv_lora_rank = 0;
  int qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  bool rope_interleave = true;
  int num_nextn_predict_layers = 0;  // multi-token-prediction layers: their tensors are ignored at load
  int qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
};

struct ModelConfig {
  std::string model_type;  // "qwen2" | "llama" | "qwen3" | "qwen3_moe" | "deepseek_v3"
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
  MoeConfig moe;
  MlaConfig mla;

  bool is_mla() const { return model_type == "deepseek_v3"; }
  // Whether layer l's MLP is a mixture of experts (else the dense SwiGLU of intermediate_size).
  bool is_moe_layer(int l) const;
  // The softmax scale of attention: 1/sqrt(q/k head dim), with yarn's mscale correction (MLA) and
  // the square of yarn's attention factor for the rotated q and k (GQA, where all of q/k rotate).
  float attention_scale() const;
  // yarn's factor on cos and sin (1 for other rope types).
  float rope_attention_factor() const;

  int q_dim() const { return num_attention_heads * head_dim; }
  int kv_dim() const { return num_key_value_heads * head_dim; }
  bool has_score_head() const { return num_labels > 0; }
  // The pad id HF's sequence classifiers pool by: pad_token_id, else the first EOS, else -1.
  int pad_or_eos() const;
  // Rotary inverse frequencies (HD/2), with rope scaling applied, as HF computes them.
  std::vector<float> rope_inv_freq() const;
  // Number of parameters (tied embeddings counted once; buffers such as e_score_correction_bias not).
  long long num_parameters() const;
};

// Parses config.json text; `source` names the file in error messages. Keys r1 does not know are
// ignored (HF configs carry many); a key r1 knows with a wrong type or value is an error.
ModelConfig config_from_json(const nlohmann::json& j, const std::string& source);
ModelConfig load_config(const std::string& path);
// The HF config.json for this config (what transformers and vLLM read).
nlohmann::json config_to_json(const ModelConfig& c);
void save_config(const ModelConfig& c, const std::string& path);
// Checks every key's value and the relations between keys; messages start with `source`.
void validate_config(const ModelConfig& c, const std::string& source);

// Size presets for `r1 init` (presets.cpp): "tiny" (~0.1M, tests), "10m" (demos and benchmarks)
// and the published shapes of Qwen2.5 0.5B-32B and Llama 3.1 8B. model_type "" keeps the preset's
// own; another one gives that architecture the preset's shape. Unknown names list the known ones.
ModelConfig preset_config(const std::string& name, const std::string& model_type = "");
std::vector<std::string> preset_names();

// Applies "KEY=VALUE" settings (config.json keys; "rope_scaling.factor" for a nested one) all at
// once, then validates the result, so the order of the settings does not matter. A key derived
// from others follows them unless it is set too: hidden_size or num_attention_heads re-derive
// head_dim; model_type re-derives attention_bias and qk_norm. Unknown keys are errors (with a
// "did you mean"); messages start with `source` ("--set"). On error c is unchanged.
void apply_config_settings(ModelConfig& c, const std::vector<std::string>& settings,
                           const std::string& source);
// One setting (apply_config_settings with one KEY=VALUE).
void override_config(ModelConfig& c, const std::string& key, const std::string& value);

// docs/CONFIG.md: the key reference and the presets, generated from the key table.
std::string config_reference_markdown();

}  // namespace r1::model
