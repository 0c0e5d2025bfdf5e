#include "model/adapter_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/fs.h"
#include "kernels/ops.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"

namespace r1::model {

namespace {
constexpr const char* kWeights = "adapter_model.safetensors";
constexpr const char* kConfig = "adapter_config.json";

// "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" -> "model.layers.0.self_attn.q_proj.weight"
std::string base_name(const std::string& adapter_name) {
  const std::string prefix = "base_model.model.", suffix = ".lora_A.weight";
  return adapter_name.substr(prefix.size(), adapter_name.size() - prefix.size() - suffix.size()) + ".weight";
}
}  // namespace

void save_adapter(const Transformer& m, const std::string& dir, const std::string& base_model, DType dtype) {
  R1_CHECK(m.has_lora(), "save_adapter: the model has no LoRA adapters");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  R1_CHECK(!ec, "cannot create adapter directory {}: {}", dir, ec.message());
  const std::vector<float> host = m.adapter_host();
  std::vector<NamedTensor> tensors;
  for (const ParamSpec& s : m.adapter_specs()) tensors.push_back({s.name, s.shape, host.data() + s.offset});
  save_safetensors(fs::join(dir, kWeights), tensors, dtype);
  fs::write_file_atomic(fs::join(dir, kConfig), lora_config_json(m.lora(), base_model));
}

void load_adapter(Transformer& m, const std::string& dir) {
  const std::string config_path = fs::join(dir, kConfig);
  R1_CHECK(fs::exists(config_path), "{}: no {} (not a PEFT adapter directory)", dir, kConfig);
  const LoraConfig cfg = lora_config_from_json(fs::read_file(config_path), config_path);
  if (!m.has_lora()) {
    m.add_lora(cfg, 0);
  } else {  // new weights for the model's own adapters (a resumed run)
    const LoraConfig& own = m.lora();
    R1_CHECK(own.rank == cfg.rank && own.alpha == cfg.alpha && own.rslora == cfg.rslora &&
                 own.modules() == cfg.modules(),
             "{}: the adapter (r={}, alpha={}, rslora={}) differs from the model's (r={}, alpha={}, rslora={}) or "
             "targets other modules", config_path, cfg.rank, cfg.alpha, cfg.rslora, own.rank, own.alpha, own.rslora);
  }
  const std::string weights = fs::join(dir, kWeights);
  R1_CHECK(fs::exists(weights), "{}: no {}", dir, kWeights);
  SafetensorsReader reader(weights);
  std::vector<float> host(size_t(total_params(m.adapter_specs())), 0.0f);
  std::set<std::string> expected;
  for (const ParamSpec& s : m.adapter_specs()) {
    R1_CHECK(reader.contains(s.name), "{}: no tensor '{}', which {} asks for", weights, s.name, config_path);
    reader.read_f32(s.name, s.shape, host.data() + s.offset);
    expected.insert(s.name);
  }
  for (const std::string& name : reader.names())
    R1_CHECK(expected.count(name), "{}: tensor '{}' is not an adapter {} implies", weights, name, config_path);
  m.set_adapter(host.data());
}

std::vector<float> merged_weights(const Transformer& m) {
  R1_CHECK(m.has_lora(), "merged_weights: the model has no LoRA adapters");
  std::vector<float> w = m.weights_host();
  const std::vector<float> a = m.adapter_host();
  std::map<std::string, const ParamSpec*> by_name;
  for (const ParamSpec& s : m.specs()) by_name[s.name] = &s;
  const float scale = m.lora().scale();
  const auto& specs = m.adapter_specs();
  for (size_t k = 0; k + 1 < specs.size(); k += 2) {
    const ParamSpec &A = specs[k], &B = specs[k + 1], &W = *by_name.at(base_name(A.name));
    const int64_t r = A.shape[0], in = A.shape[1], out = B.shape[0];
    // s * B A through the f32 GEMM: (out, r) x (r, in) as linear_forward(B, weight = A^T).
    std::vector<float> at(size_t(in * r)), ba(size_t(out * in));
    for (int64_t j = 0; j < r; ++j)
      for (int64_t i = 0; i < in; ++i) at[size_t(i * r + j)] = a[size_t(A.offset + j * in + i)];
    std::vector<float> b(a.begin() + B.offset, a.begin() + B.offset + B.numel());
    ops::linear_forward(Tensor::f32(ba.data(), {out, in}), Tensor::f32(b.data(), {out, r}),
                        Tensor::f32(at.data(), {in, r}), {});
    float* pw = w.data() + W.offset;
    for (int64_t e = 0; e < out * in; ++e) pw[e] += scale * ba[size_t(e)];
  }
  return w;
}

Transformer load_adapted_model(const std::string& dir, const std::string& base, Device device) {
  const std::string b = base.empty() ? adapter_base_model(dir) : base;
  R1_CHECK(fs::exists(fs::join(b, "config.json")), "{}: its base model {} is not a model directory (no config.json)",
           dir, b);
  Transformer m = load_model(b, device, /*trainable=*/false);
  load_adapter(m, dir);
  return m;
}

bool is_adapter_dir(const std::string& dir) {
  return fs::exists(fs::join(dir, kConfig)) && !fs::exists(fs::join(dir, "config.json"));
}

std::string adapter_base_model(const std::string& dir) {
  const std::string path = fs::join(dir, kConfig);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(fs::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  const auto it = j.find("base_model_name_or_path");
  R1_CHECK(it != j.end() && it->is_string() && !it->get<std::string>().empty(),
           "{}: key 'base_model_name_or_path' must name the base model directory", path);
  const std::filesystem::path base(it->get<std::string>());
  return base.is_absolute() ? base.string() : (std::filesystem::path(dir) / base).lexically_normal().string();
}

void save_merged(const Transformer& m, const std::string& dir, DType dtype) {
  const std::vector<float> w = merged_weights(m);
  const std::vector<ParamSpec>& specs = m.specs();
  auto copy = [&](size_t k, int64_t begin, int64_t n, float* dst) {
    std::memcpy(dst, w.data() + specs[k].offset + begin, size_t(n) * sizeof(float));
  };
  save_model_streamed(m.config(), specs, dir, dtype, copy, total_params(specs) * int64_t(dtype_size(dtype)) >= (int64_t(1) << 30));
}

}  // namespace r1::model
