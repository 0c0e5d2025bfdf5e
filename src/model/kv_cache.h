#pragma once
// Generation: the paged KV cache and the cached forward (prefill chunks and decode steps), on the
// model's device in its compute dtype. The layers run the same blocks as training
// (blocks/decoder_layer.h).
//
// The cache is a pool of blocks of BS rows (keys and values of one token each, in every layer). A
// sequence holds a list of blocks, its row of the block table (S rows of MB entries, on the
// device): its row j lives in row j % BS of block table[s, j / BS]. Sequences grow a block at a
// time and may share blocks (a prompt's, by its samples); who holds which block is the rollout
// engine's business (rollout/kv_blocks.h). Keys and values keep their own head dims; MLA caches its
// compressed latent instead (KVHeads::latent).
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "device/reserved_memory.h"
#include "model/config.h"
#include "model/transformer.h"
#include "tensor/device_memory.h"
#include "tensor/tensor.h"

namespace r1::model {

// The shape of a paged cache.
struct KVLayout {
  int64_t blocks = 0;      // NB: blocks in the pool
  int64_t block_size = 0;  // BS: rows per block
  int64_t seqs = 0;        // S: rows of the block table (sequences that hold blocks at once)
  int64_t max_blocks = 0;  // MB: blocks one sequence may hold (its longest length is MB * BS rows)
};

// The rows one layer caches per token: kv heads and the key and value head dims. latent (MLA): one
// row per token, the normed latent and the rotated rope key (HD = kv_lora_rank + qk_rope_head_dim);
// the values are its first HDv = kv_lora_rank columns, not stored again (no value pool).
struct KVHeads {
  int64_t NKV = 0, HD = 0, HDv = 0;
  bool latent = false;
};
KVHeads kv_heads(const ModelConfig& c);
// Bytes of keys and values one cached token takes in all layers.
int64_t kv_bytes_per_token(const ModelConfig& c, DType dtype);

constexpr int64_t kDefaultBlockSize = 16;

struct KVCache {
  KVCache(const ModelConfig& c, const KVLayout& layout, Device device = Device::CPU,
          DType dtype = DType::F32);
  // On the model's device, in its compute dtype.
  KVCache(const Transformer& m, const KVLayout& layout);
  // `slots` sequences of up to max_len rows, each owning its own consecutive blocks (no sharing, no
  // paging): the layout for a forward_cached caller that manages no blocks (tests, benchmarks).
  KVCache(const Transformer& m, int64_t slots, int64_t max_len);

  int64_t max_len() const { return layout.max_blocks * layout.block_size; }
  // Copies block src into block dst in every layer (keys and values): a copy-on-write.
  void copy_block(int32_t src, int32_t dst);
  // On CUDA the pool's memory can be given back while nothing is cached (the training step uses
  // it) and taken again at the same address, so graphs captured over the cache stay valid; its
  // contents are lost. No-ops on the CPU.
  void release_pool();
  void acquire_pool();
  bool pool_resident() const { return !k_dev_ || k_dev_->resident(); }
  // Sets rows [first, first + rows) of the block table from host memory (rows * MB entries).
  void set_table_rows(int64_t first, int64_t rows, const int32_t* host);

  KVLayout layout;
  KVHeads heads;
  Device device;
  DType dtype;
  // Per layer: k_t[l] (NB, BS, NKV, HD), v_t[l] (NB, BS, NKV, HDv), views into one allocation each
  // for keys and values (layer-major, so a block's rows in every layer are evenly spaced: one
  // strided copy moves a block). A latent cache has no values: every v_t[l] is empty.
  std::vector<Tensor> k_t, v_t;
  Buffer table_buf;
  Tensor table;  // (S, MB) i32 on the cache's device

  // Routing replay's record on the device (mixture-of-experts models, after keep_routes): per MoE
  // layer (route_layers, ascending) an (NB, BS, 1, K) i32 pool, the experts each cached row's token
  // was sent to, written by the cached forward beside the row's keys, copied with its block, and
  // read back by read_routes. A captured decode step records with no host read. Empty until then.
  std::vector<Tensor> route_t;
  std::vector<int> route_layers;
  void keep_routes(const ModelConfig& c);

 private:
  Buffer k_host_, v_host_;                               // the CPU's pool
  std::unique_ptr<cuda::ReservedMemory> k_dev_, v_dev_;  // CUDA's
  CountedBytes pool_bytes_;                              // CUDA's while resident, in memory_use
  char *k_base_ = nullptr, *v_base_ = nullptr;  // v_base_ null: a latent cache
  Buffer routes_;                                 // route_t's memory (kept when the pool is released)
  size_t pool_size() const;                       // CUDA's reserved bytes
};

// Cached forward for generation: token t (ids[t]) is at row pos[t] of sequence slots[t] (a row of
// the block table); its keys and values are written into the cache and it attends to rows [0,
// pos[t]] of its sequence. Returns logits (R, V) for the rows listed in `logit_rows` (e.g. each
// prompt's last token), in `arena`, which must be on the model's device: in the compute dtype by
// default, or f32 (read them with to_host_f32, tensor/device_memory.h). A batch of whole prompts
// from position 0 (a fresh prefill) runs the packed training attention over its own tokens.
// routes (optional): set to the experts each token was sent to in the MoE layers (routing replay's
// record; expert_routes.h).
Tensor forward_cached(const Transformer& m, KVCache& cache, const std::vector<int32_t>& ids,
                      const std::vector<int32_t>& slots, const std::vector<int32_t>& pos,
                      const std::vector<int32_t>& logit_rows, Arena& arena,
                      std::optional<DType> logits_dtype = std::nullopt, ExpertRoutes* routes = nullptr,
                      float trainer_temperature = 0.0f);

// The experts the rows `rows` of the cache (block * BS + row in the block) were recorded with, in
// every MoE layer (KVCache::keep_routes; expert_routes.h's layout, one route row per entry of
// `rows`): one gather per layer on the cache's device and one copy to the host. arena: on the
// cache's device, for the gather.
ExpertRoutes read_routes(const KVCache& cache, const std::vector<int32_t>& rows, Arena& arena);

// The same forward from inputs already on the model's device (i32), unchecked: the decode step that
// CUDA graphs capture. logit_rows empty: logits for every token. cu_seqlens (B + 1), when given,
// says the tokens are B whole prompts from position 0 (packed attention).
// attention_workspace (f32, optional): the decode attention's split scratch
// (ops::attention_cached_workspace); taken from the arena when not given.
// trainer_temperature > 0: the logits are the trainer's (ops::lm_head_logits: the head's product over
// kVocabChunk vocabulary chunks, divided by this temperature, f32), what a sampler whose log-probs
// must be the trainer's draws from (rollout.exact_logprobs, with ops::batch_invariant() on); 0: the
// lm head's plain logits in logits_dtype.
// one_token_per_slot: every token is in a slot of its own (a decode step; padding rows, whose
// results are dropped, may share one): Pass::one_token_per_slot.
struct CachedInputs {
  Tensor ids, slots, pos, logit_rows, cu_seqlens, attention_workspace;
  float trainer_temperature = 0.0f;
  bool one_token_per_slot = false;
};
Tensor forward_cached(const Transformer& m, KVCache& cache, const CachedInputs& in, Arena& arena,
                      DType logits_dtype, ExpertRoutes* routes = nullptr);

}  // namespace r1::model
