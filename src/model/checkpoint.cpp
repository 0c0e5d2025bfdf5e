#include "model/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "base/rng.h"
#include "model/safetensors.h"
#include "tensor/device_memory.h"

namespace r1::model {

namespace {
constexpr int64_t kSaveProgressMinBytes = int64_t(1) << 30;  // smaller models save quickly: no progress line

// A tensor of DeepSeek-V3's multi-token-prediction layers: "model.layers.N." with N past the
// decoder's layers (N < num_hidden_layers + num_nextn_predict_layers). They are loaded and ignored:
// r1 neither trains them nor drafts with them, and does not write them back.
bool mtp_tensor(const std::string& name, const ModelConfig& c) {
  const std::string prefix = "model.layers.";
  if (c.mla.num_nextn_predict_layers <= 0 || !name.starts_with(prefix)) return false;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos) return false;
  int layer = -1;
  try {
    layer = std::stoi(name.substr(prefix.size(), dot - prefix.size()));
  } catch (const std::exception&) {
    return false;
  }
  return layer >= c.num_hidden_layers && layer < c.num_hidden_layers + c.mla.num_nextn_predict_layers;
}

// Tensors HF checkpoints may carry that the model recomputes rather than stores, or does not use.
bool ignorable(const std::string& name, const ModelConfig& c) {
  if (name.find("rotary_emb.inv_freq") != std::string::npos) return true;
  if (mtp_tensor(name, c)) return true;
  return c.tie_word_embeddings && name == "lm_head.weight";
}

// Where m's weights are kept in f32 (its master copy), or else its compute weights: what loading
// fills and saving reads.
Tensor weights_of(const Transformer& m) { return m.separate_master() ? m.master().flat : m.params().flat; }

// Every tensor of `specs` but `fresh` is in the checkpoint (read_f32 checks its shape), and every
// tensor of the checkpoint is one of them, except those HF checkpoints may carry unused (and a
// backbone's lm_head when a score head is drawn fresh): an unused tensor would be dropped silently.
void check_tensors(const SafetensorsReader& reader, const std::string& dir, const ModelConfig& cfg,
                   const std::vector<ParamSpec>& specs, const std::string& fresh = "") {
  std::set<std::string> expected;
  for (const ParamSpec& s : specs) {
    if (s.name == fresh) continue;
    R1_CHECK(reader.contains(s.name), "{}: checkpoint has no tensor '{}' required by the {} config", dir, s.name,
             cfg.model_type);
    expected.insert(s.name);
  }
  for (const std::string& name : reader.names())
    R1_CHECK(expected.count(name) || ignorable(name, cfg) || (!fresh.empty() && name == "lm_head.weight"),
             "{}: checkpoint has tensor '{}' that a {} model with this config does not use", dir, name,
             cfg.model_type);
}

// Every tensor of m's layout read from `dir` into m, except `fresh` (when named): the score head of a
// classifier built on a causal LM, drawn from normal(0, std) with the stream init_random would use.
// In place where the fp32 weights are host memory (a CPU model, a host master copy); otherwise a
// tensor at a time through one host buffer, so a model of any size loads with the largest tensor's
// worth of host memory.
void read_into(const std::string& dir, Transformer& m, const std::string& fresh = "", uint64_t seed = 0,
               float std = 0.0f) {
  SafetensorsReader reader(dir);
  check_tensors(reader, dir, m.config(), m.specs(), fresh);
  float* in_place = m.host_weights();
  const Tensor w = weights_of(m);
  std::vector<float> buf;
  for (size_t i = 0; i < m.specs().size(); ++i) {
    const ParamSpec& s = m.specs()[i];
    if (!in_place) buf.resize(size_t(s.numel()));
    float* dst = in_place ? in_place + s.offset : buf.data();
    if (s.name == fresh) {
      Rng rng(seed, i);
      for (int64_t j = 0; j < s.numel(); ++j) dst[j] = std * rng.normal();
    } else {
      reader.read_f32(s.name, s.shape, dst);
    }
    if (!in_place) copy_from_host_f32(w.rows(s.offset, s.offset + s.numel()), dst);
  }
  m.refresh_compute_weights();
}

// The model saved in `dir` has as many parameters as one of config c (the same architecture).
void check_saved_size(const std::string& dir, const ModelConfig& c) {
  const ModelConfig saved = load_config(fs::join(dir, "config.json"));
  R1_CHECK(saved.num_parameters() == c.num_parameters(), "{}: a model of {} parameters, this one has {}", dir,
           saved.num_parameters(), c.num_parameters());
}

Transformer read_model(const std::string& dir, const ModelConfig& cfg, Device device, bool trainable,
                       MasterPlace master = MasterPlace::Device, const std::string& fresh = "", uint64_t seed = 0,
                       float std = 0.0f) {
  Transformer m(cfg, device, trainable, std::nullopt, master);
  read_into(dir, m, fresh, seed, std);
  return m;
}
}  // namespace

Transformer load_model(const std::string& dir, Device device, bool trainable, MasterPlace master) {
  return read_model(dir, load_config(fs::join(dir, "config.json")), device, trainable, master);
}

WeightSource checkpoint_weights(const std::string& dir, const ModelConfig& c) {
  check_saved_size(dir, c);
  auto reader = std::make_shared<SafetensorsReader>(dir);
  std::vector<ParamSpec> specs = param_specs(c);
  check_tensors(*reader, dir, c, specs);
  return weight_source(std::move(specs), [reader](const ParamSpec& s, size_t, int64_t from, int64_t n, float* dst) {
    reader->read_f32(s.name, s.shape, from, n, dst);
  });
}

void load_weights(const std::string& dir, Transformer& m) {
  check_saved_size(dir, m.config());
  read_into(dir, m);
}

Transformer load_classifier(const std::string& dir, int num_labels, uint64_t seed, Device device, bool trainable,
                            float std) {
  R1_CHECK(num_labels > 0, "load_classifier: num_labels must be > 0 (got {})", num_labels);
  const std::string config_path = fs::join(dir, "config.json");
  ModelConfig cfg = load_config(config_path);
  if (cfg.has_score_head()) {
    R1_CHECK(cfg.num_labels == num_labels, "{}: a classifier with {} labels, not the {} wanted", config_path,
             cfg.num_labels, num_labels);
    return read_model(dir, cfg, device, trainable);
  }
  cfg.num_labels = num_labels;
  return read_model(dir, cfg, device, trainable, MasterPlace::Device, "score.weight", seed, std);
}

void save_model(const Transformer& m, const std::string& dir, DType dtype) {
  // Straight from host memory, or a chunk at a time from the device: no host copy of the whole model.
  const float* base = m.host_weights();
  const Tensor w = weights_of(m);
  const std::vector<ParamSpec>& specs = m.specs();
  auto copy = [&](size_t k, int64_t begin, int64_t n, float* dst) {
    const int64_t at = specs[k].offset + begin;
    if (base) {
      std::memcpy(dst, base + at, size_t(n) * sizeof(float));
      return;
    }
    const std::vector<float> part = to_host_f32(w.rows(at, at + n));
    std::memcpy(dst, part.data(), size_t(n) * sizeof(float));
  };
  const int64_t bytes = total_params(specs) * int64_t(dtype_size(dtype));
  save_model_streamed(m.config(), specs, dir, dtype, copy, bytes >= kSaveProgressMinBytes);
}

void save_model_streamed(const ModelConfig& config, const std::vector<ParamSpec>& specs,
                         const std::string& dir, DType dtype, const TensorSource& source, bool progress) {
  R1_CHECK(dtype == DType::F32 || dtype == DType::BF16, "save_model: dtype must be f32 or bf16");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  R1_CHECK(!ec, "cannot create model directory {}: {}", dir, ec.message());
  std::vector<TensorLayout> layout;
  for (const ParamSpec& s : specs) layout.push_back({s.name, s.shape});
  ModelConfig cfg = config;
  cfg.torch_dtype = dtype == DType::BF16 ? "bfloat16" : "float32";
  // Weights first, config last: a directory with a new config.json always has its weights.
  save_safetensors(fs::join(dir, "model.safetensors"), layout, dtype, source, progress);
  // A stale shard index would shadow the new file on the next load.
  const std::string index = fs::join(dir, "model.safetensors.index.json");
  if (fs::exists(index)) ::unlink(index.c_str());
  save_config(cfg, fs::join(dir, "config.json"));
}

}  // namespace r1::model
