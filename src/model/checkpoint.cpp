#include "model/checkpoint.h"

#include <unistd.h>

#include <filesystem>
#include <set>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "model/safetensors.h"

namespace r1::model {

namespace {
// Tensors HF checkpoints may carry that the model recomputes rather than stores.
bool ignorable(const std::string& name, const ModelConfig& c) {
  if (name.find("rotary_emb.inv_freq") != std::string::npos) return true;
  return c.tie_word_embeddings && name == "lm_head.weight";
}
}  // namespace

Transformer load_model(const std::string& dir, Device device, bool trainable) {
  ModelConfig cfg = load_config(fs::join(dir, "config.json"));
  Transformer m(cfg, device, trainable);
  SafetensorsReader reader(dir);
  std::set<std::string> expected;
  // CPU models are read in place; others through a host copy.
  std::vector<float> host;
  if (device != Device::CPU) host.assign(size_t(m.params().flat.numel()), 0.0f);
  float* base = device == Device::CPU ? m.params().flat.f32() : host.data();
  for (const ParamSpec& s : m.specs()) {
    R1_CHECK(reader.contains(s.name), "{}: checkpoint has no tensor '{}' required by the {} config",
             dir, s.name, cfg.model_type);
    reader.read_f32(s.name, s.shape, base + s.offset);
    expected.insert(s.name);
  }
  for (const std::string& name : reader.names())
    R1_CHECK(expected.count(name) || ignorable(name, cfg),
             "{}: checkpoint has tensor '{}' that a {} model with this config does not use", dir, name,
             cfg.model_type);
  if (device != Device::CPU) m.set_weights(host.data());
  return m;
}

void save_model(const Transformer& m, const std::string& dir, DType dtype) {
  R1_CHECK(dtype == DType::F32 || dtype == DType::BF16, "save_model: dtype must be f32 or bf16");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  R1_CHECK(!ec, "cannot create model directory {}: {}", dir, ec.message());
  std::vector<NamedTensor> tensors;
  std::vector<float> host;
  if (m.device() != Device::CPU) host = m.weights_host();
  const float* base = m.device() == Device::CPU ? m.params().flat.f32() : host.data();
  for (const ParamSpec& s : m.specs()) tensors.push_back({s.name, s.shape, base + s.offset});
  ModelConfig cfg = m.config();
  cfg.torch_dtype = dtype == DType::BF16 ? "bfloat16" : "float32";
  // Weights first, config last: a directory with a new config.json always has its weights.
  save_safetensors(fs::join(dir, "model.safetensors"), tensors, dtype);
  // A stale shard index would shadow the new file on the next load.
  const std::string index = fs::join(dir, "model.safetensors.index.json");
  if (fs::exists(index)) ::unlink(index.c_str());
  save_config(cfg, fs::join(dir, "config.json"));
}

}  // namespace r1::model
