#include "model/kv_cache.h"

#include "base/error.h"
#include "kernels/ops.h"
#include "tensor/device_memory.h"

namespace r1::model {

KVHeads kv_heads(const ModelConfig& c) {
  // MLA (blocks/mla.h) caches the normed latent and the rotated rope key, one row shared by all
  // heads; decoding attends over it with the absorbed weights.
  if (c.is_mla()) return {1, c.mla.kv_lora_rank + c.mla.qk_rope_head_dim, c.mla.kv_lora_rank, true};
  return {c.num_key_value_heads, c.head_dim, c.head_dim};
}

int64_t kv_bytes_per_token(const ModelConfig& c, DType dtype) {
  const KVHeads h = kv_heads(c);
  return int64_t(c.num_hidden_layers) * h.NKV * (h.HD + (h.latent ? 0 : h.HDv)) * int64_t(dtype_size(dtype));
}

KVCache::KVCache(const ModelConfig& c, const KVLayout& l, Device device_, DType dtype_)
    : layout(l), heads(kv_heads(c)), device(device_), dtype(dtype_) {
  R1_CHECK(l.blocks > 0 && l.block_size > 0 && l.seqs > 0 && l.max_blocks > 0,
           "KV cache needs blocks, block_size, seqs and max_blocks > 0 (got {}, {}, {}, {})", l.blocks,
           l.block_size, l.seqs, l.max_blocks);
  const int64_t layers = c.num_hidden_layers, NB = l.blocks, BS = l.block_size;
  const size_t es = dtype_size(dtype);
  const size_t k_layer = size_t(NB * BS * heads.NKV * heads.HD) * es;
  const size_t v_layer = heads.latent ? 0 : size_t(NB * BS * heads.NKV * heads.HDv) * es;
  if (device == Device::CUDA) {
    k_dev_ = std::make_unique<cuda::ReservedMemory>(k_layer * size_t(layers));
    k_base_ = static_cast<char*>(k_dev_->data());
    if (v_layer) {
      v_dev_ = std::make_unique<cuda::ReservedMemory>(v_layer * size_t(layers));
      v_base_ = static_cast<char*>(v_dev_->data());
    }
    pool_bytes_.set(pool_size());
  } else {
    k_host_ = Buffer(k_layer * size_t(layers), device);
    k_base_ = static_cast<char*>(k_host_.data());
    if (v_layer) {
      v_host_ = Buffer(v_layer * size_t(layers), device);
      v_base_ = static_cast<char*>(v_host_.data());
    }
  }
  for (int64_t i = 0; i < layers; ++i) {
    k_t.emplace_back(k_base_ + size_t(i) * k_layer, dtype, std::initializer_list<int64_t>{NB, BS, heads.NKV, heads.HD},
                     device);
    v_t.push_back(v_layer ? Tensor(v_base_ + size_t(i) * v_layer, dtype,
                                   std::initializer_list<int64_t>{NB, BS, heads.NKV, heads.HDv}, device)
                          : Tensor());
  }
  table_buf = Buffer(size_t(l.seqs * l.max_blocks) * sizeof(int32_t), device);
  table_buf.zero();  // every entry names block 0 until a sequence is given its own
  table = Tensor(table_buf.data(), DType::I32, {l.seqs, l.max_blocks}, device);
}

KVCache::KVCache(const Transformer& m, const KVLayout& l)
    : KVCache(m.config(), l, m.device(), m.compute_dtype()) {}

namespace {
KVLayout contiguous_layout(int64_t slots, int64_t max_len) {
  R1_CHECK(slots > 0 && max_len > 0, "KV cache needs slots > 0 and max_len > 0 (got {}, {})", slots, max_len);
  const int64_t MB = (max_len + kDefaultBlockSize - 1) / kDefaultBlockSize;
  return {slots * MB, kDefaultBlockSize, slots, MB};
}
}  // namespace

KVCache::KVCache(const Transformer& m, int64_t slots, int64_t max_len)
    : KVCache(m, contiguous_layout(slots, max_len)) {
  std::vector<int32_t> t(size_t(layout.seqs * layout.max_blocks));
  for (size_t i = 0; i < t.size(); ++i) t[i] = int32_t(i);  // sequence s owns blocks [s * MB, (s + 1) * MB)
  set_table_rows(0, layout.seqs, t.data());
}

void KVCache::copy_block(int32_t src, int32_t dst) {
  R1_CHECK(0 <= src && src < layout.blocks && 0 <= dst && dst < layout.blocks,
           "KVCache::copy_block: blocks {} -> {} out of range [0, {})", src, dst, layout.blocks);
  if (src == dst) return;
  const size_t es = dtype_size(dtype), layers = k_t.size();
  R1_CHECK(pool_resident(), "KVCache::copy_block: the pool's memory was released");
  for (auto [base, hd] : {std::pair{k_base_, heads.HD}, std::pair{v_base_, heads.HDv}}) {
    if (!base) continue;  // a latent cache has no values
    const size_t block = size_t(layout.block_size * heads.NKV * hd) * es,
                 layer = block * size_t(layout.blocks);
    devmem::copy_strided(base + size_t(dst) * block, base + size_t(src) * block, device, block, layers,
                         layer);
  }
  if (!route_t.empty()) {  // the rows' recorded experts go with them
    char* base = static_cast<char*>(routes_.data());
    const size_t block = size_t(layout.block_size * route_t[0].shape[3]) * sizeof(int32_t),
                 layer = block * size_t(layout.blocks);
    devmem::copy_strided(base + size_t(dst) * block, base + size_t(src) * block, device, block, route_t.size(),
                         layer);
  }
}

void KVCache::keep_routes(const ModelConfig& c) {
  if (!route_t.empty()) return;
  for (int l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l)) route_layers.push_back(l);
  R1_CHECK(!route_layers.empty(), "KVCache::keep_routes: {} has no mixture-of-experts layer", c.model_type);
  const int64_t NB = layout.blocks, BS = layout.block_size, K = c.moe.num_experts_per_tok;
  const size_t layer = size_t(NB * BS * K) * sizeof(int32_t);
  routes_ = Buffer(layer * route_layers.size(), device);
  for (size_t i = 0; i < route_layers.size(); ++i)
    route_t.emplace_back(static_cast<char*>(routes_.data()) + i * layer, DType::I32,
                         std::initializer_list<int64_t>{NB, BS, 1, K}, device);
}

ExpertRoutes read_routes(const KVCache& cache, const std::vector<int32_t>& rows, Arena& arena) {
  R1_CHECK(!cache.route_t.empty(), "read_routes: the cache keeps no routes (KVCache::keep_routes)");
  const int64_t N = int64_t(rows.size()), K = cache.route_t[0].shape[3];
  const int64_t cache_rows = cache.layout.blocks * cache.layout.block_size;
  ExpertRoutes r;
  r.k = K;
  r.layers = cache.route_layers;
  if (N == 0) {
    r.experts.assign(r.layers.size(), {});
    return r;
  }
  Tensor ids = arena.alloc(DType::I32, {N});
  devmem::copy(ids.data, ids.device, rows.data(), Device::CPU, size_t(N) * sizeof(int32_t));
  Tensor all = arena.alloc(DType::F32, {int64_t(r.layers.size()), N, K});
  for (size_t l = 0; l < r.layers.size(); ++l) {
    // A row gather is an embedding lookup; the ids travel as the 4-byte words they are (a gather
    // only moves words, so their f32 reading never matters).
    Tensor table = cache.route_t[l].reshape({cache_rows, K});
    table.dtype = DType::F32;
    ops::embedding_forward(all.rows(int64_t(l), int64_t(l) + 1).reshape({N, K}), ids, table);
  }
  std::vector<int32_t> host(size_t(all.numel()));
  devmem::copy(host.data(), Device::CPU, all.data, all.device, all.nbytes());
  for (size_t l = 0; l < r.layers.size(); ++l)
    r.experts.emplace_back(host.begin() + int64_t(l) * N * K, host.begin() + int64_t(l + 1) * N * K);
  return r;
}

void KVCache::release_pool() {
  if (!k_dev_) return;
  k_dev_->release();
  if (v_dev_) v_dev_->release();
  pool_bytes_.set(0);
}

void KVCache::acquire_pool() {
  if (!k_dev_) return;
  k_dev_->acquire();
  if (v_dev_) v_dev_->acquire();
  pool_bytes_.set(pool_size());
}

size_t KVCache::pool_size() const { return k_dev_->size() + (v_dev_ ? v_dev_->size() : 0); }

void KVCache::set_table_rows(int64_t first, int64_t rows, const int32_t* host) {
  R1_CHECK(first >= 0 && rows >= 0 && first + rows <= layout.seqs,
           "KVCache::set_table_rows: rows [{}, {}) out of range [0, {})", first, first + rows, layout.seqs);
  const size_t row = size_t(layout.max_blocks) * sizeof(int32_t);
  devmem::copy(static_cast<char*>(table_buf.data()) + size_t(first) * row, device, host, Device::CPU,
               size_t(rows) * row);
}

}  // namespace r1::model
