// Size presets for `r1 init` and recipes' model.init_preset. Each is a config.json fragment read by
// the same parser as a downloaded config.json, so the key table checks presets too. The real ones
// hold the published config.json values of the base models (the Hugging Face hub's Qwen/Qwen2.5-*
// and meta-llama/Llama-3.1-8B); tests/test_config_table.cpp checks them against the published config.json
// files and parameter counts.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "model/config.h"

namespace r1::model {

namespace {

struct Preset {
  const char* name;
  const char* model_type;  // the preset's own architecture
  const char* config;      // config.json keys (model_type comes from the field above or --arch)
};

const Preset kPresets[] = {
    {"tiny", "qwen2",
     R"({"vocab_size": 256, "hidden_size": 64, "intermediate_size": 176, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
         "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true})"},
    // 8192 x 256 tied embeddings (2.1M) + 6 layers of 1.34M (the MLP, 3 x 256 x 1536, dominates):
    // 10.2M parameters for qwen2 (10.16M llama, 10.17M qwen3).
    {"10m", "qwen2",
     R"({"vocab_size": 8192, "hidden_size": 256, "intermediate_size": 1536, "num_hidden_layers": 6,
         "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 2048,
         "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true})"},
    {"qwen2.5-0.5b", "qwen2",
     R"({"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
         "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
         "bos_token_id": 151643, "eos_token_id": 151643})"},
    {"qwen2.5-1.5b", "qwen2",
     R"({"vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
         "num_attention_heads": 12, "num_key_value_heads": 2, "max_position_embeddings": 32768,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
         "bos_token_id": 151643, "eos_token_id": 151643})"},
    {"qwen2.5-3b", "qwen2",
     R"({"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
         "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 32768,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
         "bos_token_id": 151643, "eos_token_id": 151643})"},
    {"qwen2.5-7b", "qwen2",
     R"({"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
         "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 131072,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
         "bos_token_id": 151643, "eos_token_id": 151643})"},
    {"qwen2.5-14b", "qwen2",
     R"({"vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
         "num_attention_heads": 40, "num_key_value_heads": 8, "max_position_embeddings": 131072,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
         "bos_token_id": 151643, "eos_token_id": 151643})"},
    {"qwen2.5-32b", "qwen2",
     R"({"vocab_size": 152064, "hidden_size": 5120, "intermediate_size": 27648, "num_hidden_layers": 64,
         "num_attention_heads": 40, "num_key_value_heads": 8, "max_position_embeddings": 131072,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
         "bos_token_id": 151643, "eos_token_id": 151643})"},
    {"llama-3.1-8b", "llama",
     R"({"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
         "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
         "bos_token_id": 128000, "eos_token_id": 128001})"},
    // Mixture-of-experts shapes for tests: every routing option on (qwen3_moe: a dense layer
    // through mlp_only_layers, renormalised top-2 of 8; deepseek_v3: low-rank q, yarn with both
    // mscales, one dense layer, shared experts, 4 groups of 2 with the best 2 eligible).
    {"tiny-qwen3-moe", "qwen3_moe",
     R"({"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 512,
         "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
         "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": true,
         "decoder_sparse_step": 1, "mlp_only_layers": [1]})"},
    {"tiny-deepseek-v3", "deepseek_v3",
     R"({"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512,
         "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
         "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
         "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                          "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.8},
         "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
         "first_k_dense_replace": 1, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5,
         "norm_topk_prob": true})"},
    // Published config.json values of Qwen/Qwen3-30B-A3B and moonshotai/Moonlight-16B-A3B
    // (deepseek_v3: no q_lora_rank, one group, no MTP layers).
    {"qwen3-30b-a3b", "qwen3_moe",
     R"({"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 48,
         "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "max_position_embeddings": 40960,
         "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
         "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768, "norm_topk_prob": true,
         "decoder_sparse_step": 1, "mlp_only_layers": [], "router_aux_loss_coef": 0.001,
         "bos_token_id": 151643, "eos_token_id": 151645})"},
    {"moonlight-16b-a3b", "deepseek_v3",
     R"({"vocab_size": 163840, "hidden_size": 2048, "intermediate_size": 11264, "num_hidden_layers": 27,
         "num_attention_heads": 16, "num_key_value_heads": 16, "max_position_embeddings": 8192,
         "rope_theta": 50000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
         "q_lora_rank": null, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
         "v_head_dim": 128, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
         "moe_intermediate_size": 1408, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1,
         "routed_scaling_factor": 2.446, "norm_topk_prob": true, "num_nextn_predict_layers": 0,
         "bos_token_id": 163584, "eos_token_id": 163585})"},
};

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

ModelConfig preset_config(const std::string& name, const std::string& model_type) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    nlohmann::json j = nlohmann::json::parse(p.config);
    j["model_type"] = model_type.empty() ? p.model_type : model_type;
    return config_from_json(j, fmt::format("preset '{}'", name));
  }
  fail("unknown model preset '{}' (known: {})", name, fmt::join(preset_names(), ", "));
}

}  // namespace r1::model
