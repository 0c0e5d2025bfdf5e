#pragma once
// Generation: the KV cache and the cached forward (prefill chunks and decode steps), on the model's
// device in its compute dtype. The layers run the same blocks as training (blocks/decoder_layer.h).
#include <cstdint>
#include <optional>
#include <vector>

#include "model/config.h"
#include "model/transformer.h"
#include "tensor/tensor.h"

namespace r1::model {

// Key/value cache for generation: per layer (S slots, L rows, NKV, HD) in the compute dtype.
struct KVCache {
  KVCache(const ModelConfig& c, int64_t slots, int64_t max_len, Device device = Device::CPU,
          DType dtype = DType::F32);
  // On the model's device, in its compute dtype.
  KVCache(const Transformer& m, int64_t slots, int64_t max_len);
  // Copies rows [0, rows) of slot src into slot dst in every layer (a shared prompt prefix).
  void copy_prefix(int64_t src, int64_t dst, int64_t rows);
  int64_t slots, max_len;
  Device device;
  DType dtype;
  std::vector<Buffer> k, v;
  std::vector<Tensor> k_t, v_t;
};

// Cached forward for generation: token t (ids[t]) is at row pos[t] of cache slot slots[t]; its keys
// and values are written into the cache and it attends to rows [0, pos[t]] of its slot. Returns
// logits (R, V) for the rows listed in `logit_rows` (e.g. each prompt's last token), in `arena`,
// which must be on the model's device: in the compute dtype by default, or f32 (read them with
// to_host_f32, tensor/device_memory.h). A batch of whole prompts from position 0 (a fresh prefill)
// runs the packed training attention over its own tokens. routes (optional): set to the experts
// each token was sent to in the MoE layers (routing replay's record; expert_routes.h).
Tensor forward_cached(const Transformer& m, KVCache& cache, const std::vector<int32_t>& ids,
                      const std::vector<int32_t>& slots, const std::vector<int32_t>& pos,
                      const std::vector<int32_t>& logit_rows, Arena& arena,
                      std::optional<DType> logits_dtype = std::nullopt, ExpertRoutes* routes = nullptr);

// The same forward from inputs already on the model's device (i32), unchecked: the decode step that
// CUDA graphs capture. logit_rows empty: logits for every token. cu_seqlens (B + 1), when given,
// says the tokens are B whole prompts from position 0 (packed attention).
// attention_workspace (f32, optional): the decode attention's split scratch
// (ops::attention_cached_workspace); taken from the arena when not given.
struct CachedInputs {
  Tensor ids, slots, pos, logit_rows, cu_seqlens, attention_workspace;
};
Tensor forward_cached(const Transformer& m, KVCache& cache, const CachedInputs& in, Arena& arena,
                      DType logits_dtype, ExpertRoutes* routes = nullptr);

}  // namespace r1::model
