#pragma once
// HF model directories: config.json + model.safetensors (or a sharded index), loaded into and
// saved from a Transformer, so checkpoints move freely between r1.cpp, transformers and vLLM.
#include <string>

#include "model/safetensors.h"
#include "model/transformer.h"
#include "tensor/tensor.h"

namespace r1::model {

// Loads config.json and the weights from `dir` into a model on `device` (see Transformer for
// trainable). Every expected tensor must be present with the expected shape; an unexpected tensor
// is an error (it would be silently dropped otherwise). CUDA models are read on the host, then
// uploaded.
Transformer load_model(const std::string& dir, Device device = Device::CPU, bool trainable = true,
                       MasterPlace master = MasterPlace::Device);
// The fp32 weights of the checkpoint in `dir`, a range of the flat layout at a time (params.h's
// WeightSource), for a model of config c: checked as load_model checks them (every tensor present
// with its shape, none unused) before any is read; the file stays mapped while the source lives.
WeightSource checkpoint_weights(const std::string& dir, const ModelConfig& c);
// Reads the weights saved in model directory `dir` into m (same architecture): in place where m's
// fp32 weights are host memory, else through one host copy (resuming a run needs no second model).
void load_weights(const std::string& dir, Transformer& m);

// Loads `dir` as a sequence classifier with `num_labels` outputs (a reward model has 1). A directory
// that already is one loads as load_model does; a causal LM becomes its backbone: the lm_head is
// dropped and the score head is drawn fresh from normal(0, std) with `seed`. A classifier with
// another num_labels is an error naming both counts.
Transformer load_classifier(const std::string& dir, int num_labels, uint64_t seed, Device device = Device::CPU,
                            bool trainable = true, float std = 0.02f);

// Writes config.json and model.safetensors into `dir` (created if missing) as `dtype` (F32 or
// BF16). Files are written under temporary names first and renamed into place, config.json last,
// so an interrupted save never leaves a directory that loads as a valid, different model. A CUDA
// model's weights are downloaded first (its fp32 master copy when it has one).
void save_model(const Transformer& m, const std::string& dir, DType dtype = DType::F32);
// The same files for weights laid out by `specs`, asked from `source` a chunk at a time (k indexes
// specs), so they need never be in memory as a whole; `progress` shows a progress line.
void save_model_streamed(const ModelConfig& config, const std::vector<ParamSpec>& specs,
                         const std::string& dir, DType dtype, const TensorSource& source, bool progress);

}  // namespace r1::model
