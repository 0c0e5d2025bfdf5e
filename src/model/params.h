#pragma once
// Parameters in the HF layout and names, as views into one flat buffer (one for weights, one of the
// same layout for gradients; on CUDA also one for the fp32 master weights), so the optimizer and
// all-reduce see a single array. Offsets count elements, so one layout serves f32 and bf16 buffers.
// The layout is the blocks' visit order (blocks/*.h): each parameter is declared once there.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/blocks/decoder_layer.h"
#include "model/config.h"
#include "tensor/tensor.h"

namespace r1::model {

struct ParamSpec {
  std::string name;            // HF name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  int64_t offset = 0;          // in elements, into the flat buffer
  // The random init's stream (random_init.h): the tensor's place in layout version 1's order, so a
  // seed draws the same model whatever the layout.
  uint64_t stream = 0;
  int64_t numel() const;
};

struct Params {
  Tensor embed;       // (V, C)
  std::vector<LayerWeights> layers;
  Tensor final_norm;  // (C)
  Tensor lm_head;     // (V, C); the same memory as embed when tied; empty for a classifier
  Tensor score;       // (num_labels, C) for a classifier (reward model), else empty
  Tensor flat;        // (N): everything
};

// Every parameter of the model in layout order, with its full HF name: the embedding, each
// layer's blocks, the final norm, then the lm_head (untied) or a classifier's "score" head.
template <class P, class F>
void visit_params(P& p, const ModelConfig& c, F&& f) {
  const int64_t C = c.hidden_size, V = c.vocab_size;
  f(p.embed, std::string("model.embed_tokens.weight"), ParamShape{V, C});
  p.layers.resize(size_t(c.num_hidden_layers));
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    visit_layer(p.layers[size_t(l)], c, l,
                [&](auto& t, const std::string& name, ParamShape shape) { f(t, prefix + name, shape); });
  }
  f(p.final_norm, std::string("model.norm.weight"), ParamShape{C});
  if (c.has_score_head()) f(p.score, std::string("score.weight"), ParamShape{c.num_labels, C});
  else if (!c.tie_word_embeddings) f(p.lm_head, std::string("lm_head.weight"), ParamShape{V, C});
}

// The version of the flat layout this build writes (optimizer states record it: optim::save_adamw_state).
// 2: each attention's q, k and v weights adjacent, then their biases; 1 (before 2026-12-06): each
// bias right after its weight. Only models with attention biases differ between the two.
constexpr int kParamLayoutVersion = 2;

// Every parameter of the architecture, in layout order (of `version`), with 64-byte aligned offsets.
std::vector<ParamSpec> param_specs(const ModelConfig& c, int version = kParamLayoutVersion);
// One tensor's place in two layouts: elements [from, from + count) of the other layout are
// [to, to + count) of this one.
struct FlatMove {
  int64_t to = 0, from = 0, count = 0;
};
// Every tensor's move from layout `version` to this build's; empty when the two are the same for c
// (so a flat state in `version` reads as it is). Fails naming the version when it is unknown.
std::vector<FlatMove> layout_moves(const ModelConfig& c, int version);
int64_t total_params(const std::vector<ParamSpec>& specs);
// A model's fp32 weights in the flat layout, asked a range [begin, begin + count) at a time into
// dst, so a rank can take its shard without the whole model ever being in memory (parallel.shard:
// full); the layout's alignment padding between tensors reads as 0. Made by checkpoint_weights
// (checkpoint.h) and random_weights (random_init.h).
using WeightSource = std::function<void(int64_t begin, int64_t count, float* dst)>;
// The WeightSource of a layout whose tensors fill themselves: part(spec, k, from, n, dst) puts
// elements [from, from + n) of tensor k into dst; the padding between tensors is 0.
using TensorPart = std::function<void(const ParamSpec& spec, size_t k, int64_t from, int64_t n, float* dst)>;
WeightSource weight_source(std::vector<ParamSpec> specs, TensorPart part);

// How data parallelism splits n elements of the flat layout over `ranks` (each rank's contiguous
// shard, in rank order): equal shards rounded down to 64 elements (aligned vector loads), the
// remainder on the last rank, which is so the largest.
std::vector<int64_t> shard_counts(int64_t n, int ranks);

// Views into `base` (total_params(specs) elements of `dtype` on `device`) laid out by `specs`; a
// null base gives views with their shapes that point at nothing.
Params bind_params(const ModelConfig& c, const std::vector<ParamSpec>& specs, void* base, DType dtype,
                   Device device);
inline Params bind_params(const ModelConfig& c, const std::vector<ParamSpec>& specs, float* base) {
  return bind_params(c, specs, base, DType::F32, Device::CPU);
}

}  // namespace r1::model
