// ModelConfig's derived quantities, and config.json files on disk. The keys themselves are a
// table (config_keys.cpp) that config_engine.cpp reads and writes.
#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>

#include "base/error.h"
#include "base/fs.h"
#include "model/params.h"

namespace r1::model {

using nlohmann::json;

namespace {

// transformers' get_mscale (yarn): 0.1 * m * ln(scale) + 1 above scale 1.
double yarn_mscale(double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

// transformers' _compute_yarn_parameters in float32: each frequency blends its interpolated
// (divided by factor) and extrapolated (unchanged) values by a linear ramp over the dimensions
// between the correction bounds of beta_fast and beta_slow rotations.
void apply_yarn(const RopeScaling& r, double base, int dim, std::vector<float>& inv) {
  auto correction_dim = [&](double rotations) {
    return dim * std::log(r.original_max_position_embeddings / (rotations * 2 * std::numbers::pi)) /
           (2 * std::log(base));
  };
  const double low = std::max(std::floor(correction_dim(r.beta_fast)), 0.0);
  double high = std::min(std::ceil(correction_dim(r.beta_slow)), double(dim - 1));
  if (low == high) high += 0.001;  // as transformers: no singular ramp
  const float factor = float(r.factor);
  for (size_t j = 0; j < inv.size(); ++j) {
    const float pos_freq = float(std::pow(double(float(base)), double(float(2 * j) / float(dim))));
    const float extrapolated = 1.0f / pos_freq;
    const float interpolated = 1.0f / (factor * pos_freq);
    const float ramp = std::clamp((float(j) - float(low)) / float(high - low), 0.0f, 1.0f);
    const float keep = 1.0f - ramp;  // the extrapolation's share
    inv[j] = interpolated * (1.0f - keep) + extrapolated * keep;
  }
}

}  // namespace

std::vector<float> ModelConfig::rope_inv_freq() const {
  // As transformers computes it, in float32: inv_freq = 1 / theta^(arange(0, HD, 2) / HD), then
  // _compute_llama3_parameters for llama3 scaling or _compute_yarn_parameters for yarn.
  const int half = head_dim / 2;
  std::vector<float> inv(size_t(std::max(half, 0)));
  for (int j = 0; j < half; ++j) {
    float e = float(2 * j) / float(head_dim);
    float p = float(std::pow(double(float(rope_theta)), double(e)));
    inv[size_t(j)] = 1.0f / p;
  }
  if (rope_scaling.type == "yarn") apply_yarn(rope_scaling, rope_theta, head_dim, inv);
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

float ModelConfig::rope_attention_factor() const {
  const RopeScaling& r = rope_scaling;
  if (r.type != "yarn") return 1.0f;
  if (r.attention_factor > 0.0) return float(r.attention_factor);
  if (r.mscale != 0.0 && r.mscale_all_dim != 0.0)
    return float(yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim));
  return float(yarn_mscale(r.factor, 1.0));
}

float ModelConfig::attention_scale() const {
  if (is_mla()) {  // DeepseekV3Attention.scaling; the factor on cos/sin scales the rope part only
    double s = 1.0 / std::sqrt(double(mla.qk_head_dim()));
    if (rope_scaling.type == "yarn" && rope_scaling.mscale_all_dim != 0.0) {
      const double m = yarn_mscale(rope_scaling.factor, rope_scaling.mscale_all_dim);
      s *= m * m;
    }
    return float(s);
  }
  const float af = rope_attention_factor();  // on cos and sin: on both q and k
  return 1.0f / std::sqrt(float(head_dim)) * af * af;
}

bool ModelConfig::is_moe_layer(int l) const {
  if (moe.num_experts <= 0) return false;
  if (model_type == "deepseek_v3") return l >= moe.first_k_dense_replace;
  if (std::find(moe.mlp_only_layers.begin(), moe.mlp_only_layers.end(), l) != moe.mlp_only_layers.end())
    return false;
  return (l + 1) % moe.decoder_sparse_step == 0;
}

int ModelConfig::pad_or_eos() const {
  if (pad_token_id >= 0) return pad_token_id;
  return eos_token_ids.empty() ? -1 : eos_token_ids[0];
}

long long ModelConfig::num_parameters() const {
  long long n = 0;
  for (const ParamSpec& s : param_specs(*this))
    if (!s.name.ends_with("e_score_correction_bias")) n += s.numel();  // a buffer in transformers
  return n;
}

ModelConfig load_config(const std::string& path) {
  std::string text = fs::read_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{}: invalid JSON: {}", path, e.what());
  }
  return config_from_json(j, path);
}

void save_config(const ModelConfig& c, const std::string& path) {
  fs::write_file_atomic(path, config_to_json(c).dump(2) + "\n");
}

}  // namespace r1::model
