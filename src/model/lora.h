#pragma once
// LoRA adapters (Hu et al. 2021) on the linears of the blocks, in PEFT's layout and names, so an
// adapter r1 trains loads in PeftModel.from_pretrained and serves in vLLM, and one PEFT trained loads
// here. Each adapted linear gets A (r, IN) and B (OUT, r):
//   y = x W^T + b + s * dropout(x) A^T B^T,  s = alpha / r, or alpha / sqrt(r) with rsLoRA.
// A starts uniform in +-1/sqrt(IN) (PEFT's kaiming_uniform(a=sqrt(5))), B at zero, so a fresh
// adapter leaves the model unchanged. The base weights stay frozen in the compute dtype.
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"

namespace r1::model {

struct LoraConfig {
  int rank = 0;  // r; 0: no adapters
  double alpha = 16.0;
  double dropout = 0.0;  // on the adapter's input, in training only
  // HF module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or "all-linear".
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
  // Modules named by their full path ("model.layers.3.mlp.up_proj", as PEFT spells out
  // "all-linear" in the adapter_config.json it saves): layer -> module names. lora_specs accepts
  // them when they cover every layer (adapters on a subset of layers are not supported).
  std::map<int, std::set<std::string>> layer_modules;
  std::string origin = "train.lora";  // where the config came from, for error messages
  bool rslora = false;

  bool enabled() const { return rank > 0; }
  float scale() const;
  // The targets with "all-linear" spelled out, in the blocks' order.
  std::vector<std::string> modules() const;
};

// Throws r1::Error naming `what` (a recipe section, a file) for a rank < 1, alpha <= 0, dropout
// outside [0, 1), no target, or an unknown module name (the message lists the valid ones).
void validate(const LoraConfig& c, const std::string& what);

// Every adapter tensor of the model in layout order, with its PEFT name
// ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") and shape; offsets into one
// flat buffer (64-byte aligned). A then B for each adapted linear, layer by layer.
std::vector<ParamSpec> lora_specs(const ModelConfig& model, const LoraConfig& lora);

// adapter_config.json for PEFT (task CAUSAL_LM), and back. base_model names the base model
// directory (PEFT's base_model_name_or_path).
std::string lora_config_json(const LoraConfig& c, const std::string& base_model);
LoraConfig lora_config_from_json(const std::string& text, const std::string& source);

}  // namespace r1::model
