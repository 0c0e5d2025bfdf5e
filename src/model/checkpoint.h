#pragma once
// HF model directories: config.json + model.safetensors (or a sharded index), loaded into and
// saved from a Transformer, so checkpoints move freely between r1.cpp, transformers and vLLM.
#include <string>

#include "model/transformer.h"
#include "tensor/tensor.h"

namespace r1::model {

// Loads config.json and the weights from `dir`. Every expected tensor must be present with the
// expected shape; an unexpected tensor is an error (it would be silently dropped otherwise).
Transformer load_model(const std::string& dir);

// Writes config.json and model.safetensors into `dir` (created if missing) as `dtype` (F32 or
// BF16). Files are written under temporary names first and renamed into place, config.json last,
// so an interrupted save never leaves a directory that loads as a valid, different model.
void save_model(const Transformer& m, const std::string& dir, DType dtype = DType::F32);

}  // namespace r1::model
