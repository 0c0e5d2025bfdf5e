// Named op tests beside the table (test_op_table.cpp) that check more than an op against its
// reference: the dispatch layer's shape and device errors, supports() and its path counters, the
// CPU log-probs' token chunking, and the cached attention agreeing with the training attention.
// (Moved here from the hand-written tests/test_ops.cpp when the op tests became a table.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"
#include "kernels/supports.h"
#include "tensor/device_memory.h"
#include "tensor/tensor.h"

namespace {

using r1::Tensor;
using Vf = std::vector<float>;
using Vd = std::vector<double>;
using Vi = std::vector<int32_t>;

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

Vf randn(size_t n, uint64_t seed, float scale = 1.0f) {
  r1::Rng rng(seed);
  Vf v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

Vd to_d(const Vf& v) { return Vd(v.begin(), v.end()); }

Tensor F(Vf& v, std::initializer_list<int64_t> dims) { return Tensor::f32(v.data(), dims); }
Tensor I(Vi& v, std::initializer_list<int64_t> dims) { return Tensor::i32(v.data(), dims); }

// |got - ref| <= atol + rtol * |ref| elementwise; reports the worst element.
void expect_close(const std::string& what, const Vf& got, const Vd& ref, double rtol = 1e-5,
                  double atol = 1e-5) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double worst = 0.0;
  size_t wi = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double excess = std::fabs(double(got[i]) - ref[i]) - (atol + rtol * std::fabs(ref[i]));
    if (!(excess <= worst)) {
      worst = std::isnan(excess) ? INFINITY : excess;
      wi = i;
    }
  }
  EXPECT_LE(worst, 0.0) << what << "[" << wi << "]: got " << got[wi] << ", expected " << ref[wi];
}

// Throws r1::Error whose message contains every substring.
void expect_error(const std::function<void()>& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
    ADD_FAILURE() << "no r1::Error thrown (expected: " << *parts.begin() << ")";
  } catch (const r1::Error& e) {
    for (const char* p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

Vi make_cu(const std::vector<int>& lens) {
  Vi cu{0};
  for (int l : lens) cu.push_back(cu.back() + l);
  return cu;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// the attention over the paged cache against the training attention

namespace {

struct AttnCase {
  std::vector<int> lens;
  int64_t NH, NKV, HD, HDv, BS;
};

const AttnCase kAttnCases[] = {
    {{5, 1, 13, 7}, 4, 2, 8, 8, 4},  // GQA, a length-1 sequence
    {{9, 4, 1}, 3, 3, 12, 12, 1},    // MHA (NH == NKV), blocks of one row
    {{6, 0, 11}, 4, 1, 6, 6, 3},     // MQA, an empty sequence
    {{7, 12}, 4, 4, 10, 6, 5},       // keys and values with their own head dims (MLA)
};

}  // namespace

// Prefilling and decoding through a shuffled block table gives the packed training attention.
TEST(OpsAttention, CachedMatchesForward) {
  uint64_t seed = 300;
  for (const AttnCase& ac : kAttnCases) {
    Vi cu = make_cu(ac.lens);
    const int64_t B = int64_t(ac.lens.size()), T = cu.back(), NH = ac.NH, NKV = ac.NKV, HD = ac.HD,
                  HDv = ac.HDv;
    const int64_t S = B + 2, BS = ac.BS, MB = (16 + BS - 1) / BS, NB = S * MB + 3;
    const float scale = 1.0f / std::sqrt(float(HD));
    Vf q = randn(sz(T * NH * HD), ++seed), k = randn(sz(T * NKV * HD), ++seed);
    Vf v = randn(sz(T * NKV * HDv), ++seed);
    Vf out(sz(T * NH * HDv)), lse(sz(T * NH));
    r1::ops::attention_forward(F(out, {T, NH, HDv}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, NKV, HD}),
                               F(v, {T, NKV, HDv}), I(cu, {B + 1}), scale);
    // Sequence b is row S - 1 - b of the block table, whose blocks are the pool's in reverse order;
    // the caches start as garbage (rows past pos are never read).
    Vi slots(T), pos(T), table(sz(S * MB));
    for (int64_t i = 0; i < S * MB; ++i) table[sz(i)] = int32_t(NB - 1 - i);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = cu[b]; t < cu[b + 1]; ++t) {
        slots[t] = int32_t(S - 1 - b);
        pos[t] = int32_t(t - cu[b]);
      }
    const size_t ksize = sz(NB * BS * NKV * HD), vsize = sz(NB * BS * NKV * HDv);
    Vf kc = randn(ksize, ++seed, 100.0f), vc = randn(vsize, ++seed, 100.0f);
    Tensor kct = F(kc, {NB, BS, NKV, HD}), vct = F(vc, {NB, BS, NKV, HDv}), tt = I(table, {S, MB});

    // (1) Prefill everything at once.
    r1::ops::kv_cache_write(kct, vct, F(k, {T, NKV, HD}), F(v, {T, NKV, HDv}), tt, I(slots, {T}),
                            I(pos, {T}));
    Vf out_c(out.size());
    r1::ops::attention_cached(F(out_c, {T, NH, HDv}), F(q, {T, NH, HD}), kct, vct, tt, I(slots, {T}),
                              I(pos, {T}), scale);
    expect_close("cached (prefill) NH=" + std::to_string(NH), out_c, to_d(out), 1e-6, 1e-6);

    // (2) Decode-style: fresh garbage cache, one position of every sequence per step.
    for (Vf* c : {&kc, &vc}) {  // in place: kct, vct point at these buffers
      Vf garbage = randn(c->size(), ++seed, 100.0f);
      std::copy(garbage.begin(), garbage.end(), c->begin());
    }
    Vf out_d(out.size(), NAN);
    for (int32_t p = 0; p < 16; ++p) {
      std::vector<int64_t> toks;
      for (int64_t t = 0; t < T; ++t)
        if (pos[t] == p) toks.push_back(t);
      if (toks.empty()) continue;
      const int64_t n = int64_t(toks.size());
      Vf qs, ks, vs, os(sz(n * NH * HDv));
      Vi ss, ps;
      for (int64_t t : toks) {
        qs.insert(qs.end(), q.begin() + t * NH * HD, q.begin() + (t + 1) * NH * HD);
        ks.insert(ks.end(), k.begin() + t * NKV * HD, k.begin() + (t + 1) * NKV * HD);
        vs.insert(vs.end(), v.begin() + t * NKV * HDv, v.begin() + (t + 1) * NKV * HDv);
        ss.push_back(slots[t]);
        ps.push_back(pos[t]);
      }
      r1::ops::kv_cache_write(kct, vct, F(ks, {n, NKV, HD}), F(vs, {n, NKV, HDv}), tt, I(ss, {n}),
                              I(ps, {n}));
      r1::ops::attention_cached(F(os, {n, NH, HDv}), F(qs, {n, NH, HD}), kct, vct, tt, I(ss, {n}), I(ps, {n}),
                                scale);
      for (int64_t i = 0; i < n; ++i)
        std::copy(os.begin() + i * NH * HDv, os.begin() + (i + 1) * NH * HDv,
                  out_d.begin() + toks[i] * NH * HDv);
    }
    expect_close("cached (decode) NH=" + std::to_string(NH), out_d, to_d(out), 1e-6, 1e-6);
  }
}

// The latent cache (no v_cache): one kv head whose values are the first HDv columns of its keys, as
// MLA's absorbed decode lays them out, gives the packed attention with v set to those columns. A v
// without a v_cache, or more value columns than the keys hold, is an error naming the tensor.
TEST(OpsAttention, LatentCacheReadsTheValuesFromTheKeys) {
  Vi cu = make_cu({5, 9});
  const int64_t B = 2, T = cu.back(), NH = 4, HD = 12, HDv = 8, BS = 4, S = 2, MB = 3, NB = 7;
  const float scale = 0.3f;
  Vf q = randn(sz(T * NH * HD), 401), k = randn(sz(T * HD), 402), v(sz(T * HDv));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < HDv; ++j) v[sz(t * HDv + j)] = k[sz(t * HD + j)];
  Vf out(sz(T * NH * HDv)), lse(sz(T * NH));
  r1::ops::attention_forward(F(out, {T, NH, HDv}), F(lse, {T, NH}), F(q, {T, NH, HD}), F(k, {T, 1, HD}),
                             F(v, {T, 1, HDv}), I(cu, {B + 1}), scale);
  Vi slots(T), pos(T), table{6, 0, 4, 2, 5, 1};
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = cu[b]; t < cu[b + 1]; ++t) {
      slots[t] = int32_t(b);
      pos[t] = int32_t(t - cu[b]);
    }
  Vf kc = randn(sz(NB * BS * HD), 403, 100.0f);
  const Tensor kct = F(kc, {NB, BS, 1, HD}), tt = I(table, {S, MB});
  r1::ops::kv_cache_write(kct, {}, F(k, {T, 1, HD}), {}, tt, I(slots, {T}), I(pos, {T}));
  Vf got(out.size());
  r1::ops::attention_cached(F(got, {T, NH, HDv}), F(q, {T, NH, HD}), kct, {}, tt, I(slots, {T}), I(pos, {T}),
                            scale);
  expect_close("latent cache", got, to_d(out), 1e-6, 1e-6);

  expect_error([&] { r1::ops::kv_cache_write(kct, {}, F(k, {T, 1, HD}), F(v, {T, 1, HDv}), tt, I(slots, {T}), I(pos, {T})); },
               {"kv_cache_write", "no v_cache"});
  Vf wide(sz(T * NH * (HD + 1)));
  expect_error(
      [&] {
        r1::ops::attention_cached(F(wide, {T, NH, HD + 1}), F(q, {T, NH, HD}), kct, {}, tt, I(slots, {T}),
                                  I(pos, {T}), scale);
      },
      {"attention_cached", "more value columns"});
}

// The decode step's fused RoPE + cache write + attention needs each token in a slot of its own
// (a token reads its row after writing it, so a second token of its slot would race): two tokens
// of one slot are an error naming the slot, and nothing is written to the caches; so is a q_norm
// without its k_norm.
TEST(OpsAttention, FusedDecodeAttentionRefusesTwoTokensOfOneSlot) {
  const int64_t T = 3, NH = 2, HD = 4, BS = 4, S = 3, MB = 2, NB = 6, W = NH * HD + 2 * HD;
  Vf qkv = randn(sz(T * W), 501), kc = randn(sz(NB * BS * HD), 502), vc = randn(sz(NB * BS * HD), 503);
  const Vf kc0 = kc, vc0 = vc;
  Vf out(sz(T * NH * HD)), q(sz(T * NH * HD)), inv{1.0f, 0.01f};
  Vi table{0, 1, 2, 3, 4, 5}, pos{1, 2, 0};
  for (const bool dup : {true, false}) {
    Vi slots = dup ? Vi{0, 2, 0} : Vi{0, 2, 1};
    auto run = [&] {
      r1::ops::rope_qkv_attention_cached(F(out, {T, NH, HD}), F(q, {T, NH, HD}), F(qkv, {T, W}),
                                         F(kc, {NB, BS, 1, HD}), F(vc, {NB, BS, 1, HD}), I(table, {S, MB}),
                                         I(slots, {T}), I(pos, {T}), F(inv, {HD / 2}), 0.5f);
    };
    if (dup) {
      expect_error(run, {"rope_qkv_attention_cached", "two tokens are in slot 0"});
      EXPECT_TRUE(kc == kc0 && vc == vc0) << "the caches were written";
    } else {
      run();
      EXPECT_FALSE(kc == kc0) << "a token per slot: the keys are written";
    }
  }
  Vf qw(sz(HD), 1.0f);  // a q_norm without its k_norm (the fused path takes neither)
  Vi slots{0, 2, 1};
  expect_error(
      [&] {
        r1::ops::rope_qkv_attention_cached(F(out, {T, NH, HD}), F(q, {T, NH, HD}), F(qkv, {T, W}),
                                           F(kc, {NB, BS, 1, HD}), F(vc, {NB, BS, 1, HD}), I(table, {S, MB}),
                                           I(slots, {T}), I(pos, {T}), F(inv, {HD / 2}), 0.5f, {}, F(qw, {HD}), {},
                                           1e-6f);
      },
      {"rope_qkv_attention_cached", "come together"});
}

// ---------------------------------------------------------------------------------------------
// log-probs: token chunks

namespace {
constexpr int64_t kLT = 13, kLC = 24, kLV = 53;
Vi logprob_targets() {
  Vi tg(kLT);
  r1::Rng rng(70);
  for (auto& t : tg) t = int32_t(rng.next_u32() % kLV);
  tg[2] = -1;
  tg[9] = -1;
  tg[5] = kLV - 1;
  tg[6] = 0;
  return tg;
}
}  // namespace

TEST(OpsLogprobs, TokenChunkingMatches) {
  // A tiny scratch limit forces token chunks (1 and 3 tokens) in the CPU kernel; results must agree.
  const int64_t T = kLT, C = kLC, V = kLV;
  Vf h = randn(sz(T * C), 80), w = randn(sz(V * C), 81, 0.5f), dl = randn(sz(T), 82);
  Vi tg = logprob_targets();
  Vf lp0(sz(T)), lse0(sz(T)), e0(sz(T)), dh0(h.size(), 0.0f), dw0(w.size(), 0.0f);
  r1::cpu::token_logprobs_forward(lp0.data(), lse0.data(), e0.data(), h.data(), w.data(), tg.data(), T, C, V,
                                  0.9f, 10);
  r1::cpu::token_logprobs_backward(dh0.data(), dw0.data(), dl.data(), h.data(), w.data(), tg.data(),
                                   lse0.data(), T, C, V, 0.9f, 10);
  for (int64_t scratch : {int64_t(5), int64_t(30)}) {
    Vf lp(sz(T)), lse(sz(T)), e(sz(T)), dh(h.size(), 0.0f), dw(w.size(), 0.0f);
    r1::cpu::token_logprobs_forward(lp.data(), lse.data(), e.data(), h.data(), w.data(), tg.data(), T, C, V,
                                    0.9f, 10, scratch);
    r1::cpu::token_logprobs_backward(dh.data(), dw.data(), dl.data(), h.data(), w.data(), tg.data(),
                                     lse.data(), T, C, V, 0.9f, 10, scratch);
    expect_close("logp", lp, to_d(lp0), 1e-6, 1e-6);
    expect_close("entropy", e, to_d(e0), 1e-6, 1e-6);
    expect_close("dhidden", dh, to_d(dh0), 1e-5, 1e-6);
    expect_close("dweight", dw, to_d(dw0), 1e-5, 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------
// errors

TEST(OpsErrors, BadShapesNameTheOp) {
  Vf buf(4096, 0.5f);
  Vi ibuf(64, 0);
  auto f = [&](std::initializer_list<int64_t> d) { return Tensor::f32(buf.data(), d); };
  auto i = [&](std::initializer_list<int64_t> d) { return Tensor::i32(ibuf.data(), d); };
  using namespace r1::ops;

  expect_error(
      [&] {
        linear_forward(f({10, 64}), f({10, 48}), f({64, 32}), Tensor());
      },
      {"linear_forward", "weight (64, 32) f32", "inp (10, 48) f32", "IC=48"});
  expect_error(
      [&] {
        linear_forward(f({10, 63}), f({10, 48}), f({64, 48}), Tensor());
      },
      {"linear_forward", "out", "OC=64"});
  expect_error(
      [&] {
        linear_forward(f({10, 64}), f({10, 48}), f({64, 48}), f({63}));
      },
      {"linear_forward", "bias"});
  expect_error(
      [&] {
        linear_backward(f({10, 47}), Tensor(), Tensor(), f({10, 64}), f({10, 48}), f({64, 48}));
      },
      {"linear_backward", "dinp"});
  expect_error([&] { linear_forward_each({f({10, 8}), f({10, 4})}, f({10, 16}), {f({8, 16}), f({4, 15})}, {}); },
               {"linear_forward_each", "weights[1] (4, 15) f32", "IC=16"});
  expect_error([&] { linear_forward_each({f({10, 8}), f({10, 5})}, f({10, 16}), {f({8, 16}), f({4, 16})}, {}); },
               {"linear_forward_each", "outs[1]", "OC=4"});
  expect_error([&] { linear_forward_each({f({10, 8})}, f({10, 16}), {f({8, 16})}, {f({7})}); },
               {"linear_forward_each", "biases[0]"});
  expect_error([&] { linear_forward_each({f({10, 8})}, f({10, 16}), {f({8, 16}), f({8, 16})}, {}); },
               {"linear_forward_each", "2 weights, 1 outputs"});
  expect_error(
      [&] {
        linear_forward_each({f({1, 1}), f({1, 1}), f({1, 1}), f({1, 1})}, f({1, 1}),
                            {f({1, 1}), f({1, 1}), f({1, 1}), f({1, 1})}, {});
      },
      {"linear_forward_each", "1 to 3 weights"});
  // o_proj-like: out and normed (10, 8) from inp (10, 16) and weight (8, 16), the norm's weight (8).
  auto linear_norm = [&](Tensor normed, Tensor weight, Tensor norm_weight) {
    linear_rmsnorm_forward(f({10, 8}), normed, f({10, 16}), weight, {}, {}, norm_weight, 1e-5f, {});
  };
  expect_error([&] { linear_norm(f({10, 7}), f({8, 16}), f({8})); }, {"linear_rmsnorm_forward", "normed", "OC=8"});
  expect_error([&] { linear_norm(f({10, 8}), f({8, 16}), f({9})); }, {"linear_rmsnorm_forward", "norm_weight"});
  expect_error([&] { linear_norm(f({10, 8}), f({8, 15}), f({8})); },
               {"linear_rmsnorm_forward", "weight (8, 15) f32", "IC=16"});
  expect_error(
      [&] {
        rmsnorm_forward(f({4, 8}), f({4}), f({4, 8}), f({9}), 1e-5f);
      },
      {"rmsnorm_forward", "weight"});
  expect_error(
      [&] {
        rmsnorm_forward(f({4, 8}), f({4}), Tensor::i32(ibuf.data(), {4, 8}), f({8}), 1e-5f);
      },
      {"rmsnorm_forward", "inp", "i32"});
  expect_error(
      [&] {
        rmsnorm_forward(f({4, 8}), Tensor(), f({4, 8}), f({8}), 1e-5f);
      },
      {"rmsnorm_forward", "rstd", "empty"});
  expect_error([&] { rope_forward(f({4, 2, 7}), i({4}), f({3})); }, {"rope_forward", "odd"});
  expect_error([&] { rope_forward(f({4, 2, 8}), i({4}), f({3})); }, {"rope_forward", "inv_freq"});
  expect_error([&] { embedding_forward(f({4, 8}), i({5}), f({10, 8})); }, {"embedding_forward", "out"});
  ibuf[2] = 10;
  expect_error(
      [&] {
        embedding_forward(f({4, 8}), i({4}), f({10, 8}));
      },
      {"embedding_forward", "ids[2] = 10"});
  ibuf[2] = 0;
  expect_error([&] { swiglu_forward(f({4, 8}), f({4, 8}), f({4, 9})); }, {"swiglu_forward", "up"});
  expect_error([&] { add(f({10}), f({10}), f({11})); }, {"add", "b"});
  expect_error([&] { adamw_update(f({10}), f({10}), f({10}), f({9}), AdamWParams{}); },
               {"adamw_update", "v"});
  expect_error(
      [&] {
        AdamWParams hp;
        hp.step = 0;
        adamw_update(f({10}), f({10}), f({10}), f({10}), hp);
      },
      {"adamw_update", "step"});

  // attention: heads, cu_seqlens.
  Vi cu = {0, 3, 6};
  expect_error(
      [&] {
        attention_forward(f({6, 3, 4}), f({6, 3}), f({6, 3, 4}), f({6, 2, 4}), f({6, 2, 4}), I(cu, {3}),
                          0.5f);
      },
      {"attention_forward", "NH = 3", "NKV = 2"});
  expect_error(
      [&] {
        attention_forward(f({6, 4, 4}), f({6, 4}), f({6, 4, 4}), f({6, 2, 4}), f({6, 2, 5}), I(cu, {3}),
                          0.5f);
      },
      {"attention_forward", "v"});
  Vi cu_bad = {0, 3, 5};
  expect_error(
      [&] {
        attention_forward(f({6, 4, 4}), f({6, 4}), f({6, 4, 4}), f({6, 2, 4}), f({6, 2, 4}), I(cu_bad, {3}),
                          0.5f);
      },
      {"attention_forward", "cu_seqlens"});
  expect_error(
      [&] {
        attention_backward(f({6, 4, 4}), f({6, 2, 4}), f({6, 1, 4}), f({6, 4, 4}), f({6, 4, 4}), f({6, 2, 4}),
                           f({6, 2, 4}), f({6, 4, 4}), f({6, 4}), I(cu, {3}), 0.5f);
      },
      {"attention_backward", "dv"});
  // The paged cache: 2 blocks of 4 rows, sequences of 2 blocks (8 rows).
  Vi slots = {0, 1}, pos = {0, 8}, table = {0, 1, 1, 0}, bad_table = {0, 1, 2, 0};
  expect_error(
      [&] {
        kv_cache_write(f({2, 4, 2, 4}), f({2, 4, 2, 4}), f({2, 2, 4}), f({2, 2, 4}), I(table, {2, 2}),
                       I(slots, {2}), I(pos, {2}));
      },
      {"kv_cache_write", "pos[1] = 8"});
  Vi pos_ok = {0, 7};
  expect_error(
      [&] {
        kv_cache_write(f({2, 4, 2, 4}), f({2, 4, 2, 4}), f({2, 2, 4}), f({2, 2, 4}), I(bad_table, {2, 2}),
                       I(slots, {2}), I(pos_ok, {2}));
      },
      {"kv_cache_write", "block_table[2] = 2"});
  expect_error(
      [&] {
        attention_cached(f({2, 4, 4}), f({2, 4, 4}), f({2, 4, 2, 4}), f({3, 4, 2, 4}), I(table, {2, 2}),
                         I(slots, {2}), I(pos_ok, {2}), 0.5f);
      },
      {"attention_cached", "v_cache"});
  expect_error(
      [&] {
        attention_cached(f({2, 4, 6}), f({2, 4, 4}), f({2, 4, 2, 4}), f({2, 4, 2, 4}), I(table, {2, 2}),
                         I(slots, {2}), I(pos_ok, {2}), 0.5f);
      },
      {"attention_cached", "out", "HDv=4"});

  // token_logprobs: targets, temperature, chunk.
  Vi tg = {0, 1, 7};
  expect_error(
      [&] {
        token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 4}), I(tg, {3}), 1.0f, 4);
      },
      {"token_logprobs_forward", "targets[2] = 7"});
  tg[2] = -1;
  expect_error(
      [&] {
        token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 5}), I(tg, {3}), 1.0f, 4);
      },
      {"token_logprobs_forward", "weight"});
  expect_error(
      [&] {
        token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 4}), I(tg, {3}), 0.0f, 4);
      },
      {"token_logprobs_forward", "temperature"});
  expect_error(
      [&] {
        token_logprobs_forward(f({3}), f({3}), Tensor(), f({3, 4}), f({7, 4}), I(tg, {3}), 1.0f, 0);
      },
      {"token_logprobs_forward", "vocab_chunk"});
  expect_error(
      [&] {
        token_logprobs_backward(f({3, 4}), f({7, 3}), f({3}), f({3, 4}), f({7, 4}), I(tg, {3}), f({3}), 1.0f,
                                4);
      },
      {"token_logprobs_backward", "dweight"});
  expect_error([&] { cross_entropy_forward(f({3}), f({4})); }, {"cross_entropy_forward", "mask"});
}

bool r1_test_gpu_present() { return r1::device_usable(r1::Device::CUDA); }

TEST(OpsErrors, Devices) {
  Vf buf(256, 0.0f);
  Tensor cpu = Tensor::f32(buf.data(), {4, 8});
  Tensor gpu(buf.data(), r1::DType::F32, {4, 8}, r1::Device::CUDA);  // never dereferenced
  Tensor gpu_rstd(buf.data(), r1::DType::F32, {4}, r1::Device::CUDA);
  Tensor gpu_w(buf.data(), r1::DType::F32, {8}, r1::Device::CUDA);
  expect_error([&] { r1::ops::add(cpu, cpu, gpu); }, {"add", "different devices"});
  // With a GPU the (fake) CUDA tensors would reach real kernels: only check the no-GPU error here.
  if (r1_test_gpu_present()) return;
  expect_error([&] { r1::ops::rmsnorm_forward(gpu, gpu_rstd, gpu, gpu_w, 1e-5f); },
               {"rmsnorm_forward", "CUDA tensors are handled by the CUDA backend"});
  expect_error([&] { r1::ops::zero(gpu); }, {"zero", "CUDA"});
}

// ---------------------------------------------------------------------------------------------
// supports() and the path counters

namespace {

using r1::Device;
using r1::DType;
using r1::ops::Op;
using r1::ops::OpShape;
using r1::ops::Path;

Path path_of(Op op, OpShape shape, DType dt, Device dev) {
  return r1::ops::supports(op, shape, dt, dev).path;
}

}  // namespace

TEST(OpSupports, CpuRunsEveryOpInF32Only) {
  for (int i = 0; i < r1::ops::kNumOps; ++i) {
    const Op op = Op(i);
    const bool f32_only =
        op == Op::cross_entropy_forward || op == Op::cross_entropy_backward || op == Op::logprobs_of_logits;
    EXPECT_EQ(path_of(op, {64}, DType::F32, Device::CPU), Path::native) << r1::ops::op_name(op);
    EXPECT_EQ(path_of(op, {300, 200}, DType::F32, Device::CPU), Path::native) << r1::ops::op_name(op);
    const Path bf16 = path_of(op, {64}, DType::BF16, Device::CPU);
    // AdamW's bf16 compute copy and convert's f32 -> bf16 rounding (the offloaded optimizer's
    // compute weights) are the CPU's only bf16 outputs.
    const bool bf16_out = op == Op::adamw_update || op == Op::convert;
    EXPECT_EQ(bf16, bf16_out ? Path::native : Path::unsupported) << r1::ops::op_name(op);
    if (bf16 == Path::unsupported && !f32_only) {
      EXPECT_STREQ(r1::ops::supports(op, {64}, DType::BF16).how, "bf16 tensors are supported on CUDA only");
    }
    EXPECT_EQ(path_of(op, {64}, DType::F16, Device::CPU), Path::unsupported) << r1::ops::op_name(op);
  }
  EXPECT_STREQ(r1::ops::op_name(Op::attention_backward), "attention_backward");
  EXPECT_EQ(r1::ops::describe({192, 128}), "HD=192 HDv=128");
  EXPECT_EQ(r1::ops::describe({64, 64, false}), "HD=64 unaligned");
  EXPECT_EQ(r1::ops::describe({576, 512, true, true}), "HD=576 HDv=512 latent");
  EXPECT_EQ(path_of(Op::attention_cached, {1030, 512, true, true}, DType::F32, Device::CPU), Path::native);
}

// What supports() reports for the CUDA attention head dims (the table test then asserts that each
// case took the path reported here).
TEST(OpSupports, CudaAttentionHeadDims) {
#ifdef R1_HAVE_CUDA
  for (Op op : {Op::attention_forward, Op::attention_backward}) {
    for (int64_t hd : {32, 64, 96, 128, 192, 256}) {
      EXPECT_EQ(path_of(op, {hd}, DType::BF16, Device::CUDA), Path::native) << hd;
      EXPECT_EQ(path_of(op, {hd, hd, false}, DType::BF16, Device::CUDA), Path::fallback)
          << hd << " unaligned";
    }
    EXPECT_EQ(path_of(op, {192, 128}, DType::BF16, Device::CUDA), Path::native);  // MLA
    for (int64_t hd : {2, 16, 36, 40, 80, 160, 200, 224})
      EXPECT_EQ(path_of(op, {hd}, DType::BF16, Device::CUDA), Path::fallback) << hd;
    EXPECT_EQ(path_of(op, {64, 32}, DType::BF16, Device::CUDA), Path::fallback);
    EXPECT_EQ(path_of(op, {128, 192}, DType::BF16, Device::CUDA), Path::fallback);
    for (int64_t hd : {1, 8, 36, 96, 192, 256})
      EXPECT_EQ(path_of(op, {hd}, DType::F32, Device::CUDA), Path::native);
    for (DType dt : {DType::F32, DType::BF16}) {
      EXPECT_EQ(path_of(op, {258}, dt, Device::CUDA), Path::unsupported);
      EXPECT_EQ(path_of(op, {192, 320}, dt, Device::CUDA), Path::unsupported);
    }
  }
  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t hd : {6, 64, 128, 192, 198, 256})
      EXPECT_EQ(path_of(Op::attention_cached, {hd}, dt, Device::CUDA), Path::native) << hd;
    EXPECT_EQ(path_of(Op::attention_cached, {258}, dt, Device::CUDA), Path::unsupported);
    // Over a latent cache (MLA: HD 576, HDv 512): 1 <= HDv <= HD <= 1024 (latent_attention.cu).
    for (const auto& [hd, hdv] : std::initializer_list<std::pair<int64_t, int64_t>>{
             {576, 512}, {24, 16}, {27, 13}, {40, 40}, {1024, 1000}, {1024, 1024}})
      EXPECT_EQ(path_of(Op::attention_cached, {hd, hdv, true, true}, dt, Device::CUDA), Path::native) << hd;
    EXPECT_EQ(path_of(Op::attention_cached, {1030, 512, true, true}, dt, Device::CUDA), Path::unsupported);
    EXPECT_EQ(path_of(Op::attention_cached, {64, 96, true, true}, dt, Device::CUDA), Path::unsupported);
    EXPECT_EQ(path_of(Op::attention_cached, {576, 512}, dt, Device::CUDA), Path::unsupported);  // not latent
  }
  EXPECT_EQ(path_of(Op::cross_entropy_forward, {}, DType::BF16, Device::CUDA), Path::unsupported);
  EXPECT_EQ(path_of(Op::linear_forward, {}, DType::BF16, Device::CUDA), Path::native);
  // The MLA and mixture-of-experts ops (kernels/cuda/moe.cu, rope.cu, grouped_gemm.cu, gemm.cpp).
  for (int i = int(Op::rope_interleaved_forward); i <= int(Op::batched_matmul); ++i)
    for (DType dt : {DType::F32, DType::BF16})
      EXPECT_EQ(path_of(Op(i), {}, dt, Device::CUDA), Path::native) << r1::ops::op_name(Op(i));
#else
  EXPECT_EQ(path_of(Op::attention_forward, {64}, DType::BF16, Device::CUDA), Path::unsupported);
  EXPECT_STREQ(r1::ops::supports(Op::add, {}, DType::F32, Device::CUDA).how,
               "this build has no CUDA backend");
#endif
}

// An unsupported shape fails in the dispatch layer, before any device work (so fake CUDA tensors
// do), naming the op, the operand, the shape and the reason.
TEST(OpSupports, UnsupportedShapeIsAnError) {
  alignas(64) static char dummy[64];
  auto cu = [](r1::DType dt, std::initializer_list<int64_t> dims) {
    return Tensor(dummy, dt, dims, Device::CUDA);
  };
  const DType B16 = DType::BF16, F32 = DType::F32, I32 = DType::I32;
#ifdef R1_HAVE_CUDA
  const char* why = "CUDA attention takes head dims 1 to 256";
#else
  const char* why = "this build has no CUDA backend";
#endif
  expect_error(
      [&] {
        r1::ops::attention_forward(cu(B16, {2, 1, 288}), cu(F32, {2, 1}), cu(B16, {2, 1, 288}),
                                   cu(B16, {2, 1, 288}), cu(B16, {2, 1, 288}), cu(I32, {2}), 0.1f);
      },
      {"attention_forward", "q (", "HD=288", why});
  expect_error(
      [&] {
        r1::ops::attention_backward(cu(F32, {2, 1, 64}), cu(F32, {2, 1, 64}), cu(F32, {2, 1, 300}),
                                    cu(F32, {2, 1, 300}), cu(F32, {2, 1, 64}), cu(F32, {2, 1, 64}),
                                    cu(F32, {2, 1, 300}), cu(F32, {2, 1, 300}), cu(F32, {2, 1}), cu(I32, {2}),
                                    0.1f);
      },
      {"attention_backward", "HD=64 HDv=300", why});
  expect_error(
      [&] {
        r1::ops::attention_cached(cu(B16, {1, 2, 260}), cu(B16, {1, 2, 260}), cu(B16, {1, 4, 1, 260}),
                                  cu(B16, {1, 4, 1, 260}), cu(I32, {1, 1}), cu(I32, {1}), cu(I32, {1}), 0.1f);
      },
      {"attention_cached", "HD=260", why});
#ifdef R1_HAVE_CUDA
  const char* why_latent = "CUDA attention over a latent cache takes head dims 1 <= HDv <= HD <= 1024";
#else
  const char* why_latent = why;
#endif
  expect_error(
      [&] {
        r1::ops::attention_cached(cu(B16, {1, 2, 512}), cu(B16, {1, 2, 1030}), cu(B16, {1, 4, 1, 1030}), {},
                                  cu(I32, {1, 1}), cu(I32, {1}), cu(I32, {1}), 0.1f);
      },
      {"attention_cached", "HD=1030 HDv=512 latent", why_latent});
}

TEST(OpPaths, EachCallCountsItsPath) {
  Vf a = randn(64, 1), b = randn(64, 2), out(64);
  r1::ops::reset_path_counts();
  r1::ops::add(F(out, {64}), F(a, {64}), F(b, {64}));
  r1::ops::add(F(out, {64}), F(a, {64}), F(b, {64}));
  EXPECT_EQ(r1::ops::path_count(Op::add, Path::native), 2);
  EXPECT_EQ(r1::ops::path_count(Op::add, Path::fallback), 0);
  EXPECT_EQ(r1::ops::path_count(Op::add_inplace, Path::native), 0);
  // A call that fails its checks runs nothing and counts nothing.
  EXPECT_THROW(r1::ops::add(F(out, {64}), F(a, {64}), F(b, {63})), r1::Error);
  EXPECT_EQ(r1::ops::path_count(Op::add, Path::native), 2);
  r1::ops::reset_path_counts();
  EXPECT_EQ(r1::ops::path_count(Op::add, Path::native), 0);
}
