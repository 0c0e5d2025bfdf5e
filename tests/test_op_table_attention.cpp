// The op table's runners for attention: the packed causal attention (forward and backward, q/k head
// dim HD and value head dim HDv), the paged KV cache write and the attention over the paged cache
// (through a shuffled block table), each against a double-precision reference computed on all rows
// or, for large cases, on sampled rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "op_table.h"

namespace optable {

namespace {

constexpr Bound kAttnGrad{1e-4, 1e-2, 1e-5, 1e-4};

struct Packed {
  Vi cu;
  int64_t T, B, NH, NKV, HD, HDv, maxlen;
  std::vector<int64_t> start, end;  // each token's sequence [start, end)
  float scale;
};

Packed packed(const Shape& s) {
  Packed p;
  p.cu = make_cu(s.lens);
  p.T = p.cu.back();
  p.B = int64_t(s.lens.size());
  p.NH = s.NH, p.NKV = s.NKV, p.HD = s.HD, p.HDv = s.HDv ? s.HDv : s.HD;
  p.maxlen = s.lens.empty() ? 0 : *std::max_element(s.lens.begin(), s.lens.end());
  p.start.resize(sz(p.T));
  p.end.resize(sz(p.T));
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t t = p.cu[b]; t < p.cu[b + 1]; ++t) p.start[t] = p.cu[b], p.end[t] = p.cu[b + 1];
  p.scale = 1.0f / std::sqrt(float(p.HD));
  return p;
}

template <typename X>
double dotd(const X* a, const X* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

// Rows th = t * NH + h of the attention output (HDv each) and their log-sum-exp.
template <typename X>
void ref_attention(const Packed& p, const std::vector<X>& q, const std::vector<X>& k, const std::vector<X>& v,
                   const Rows& rows, Vd& out, Vd& lse) {
  out.assign(rows.size() * sz(p.HDv), 0.0);
  lse.assign(rows.size(), 0.0);
  const int64_t G = p.NH / p.NKV;
  Vd s;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t t = rows[r] / p.NH, h = rows[r] % p.NH, g = h / G, s0 = p.start[t];
    s.assign(sz(t - s0 + 1), 0.0);
    double m = -INFINITY;
    for (int64_t j = s0; j <= t; ++j) {
      s[j - s0] = p.scale * dotd(&q[(t * p.NH + h) * p.HD], &k[(j * p.NKV + g) * p.HD], p.HD);
      m = std::max(m, s[j - s0]);
    }
    double sum = 0.0;
    for (double& x : s) sum += (x = std::exp(x - m));
    for (int64_t j = s0; j <= t; ++j)
      for (int64_t d = 0; d < p.HDv; ++d)
        out[r * sz(p.HDv) + sz(d)] += s[j - s0] / sum * double(v[(j * p.NKV + g) * p.HDv + d]);
    lse[r] = m + std::log(sum);
  }
}

// The saved forward values the backward reads (out (T, NH, HDv), lse (T, NH)): from the forward op
// on the case's device where it runs, else from the f32 CPU op (so an unsupported backward case
// reaches the backward).
void saved_forward(Run& c, const Packed& p, Vf& q, Vf& k, Vf& v, Vf& out, Vf& lse) {
  out.assign(sz(p.T * p.NH * p.HDv), 0.0f);
  lse.assign(sz(p.T * p.NH), 0.0f);
  Vi cu = p.cu;
  const int64_t B1 = p.B + 1;
  const ops::Path fwd = ops::supports(Op::attention_forward, {p.HD, p.HDv}, c.dt, c.dev).path;
  if (c.dev == Device::CUDA && fwd != ops::Path::unsupported) {
    Tensor to = c.nan({p.T, p.NH, p.HDv}, c.dt), tl = c.nan({p.T, p.NH}, DType::F32);
    ops::attention_forward(to, tl, c.act(q, {p.T, p.NH, p.HD}), c.act(k, {p.T, p.NKV, p.HD}),
                           c.act(v, {p.T, p.NKV, p.HDv}), c.ints(cu, {B1}), p.scale);
    out = Run::get(to);
    lse = Run::get(tl);
    return;
  }
  ops::attention_forward(Tensor::f32(out.data(), {p.T, p.NH, p.HDv}), Tensor::f32(lse.data(), {p.T, p.NH}),
                         Tensor::f32(q.data(), {p.T, p.NH, p.HD}), Tensor::f32(k.data(), {p.T, p.NKV, p.HD}),
                         Tensor::f32(v.data(), {p.T, p.NKV, p.HDv}), Tensor::i32(cu.data(), {B1}), p.scale);
}

}  // namespace

void run_attention_forward(Run& c) {
  const Packed p = packed(c.s);
  Vf q = c.randn(p.T * p.NH * p.HD), k = c.randn(p.T * p.NKV * p.HD), v = c.randn(p.T * p.NKV * p.HDv);
  Tensor tq = c.act(q, {p.T, p.NH, p.HD}), tk = c.act(k, {p.T, p.NKV, p.HD}),
         tv = c.act(v, {p.T, p.NKV, p.HDv});
  Tensor out = c.nan({p.T, p.NH, p.HDv}, c.dt), lse = c.nan({p.T, p.NH}, DType::F32);
  ops::attention_forward(out, lse, tq, tk, tv, c.ints(p.cu, {p.B + 1}), p.scale);
  const Rows rows = c.rows(p.T * p.NH, double(p.maxlen * (p.HD + p.HDv)));
  Vd oref, lref;
  ref_attention(p, q, k, v, rows, oref, lref);
  c.check("attention_forward out", c.get(out), oref, rows, p.HDv, kReduce);
  c.check("attention_forward lse(f32)", c.get(lse), lref, rows, 1, kReduce);
}

void run_attention_backward(Run& c) {
  const Packed p = packed(c.s);
  const int64_t T = p.T, NH = p.NH, NKV = p.NKV, HD = p.HD, HDv = p.HDv, G = NH / NKV;
  Vf q = c.randn(T * NH * HD), k = c.randn(T * NKV * HD), v = c.randn(T * NKV * HDv), out, lse;
  saved_forward(c, p, q, k, v, out, lse);
  Vf g = c.randn(T * NH * HDv), dq0 = c.randn(T * NH * HD), dk0 = c.randn(T * NKV * HD),
     dv0 = c.randn(T * NKV * HDv);
  const Vf dq_init = dq0, dk_init = dk0, dv_init = dv0;
  Tensor tdq = c.act(dq0, {T, NH, HD}), tdk = c.act(dk0, {T, NKV, HD}), tdv = c.act(dv0, {T, NKV, HDv});
  ops::attention_backward(tdq, tdk, tdv, c.act(g, {T, NH, HDv}), c.act(q, {T, NH, HD}),
                          c.act(k, {T, NKV, HD}), c.act(v, {T, NKV, HDv}), c.act(out, {T, NH, HDv}),
                          c.f32(lse, {T, NH}), c.ints(p.cu, {p.B + 1}), p.scale);
  const Vf dq = c.get(tdq), dk = c.get(tdk), dv = c.get(tdv);

  // p_ij = exp(scale q_i.k_j - lse_i), ds_ij = p_ij (dout_i.v_j - dout_i.out_i): dq_i = scale
  // sum_j ds_ij k_j; dk_j = scale sum_i ds_ij q_i; dv_j = sum_i p_ij dout_i (i, j in one sequence).
  auto pds = [&](int64_t i, int64_t h, int64_t j, double& pij, double& dsij) {
    const int64_t gg = h / G;
    pij = std::exp(p.scale * dotd(&q[(i * NH + h) * HD], &k[(j * NKV + gg) * HD], HD) - lse[i * NH + h]);
    const double dp = dotd(&g[(i * NH + h) * HDv], &v[(j * NKV + gg) * HDv], HDv);
    const double Di = dotd(&g[(i * NH + h) * HDv], &out[(i * NH + h) * HDv], HDv);
    dsij = pij * (dp - Di);
  };
  const double pair = double(2 * HD + 2 * HDv);
  const Rows qr = c.rows(T * NH, double(p.maxlen) * pair), kr = c.rows(T * NKV, double(p.maxlen * G) * pair);
  Vd edq = take_rows(dq_init, qr, HD), edk = take_rows(dk_init, kr, HD), edv = take_rows(dv_init, kr, HDv);
  double pij, dsij;
  for (size_t r = 0; r < qr.size(); ++r) {
    const int64_t i = qr[r] / NH, h = qr[r] % NH;
    for (int64_t j = p.start[i]; j <= i; ++j) {
      pds(i, h, j, pij, dsij);
      for (int64_t d = 0; d < HD; ++d)
        edq[r * sz(HD) + sz(d)] += p.scale * dsij * k[(j * NKV + h / G) * HD + d];
    }
  }
  for (size_t r = 0; r < kr.size(); ++r) {
    const int64_t j = kr[r] / NKV, gg = kr[r] % NKV;
    for (int64_t h = gg * G; h < (gg + 1) * G; ++h)
      for (int64_t i = j; i < p.end[j]; ++i) {
        pds(i, h, j, pij, dsij);
        for (int64_t d = 0; d < HD; ++d) edk[r * sz(HD) + sz(d)] += p.scale * dsij * q[(i * NH + h) * HD + d];
        for (int64_t d = 0; d < HDv; ++d) edv[r * sz(HDv) + sz(d)] += pij * g[(i * NH + h) * HDv + d];
      }
  }
  c.check("attention_backward dq", dq, edq, qr, HD, kAttnGrad);
  c.check("attention_backward dk", dk, edk, kr, HD, kAttnGrad);
  c.check("attention_backward dv", dv, edv, kr, HDv, kAttnGrad);

  if (c.fd(double(T * p.maxlen * NH * (HD + HDv)))) {
    Vd qd = to_d(q), kd = to_d(k), vd = to_d(v);
    const Rows all = Run::all_rows(T * NH);
    auto loss = [&] {
      Vd o, l;
      ref_attention(p, qd, kd, vd, all, o, l);
      return dot(o, g);
    };
    check_grad("dq", qd, diff(dq, dq_init), loss, 201, 60);
    check_grad("dk", kd, diff(dk, dk_init), loss, 202, 60);
    check_grad("dv", vd, diff(dv, dv_init), loss, 203, 60);
  }
}

// ---------------------------------------------------------------------------------------------
// The paged KV cache: S sequences of up to L rows in blocks of BS rows (s.BS, 16 when 0), laid out
// in a random order in a pool with two blocks no sequence holds, so that a kernel reading rows
// other than through the block table reads the wrong (or NaN) values. s.prefix: every sequence's
// first prefix / BS blocks are sequence 0's (the samples of a prompt share its blocks). s.latent: a
// cache of keys only, whose first HDv columns are the values (no v_cache, ops.h).

namespace {

struct Paged {
  int64_t S, L, BS, MB, NB;
  Vi table;  // (S, MB)
  // The pool row holding row j of sequence s.
  int64_t row(int64_t s, int64_t j) const { return int64_t(table[sz(s * MB + j / BS)]) * BS + j % BS; }
};

Paged paged(Run& c, int64_t S, int64_t L) {
  Paged p{S, L, c.s.BS ? c.s.BS : 16, 0, 0, {}};
  p.MB = (L + p.BS - 1) / p.BS;
  p.NB = S * p.MB + 2;
  std::vector<int32_t> perm(sz(p.NB));
  std::iota(perm.begin(), perm.end(), 0);
  for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[c.next_u32() % (i + 1)]);
  p.table.assign(perm.begin(), perm.begin() + S * p.MB);
  const int64_t shared = std::min(c.s.prefix / p.BS, p.MB);
  for (int64_t s = 1; s < S; ++s)
    for (int64_t b = 0; b < shared; ++b) p.table[sz(s * p.MB + b)] = p.table[sz(b)];
  return p;
}

// Distinct (slot, pos) per token: a random permutation of the first T cache rows.
void scatter_tokens(Run& c, int64_t S, int64_t L, int64_t T, Vi& slots, Vi& pos) {
  std::vector<int32_t> perm(sz(S * L));
  std::iota(perm.begin(), perm.end(), 0);
  for (size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[c.next_u32() % (i + 1)]);
  slots.resize(sz(T));
  pos.resize(sz(T));
  for (int64_t t = 0; t < T; ++t) {
    slots[t] = perm[t] / int32_t(L);
    pos[t] = perm[t] % int32_t(L);
  }
}

}  // namespace

void run_kv_cache_write(Run& c) {
  const bool latent = c.s.latent;  // keys only: no v_cache, no v
  const int64_t S = c.s.S, L = c.s.L, NKV = c.s.NKV, HD = c.s.HD, T = c.s.T;
  const int64_t HDv = latent ? 0 : c.s.HDv ? c.s.HDv : HD;
  const int64_t krow = NKV * HD, vrow = NKV * HDv;
  const Paged pg = paged(c, S, L);
  Vi slots, pos;
  scatter_tokens(c, S, L, T, slots, pos);
  Vf kc = c.randn(pg.NB * pg.BS * krow), vc = latent ? Vf() : c.randn(pg.NB * pg.BS * vrow);
  Vf k = c.randn(T * krow), v = latent ? Vf() : c.randn(T * vrow);
  Tensor tkc = c.act(kc, {pg.NB, pg.BS, NKV, HD});
  Tensor tvc = latent ? Tensor() : c.act(vc, {pg.NB, pg.BS, NKV, HDv});
  ops::kv_cache_write(tkc, tvc, c.act(k, {T, NKV, HD}), latent ? Tensor() : c.act(v, {T, NKV, HDv}),
                      c.ints(pg.table, {S, pg.MB}), c.ints(slots, {T}), c.ints(pos, {T}));
  Vd ek = to_d(kc), ev = to_d(vc);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t r = pg.row(slots[t], pos[t]);
    std::copy(k.begin() + t * krow, k.begin() + (t + 1) * krow, ek.begin() + r * krow);
    if (!latent) std::copy(v.begin() + t * vrow, v.begin() + (t + 1) * vrow, ev.begin() + r * vrow);
  }
  c.check("kv_cache_write k", c.get(tkc), ek, kExact);
  if (!latent) c.check("kv_cache_write v", c.get(tvc), ev, kExact);
}

// RoPE and the cache write in one op: bitwise rope_forward of q and k then kv_cache_write on the same
// device (those ops have their own references), the untouched cache rows kept. NH = NKV * 3.
void run_rope_kv_cache_write(Run& c) {
  const int64_t S = c.s.S, L = c.s.L, NKV = c.s.NKV, NH = 3 * NKV, HD = c.s.HD, T = c.s.T;
  const Paged pg = paged(c, S, L);
  Vi slots, pos;
  scatter_tokens(c, S, L, T, slots, pos);
  Vf kc = c.randn(pg.NB * pg.BS * NKV * HD), vc = c.randn(pg.NB * pg.BS * NKV * HD);
  Vf q = c.randn(T * NH * HD), k = c.randn(T * NKV * HD), v = c.randn(T * NKV * HD);
  Vf inv(sz(HD / 2));
  for (int64_t j = 0; j < HD / 2; ++j) inv[sz(j)] = float(1.0 / std::pow(1e6, double(2 * j) / double(HD)));
  const Tensor table = c.ints(pg.table, {S, pg.MB}), ts = c.ints(slots, {T}), tp = c.ints(pos, {T}), ti = c.f32(inv, {HD / 2});
  Tensor q1 = c.act(q, {T, NH, HD}), k1 = c.act(k, {T, NKV, HD}), q2 = c.act(q, {T, NH, HD}), k2 = c.act(k, {T, NKV, HD});
  Tensor kc1 = c.act(kc, {pg.NB, pg.BS, NKV, HD}), vc1 = c.act(vc, {pg.NB, pg.BS, NKV, HD});
  Tensor kc2 = c.act(kc, {pg.NB, pg.BS, NKV, HD}), vc2 = c.act(vc, {pg.NB, pg.BS, NKV, HD});
  const Tensor tv = c.act(v, {T, NKV, HD});
  ops::rope_kv_cache_write(q1, k1, tv, kc1, vc1, table, ts, tp, ti);
  ops::rope_forward(q2, tp, ti);
  ops::rope_forward(k2, tp, ti);
  ops::kv_cache_write(kc2, vc2, k2, tv, table, ts, tp);
  EXPECT_TRUE(c.get(q1) == c.get(q2)) << "q differs from rope_forward's";
  EXPECT_TRUE(c.get(k1) == c.get(k2)) << "k differs from rope_forward's";
  EXPECT_TRUE(c.get(kc1) == c.get(kc2)) << "the key cache differs from kv_cache_write's";
  EXPECT_TRUE(c.get(vc1) == c.get(vc2)) << "the value cache differs from kv_cache_write's";
  Vd ev = to_d(vc);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t r = pg.row(slots[t], pos[t]);
    std::copy(v.begin() + t * NKV * HD, v.begin() + (t + 1) * NKV * HD, ev.begin() + r * NKV * HD);
  }
  c.check("rope_kv_cache_write v", c.get(vc1), ev, kExact);
}

// The same of q, k and v packed in one (T, Q + 2 KV) product: bitwise rope_kv_cache_write of the
// three columns apart, the rotated q also in q_out, the packed v columns untouched. NH = NKV * 3.
// s.qk_norm: each q and k head RMS-normed first, bitwise rmsnorm_forward of the heads (as the
// unfused forward runs it) then rope_kv_cache_write.
void run_rope_qkv_cache_write(Run& c) {
  const int64_t S = c.s.S, L = c.s.L, NKV = c.s.NKV, NH = 3 * NKV, HD = c.s.HD, T = c.s.T;
  const int64_t Q = NH * HD, KV = NKV * HD, W = Q + 2 * KV;
  const Paged pg = paged(c, S, L);
  Vi slots, pos;
  scatter_tokens(c, S, L, T, slots, pos);
  Vf kc = c.randn(pg.NB * pg.BS * KV), vc = c.randn(pg.NB * pg.BS * KV), qkv = c.randn(T * W), zero(sz(T * Q));
  Tensor packed = c.act(qkv, {T, W}), q_out = c.act(zero, {T, NH, HD});  // (act rounds qkv to the dtype)
  Vf q(sz(T * Q)), k(sz(T * KV)), v(sz(T * KV));
  for (int64_t t = 0; t < T; ++t) {
    std::copy_n(qkv.begin() + t * W, Q, q.begin() + t * Q);
    std::copy_n(qkv.begin() + t * W + Q, KV, k.begin() + t * KV);
    std::copy_n(qkv.begin() + t * W + Q + KV, KV, v.begin() + t * KV);
  }
  Vf inv(sz(HD / 2));
  for (int64_t j = 0; j < HD / 2; ++j) inv[sz(j)] = float(1.0 / std::pow(1e6, double(2 * j) / double(HD)));
  const Tensor table = c.ints(pg.table, {S, pg.MB}), ts = c.ints(slots, {T}), tp = c.ints(pos, {T}), ti = c.f32(inv, {HD / 2});
  Tensor kc1 = c.act(kc, {pg.NB, pg.BS, NKV, HD}), vc1 = c.act(vc, {pg.NB, pg.BS, NKV, HD});
  Tensor kc2 = c.act(kc, {pg.NB, pg.BS, NKV, HD}), vc2 = c.act(vc, {pg.NB, pg.BS, NKV, HD});
  Tensor q2 = c.act(q, {T, NH, HD}), k2 = c.act(k, {T, NKV, HD}), v2 = c.act(v, {T, NKV, HD});
  if (c.s.qk_norm) {
    Vf qw = c.randn(HD), kw = c.randn(HD);
    for (float& x : qw) x = 1.0f + 0.3f * x;
    for (float& x : kw) x = 1.0f + 0.3f * x;
    const Tensor tqw = c.act(qw, {HD}), tkw = c.act(kw, {HD});
    const float eps = 1e-6f;
    ops::rope_qkv_cache_write(q_out, packed, kc1, vc1, table, ts, tp, ti, tqw, tkw, eps);
    Vf zq(sz(T * Q)), zk(sz(T * KV)), rq_std(sz(T * NH)), rk_std(sz(T * NKV));
    Tensor qn = c.act(zq, {T * NH, HD}), kn = c.act(zk, {T * NKV, HD});
    ops::rmsnorm_forward(qn, c.f32(rq_std, {T * NH}), q2.reshape({T * NH, HD}), tqw, eps);
    ops::rmsnorm_forward(kn, c.f32(rk_std, {T * NKV}), k2.reshape({T * NKV, HD}), tkw, eps);
    q2 = qn.reshape({T, NH, HD});
    k2 = kn.reshape({T, NKV, HD});
  } else {
    ops::rope_qkv_cache_write(q_out, packed, kc1, vc1, table, ts, tp, ti);
  }
  ops::rope_kv_cache_write(q2, k2, v2, kc2, vc2, table, ts, tp, ti);
  const Vf rq = c.get(q2), rk = c.get(k2), got = c.get(packed);
  EXPECT_TRUE(c.get(q_out) == rq) << "q_out differs from rope_kv_cache_write's q";
  EXPECT_TRUE(c.get(kc1) == c.get(kc2)) << "the key cache differs from rope_kv_cache_write's";
  EXPECT_TRUE(c.get(vc1) == c.get(vc2)) << "the value cache differs from rope_kv_cache_write's";
  bool columns = true;  // q and k rotated in place, v as it was
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < W; ++e) {
      const auto want = e < Q ? rq[sz(t * Q + e)] : e < Q + KV ? rk[sz(t * KV + e - Q)] : v[sz(t * KV + e - Q - KV)];
      columns = columns && got[sz(t * W + e)] == want;
    }
  EXPECT_TRUE(columns) << "the packed columns are not the rotated q and k and the untouched v";
}

// A decode step's RoPE, cache write and attention in one op: bitwise rope_qkv_cache_write then
// attention_cached on the same device (each has its own rows against the CPU), the out rows and
// both caches. One token per sequence (T = S): sequence 0 at position L - 1 (the whole context),
// sequence 1 at 0, the rest random, so a block's first tiles hold its new row or not. NH (default
// 3 NKV) sets the GQA group (over 16, or qk_norm: CUDA's fallback, the two ops); s.workspace: the
// split scratch (CUDA splits contexts past 4,096 keys).
void run_rope_qkv_attention_cached(Run& c) {
  const int64_t T = c.s.T, S = T, L = c.s.L, NKV = c.s.NKV, NH = c.s.NH ? c.s.NH : 3 * NKV, HD = c.s.HD;
  const int64_t HDv = c.s.HDv ? c.s.HDv : HD, Q = NH * HD, KV = NKV * HD, W = Q + KV + NKV * HDv;
  const Paged pg = paged(c, S, L);
  Vi slots(sz(T)), pos(sz(T));
  for (int64_t t = 0; t < T; ++t) {  // slots in a random order
    slots[t] = int32_t(t);
    std::swap(slots[t], slots[c.next_u32() % uint32_t(t + 1)]);
    pos[t] = t == 0 ? int32_t(L - 1) : t == 1 ? 0 : int32_t(c.next_u32() % uint32_t(L));
  }
  Vf kc = c.randn(pg.NB * pg.BS * KV), vc = c.randn(pg.NB * pg.BS * NKV * HDv), qkv = c.randn(T * W);
  Vf inv(sz(HD / 2)), zero(sz(T * Q));
  for (int64_t j = 0; j < HD / 2; ++j) inv[sz(j)] = float(1.0 / std::pow(1e6, double(2 * j) / double(HD)));
  const Tensor table = c.ints(pg.table, {S, pg.MB}), ts = c.ints(slots, {T}), tp = c.ints(pos, {T}), ti = c.f32(inv, {HD / 2});
  Tensor tqw, tkw;
  if (c.s.qk_norm) {
    Vf qw = c.randn(HD), kw = c.randn(HD);
    for (float& x : qw) x = 1.0f + 0.3f * x;
    for (float& x : kw) x = 1.0f + 0.3f * x;
    tqw = c.act(qw, {HD});
    tkw = c.act(kw, {HD});
  }
  const int64_t ws = c.s.workspace ? ops::attention_cached_workspace(T, NH, HDv, pg.MB * pg.BS) : 0;
  const float scale = 1.0f / std::sqrt(float(HD)), eps = 1e-6f;
  Vf got[2][3];  // [fused, two ops][out, k_cache, v_cache]
  for (int two = 0; two < 2; ++two) {
    Tensor kcache = c.act(kc, {pg.NB, pg.BS, NKV, HD}), vcache = c.act(vc, {pg.NB, pg.BS, NKV, HDv});
    Tensor packed = c.act(qkv, {T, W}), q_out = c.act(zero, {T, NH, HD}), out = c.nan({T, NH, HDv}, c.dt);
    const Tensor tws = ws > 0 ? c.nan({ws}, DType::F32) : Tensor();
    if (two) {
      ops::rope_qkv_cache_write(q_out, packed, kcache, vcache, table, ts, tp, ti, tqw, tkw, eps);
      ops::attention_cached(out, q_out, kcache, vcache, table, ts, tp, scale, tws);
    } else {
      ops::rope_qkv_attention_cached(out, q_out, packed, kcache, vcache, table, ts, tp, ti, scale, tws, tqw, tkw, eps);
    }
    got[two][0] = c.get(out);
    got[two][1] = c.get(kcache);
    got[two][2] = c.get(vcache);
  }
  c.label += ws > 0 ? " ws=" + std::to_string(ws) : " no ws";
  EXPECT_TRUE(got[0][0] == got[1][0]) << c.label << ": out differs from rope_qkv_cache_write + attention_cached";
  EXPECT_TRUE(got[0][1] == got[1][1]) << c.label << ": the key cache differs";
  EXPECT_TRUE(got[0][2] == got[1][2]) << c.label << ": the value cache differs";
  bool finite = true;
  for (float x : got[0][0]) finite = finite && std::isfinite(x);
  EXPECT_TRUE(finite) << c.label << ": out has rows the op left unwritten";
}

// Attention of T tokens over the paged cache (keys HD, values HDv). s.scatter: tokens at distinct
// random rows, the whole cache random (a prefill scattered over sequences). Otherwise sequences of
// s.rows tokens at consecutive positions (1: decode steps; more: a prefill chunk per sequence),
// attention lengths random in [1, L] (sequence 0 ends at L, sequence 1 starts at 0), and every pool
// row past each token's reach, and the blocks no sequence holds, NaN, so a kernel that reads them
// fails. s.workspace: the workspace attention_cached_workspace asks for, starting as NaN (the split
// path when the grid is small). s.prefix: decode positions past the shared prompt (sequences 2 on).
// s.latent: the values are the first HDv columns of each key head's row (no v_cache).
void run_attention_cached(Run& c) {
  const int64_t T = c.s.T, L = c.s.L, NH = c.s.NH, NKV = c.s.NKV, HD = c.s.HD, HDv = c.s.HDv ? c.s.HDv : HD;
  const bool latent = c.s.latent;
  const int64_t krow = NKV * HD, vrow = latent ? 0 : NKV * HDv;
  const int64_t rows_per_slot = c.s.scatter ? 1 : c.s.rows;
  const int64_t S = c.s.scatter ? c.s.S : (T + rows_per_slot - 1) / rows_per_slot;
  const Paged pg = paged(c, S, L);
  Vi slots(sz(T)), pos(sz(T));
  std::vector<int64_t> reach(sz(S), L);  // rows of each sequence that some token reads
  if (c.s.scatter) {
    scatter_tokens(c, S, L, T, slots, pos);
  } else {
    const int64_t lo = std::min(c.s.prefix, L - rows_per_slot);
    for (int64_t s = 0; s < S; ++s) {
      int64_t b = lo + int64_t(c.next_u32() % uint32_t(L - rows_per_slot - lo + 1));  // the chunk's first position
      if (s == 0) b = L - rows_per_slot;
      if (s == 1) b = 0;
      for (int64_t t = s * rows_per_slot; t < std::min(T, (s + 1) * rows_per_slot); ++t) {
        slots[t] = int32_t(s);
        pos[t] = int32_t(b + t - s * rows_per_slot);
        reach[s] = pos[t] + 1;
      }
    }
  }
  Vf kc = c.randn(pg.NB * pg.BS * krow), vc = c.randn(pg.NB * pg.BS * vrow);
  if (!c.s.scatter) {
    std::vector<bool> read(sz(pg.NB * pg.BS), false);
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < reach[s]; ++j) read[sz(pg.row(s, j))] = true;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t r = 0; r < pg.NB * pg.BS; ++r) {
      if (read[sz(r)]) continue;
      std::fill(kc.begin() + r * krow, kc.begin() + (r + 1) * krow, nan);
      std::fill(vc.begin() + r * vrow, vc.begin() + (r + 1) * vrow, nan);
    }
  }
  Vf q = c.randn(T * NH * HD);
  Tensor tkc = c.act(kc, {pg.NB, pg.BS, NKV, HD});
  Tensor tvc = latent ? Tensor() : c.act(vc, {pg.NB, pg.BS, NKV, HDv});
  Tensor tq = c.act(q, {T, NH, HD}), out = c.nan({T, NH, HDv}, c.dt);
  const int64_t ws = c.s.workspace ? ops::attention_cached_workspace(T, NH, HDv, pg.MB * pg.BS) : 0;
  const Tensor tws = ws > 0 ? c.nan({ws}, DType::F32) : Tensor();
  const float scale = 1.0f / std::sqrt(float(HD));
  ops::attention_cached(out, tq, tkc, tvc, c.ints(pg.table, {S, pg.MB}), c.ints(slots, {T}), c.ints(pos, {T}),
                        scale, tws);

  const Rows rows = c.rows(T * NH, double(L * (HD + HDv)));
  Vd ref(rows.size() * sz(HDv), 0.0), s;
  const int64_t G = NH / NKV;
  for (size_t r = 0; r < rows.size(); ++r) {
    const int64_t t = rows[r] / NH, h = rows[r] % NH, g = h / G, n = pos[t] + 1;
    s.assign(sz(n), 0.0);
    double m = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < n; ++j)
      m = std::max(m, s[j] = scale * dotd(&q[rows[r] * HD], &kc[pg.row(slots[t], j) * krow + g * HD], HD));
    for (double& x : s) sum += (x = std::exp(x - m));
    for (int64_t j = 0; j < n; ++j) {
      const float* vr = latent ? &kc[pg.row(slots[t], j) * krow + g * HD] : &vc[pg.row(slots[t], j) * vrow + g * HDv];
      for (int64_t d = 0; d < HDv; ++d) ref[r * sz(HDv) + sz(d)] += s[j] / sum * double(vr[d]);
    }
  }
  c.label += ws > 0 ? " ws=" + std::to_string(ws) : " no ws";
  c.check("attention_cached", c.get(out), ref, rows, HDv, kReduce);
}

}  // namespace optable
