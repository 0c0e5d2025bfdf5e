// The cached forward (prefill chunks and decode steps): the training layers' blocks
// (blocks/decoder_layer.h) with the attention reading and writing the KV cache.
#include <algorithm>

#include "base/error.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "tensor/device_memory.h"

namespace r1::model {

namespace {

// cu_seqlens when the tokens are whole prompts from position 0, each in its own slot, one after
// another (a fresh prefill); empty otherwise.
std::vector<int32_t> fresh_prefill(const std::vector<int32_t>& slots, const std::vector<int32_t>& pos) {
  std::vector<int32_t> cu{0}, seen;
  for (size_t t = 0; t < pos.size(); ++t) {
    const bool starts = pos[t] == 0;
    if (starts) {
      if (std::find(seen.begin(), seen.end(), slots[t]) != seen.end()) return {};
      seen.push_back(slots[t]);
      if (t > 0) cu.push_back(int32_t(t));
    } else if (t == 0 || slots[t] != slots[t - 1] || pos[t] != pos[t - 1] + 1) {
      return {};
    }
  }
  cu.push_back(int32_t(pos.size()));
  return cu;
}

}  // namespace

Tensor forward_cached(const Transformer& m, KVCache& cache, const std::vector<int32_t>& ids,
                      const std::vector<int32_t>& slots, const std::vector<int32_t>& pos,
                      const std::vector<int32_t>& logit_rows, Arena& a, std::optional<DType> logits_dtype,
                      ExpertRoutes* routes, float trainer_temperature) {
  const int64_t T = int64_t(ids.size());
  R1_CHECK(T > 0, "forward_cached: no tokens");
  R1_CHECK(slots.size() == ids.size() && pos.size() == ids.size(),
           "forward_cached: {} ids, {} slots, {} positions", T, slots.size(), pos.size());
  for (int64_t t = 0; t < T; ++t) {
    R1_CHECK(ids[size_t(t)] >= 0 && ids[size_t(t)] < m.config().vocab_size,
             "forward_cached: token {} = {} is outside the vocabulary", t, ids[size_t(t)]);
    R1_CHECK(slots[size_t(t)] >= 0 && slots[size_t(t)] < cache.layout.seqs,
             "forward_cached: sequence {} out of range [0, {}) (rows of the block table)", slots[size_t(t)],
             cache.layout.seqs);
    R1_CHECK(pos[size_t(t)] >= 0 && pos[size_t(t)] < cache.max_len(),
             "forward_cached: position {} does not fit the KV cache's {} rows per sequence", pos[size_t(t)],
             cache.max_len());
  }
  for (int32_t r : logit_rows) R1_CHECK(r >= 0 && r < T, "forward_cached: logit row {} out of range", r);
  R1_CHECK(a.device() == m.device(), "forward_cached: the arena ({}) must be on the model's device ({})",
           device_name(a.device()), device_name(m.device()));
  CachedInputs in;
  in.ids = upload_i32(a, ids);
  in.slots = upload_i32(a, slots);
  in.pos = upload_i32(a, pos);
  in.logit_rows = upload_i32(a, logit_rows);
  const std::vector<int32_t> cu = fresh_prefill(slots, pos);
  if (!cu.empty()) in.cu_seqlens = upload_i32(a, cu);
  std::vector<int32_t> sorted = slots;
  std::sort(sorted.begin(), sorted.end());
  in.one_token_per_slot = cu.empty() && std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
  in.trainer_temperature = trainer_temperature;
  return forward_cached(m, cache, in, a, logits_dtype.value_or(m.compute_dtype()), routes);
}

Tensor forward_cached(const Transformer& m, KVCache& cache, const CachedInputs& in, Arena& a,
                      DType logits_dtype, ExpertRoutes* routes) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  const int64_t T = in.ids.numel(), C = c.hidden_size;
  const bool all_rows = in.logit_rows.empty() || in.logit_rows.numel() == 0;
  const int64_t R = all_rows ? T : in.logit_rows.numel();
  R1_CHECK(!P.lm_head.empty(), "forward_cached: the model is a sequence classifier (num_labels = {}): it has "
           "no lm_head to generate with", c.num_labels);
  const DType cd = m.compute_dtype();
  R1_CHECK(T > 0, "forward_cached: no tokens");
  R1_CHECK(a.device() == m.device() && cache.device == m.device() && cache.dtype == cd,
           "forward_cached: the arena ({}) and KV cache ({} {}) must be on the model's device ({}, {})",
           device_name(a.device()), device_name(cache.device), dtype_name(cache.dtype), device_name(m.device()),
           dtype_name(cd));
  R1_CHECK(logits_dtype == cd || logits_dtype == DType::F32, "forward_cached: logits must be {} or f32, not {}",
           dtype_name(cd), dtype_name(logits_dtype));

  Pass p;
  p.cfg = &c;
  p.cd = cd;
  p.T = T;
  p.pos = in.pos;
  p.cu_seqlens = in.cu_seqlens.numel() > 0 ? in.cu_seqlens : Tensor();
  p.inv_freq = m.rope_inv_freq();
  p.temp = &a;
  p.cache = &cache;
  p.slots = in.slots;
  p.workspace = in.attention_workspace;
  p.one_token_per_slot = in.one_token_per_slot && p.cu_seqlens.empty();
  if (m.has_lora()) p.lora_scale = m.lora().scale();  // decoding: adapters on, no dropout
  if (p.workspace.empty() && p.cu_seqlens.empty() && m.device() != Device::CPU) {
    const int64_t ws =
        ops::attention_cached_workspace(T, c.num_attention_heads, cache.heads.HDv, cache.max_len());
    if (ws > 0) p.workspace = a.alloc_f32({ws});
  }
  // The residual stream stays in one buffer; each layer's temporaries are released for the next
  // (the same allocations, so the same addresses: a captured decode step replays them).
  Tensor x = a.alloc(cd, {T, C});
  ops::embedding_forward(x, in.ids, P.embed);
  // The norm each layer's last product may write for the next layer (and the last for the final
  // norm): NormChain. One buffer: a layer reads its normed input before it writes the next.
  Tensor normed = a.alloc(cd, {T, C});
  bool have_normed = false;
  const int L = c.num_hidden_layers;
  const Arena::Mark layer_start = a.mark();
  if (routes) *routes = unrecorded_routes(c);
  for (int l = 0, moe = 0; l < L; ++l) {
    RouteIo route;
    if (P.layers[size_t(l)].is_moe()) {
      if (routes) route.chosen = &routes->experts[size_t(moe)];
      if (!cache.route_t.empty()) route.record = cache.route_t[size_t(moe)];
      ++moe;
    }
    const Tensor next_norm = l + 1 < L ? P.layers[size_t(l) + 1].input_norm : P.final_norm;
    have_normed = layer_forward(p, l, P.layers[size_t(l)], x, x, nullptr, &route,
                                {have_normed ? normed : Tensor(), next_norm, normed});
    a.rewind(layer_start);
  }
  // The rows that need logits, gathered on the device: a row gather is exactly an embedding lookup
  // with the hidden states as the table (or with their final norm, when the last layer wrote it: a
  // row's norm is its own).
  Tensor last = have_normed ? normed : x;
  if (!all_rows) {
    Tensor rows = a.alloc(cd, {R, C});
    ops::embedding_forward(rows, in.logit_rows, last);
    last = rows;
  }
  Tensor last_normed = last;
  if (!have_normed) {
    last_normed = a.alloc(cd, {R, C});
    ops::rmsnorm_forward(last_normed, a.alloc_f32({R}), last, P.final_norm, float(c.rms_norm_eps));
  }
  if (in.trainer_temperature > 0.0f) {
    R1_CHECK(logits_dtype == DType::F32, "forward_cached: the trainer's logits are f32, not {}", dtype_name(logits_dtype));
    Tensor logits = a.alloc_f32({R, int64_t(c.vocab_size)});
    ops::lm_head_logits(logits, last_normed, P.lm_head, in.trainer_temperature, kVocabChunk);
    return logits;
  }
  Tensor logits = a.alloc(logits_dtype, {R, int64_t(c.vocab_size)});
  ops::linear_forward(logits, last_normed, P.lm_head, {});
  return logits;
}

}  // namespace r1::model
