#pragma once
// LoRA adapters on disk in PEFT's layout: a directory with adapter_config.json and
// adapter_model.safetensors (tensor names as PEFT writes them), so PeftModel.from_pretrained and
// vLLM's LoRA serving load what r1 saves, and r1 loads what PEFT saves. And merging: the base
// weights with s * B A added, saved as a plain HF model.
#include <string>

#include "model/transformer.h"

namespace r1::model {

// Writes m's adapters into `dir` (created if missing) as `dtype` (F32 or BF16): the weights first,
// adapter_config.json last, each through a temporary file, so an interrupted save never leaves a
// directory that loads as another adapter. base_model goes into base_model_name_or_path.
void save_adapter(const Transformer& m, const std::string& dir, const std::string& base_model,
                  DType dtype = DType::F32);

// Adds the adapters of `dir` to m: its config (unsupported PEFT features are errors naming the file
// and key), then every tensor; a missing tensor, one of another shape, or one the config does not
// imply is an error naming the file and the tensor. A model that already has adapters gets the
// weights, when the configs agree (a resumed run).
void load_adapter(Transformer& m, const std::string& dir);

// m's base weights with each adapter merged in (W + s B A), as host f32 in m's flat layout.
std::vector<float> merged_weights(const Transformer& m);
// Saves the merged model as an HF model directory (config.json + model.safetensors).
void save_merged(const Transformer& m, const std::string& dir, DType dtype = DType::F32);

// base_model_name_or_path of the adapter directory `dir`, resolved against `dir` when relative.
std::string adapter_base_model(const std::string& dir);
bool is_adapter_dir(const std::string& dir);  // has adapter_config.json and no config.json

// The adapter directory `dir` over its base model: `base`, or when empty its
// base_model_name_or_path. The base is loaded frozen (compute weights only); the adapters train.
Transformer load_adapted_model(const std::string& dir, const std::string& base = "", Device device = Device::CPU);

}  // namespace r1::model
