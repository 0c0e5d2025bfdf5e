#pragma once
// What every block's forward and backward is handed for one pass over a packed batch: the batch's
// inputs on the device, the cache when decoding, and where memory comes from. Shapes use the
// dimension letters of kernels/ops.h.
#include <cstdint>
#include <initializer_list>

#include "model/config.h"
#include "tensor/tensor.h"

namespace r1::model {

struct KVCache;

struct Pass {
  const ModelConfig* cfg = nullptr;
  DType cd = DType::F32;  // the compute dtype of weights and activations
  int64_t T = 0;          // tokens
  Tensor pos;             // (T) i32 position of each token in its sequence
  Tensor cu_seqlens;      // (B + 1) i32 when the tokens are B whole sequences; else empty
  Tensor inv_freq;        // (HD/2) f32 rotary frequencies

  // Memory. saved: what the backward reads (null: nothing is saved — inference and decoding).
  // temp: this layer's scratch, rewound by the caller between layers.
  Arena* saved = nullptr;
  Arena* temp = nullptr;
  // The cheap activations (norm outputs, the SwiGLU product) are recomputed in the backward
  // instead of saved.
  bool recompute = false;

  // Decoding: token t writes its keys and values to row pos[t] of sequence slots[t] of the paged
  // cache (a row of its block table) and attends over rows [0, pos[t]] of it (or, with cu_seqlens,
  // within its own prompt: a fresh prefill runs the training attention). workspace: the decode
  // attention's split scratch.
  KVCache* cache = nullptr;
  Tensor slots, workspace;
  // Every token is in a slot of its own (a decode step): no token reads a cache row another token
  // of the pass writes, so a token's RoPE, cache write and attention may run as one op.
  bool one_token_per_slot = false;

  // LoRA adapters (model/lora.h): whether they take part (off: the base model, e.g. the KL
  // reference), their scale, and, when saving (training), their input dropout: the mask of adapter
  // i in this pass comes from stream (dropout_step << 16) + i of dropout_seed.
  bool adapters = true;
  float lora_scale = 1.0f;
  float lora_dropout = 0.0f;
  uint64_t dropout_seed = 0, dropout_step = 0;

  bool saving() const { return saved != nullptr; }
  // Kept for the backward (scratch when nothing is saved).
  Tensor keep(DType t, std::initializer_list<int64_t> dims) const { return (saved ? saved : temp)->alloc(t, dims); }
  Tensor scratch(DType t, std::initializer_list<int64_t> dims) const { return temp->alloc(t, dims); }
  // Kept unless the backward recomputes it.
  Tensor cheap(DType t, std::initializer_list<int64_t> dims) const {
    return recompute ? scratch(t, dims) : keep(t, dims);
  }
  Tensor zeros(DType t, std::initializer_list<int64_t> dims) const { return temp->zeros(t, dims); }
};

// A parameter as a block declares it: its view (set when the model binds its weights), its name
// within the block (HF naming) and its shape. Blocks list their parameters once, in layout order,
// through a visit function; the model's layout, names and views all come from those visits.
using ParamShape = std::initializer_list<int64_t>;

}  // namespace r1::model
