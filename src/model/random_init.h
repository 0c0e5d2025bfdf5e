#pragma once
// The random initial weights: normal(0, std) for matrices and embeddings, 1 for norm weights, 0 for
// biases. A tensor draws from the Philox stream (seed, its spec's stream: its place in layout
// version 1's parameter list, so a seed gives the same model in any layout), its element j from
// words 2j and 2j+1 of that stream, so any block of any tensor is drawn on its own (in parallel,
// or as it is written to disk) with the numbers one sequential pass gives.
#include <cstdint>
#include <string>
#include <vector>

#include "model/params.h"

namespace r1::model {

constexpr float kInitStd = 0.02f;  // the default std of the random weights (HF's initializer_range)

// Elements [begin, begin + count) of the tensor `spec` describes into dst, in parallel over blocks
// of `block` elements.
void draw_init_values(const ParamSpec& spec, uint64_t seed, float std, int64_t begin, int64_t count, float* dst,
                      int64_t block = int64_t(1) << 16);
// Every parameter into `flat` (total_params(specs) floats); a progress line from `progress_min`
// parameters up (smaller models draw in a second or two).
void draw_init_weights(const std::vector<ParamSpec>& specs, uint64_t seed, float std, float* flat,
                       int64_t progress_min = 100'000'000);

// The weights Transformer(c).init_random(seed, std) draws, a range of the flat layout at a time.
WeightSource random_weights(const ModelConfig& c, uint64_t seed, float std);

// r1 init: writes `dir` (config.json + model.safetensors as `dtype`) holding the weights
// Transformer(cfg).init_random(seed, std) would have, drawn chunk by chunk as the file is written,
// so a model larger than memory can be created; shows progress with an ETA.
void write_random_model(const ModelConfig& cfg, const std::string& dir, DType dtype, uint64_t seed,
                        float std);

}  // namespace r1::model
