#pragma once
// Parameters in the HF layout and names, as views into one flat buffer (one for weights, one of the
// same layout for gradients; on CUDA also one for the fp32 master weights), so the optimizer and
// all-reduce see a single array. Offsets count elements, so one layout serves f32 and bf16 buffers.
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "tensor/tensor.h"

namespace r1::model {

struct ParamSpec {
  std::string name;            // HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  int64_t offset = 0;          // in elements, into the flat buffer
  int64_t numel() const;
};

// Every parameter of the architecture, in a fixed order. Tied embeddings have no lm_head entry; a
// sequence classifier (num_labels > 0) has "score.weight" (num_labels, C) in the lm_head's place.
std::vector<ParamSpec> param_specs(const ModelConfig& c);
int64_t total_params(const std::vector<ParamSpec>& specs);

struct LayerParams {
  Tensor input_norm;                  // (C)
  Tensor q_w, k_w, v_w, o_w;          // (q_dim, C), (kv_dim, C), (kv_dim, C), (C, q_dim)
  Tensor q_b, k_b, v_b;               // (q_dim), (kv_dim), (kv_dim) or empty
  Tensor q_norm, k_norm;              // (HD) or empty (qwen3 only)
  Tensor post_norm;                   // (C)
  Tensor gate_w, up_w, down_w;        // (I, C), (I, C), (C, I)
};

struct Params {
  Tensor embed;       // (V, C)
  std::vector<LayerParams> layers;
  Tensor final_norm;  // (C)
  Tensor lm_head;     // (V, C); the same memory as embed when tied; empty for a classifier
  Tensor score;       // (num_labels, C) for a classifier (reward model), else empty
  Tensor flat;        // (N): everything
};

// Views into `base` (total_params(specs) elements of `dtype` on `device`) laid out by `specs`.
Params bind_params(const ModelConfig& c, const std::vector<ParamSpec>& specs, void* base, DType dtype,
                   Device device);
inline Params bind_params(const ModelConfig& c, const std::vector<ParamSpec>& specs, float* base) {
  return bind_params(c, specs, base, DType::F32, Device::CPU);
}

}  // namespace r1::model
