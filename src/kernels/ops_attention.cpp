// Dispatch of attention: packed training attention, the paged KV cache write and the attention over
// it (see ops_check.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "kernels/ops_check.h"

namespace r1::ops {

using namespace check;

// ---------------------------------------------------------------------------------------------
// attention

namespace {
// The checks attention_forward and attention_backward share: q (T, NH, HD), k (T, NKV, HD), v (T,
// NKV, HDv) with HDv from `vref` (out, the value rows' consumer), cu_seqlens (B + 1), lse (T, NH).
struct AttentionDims {
  DType dt;
  int64_t T, NH, NKV, HD, HDv, B;
};
AttentionDims attention_check(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens) {
  const DType dt = compute_dtype(op, "q", q);
  expect(op, "q", q, dt, {{"T", kAny}, {"NH", kAny}, {"HD", kAny}});
  const int64_t T = q.shape[0], NH = q.shape[1], HD = q.shape[2];
  expect(op, "k", k, dt, {{"T", T}, {"NKV", kAny}, {"HD", HD}}, "q", &q);
  const int64_t NKV = k.shape[1];
  check_heads(op, NH, NKV);
  expect(op, "out", out, dt, {{"T", T}, {"NH", NH}, {"HDv", kAny}}, "q", &q);
  const int64_t HDv = out.shape[2];
  expect(op, "v", v, dt, {{"T", T}, {"NKV", NKV}, {"HDv", HDv}}, "out", &out);
  expect(op, "cu_seqlens", cu_seqlens, I32, {{"B+1", kAny}});
  if (cu_seqlens.shape[0] < 1) fail("{}: cu_seqlens {} is empty, expected (B+1)", op, cu_seqlens.describe());
  expect(op, "lse", lse, F32, {{"T", T}, {"NH", NH}}, "q", &q);
  return {dt, T, NH, NKV, HD, HDv, cu_seqlens.shape[0] - 1};
}
}  // namespace

void attention_forward(Tensor out, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, float scale) {
  const Op id = Op::attention_forward;
  const char* op = op_name(id);
  const auto [dt, T, NH, NKV, HD, HDv, B] = attention_check(op, q, k, v, out, lse, cu_seqlens);
  if (on_cuda(op, {{"out", out}, {"lse", lse}, {"q", q}, {"k", k}, {"v", v}, {"cu_seqlens", cu_seqlens}})) {
    const bool aligned = all_aligned16({{"out", out}, {"q", q}, {"k", k}, {"v", v}});
    require_supported(id, {HD, HDv, aligned}, dt, Device::CUDA, "q", q);
    R1_CUDA_DISPATCH_PATH(
        op, dt,
        cuda::attention_forward(bp(out), fp(lse), bp(q), bp(k), bp(v), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale),
        cuda::attention_forward(fp(out), fp(lse), fp(q), fp(k), fp(v), ip(cu_seqlens), B, T, NH, NKV, HD, HDv,
                                scale));
  }
  check_cu_seqlens(op, cu_seqlens, T);
  count_path(id, Path::native);
  cpu::attention_forward(fp(out), fp(lse), fp(q), fp(k), fp(v), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale);
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens,
                        float scale) {
  const Op id = Op::attention_backward;
  const char* op = op_name(id);
  const auto [dt, T, NH, NKV, HD, HDv, B] = attention_check(op, q, k, v, out, lse, cu_seqlens);
  expect(op, "dout", dout, dt, {{"T", T}, {"NH", NH}, {"HDv", HDv}}, "out", &out);
  expect(op, "dq", dq, dt, {{"T", T}, {"NH", NH}, {"HD", HD}}, "q", &q);
  expect(op, "dk", dk, dt, {{"T", T}, {"NKV", NKV}, {"HD", HD}}, "k", &k);
  expect(op, "dv", dv, dt, {{"T", T}, {"NKV", NKV}, {"HDv", HDv}}, "v", &v);
  if (on_cuda(op, {{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"q", q}, {"k", k}, {"v", v},
                   {"out", out}, {"lse", lse}, {"cu_seqlens", cu_seqlens}})) {
    const bool aligned = all_aligned16(
        {{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"q", q}, {"k", k}, {"v", v}, {"out", out}});
    require_supported(id, {HD, HDv, aligned}, dt, Device::CUDA, "q", q);
    R1_CUDA_DISPATCH_PATH(op, dt,
                          cuda::attention_backward(bp(dq), bp(dk), bp(dv), bp(dout), bp(q), bp(k), bp(v), bp(out),
                                                   fp(lse), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale),
                          cuda::attention_backward(fp(dq), fp(dk), fp(dv), fp(dout), fp(q), fp(k), fp(v), fp(out),
                                                   fp(lse), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale));
  }
  check_cu_seqlens(op, cu_seqlens, T);
  count_path(id, Path::native);
  cpu::attention_backward(fp(dq), fp(dk), fp(dv), fp(dout), fp(q), fp(k), fp(v), fp(out), fp(lse), ip(cu_seqlens),
                          B, T, NH, NKV, HD, HDv, scale);
}

namespace {
// The checks the paged cache ops share: k_cache (NB, BS, NKV, HD), v_cache (NB, BS, NKV, HDv),
// block_table (S, MB) i32, slots and pos (T) i32 (T from `tokens`, named `tokens_name`).
struct PagedDims {
  DType dt;
  int64_t NB, BS, NKV, HD, HDv, S, MB, T;
  int64_t L() const { return MB * BS; }
};
PagedDims paged_check(const char* op, const Tensor& k_cache, const Tensor& v_cache, const Tensor& block_table,
                      const Tensor& slots, const Tensor& pos, const char* tokens_name, const Tensor& tokens) {
  const DType dt = compute_dtype(op, "k_cache", k_cache);
  expect(op, "k_cache", k_cache, dt, {{"NB", kAny}, {"BS", kAny}, {"NKV", kAny}, {"HD", kAny}});
  const int64_t NB = k_cache.shape[0], BS = k_cache.shape[1], NKV = k_cache.shape[2], HD = k_cache.shape[3];
  // An empty v_cache: the latent cache, whose values are the keys' first HDv columns (the caller's HDv).
  int64_t HDv = 0;
  if (!v_cache.empty()) {
    expect(op, "v_cache", v_cache, dt, {{"NB", NB}, {"BS", BS}, {"NKV", NKV}, {"HDv", kAny}}, "k_cache",
           &k_cache);
    HDv = v_cache.shape[3];
  }
  expect(op, "block_table", block_table, I32, {{"S", kAny}, {"MB", kAny}});
  const int64_t S = block_table.shape[0], MB = block_table.shape[1];
  const int64_t T = tokens.shape[0];
  expect(op, "slots", slots, I32, {{"T", T}}, tokens_name, &tokens);
  expect(op, "pos", pos, I32, {{"T", T}}, tokens_name, &tokens);
  return {dt, NB, BS, NKV, HD, HDv, S, MB, T};
}
// CPU-side: every index in range (they read the data).
void paged_ranges(const char* op, const PagedDims& d, const Tensor& block_table, const Tensor& slots,
                  const Tensor& pos) {
  check_range(op, "block_table", block_table, 0, d.NB, "cache blocks NB");
  check_range(op, "slots", slots, 0, d.S, "block table rows S");
  check_range(op, "pos", pos, 0, d.L(), "rows a sequence holds, L = MB * BS");
}
#ifdef R1_HAVE_CUDA
cuda::PagedCache paged_cache(const Tensor& block_table, const PagedDims& d) {
  return {ip(block_table), d.BS, d.MB, d.NKV, d.HD, d.HDv};
}
#endif
}  // namespace

void kv_cache_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                    const Tensor& block_table, const Tensor& slots, const Tensor& pos) {
  const Op id = Op::kv_cache_write;
  const char* op = op_name(id);
  const PagedDims d = paged_check(op, k_cache, v_cache, block_table, slots, pos, "k", k);
  expect(op, "k", k, d.dt, {{"T", kAny}, {"NKV", d.NKV}, {"HD", d.HD}}, "k_cache", &k_cache);
  if (v_cache.empty()) {
    if (!v.empty()) fail("{}: v {} given with no v_cache (a latent cache keeps only keys)", op, v.describe());
  } else {
    expect(op, "v", v, d.dt, {{"T", d.T}, {"NKV", d.NKV}, {"HDv", d.HDv}}, "v_cache", &v_cache);
  }
  if (on_cuda(op, {{"k_cache", k_cache},
                   {"v_cache", v_cache},
                   {"k", k},
                   {"v", v},
                   {"block_table", block_table},
                   {"slots", slots},
                   {"pos", pos}})) {
    R1_CUDA_DISPATCH_DT(op, d.dt,
                        cuda::kv_cache_write(bp(k_cache), bp(v_cache), bp(k), bp(v), ip(block_table),
                                             ip(slots), ip(pos), d.T, d.BS, d.MB, d.NKV, d.HD, d.HDv),
                        cuda::kv_cache_write(fp(k_cache), fp(v_cache), fp(k), fp(v), ip(block_table),
                                             ip(slots), ip(pos), d.T, d.BS, d.MB, d.NKV, d.HD, d.HDv));
  }
  paged_ranges(op, d, block_table, slots, pos);
  count_path(id, Path::native);
  cpu::kv_cache_write(fp(k_cache), fp(v_cache), fp(k), fp(v), ip(block_table), ip(slots), ip(pos), d.T, d.BS,
                      d.MB, d.NKV, d.HD, d.HDv);
}

namespace {
// Rows of q, k or v in a tensor: row t's elements start at t * row + at (the columns of a packed
// product, or a (T, H, HD) tensor of its own: at 0, row H * HD).
struct Rows {
  const char* name;
  Tensor t;
  int64_t at, row;
};
// Both RoPE + cache write ops, their shapes checked against d: q and k (each head first
// rmsnorm_forward'ed with q_norm, k_norm when given) rotated in place by rope_forward at positions
// pos, the rotated q also into q_out when it is not empty, then kv_cache_write of the rotated k and
// of v.
void rope_cache_rows(Op id, const PagedDims& d, int64_t NH, const Rows& q, const Rows& k, const Rows& v,
                     const Tensor& q_out, const Tensor& k_cache, const Tensor& v_cache, const Tensor& block_table,
                     const Tensor& slots, const Tensor& pos, const Tensor& inv_freq, const Tensor& q_norm = {},
                     const Tensor& k_norm = {}, float eps = 0.0f) {
  const char* op = op_name(id);
  check_heads(op, NH, d.NKV);
  if (d.HD % 2 != 0) fail("{}: k_cache {} has odd head dim HD = {}", op, k_cache.describe(), d.HD);
  expect(op, "inv_freq", inv_freq, F32, {{"HD/2", d.HD / 2}}, "k_cache", &k_cache);
  if (on_cuda(op, {{q.name, q.t},
                   {k.name, k.t},
                   {v.name, v.t},
                   {"q_out", q_out},
                   {"q_norm", q_norm},
                   {"k_norm", k_norm},
                   {"k_cache", k_cache},
                   {"v_cache", v_cache},
                   {"block_table", block_table},
                   {"slots", slots},
                   {"pos", pos},
                   {"inv_freq", inv_freq}})) {
    R1_CUDA_DISPATCH_DT(op, d.dt,
                        cuda::rope_kv_cache_write(bp(q.t) + q.at, bp(k.t) + k.at, bp(v.t) + v.at, bp(k_cache),
                                                  bp(v_cache), bp(q_out), cuda::RopeRows{q.row, k.row, v.row},
                                                  bp(q_norm), bp(k_norm), eps, ip(block_table), ip(slots), ip(pos),
                                                  fp(inv_freq), d.T, d.BS, d.MB, NH, d.NKV, d.HD, d.HDv),
                        cuda::rope_kv_cache_write(fp(q.t) + q.at, fp(k.t) + k.at, fp(v.t) + v.at, fp(k_cache),
                                                  fp(v_cache), fp(q_out), cuda::RopeRows{q.row, k.row, v.row},
                                                  fp(q_norm), fp(k_norm), eps, ip(block_table), ip(slots), ip(pos),
                                                  fp(inv_freq), d.T, d.BS, d.MB, NH, d.NKV, d.HD, d.HDv));
  }
  paged_ranges(op, d, block_table, slots, pos);
  count_path(id, Path::native);
  // The reference is the three ops' own CPU code, in their order, on the rows in place when they
  // are a tensor of their own, else on a copy whose rotated rows are put back.
  struct Held {
    const Rows& r;
    int64_t n;
    std::vector<float> copy;
    float* rows() {
      if (r.at == 0 && r.row == n) return fp(r.t);
      copy.resize(size_t(r.t.shape[0] * n));
      for (int64_t t = 0; t < r.t.shape[0]; ++t) std::copy_n(fp(r.t) + t * r.row + r.at, n, copy.data() + t * n);
      return copy.data();
    }
    void put_back() {
      for (int64_t t = 0; !copy.empty() && t < r.t.shape[0]; ++t)
        std::copy_n(copy.data() + t * n, n, fp(r.t) + t * r.row + r.at);
    }
  };
  Held hq{q, NH * d.HD, {}}, hk{k, d.NKV * d.HD, {}}, hv{v, d.NKV * d.HDv, {}};
  float *qr = hq.rows(), *kr = hk.rows();
  if (!q_norm.empty()) {
    std::vector<float> rstd(size_t(d.T * std::max(NH, d.NKV)));
    cpu::rmsnorm_forward(qr, rstd.data(), qr, fp(q_norm), d.T * NH, d.HD, eps);
    cpu::rmsnorm_forward(kr, rstd.data(), kr, fp(k_norm), d.T * d.NKV, d.HD, eps);
  }
  cpu::rope_forward(qr, ip(pos), fp(inv_freq), d.T, NH, d.HD);
  cpu::rope_forward(kr, ip(pos), fp(inv_freq), d.T, d.NKV, d.HD);
  cpu::kv_cache_write(fp(k_cache), fp(v_cache), kr, hv.rows(), ip(block_table), ip(slots), ip(pos), d.T, d.BS, d.MB,
                      d.NKV, d.HD, d.HDv);
  hq.put_back();
  hk.put_back();
  if (!q_out.empty()) std::copy_n(qr, d.T * NH * d.HD, fp(q_out));
}
}  // namespace

void rope_kv_cache_write(Tensor q, Tensor k, const Tensor& v, Tensor k_cache, Tensor v_cache,
                         const Tensor& block_table, const Tensor& slots, const Tensor& pos, const Tensor& inv_freq) {
  const Op id = Op::rope_kv_cache_write;
  const char* op = op_name(id);
  const PagedDims d = paged_check(op, k_cache, v_cache, block_table, slots, pos, "k", k);
  if (v_cache.empty()) fail("{}: no v_cache (a latent cache's keys are not rotated whole; use kv_cache_write)", op);
  expect(op, "k", k, d.dt, {{"T", d.T}, {"NKV", d.NKV}, {"HD", d.HD}}, "k_cache", &k_cache);
  expect(op, "v", v, d.dt, {{"T", d.T}, {"NKV", d.NKV}, {"HDv", d.HDv}}, "v_cache", &v_cache);
  expect(op, "q", q, d.dt, {{"T", d.T}, {"NH", kAny}, {"HD", d.HD}}, "k", &k);
  const int64_t NH = q.shape[1];
  rope_cache_rows(id, d, NH, {"q", q, 0, NH * d.HD}, {"k", k, 0, d.NKV * d.HD}, {"v", v, 0, d.NKV * d.HDv}, Tensor(),
                  k_cache, v_cache, block_table, slots, pos, inv_freq);
}

namespace {
// The paged cache's dimensions and the packed (T, NH*HD + NKV*HD + NKV*HDv) q/k/v rows of the ops
// that take a decode step's one product: NH from q_out (T, NH, HD), W the packed row; q_norm and
// k_norm both given or neither.
struct PackedQkv {
  PagedDims d;
  int64_t NH, W;
};
PackedQkv packed_qkv_check(const char* op, const Tensor& q_out, const Tensor& qkv, const Tensor& k_cache,
                           const Tensor& v_cache, const Tensor& block_table, const Tensor& slots, const Tensor& pos,
                           const Tensor& q_norm, const Tensor& k_norm) {
  const PagedDims d = paged_check(op, k_cache, v_cache, block_table, slots, pos, "qkv", qkv);
  if (v_cache.empty()) fail("{}: no v_cache (a latent cache's keys are not rotated whole; use kv_cache_write)", op);
  expect(op, "q_out", q_out, d.dt, {{"T", d.T}, {"NH", kAny}, {"HD", d.HD}}, "k_cache", &k_cache);
  const int64_t NH = q_out.shape[1], W = NH * d.HD + d.NKV * d.HD + d.NKV * d.HDv;
  expect(op, "qkv", qkv, d.dt, {{"T", d.T}, {"NH*HD + NKV*HD + NKV*HDv", W}}, "q_out", &q_out);
  if (q_norm.empty() != k_norm.empty())
    fail("{}: q_norm {} and k_norm {} come together (qk_norm) or not at all", op, q_norm.describe(), k_norm.describe());
  return {d, NH, W};
}
}  // namespace

void rope_qkv_cache_write(Tensor q_out, Tensor qkv, Tensor k_cache, Tensor v_cache, const Tensor& block_table,
                          const Tensor& slots, const Tensor& pos, const Tensor& inv_freq, const Tensor& q_norm,
                          const Tensor& k_norm, float eps) {
  const Op id = Op::rope_qkv_cache_write;
  const char* op = op_name(id);
  const PackedQkv pk = packed_qkv_check(op, q_out, qkv, k_cache, v_cache, block_table, slots, pos, q_norm, k_norm);
  const PagedDims& d = pk.d;
  const int64_t NH = pk.NH, Q = NH * d.HD, KV = d.NKV * d.HD, W = pk.W;
  if (!q_norm.empty()) {
    expect(op, "q_norm", q_norm, d.dt, {{"HD", d.HD}}, "k_cache", &k_cache);
    expect(op, "k_norm", k_norm, d.dt, {{"HD", d.HD}}, "k_cache", &k_cache);
    if (!(eps > 0.0f) || !std::isfinite(eps)) fail("{}: eps {} is not a positive finite number", op, eps);
  }
  rope_cache_rows(id, d, NH, {"qkv", qkv, 0, W}, {"qkv", qkv, Q, W}, {"qkv", qkv, Q + KV, W}, q_out, k_cache, v_cache,
                  block_table, slots, pos, inv_freq, q_norm, k_norm, eps);
}

namespace {
// The f32 elements of attention_cached's optional split workspace (0: none), at least what these
// shapes use (attention_cached_workspace), else an error naming the need.
int64_t workspace_floats(const char* op, const Tensor& workspace, const PagedDims& d, int64_t NH) {
  const int64_t ws = workspace.empty() ? 0 : workspace.numel();  // an empty Tensor's numel() is 1
  const int64_t need = ws == 0 ? 0 : attention_cached_workspace(d.T, NH, d.HDv, d.L());
  if (ws < need) {
    fail(
        "{}: workspace {} is too small: {} f32 elements needed (attention_cached_workspace(T={}, NH={}, "
        "HDv={}, L={}))",
        op, workspace.describe(), need, d.T, NH, d.HDv, d.L());
  }
  return ws;
}
}  // namespace

void attention_cached(Tensor out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                      const Tensor& block_table, const Tensor& slots, const Tensor& pos, float scale,
                      const Tensor& workspace) {
  const Op id = Op::attention_cached;
  const char* op = op_name(id);
  const PagedDims d = paged_check(op, k_cache, v_cache, block_table, slots, pos, "q", q);
  expect(op, "q", q, d.dt, {{"T", kAny}, {"NH", kAny}, {"HD", d.HD}}, "k_cache", &k_cache);
  const int64_t NH = q.shape[1];
  check_heads(op, NH, d.NKV);
  const bool latent = v_cache.empty();
  PagedDims dv = d;
  if (latent) {  // the values are the keys' first HDv columns
    expect(op, "out", out, d.dt, {{"T", d.T}, {"NH", NH}, {"HDv", kAny}});
    dv.HDv = out.shape[2];
    if (dv.HDv > d.HD) fail("{}: out {} has more value columns than the latent keys {} hold", op, out.describe(), k_cache.describe());
  } else {
    expect(op, "out", out, d.dt, {{"T", d.T}, {"NH", NH}, {"HDv", d.HDv}}, "v_cache", &v_cache);
  }
  if (!workspace.empty()) expect_f32(op, "workspace", workspace);
  if (on_cuda(op, {{"out", out},
                   {"q", q},
                   {"k_cache", k_cache},
                   {"v_cache", v_cache},
                   {"block_table", block_table},
                   {"slots", slots},
                   {"pos", pos},
                   {"workspace", workspace}})) {
    const bool aligned = all_aligned16({{"out", out}, {"q", q}, {"k_cache", k_cache}, {"v_cache", v_cache}});
    require_supported(id, {dv.HD, dv.HDv, aligned, latent}, dv.dt, Device::CUDA, "q", q);
    const int64_t ws = workspace_floats(op, workspace, dv, NH);
    if (latent) {
      R1_CUDA_DISPATCH_DT(
          op, dv.dt,
          cuda::attention_cached_latent(bp(out), bp(q), bp(k_cache), paged_cache(block_table, dv), ip(slots),
                                        ip(pos), dv.T, NH, scale, fp(workspace), ws),
          cuda::attention_cached_latent(fp(out), fp(q), fp(k_cache), paged_cache(block_table, dv), ip(slots),
                                        ip(pos), dv.T, NH, scale, fp(workspace), ws));
    }
    R1_CUDA_DISPATCH_DT(
        op, dv.dt,
        cuda::attention_cached(bp(out), bp(q), bp(k_cache), bp(v_cache), paged_cache(block_table, dv),
                               ip(slots), ip(pos), dv.T, NH, scale, fp(workspace), ws),
        cuda::attention_cached(fp(out), fp(q), fp(k_cache), fp(v_cache), paged_cache(block_table, dv),
                               ip(slots), ip(pos), dv.T, NH, scale, fp(workspace), ws));
  }
  paged_ranges(op, d, block_table, slots, pos);
  count_path(id, Path::native);
  cpu::attention_cached(fp(out), fp(q), fp(k_cache), fp(v_cache), ip(block_table), ip(slots), ip(pos), d.T,
                        d.BS, d.MB, NH, d.NKV, d.HD, dv.HDv, scale);
}

void rope_qkv_attention_cached(Tensor out, Tensor q_out, Tensor qkv, Tensor k_cache, Tensor v_cache,
                               const Tensor& block_table, const Tensor& slots, const Tensor& pos,
                               const Tensor& inv_freq, float scale, const Tensor& workspace, const Tensor& q_norm,
                               const Tensor& k_norm, float eps) {
  const Op id = Op::rope_qkv_attention_cached;
  const char* op = op_name(id);
  const PackedQkv pk = packed_qkv_check(op, q_out, qkv, k_cache, v_cache, block_table, slots, pos, q_norm, k_norm);
  const PagedDims& d = pk.d;
  const int64_t NH = pk.NH, W = pk.W;
  check_heads(op, NH, d.NKV);
  expect(op, "out", out, d.dt, {{"T", d.T}, {"NH", NH}, {"HDv", d.HDv}}, "v_cache", &v_cache);
  expect(op, "inv_freq", inv_freq, F32, {{"HD/2", d.HD / 2}}, "k_cache", &k_cache);
  if (!workspace.empty()) expect_f32(op, "workspace", workspace);
  if (on_cuda(op, {{"out", out},
                   {"q_out", q_out},
                   {"qkv", qkv},
                   {"k_cache", k_cache},
                   {"v_cache", v_cache},
                   {"block_table", block_table},
                   {"slots", slots},
                   {"pos", pos},
                   {"inv_freq", inv_freq},
                   {"q_norm", q_norm},
                   {"k_norm", k_norm},
                   {"workspace", workspace}})) {
#ifdef R1_HAVE_CUDA
    const bool aligned = all_aligned16({{"out", out}, {"k_cache", k_cache}, {"v_cache", v_cache}});
    const OpShape shape{d.HD, d.HDv, aligned, false, NH / d.NKV, !q_norm.empty()};
    if (supports(id, shape, d.dt, Device::CUDA).path == Path::native) {
      require_device(op);
      const int64_t ws = workspace_floats(op, workspace, d, NH);
      const cuda::ProfileScope scope(op, dtype_name(d.dt));
      if (cuda::rope_qkv_attention_cached(bp(out), bp(qkv), W, bp(k_cache), bp(v_cache), paged_cache(block_table, d),
                                          ip(slots), ip(pos), fp(inv_freq), d.T, NH, scale, fp(workspace), ws)) {
        count_path(id, Path::native);
        return;
      }
    }
#endif
    count_path(id, Path::fallback);
  } else {
    const int32_t* sl = ip(slots);  // one token per sequence: no token reads a row another writes
    std::vector<int32_t> seen(sl, sl + d.T);
    std::sort(seen.begin(), seen.end());
    const auto dup = std::adjacent_find(seen.begin(), seen.end());
    if (dup != seen.end()) fail("{}: two tokens are in slot {}: each token needs a slot of its own", op, *dup);
    count_path(id, Path::native);
  }
  rope_qkv_cache_write(q_out, qkv, k_cache, v_cache, block_table, slots, pos, inv_freq, q_norm, k_norm, eps);
  attention_cached(out, q_out, k_cache, v_cache, block_table, slots, pos, scale, workspace);
}

int64_t attention_cached_workspace(int64_t T, int64_t NH, int64_t HDv, int64_t L) {
#ifdef R1_HAVE_CUDA
  if (cuda::cuda_available()) return cuda::attention_cached_workspace(T, NH, HDv, L);
#endif
  (void)T, (void)NH, (void)HDv, (void)L;
  return 0;
}

}  // namespace r1::ops
