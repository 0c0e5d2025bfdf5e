// Generation: the KV cache and the cached forward (prefill chunks and decode steps), on the model's
// device in its compute dtype.
#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "kernels/ops.h"
#include "model/transformer.h"
#include "tensor/device_memory.h"

namespace r1::model {

KVCache::KVCache(const ModelConfig& c, int64_t slots_, int64_t max_len_, Device device_, DType dtype_)
    : slots(slots_), max_len(max_len_), device(device_), dtype(dtype_) {
  R1_CHECK(slots > 0 && max_len > 0, "KV cache needs slots > 0 and max_len > 0 (got {}, {})", slots, max_len);
  const int64_t NKV = c.num_key_value_heads, HD = c.head_dim;
  const size_t bytes = size_t(slots * max_len * NKV * HD) * dtype_size(dtype);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    k.emplace_back(bytes, device);
    v.emplace_back(bytes, device);
    k_t.emplace_back(k.back().data(), dtype, std::initializer_list<int64_t>{slots, max_len, NKV, HD}, device);
    v_t.emplace_back(v.back().data(), dtype, std::initializer_list<int64_t>{slots, max_len, NKV, HD}, device);
  }
}

KVCache::KVCache(const Transformer& m, int64_t slots_, int64_t max_len_)
    : KVCache(m.config(), slots_, max_len_, m.device(), m.compute_dtype()) {}

void KVCache::copy_prefix(int64_t src, int64_t dst, int64_t rows) {
  R1_CHECK(0 <= src && src < slots && 0 <= dst && dst < slots && 0 <= rows && rows <= max_len,
           "KVCache::copy_prefix: slots {} -> {} with {} rows out of range ({} slots of {} rows)", src, dst, rows,
           slots, max_len);
  if (src == dst || rows == 0) return;
  for (size_t l = 0; l < k_t.size(); ++l)
    for (Tensor* cache : {&k_t[l], &v_t[l]}) {
      const Tensor& t = *cache;
      const Tensor from = t.rows(src, src + 1).reshape({max_len, t.shape[2], t.shape[3]}).rows(0, rows);
      const Tensor to = t.rows(dst, dst + 1).reshape({max_len, t.shape[2], t.shape[3]}).rows(0, rows);
      copy_tensor(to, from);
    }
}

namespace {

Tensor upload_i32(Arena& a, const std::vector<int32_t>& v) {
  Tensor t = a.alloc_i32({int64_t(v.size())});
  copy_from_host(t, v.data());
  return t;
}

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
                      const std::vector<int32_t>& logit_rows, Arena& a, std::optional<DType> logits_dtype) {
  const int64_t T = int64_t(ids.size());
  R1_CHECK(T > 0, "forward_cached: no tokens");
  R1_CHECK(slots.size() == ids.size() && pos.size() == ids.size(),
           "forward_cached: {} ids, {} slots, {} positions", T, slots.size(), pos.size());
  for (int64_t t = 0; t < T; ++t) {
    R1_CHECK(ids[size_t(t)] >= 0 && ids[size_t(t)] < m.config().vocab_size,
             "forward_cached: token {} = {} is outside the vocabulary", t, ids[size_t(t)]);
    R1_CHECK(slots[size_t(t)] >= 0 && slots[size_t(t)] < cache.slots, "forward_cached: slot {} out of range [0, {})",
             slots[size_t(t)], cache.slots);
    R1_CHECK(pos[size_t(t)] >= 0 && pos[size_t(t)] < cache.max_len,
             "forward_cached: position {} does not fit the KV cache of length {}", pos[size_t(t)], cache.max_len);
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
  return forward_cached(m, cache, in, a, logits_dtype.value_or(m.compute_dtype()));
}

Tensor forward_cached(const Transformer& m, KVCache& cache, const CachedInputs& in, Arena& a, DType logits_dtype) {
  const ModelConfig& c = m.config();
  const Params& P = m.params();
  const int64_t T = in.ids.numel(), C = c.hidden_size, I = c.intermediate_size;
  const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim;
  const int64_t Q = c.q_dim(), KV = c.kv_dim();
  const bool all_rows = in.logit_rows.empty() || in.logit_rows.numel() == 0;
  const int64_t R = all_rows ? T : in.logit_rows.numel();
  const float eps = float(c.rms_norm_eps), scale = 1.0f / std::sqrt(float(HD));
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
  const bool packed = !in.cu_seqlens.empty() && in.cu_seqlens.numel() > 0;

  Tensor x = a.alloc(cd, {T, C}), h = a.alloc(cd, {T, C}), rstd = a.alloc_f32({T});
  Tensor q = a.alloc(cd, {T, Q}), k = a.alloc(cd, {T, KV}), v = a.alloc(cd, {T, KV});
  Tensor qn = a.alloc(cd, {T, Q}), kn = a.alloc(cd, {T, KV}), hrstd = a.alloc_f32({T * NH});
  Tensor att = a.alloc(cd, {T, NH, HD}), tmp = a.alloc(cd, {T, C});
  Tensor gate = a.alloc(cd, {T, I}), up = a.alloc(cd, {T, I}), act = a.alloc(cd, {T, I});
  Tensor lse = packed ? a.alloc_f32({T, NH}) : Tensor();
  Tensor workspace = in.attention_workspace;
  if (workspace.empty() && !packed && m.device() != Device::CPU) {
    const int64_t ws = ops::attention_cached_workspace(T, NH, HD, cache.max_len);
    if (ws > 0) workspace = a.alloc_f32({ws});
  }
  ops::embedding_forward(x, in.ids, P.embed);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerParams& W = P.layers[size_t(l)];
    ops::rmsnorm_forward(h, rstd, x, W.input_norm, eps);
    ops::linear_forward(q, h, W.q_w, W.q_b);
    ops::linear_forward(k, h, W.k_w, W.k_b);
    ops::linear_forward(v, h, W.v_w, W.v_b);
    Tensor qh = q, kh = k;
    if (c.qk_norm) {
      ops::rmsnorm_forward(qn.reshape({T * NH, HD}), hrstd, q.reshape({T * NH, HD}), W.q_norm, eps);
      ops::rmsnorm_forward(kn.reshape({T * NKV, HD}), hrstd.rows(0, T * NKV), k.reshape({T * NKV, HD}),
                           W.k_norm, eps);
      qh = qn;
      kh = kn;
    }
    qh = qh.reshape({T, NH, HD});
    kh = kh.reshape({T, NKV, HD});
    const Tensor vh = v.reshape({T, NKV, HD});
    ops::rope_forward(qh, in.pos, m.rope_inv_freq());
    ops::rope_forward(kh, in.pos, m.rope_inv_freq());
    ops::kv_cache_write(cache.k_t[size_t(l)], cache.v_t[size_t(l)], kh, vh, in.slots, in.pos);
    // A fresh prefill attends within its own tokens: the packed (training) attention, the same
    // kernel the trainer's forward runs. Otherwise over the cache.
    if (packed) {
      ops::attention_forward(att, lse, qh, kh, vh, in.cu_seqlens, scale);
    } else {
      ops::attention_cached(att, qh, cache.k_t[size_t(l)], cache.v_t[size_t(l)], in.slots, in.pos, scale,
                            workspace);
    }
    ops::linear_forward(tmp, att.reshape({T, Q}), W.o_w, {});
    ops::add(x, x, tmp);
    ops::rmsnorm_forward(h, rstd, x, W.post_norm, eps);
    ops::linear_forward(gate, h, W.gate_w, {});
    ops::linear_forward(up, h, W.up_w, {});
    ops::swiglu_forward(act, gate, up);
    ops::linear_forward(tmp, act, W.down_w, {});
    ops::add(x, x, tmp);
  }
  // The rows that need logits, gathered on the device: a row gather is exactly an embedding lookup
  // with the hidden states as the table.
  Tensor last = x;
  if (!all_rows) {
    last = a.alloc(cd, {R, C});
    ops::embedding_forward(last, in.logit_rows, x);
  }
  Tensor last_normed = a.alloc(cd, {R, C}), last_rstd = a.alloc_f32({R});
  ops::rmsnorm_forward(last_normed, last_rstd, last, P.final_norm, eps);
  Tensor logits = a.alloc(logits_dtype, {R, int64_t(c.vocab_size)});
  ops::linear_forward(logits, last_normed, P.lm_head, {});
  return logits;
}

}  // namespace r1::model
