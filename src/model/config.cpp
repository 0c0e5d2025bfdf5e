// ModelConfig's derived quantities, and config.json files on disk. The keys themselves are a
// table (config_keys.cpp) that config_engine.cpp reads and writes.
#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "base/error.h"
#include "base/fs.h"

namespace r1::model {

using nlohmann::json;

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

void save_config(const ModelConfig& c, const std::string& path) {
  fs::write_file_atomic(path, config_to_json(c).dump(2) + "\n");
}

}  // namespace r1::model
