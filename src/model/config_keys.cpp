// The table of config.json keys. Each row names a key, says where its value lives in ModelConfig
// and how it is read, checked and written; config_engine.cpp does the reading and writing for all
// rows alike. The defaults are ModelConfig's member initialisers unless a row derives one.
//
// Adding a key: add its field to ModelConfig (config.h) and one row here. For example
//   {.name = "n_routed_experts", .field = R1_MEMBER(n_routed_experts), .doc = "experts per MoE layer",
//    .types = "deepseek_v3", .check = Check::Positive},
// A member of rope_scaling is a row named "rope_scaling.<member>" with a `when` on the rope type.
#include "model/config_keys.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace r1::model {

using nlohmann::json;

namespace {

// model_type -> the architecture class prefix transformers uses.
struct ModelType {
  std::string_view name, class_prefix;
};
const std::vector<ModelType>& model_type_table() {
  static const std::vector<ModelType> t = {{"qwen2", "Qwen2"},
                                                 {"llama", "Llama"},
                                                 {"qwen3", "Qwen3"},
                                                 {"qwen3_moe", "Qwen3Moe"},
                                                 {"deepseek_v3", "DeepseekV3"}};
  return t;
}

json architectures(const ModelConfig& c) {
  for (const ModelType& t : model_type_table())
    if (t.name == c.model_type)
      return json::array({fmt::format("{}For{}", t.class_prefix,
                                      c.has_score_head() ? "SequenceClassification" : "CausalLM")});
  fail("config: unsupported model_type '{}' (supported: {})", c.model_type, fmt::join(model_types(), ", "));
}

const json* present(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

// 0 for a causal LM; for an architecture "*ForSequenceClassification", the number of labels as HF
// counts them: id2label's size, else num_labels, else transformers' default of 2.
void read_num_labels(const json& j, ModelConfig& c, const std::string& source) {
  c.num_labels = 0;
  const json* arch = present(j, "architectures");
  bool classifier = false;
  if (arch && arch->is_array())
    for (const json& a : *arch) {
      const std::string suffix = "ForSequenceClassification";
      classifier |= a.is_string() && a.get<std::string>().size() > suffix.size() &&
                    a.get<std::string>().ends_with(suffix);
    }
  if (!classifier) return;
  int n = 2;
  if (const json* labels = present(j, "id2label")) {
    R1_CHECK(labels->is_object(), "{}: key 'id2label' must be an object (got {})", source, labels->dump());
    n = int(labels->size());
  } else if (const json* v = present(j, "num_labels")) {
    R1_CHECK(v->is_number_integer(), "{}: key 'num_labels' must be an integer (got {})", source, v->dump());
    n = v->get<int>();
  }
  R1_CHECK(n >= 1, "{}: a sequence classifier needs at least one label (got {})", source, n);
  c.num_labels = n;
}

// HF pools a classifier's output at the last token that is not pad_token_id, so it needs one.
void write_num_labels(const ModelConfig& c, json& j) {
  if (!c.has_score_head()) return;
  json id2label = json::object(), label2id = json::object();
  for (int i = 0; i < c.num_labels; ++i) {
    id2label[std::to_string(i)] = fmt::format("LABEL_{}", i);
    label2id[fmt::format("LABEL_{}", i)] = i;
  }
  j["id2label"] = id2label;
  j["label2id"] = label2id;
  j["pad_token_id"] = c.pad_or_eos() >= 0 ? json(c.pad_or_eos()) : json(nullptr);
}

// Defaults that depend on other keys.
void derive_kv_heads(ModelConfig& c, const std::string&) { c.num_key_value_heads = c.num_attention_heads; }

void derive_head_dim(ModelConfig& c, const std::string& source) {
  if (c.is_mla()) {  // DeepseekV3Config: the rotary part's width (what RoPE's frequencies span)
    c.head_dim = c.mla.qk_rope_head_dim;
    return;
  }
  if (c.num_attention_heads <= 0) return;  // the check of num_attention_heads names it
  R1_CHECK(c.hidden_size % c.num_attention_heads == 0,
           "{}: hidden_size ({}) is not divisible by num_attention_heads ({}) and no head_dim is given",
           source, c.hidden_size, c.num_attention_heads);
  c.head_dim = c.hidden_size / c.num_attention_heads;
}

// transformers' defaults: LlamaConfig 2048, DeepseekV3Config 4096, the Qwen configs 32768.
void derive_max_positions(ModelConfig& c, const std::string&) {
  c.max_position_embeddings = c.model_type == "llama" ? 2048 : c.model_type == "deepseek_v3" ? 4096 : 32768;
}

void derive_attention_bias(ModelConfig& c, const std::string&) { c.attention_bias = c.model_type == "qwen2"; }
void derive_qk_norm(ModelConfig& c, const std::string&) {
  c.qk_norm = c.model_type == "qwen3" || c.model_type == "qwen3_moe";
}
// Qwen3MoeConfig's default false, DeepseekV3Config's true.
void derive_norm_topk(ModelConfig& c, const std::string&) { c.moe.norm_topk_prob = c.model_type == "deepseek_v3"; }

json max_window_layers(const ModelConfig& c) { return json(c.num_hidden_layers); }

std::vector<std::string_view> model_type_names() {
  std::vector<std::string_view> v;
  for (const ModelType& t : model_type_table()) v.push_back(t.name);
  return v;
}

constexpr When kLlama3Rope = {"rope_scaling.rope_type", "llama3"};
constexpr When kYarnRope = {"rope_scaling.rope_type", "yarn"};
constexpr When kScaledRope = {"rope_scaling.rope_type", "llama3 yarn"};

}  // namespace

const std::vector<std::string_view>& model_types() {
  static const std::vector<std::string_view> v = model_type_names();
  return v;
}

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = {
      // The shape.
      {.name = "vocab_size",
       .field = R1_MEMBER(vocab_size),
       .doc = "vocabulary size (V): rows of the embedding",
       .required = true,
       .check = Check::Positive},
      {.name = "hidden_size",
       .field = R1_MEMBER(hidden_size),
       .doc = "width of the residual stream (C)",
       .required = true,
       .check = Check::Positive},
      {.name = "intermediate_size",
       .field = R1_MEMBER(intermediate_size),
       .doc = "width of the SwiGLU MLP (I)",
       .required = true,
       .check = Check::Positive},
      {.name = "num_hidden_layers",
       .field = R1_MEMBER(num_hidden_layers),
       .doc = "transformer layers (L)",
       .required = true,
       .check = Check::Positive},
      {.name = "num_attention_heads",
       .field = R1_MEMBER(num_attention_heads),
       .doc = "query heads (NH)",
       .required = true,
       .check = Check::Positive},
      {.name = "num_key_value_heads",
       .field = R1_MEMBER(num_key_value_heads),
       .doc = "key/value heads (NKV; grouped-query attention when fewer than NH)",
       .check = Check::Positive,
       .derive = derive_kv_heads,
       .default_doc = "num_attention_heads"},
      {.name = "head_dim",
       .field = R1_MEMBER(head_dim),
       .doc = "width of one attention head (HD)",
       .check = Check::Positive,
       .derive = derive_head_dim,
       .default_doc = "hidden_size / num_attention_heads; qk_rope_head_dim for deepseek_v3",
       .follows = "hidden_size num_attention_heads qk_rope_head_dim"},
      {.name = "max_position_embeddings",
       .field = R1_MEMBER(max_position_embeddings),
       .doc = "longest sequence the model is configured for",
       .check = Check::Positive,
       .derive = derive_max_positions,
       .default_doc = "2048 for llama, 32768 otherwise (transformers' defaults)"},
      // Norms and rotary embeddings.
      {.name = "rms_norm_eps",
       .field = R1_MEMBER(rms_norm_eps),
       .doc = "epsilon of every RMSNorm",
       .check = Check::Positive},
      {.name = "rope_theta",
       .field = R1_MEMBER(rope_theta),
       .doc = "RoPE base frequency",
       .check = Check::Positive,
       .read_as = {"rope_parameters.rope_theta", "rope_theta"}},
      {.name = "rope_scaling",
       .field = Object{},
       .doc =
           "RoPE scaling, null for none (transformers v5 names it rope_parameters, with rope_theta inside)",
       .read_as = {"rope_parameters", "rope_scaling"}},
      {.name = "rope_scaling.rope_type",
       .field = R1_MEMBER(rope_scaling.type),
       .doc = "the scaling rule",
       .choices = {"default", "llama3", "yarn"},
       .noun = "rope type",
       .read_as = {"rope_type", "type"}},
      {.name = "rope_scaling.factor",
       .field = R1_MEMBER(rope_scaling.factor),
       .doc = "context extension factor: low frequencies are divided by it",
       .when = kScaledRope,
       .required = true,
       .check = Check::Positive},
      {.name = "rope_scaling.low_freq_factor",
       .field = R1_MEMBER(rope_scaling.low_freq_factor),
       .doc = "wavelengths above original_max_position_embeddings / this are fully scaled",
       .when = kLlama3Rope,
       .required = true,
       .check = Check::Positive},
      {.name = "rope_scaling.high_freq_factor",
       .field = R1_MEMBER(rope_scaling.high_freq_factor),
       .doc = "wavelengths below original_max_position_embeddings / this are kept",
       .when = kLlama3Rope,
       .required = true,
       .check = Check::Positive},
      {.name = "rope_scaling.original_max_position_embeddings",
       .field = R1_MEMBER(rope_scaling.original_max_position_embeddings),
       .doc = "the context length the model was pretrained with",
       .when = kScaledRope,
       .required = true,
       .check = Check::Positive},
      {.name = "rope_scaling.beta_fast",
       .field = R1_MEMBER(rope_scaling.beta_fast),
       .doc = "yarn: dimensions with more than this many rotations over the original context keep their frequency",
       .when = kYarnRope,
       .check = Check::Positive},
      {.name = "rope_scaling.beta_slow",
       .field = R1_MEMBER(rope_scaling.beta_slow),
       .doc = "yarn: dimensions with fewer than this many rotations are fully interpolated",
       .when = kYarnRope,
       .check = Check::Positive},
      {.name = "rope_scaling.mscale",
       .field = R1_MEMBER(rope_scaling.mscale),
       .doc = "yarn: with mscale_all_dim, cos and sin are scaled by mscale(factor, mscale) / mscale(factor, "
              "mscale_all_dim) (0: not given)",
       .when = kYarnRope,
       .check = Check::NonNegative,
       .write = Write::UnlessDefault},
      {.name = "rope_scaling.mscale_all_dim",
       .field = R1_MEMBER(rope_scaling.mscale_all_dim),
       .doc = "yarn: MLA's softmax scale is multiplied by mscale(factor, mscale_all_dim)^2 (0: not given)",
       .when = kYarnRope,
       .check = Check::NonNegative,
       .write = Write::UnlessDefault},
      {.name = "rope_scaling.attention_factor",
       .field = R1_MEMBER(rope_scaling.attention_factor),
       .doc = "yarn: the factor on cos and sin, overriding the one derived from mscale (0: not given)",
       .when = kYarnRope,
       .check = Check::NonNegative,
       .write = Write::UnlessDefault},
      // What differs between the architectures.
      {.name = "tie_word_embeddings",
       .field = R1_MEMBER(tie_word_embeddings),
       .doc = "the LM head reuses the embedding matrix"},
      {.name = "attention_bias",
       .field = R1_MEMBER(attention_bias),
       .doc = "biases on the q, k and v projections (qwen2 always has them and has no such key)",
       .types = "llama qwen3 qwen3_moe deepseek_v3",
       .derive = derive_attention_bias,
       .default_doc = "true for qwen2, false otherwise",
       .follows = "model_type"},
      {.name = "qk_norm",
       .field = R1_MEMBER(qk_norm),
       .doc = "RMSNorm on each q and k head before RoPE; not an HF key: written only when it differs from "
              "what model_type implies",
       .derive = derive_qk_norm,
       .default_doc = "true for qwen3 and qwen3_moe, false otherwise",
       .follows = "model_type",
       .write = Write::UnlessDefault},
      {.name = "model_type",
       .field = R1_MEMBER(model_type),
       .doc = "the architecture family",
       .required = true,
       .choices = model_types()},
      {.name = "architectures",
       .field = Computed{architectures},
       .doc = "the transformers class: ...ForCausalLM, or ...ForSequenceClassification with a score head",
       .default_doc = "from model_type and num_labels"},
      {.name = "num_labels",
       .field = R1_MEMBER(num_labels),
       .doc = "outputs of a sequence classifier's score head (0: a causal LM); read from architectures and "
              "id2label, written as id2label and label2id",
       .check = Check::NonNegative,
       .read = read_num_labels,
       .write_to = write_num_labels},
      {.name = "hidden_act",
       .field = R1_MEMBER(hidden_act),
       .doc = "the MLP's activation",
       .choices = {"silu"}},
      {.name = "mlp_bias",
       .field = Fixed{false},
       .doc = "the MLP has no biases",
       .types = "llama",
       .must_match = true},
      {.name = "use_sliding_window",
       .field = Fixed{false},
       .doc = "full attention only",
       .types = "qwen2 qwen3 qwen3_moe",
       .must_match = true},
      {.name = "sliding_window", .field = Fixed{nullptr}, .doc = "no sliding window", .types = "qwen2 qwen3 qwen3_moe"},
      {.name = "max_window_layers",
       .field = Computed{max_window_layers},
       .doc = "layers with full attention: all of them",
       .types = "qwen2 qwen3 qwen3_moe",
       .default_doc = "num_hidden_layers"},
      {.name = "pretraining_tp", .field = Fixed{1}, .doc = "no tensor-parallel slicing", .types = "llama"},
      {.name = "attention_dropout", .field = Fixed{0.0}, .doc = "no dropout"},
      {.name = "initializer_range", .field = Fixed{0.02}, .doc = "transformers' init std"},
      {.name = "use_cache", .field = Fixed{true}, .doc = "generation keeps a KV cache"},
      // Mixture of experts (qwen3_moe, deepseek_v3).
      {.name = "num_experts",
       .field = R1_MEMBER(moe.num_experts),
       .doc = "routed experts per MoE layer (E)",
       .types = "qwen3_moe",
       .required = true,
       .check = Check::Positive,
       .read_as = {"num_experts", "num_local_experts"}},
      {.name = "n_routed_experts",
       .field = R1_MEMBER(moe.num_experts),
       .doc = "routed experts per MoE layer (E)",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "num_experts_per_tok",
       .field = R1_MEMBER(moe.num_experts_per_tok),
       .doc = "experts each token is routed to (K)",
       .types = "qwen3_moe deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "moe_intermediate_size",
       .field = R1_MEMBER(moe.moe_intermediate_size),
       .doc = "width of each expert's SwiGLU MLP",
       .types = "qwen3_moe deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "norm_topk_prob",
       .field = R1_MEMBER(moe.norm_topk_prob),
       .doc = "the K routing weights are renormalised to sum to 1",
       .types = "qwen3_moe deepseek_v3",
       .derive = derive_norm_topk,
       .default_doc = "true for deepseek_v3, false for qwen3_moe (transformers' defaults)",
       .follows = "model_type"},
      {.name = "decoder_sparse_step",
       .field = R1_MEMBER(moe.decoder_sparse_step),
       .doc = "layer l is an MoE layer when (l + 1) is a multiple of it (and l is not in mlp_only_layers)",
       .types = "qwen3_moe",
       .check = Check::Positive},
      {.name = "mlp_only_layers",
       .field = R1_MEMBER(moe.mlp_only_layers),
       .doc = "layers with a dense MLP of intermediate_size",
       .types = "qwen3_moe"},
      {.name = "router_aux_loss_coef",
       .field = R1_MEMBER(moe.router_aux_loss_coef),
       .doc = "weight of the load-balancing loss in pretraining; read and written, not used (no auxiliary loss in RL)",
       .types = "qwen3_moe",
       .check = Check::NonNegative},
      {.name = "output_router_logits", .field = Fixed{false}, .doc = "no router logits in the outputs", .types = "qwen3_moe"},
      {.name = "n_shared_experts",
       .field = R1_MEMBER(moe.n_shared_experts),
       .doc = "the shared expert, applied to every token, is this many experts wide",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::NonNegative},
      {.name = "first_k_dense_replace",
       .field = R1_MEMBER(moe.first_k_dense_replace),
       .doc = "the first this-many layers have a dense MLP of intermediate_size",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::NonNegative},
      {.name = "n_group",
       .field = R1_MEMBER(moe.n_group),
       .doc = "expert groups for group-limited routing",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "topk_group",
       .field = R1_MEMBER(moe.topk_group),
       .doc = "groups a token's experts may come from (those whose two best scores sum highest)",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "routed_scaling_factor",
       .field = R1_MEMBER(moe.routed_scaling_factor),
       .doc = "the routed experts' weights are multiplied by it",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "scoring_func",
       .field = Fixed{"sigmoid"},
       .doc = "router scores are sigmoids (DeepSeek-V3)",
       .types = "deepseek_v3",
       .must_match = true},
      {.name = "topk_method",
       .field = Fixed{"noaux_tc"},
       .doc = "auxiliary-loss-free choice: e_score_correction_bias added to the scores, group-limited",
       .types = "deepseek_v3",
       .must_match = true},
      // Multi-head latent attention (deepseek_v3).
      {.name = "q_lora_rank",
       .field = R1_MEMBER(mla.q_lora_rank),
       .doc = "rank of the low-rank query projection (q_a_proj, q_a_layernorm, q_b_proj); null: one q_proj",
       .types = "deepseek_v3",
       .check = Check::NonNegative,
       .write = Write::NullIfDefault},
      {.name = "kv_lora_rank",
       .field = R1_MEMBER(mla.kv_lora_rank),
       .doc = "width of the compressed key/value latent (kv_a_proj_with_mqa, kv_a_layernorm)",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "qk_nope_head_dim",
       .field = R1_MEMBER(mla.qk_nope_head_dim),
       .doc = "per-head width of the query/key part without rotary embedding",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "qk_rope_head_dim",
       .field = R1_MEMBER(mla.qk_rope_head_dim),
       .doc = "per-head width of the rotary query/key part (the key's is shared by all heads)",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "v_head_dim",
       .field = R1_MEMBER(mla.v_head_dim),
       .doc = "per-head width of the values",
       .types = "deepseek_v3",
       .required = true,
       .check = Check::Positive},
      {.name = "rope_interleave",
       .field = R1_MEMBER(mla.rope_interleave),
       .doc = "the rotary part's weights are stored interleaved (pairs 2j, 2j+1), as DeepSeek's checkpoints",
       .types = "deepseek_v3"},
      {.name = "num_nextn_predict_layers",
       .field = R1_MEMBER(mla.num_nextn_predict_layers),
       .doc = "multi-token-prediction layers (model.layers.L and up): loaded and ignored (not trained, not used "
              "for decoding)",
       .types = "deepseek_v3",
       .check = Check::NonNegative,
       .write = Write::UnlessDefault},
      // Special tokens and storage.
      {.name = "bos_token_id",
       .field = R1_MEMBER(bos_token_id),
       .doc = "beginning-of-sequence token",
       .write = Write::NullIfDefault},
      {.name = "eos_token_id",
       .field = R1_MEMBER(eos_token_ids),
       .doc = "end-of-sequence token(s): one id or a list (--set: comma-separated)",
       .write = Write::NullIfDefault,
       .one_or_many = true},
      {.name = "pad_token_id",
       .field = R1_MEMBER(pad_token_id),
       .doc = "padding token; a classifier pools at the last token that is not it",
       .write = Write::UnlessDefault},
      {.name = "torch_dtype",
       .field = R1_MEMBER(torch_dtype),
       .doc = "dtype of the stored weights (transformers v5 names it dtype)",
       .choices = {"float32", "bfloat16", "float16"},
       .read_as = {"torch_dtype", "dtype"}},
  };
  return keys;
}

namespace {
void check_moe_relations(const ModelConfig& c, const std::string& source) {
  const MoeConfig& m = c.moe;
  if (m.num_experts > 0) {
    R1_CHECK(m.num_experts_per_tok <= m.num_experts, "{}: num_experts_per_tok ({}) exceeds the {} experts", source,
             m.num_experts_per_tok, m.num_experts);
    for (int l : m.mlp_only_layers)
      R1_CHECK(l >= 0 && l < c.num_hidden_layers, "{}: mlp_only_layers names layer {} of {}", source, l,
               c.num_hidden_layers);
  }
  if (!c.is_mla()) return;
  R1_CHECK(m.num_experts % m.n_group == 0, "{}: n_routed_experts ({}) is not a multiple of n_group ({})", source,
           m.num_experts, m.n_group);
  R1_CHECK(m.topk_group <= m.n_group, "{}: topk_group ({}) exceeds n_group ({})", source, m.topk_group, m.n_group);
  R1_CHECK(m.num_experts_per_tok <= m.topk_group * (m.num_experts / m.n_group),
           "{}: num_experts_per_tok ({}) exceeds the experts of topk_group groups ({})", source,
           m.num_experts_per_tok, m.topk_group * (m.num_experts / m.n_group));
  R1_CHECK(!c.attention_bias, "{}: attention_bias with multi-head latent attention is not supported", source);
  R1_CHECK(!c.qk_norm, "{}: qk_norm does not apply to multi-head latent attention", source);
  R1_CHECK(c.num_key_value_heads == c.num_attention_heads,
           "{}: deepseek_v3 needs num_key_value_heads = num_attention_heads ({}, got {})", source,
           c.num_attention_heads, c.num_key_value_heads);
  R1_CHECK(c.head_dim == c.mla.qk_rope_head_dim, "{}: deepseek_v3's head_dim ({}) must be qk_rope_head_dim ({})",
           source, c.head_dim, c.mla.qk_rope_head_dim);
}
}  // namespace

const ConfigKey* find_config_key(std::string_view name) {
  for (const ConfigKey& k : config_keys())
    if (k.name == name) return &k;
  return nullptr;
}

void check_key_relations(const ModelConfig& c, const std::string& source) {
  R1_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
           "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", source,
           c.num_attention_heads, c.num_key_value_heads);
  R1_CHECK(c.head_dim % 2 == 0, "{}: head_dim ({}) must be even for rotary embeddings", source, c.head_dim);
  R1_CHECK(c.attention_bias || c.model_type != "qwen2",
           "{}: qwen2 always has q/k/v biases (use model_type=llama for a model without them)", source);
  check_moe_relations(c, source);
  if (c.rope_scaling.type == "llama3")
    R1_CHECK(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor,
             "{}: rope_scaling needs 0 < low_freq_factor < high_freq_factor (got {} and {})", source,
             c.rope_scaling.low_freq_factor, c.rope_scaling.high_freq_factor);
}

}  // namespace r1::model
