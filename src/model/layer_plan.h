#pragma once
// The model as a plan of blocks, built from its config: which block kinds each layer runs and where
// each layer's parameters lie in the flat buffers (gradients and master weights share the layout),
// so data-parallel buckets, sharding and offload can work layer by layer. Qwen2, Llama 3 and Qwen3
// run the same kinds and differ only in config data (biases, q/k norm, tying, RoPE).
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/params.h"

namespace r1::model {

enum class AttentionKind : uint8_t { GroupedQuery, Latent };  // blocks/attention.h, blocks/mla.h
enum class MlpKind : uint8_t { SwiGLU, MixtureOfExperts };     // blocks/mlp.h, blocks/moe.h

// Elements [begin, end) of a flat buffer.
struct FlatRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

struct LayerPlan {
  AttentionKind attention = AttentionKind::GroupedQuery;
  MlpKind mlp = MlpKind::SwiGLU;
  FlatRange params;  // this layer's parameters (a contiguous run of the layout)
};

struct ModelPlan {
  std::vector<ParamSpec> specs;  // every parameter, in layout order
  FlatRange embed;               // the token embedding
  std::vector<LayerPlan> layers;
  FlatRange head;                // the final norm and the lm_head or score head (empty when tied)
  int64_t total = 0;             // elements of a flat buffer
};

// The plan of a validated config (config_from_json rejects what no block runs).
ModelPlan make_plan(const ModelConfig& c);

}  // namespace r1::model
