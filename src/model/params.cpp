#include "model/params.h"

#include <fmt/format.h>

#include <map>

#include "base/error.h"

namespace r1::model {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::vector<ParamSpec> param_specs(const ModelConfig& c) {
  const int64_t C = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t Q = c.q_dim(), KV = c.kv_dim(), HD = c.head_dim;
  std::vector<ParamSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    specs.push_back({std::move(name), std::move(shape), 0});
  };
  add("model.embed_tokens.weight", {V, C});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {C});
    add(p + "self_attn.q_proj.weight", {Q, C});
    if (c.attention_bias) add(p + "self_attn.q_proj.bias", {Q});
    add(p + "self_attn.k_proj.weight", {KV, C});
    if (c.attention_bias) add(p + "self_attn.k_proj.bias", {KV});
    add(p + "self_attn.v_proj.weight", {KV, C});
    if (c.attention_bias) add(p + "self_attn.v_proj.bias", {KV});
    add(p + "self_attn.o_proj.weight", {C, Q});
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {HD});
      add(p + "self_attn.k_norm.weight", {HD});
    }
    add(p + "post_attention_layernorm.weight", {C});
    add(p + "mlp.gate_proj.weight", {I, C});
    add(p + "mlp.up_proj.weight", {I, C});
    add(p + "mlp.down_proj.weight", {C, I});
  }
  add("model.norm.weight", {C});
  if (c.has_score_head()) add("score.weight", {c.num_labels, C});
  else if (!c.tie_word_embeddings) add("lm_head.weight", {V, C});
  int64_t off = 0;
  for (auto& s : specs) {
    s.offset = off;
    off += (s.numel() + 15) / 16 * 16;  // 64-byte aligned starts
  }
  return specs;
}

int64_t total_params(const std::vector<ParamSpec>& specs) {
  if (specs.empty()) return 0;
  const auto& last = specs.back();
  return last.offset + (last.numel() + 15) / 16 * 16;
}

namespace {
Tensor view(void* base, DType dtype, Device device, const ParamSpec& s) {
  Tensor t(static_cast<char*>(base) + size_t(s.offset) * dtype_size(dtype), dtype, {}, device);
  t.ndim = int(s.shape.size());
  for (size_t i = 0; i < s.shape.size(); ++i) t.shape[i] = s.shape[i];
  return t;
}
}  // namespace

Params bind_params(const ModelConfig& c, const std::vector<ParamSpec>& specs, void* base, DType dtype,
                   Device device) {
  std::map<std::string, Tensor> by_name;
  for (const auto& s : specs) by_name[s.name] = view(base, dtype, device, s);
  auto get = [&](const std::string& name) {
    auto it = by_name.find(name);
    R1_CHECK(it != by_name.end(), "parameter '{}' is missing from the layout", name);
    return it->second;
  };
  auto opt = [&](const std::string& name) {
    auto it = by_name.find(name);
    return it == by_name.end() ? Tensor() : it->second;
  };
  Params p;
  p.embed = get("model.embed_tokens.weight");
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string pre = fmt::format("model.layers.{}.", l);
    LayerParams lp;
    lp.input_norm = get(pre + "input_layernorm.weight");
    lp.q_w = get(pre + "self_attn.q_proj.weight");
    lp.k_w = get(pre + "self_attn.k_proj.weight");
    lp.v_w = get(pre + "self_attn.v_proj.weight");
    lp.o_w = get(pre + "self_attn.o_proj.weight");
    lp.q_b = opt(pre + "self_attn.q_proj.bias");
    lp.k_b = opt(pre + "self_attn.k_proj.bias");
    lp.v_b = opt(pre + "self_attn.v_proj.bias");
    lp.q_norm = opt(pre + "self_attn.q_norm.weight");
    lp.k_norm = opt(pre + "self_attn.k_norm.weight");
    lp.post_norm = get(pre + "post_attention_layernorm.weight");
    lp.gate_w = get(pre + "mlp.gate_proj.weight");
    lp.up_w = get(pre + "mlp.up_proj.weight");
    lp.down_w = get(pre + "mlp.down_proj.weight");
    p.layers.push_back(lp);
  }
  p.final_norm = get("model.norm.weight");
  if (c.has_score_head()) p.score = get("score.weight");
  else p.lm_head = c.tie_word_embeddings ? p.embed : get("lm_head.weight");
  p.flat = Tensor(base, dtype, {total_params(specs)}, device);
  return p;
}

}  // namespace r1::model
