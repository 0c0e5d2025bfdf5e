#include "model/kv_cache.h"

#include <algorithm>

#include "base/error.h"
#include "tensor/device_memory.h"

namespace r1::model {

KVCache::KVCache(const ModelConfig& c, int64_t slots_, int64_t max_len_, Device device_, DType dtype_)
    : slots(slots_), max_len(max_len_), device(device_), dtype(dtype_) {
  R1_CHECK(slots > 0 && max_len > 0, "KV cache needs slots > 0 and max_len > 0 (got {}, {})", slots, max_len);
  // MLA (CPU): full per-head keys and values, padded to one head dim (blocks/mla.h).
  const int64_t NKV = c.is_mla() ? c.num_attention_heads : c.num_key_value_heads;
  const int64_t HD = c.is_mla() ? std::max(c.mla.qk_head_dim(), c.mla.v_head_dim) : c.head_dim;
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

}  // namespace r1::model
