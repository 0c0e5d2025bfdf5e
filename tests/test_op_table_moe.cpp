// The op table's runners for the MLA and mixture-of-experts ops (interleaved RoPE, column copies,
// the router, the grouping by expert, the weighted combination, the experts' grouped linears), each
// against a double-precision
// reference and, for the backwards on the CPU, central finite differences of that reference. On
// CUDA the router is also held to the CPU op on the same (rounded) inputs: the same experts, ties
// included, and the same weights and gradients to f32 rounding.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>

#include "base/error.h"
#include "op_table.h"

namespace optable {

namespace {

Vf inv_freq_of(int64_t HD) {
  Vf f(sz(HD / 2));
  for (int64_t j = 0; j < HD / 2; ++j) f[j] = float(1.0 / std::pow(1e4, double(2 * j) / double(HD)));
  return f;
}

// transformers' apply_rotary_pos_emb_interleave on x (T, H, HD): evens then odds, then rotate_half.
Vd ref_rope_interleaved(const Vd& x, const Vi& pos, const Vf& inv, int64_t T, int64_t H, int64_t HD) {
  Vd out(x.size());
  const int64_t half = HD / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < half; ++j) {
        const double a = double(float(pos[t]) * inv[j]), c = std::cos(a), s = std::sin(a);
        const int64_t b = (t * H + h) * HD;
        out[b + j] = x[b + 2 * j] * c - x[b + 2 * j + 1] * s;
        out[b + j + half] = x[b + 2 * j + 1] * c + x[b + 2 * j] * s;
      }
  return out;
}

// Its transpose (the backward) on g (T, H, HD): the rotate_half halves rotated back by -angle into
// the interleaved pairs.
Vd ref_rope_interleaved_backward(const Vd& g, const Vi& pos, const Vf& inv, int64_t T, int64_t H,
                                 int64_t HD) {
  Vd dx(g.size());
  const int64_t half = HD / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < half; ++j) {
        const double a = double(float(pos[t]) * inv[j]), c = std::cos(a), s = std::sin(a);
        const int64_t b = (t * H + h) * HD;
        dx[b + 2 * j] = g[b + j] * c + g[b + j + half] * s;
        dx[b + 2 * j + 1] = g[b + j + half] * c - g[b + j] * s;
      }
  return dx;
}

Vi positions(Run& c) {
  Vi pos = c.randint(c.s.T, 0, int32_t(c.s.maxpos ? c.s.maxpos : 4000));
  pos[0] = 0;
  return pos;
}

ops::MoeRouting routing_of(const Shape& s) {
  ops::MoeRouting r;
  r.top_k = int(s.K);
  if (s.sigmoid) {
    r.scoring = ops::MoeRouting::Scoring::sigmoid;
    r.n_group = int(s.G), r.topk_group = int(s.TG);
    r.norm_topk = true, r.norm_eps = 1e-20f, r.scaling = 2.5f;
  }
  r.norm_topk = r.norm_topk || s.masked;
  return r;
}

// The reference router for one token: scores, and the chosen experts (choice order).
struct Routed {
  Vd scores, choice;  // choice: what the experts are ranked by (ineligible groups' -1e300)
  std::vector<int> experts;
};

std::vector<int> top(const Vd& v, int64_t n) {
  std::vector<int> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return v[sz(a)] > v[sz(b)]; });
  idx.resize(sz(n));
  return idx;
}

Routed ref_route(const double* z, const Vf& bias, const Shape& s) {
  const int64_t E = s.E;
  Routed r;
  r.scores.resize(sz(E));
  double mx = *std::max_element(z, z + E), sum = 0.0;
  for (int64_t e = 0; e < E; ++e) sum += std::exp(z[e] - mx);
  for (int64_t e = 0; e < E; ++e) r.scores[e] = s.sigmoid ? 1.0 / (1.0 + std::exp(-z[e])) : std::exp(z[e] - mx) / sum;
  Vd choice = r.scores;
  if (s.sigmoid) {
    for (int64_t e = 0; e < E; ++e) choice[e] += bias[e];
    const int64_t per = E / s.G;
    Vd group(sz(s.G));
    for (int64_t g = 0; g < s.G; ++g) {
      Vd in(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      for (int i : top(in, 2)) group[g] += in[sz(i)];
    }
    std::vector<int> kept = top(group, s.TG);
    for (int64_t e = 0; e < E; ++e)
      if (std::find(kept.begin(), kept.end(), int(e / per)) == kept.end()) choice[e] = -1e300;  // ineligible
  }
  r.experts = top(choice, s.K);
  r.choice = std::move(choice);
  return r;
}

// The weights of fixed experts as a function of the logits (the differentiable part).
Vd ref_weights(const Vd& logits, const std::vector<std::vector<int>>& experts, const Shape& s) {
  const ops::MoeRouting r = routing_of(s);
  Vd w(sz(s.T * s.K));
  for (int64_t t = 0; t < s.T; ++t) {
    const Routed rt = ref_route(logits.data() + t * s.E, Vf(sz(s.E), 0.0f), s);
    double sum = 0.0;
    for (int e : experts[sz(t)]) sum += rt.scores[sz(e)];
    for (int64_t k = 0; k < s.K; ++k) {
      const double p = rt.scores[sz(experts[sz(t)][sz(k)])];
      w[t * s.K + k] = (r.norm_topk ? p / (sum + double(r.norm_eps)) : p) * double(r.scaling);
    }
  }
  return w;
}

// The op's experts of token t are the reference's K best in order, up to near-ties: the op ranks
// f32 choice scores, the reference doubles, so two values within f32 rounding may trade places
// (exact ties go to the lower index in both).
void expect_best(const Routed& r, const std::vector<int>& got, int64_t t) {
  Vd sorted = r.choice;
  std::sort(sorted.begin(), sorted.end(), std::greater<double>());
  std::vector<int> seen = got;
  std::sort(seen.begin(), seen.end());
  EXPECT_TRUE(std::adjacent_find(seen.begin(), seen.end()) == seen.end())
      << "token " << t << ": an expert twice";
  for (size_t k = 0; k < got.size(); ++k) {
    ASSERT_TRUE(got[k] >= 0 && size_t(got[k]) < r.choice.size()) << "token " << t << ": expert " << got[k];
    const double v = r.choice[sz(got[k])], want = sorted[k];
    EXPECT_LE(std::fabs(v - want), 1e-6 * std::max(1.0, std::fabs(want)))
        << "token " << t << ": choice " << k << " is expert " << got[k] << " (" << v << "), the reference's "
        << r.experts[k] << " (" << want << ")";
  }
}

// Routing of random logits by the op, its experts as nested vectors.
struct RouteCase {
  Vf logits, bias;
  Tensor tlogits, tbias, texperts, tweights;
  std::vector<std::vector<int>> experts;
};

RouteCase route(Run& c) {
  const Shape& s = c.s;
  RouteCase rc;
  rc.logits = c.randn(s.T * s.E, 2.0f);
  rc.bias = c.randn(s.E, 0.1f);
  rc.tlogits = c.act(rc.logits, {s.T, s.E});
  if (s.sigmoid) rc.tbias = c.act(rc.bias, {s.E});
  rc.texperts = c.ints(Vi(sz(s.T * s.K), -1), {s.T, s.K});
  rc.tweights = c.nan({s.T, s.K}, DType::F32);
  ops::moe_route_forward(rc.texperts, rc.tweights, rc.tlogits, rc.tbias, routing_of(s));
  const Vi ex = Run::get_ints(rc.texperts);
  for (int64_t t = 0; t < s.T; ++t) rc.experts.emplace_back(ex.begin() + t * s.K, ex.begin() + (t + 1) * s.K);
  return rc;
}

// Random logits and a random choice of K distinct experts per token, made without any op (so that
// on CUDA the op under test is the first to run, and its error names it).
RouteCase drawn(Run& c) {
  const Shape& s = c.s;
  RouteCase rc;
  rc.logits = c.randn(s.T * s.E, 2.0f);
  rc.tlogits = c.act(rc.logits, {s.T, s.E});
  Vi flat;
  for (int64_t t = 0; t < s.T; ++t) {
    std::vector<int> all(sz(s.E));
    std::iota(all.begin(), all.end(), 0);
    for (int64_t i = s.E - 1; i > 0; --i) std::swap(all[sz(i)], all[c.next_u32() % uint32_t(i + 1)]);
    all.resize(sz(s.K));
    rc.experts.push_back(all);
    flat.insert(flat.end(), all.begin(), all.end());
  }
  rc.texperts = c.ints(flat, {s.T, s.K});
  return rc;
}

// A host f32 tensor over v (the CPU op's operands in the CUDA cases' parity checks).
Tensor host(Vf& v, std::initializer_list<int64_t> dims) { return Tensor::f32(v.data(), dims); }
Tensor host(Vi& v, std::initializer_list<int64_t> dims) { return Tensor::i32(v.data(), dims); }

// The CUDA router against the CPU op on the same inputs (the logits rounded to the case's dtype, the
// bias as given): the same experts (ties broken alike) and the same weights to f32 rounding.
void expect_cpu_route(Run& c, const Tensor& texperts, const Tensor& tweights, Vf logits, Vf bias,
                      const Vi& replay) {
  const Shape& s = c.s;
  Vi ex(sz(s.T * s.K), -1), rep = replay;
  Vf w(sz(s.T * s.K), 0.0f);
  ops::moe_route_forward(host(ex, {s.T, s.K}), host(w, {s.T, s.K}), host(logits, {s.T, s.E}),
                         s.sigmoid ? host(bias, {s.E}) : Tensor(), routing_of(s),
                         rep.empty() ? Tensor() : host(rep, {s.T, s.K}));
  const Vi got = Run::get_ints(texperts);
  int64_t differ = 0;
  for (int64_t t = 0; t < s.T; ++t)
    if (!std::equal(got.begin() + t * s.K, got.begin() + (t + 1) * s.K, ex.begin() + t * s.K) && differ++ < 3)
      ADD_FAILURE() << c.label << ": token " << t << " chose other experts than the CPU op";
  EXPECT_EQ(differ, 0) << c.label << ": tokens routed unlike the CPU op";
  c.check("moe_route_forward weights (CPU op)", Run::get(tweights), to_d(w), kStat);
}

}  // namespace

void run_rope_interleaved_forward(Run& c) {
  const int64_t T = c.s.T, H = c.s.H, HD = c.s.HD;
  Vf x = c.randn(T * H * HD), inv = inv_freq_of(HD);
  const Vi pos = positions(c);
  Tensor tx = c.act(x, {T, H, HD});
  ops::rope_interleaved_forward(tx, c.ints(pos, {T}), c.f32(inv, {HD / 2}));
  c.check("rope_interleaved_forward", c.get(tx), ref_rope_interleaved(to_d(x), pos, inv, T, H, HD), kElem);
}

void run_rope_interleaved_backward(Run& c) {
  const int64_t T = c.s.T, H = c.s.H, HD = c.s.HD;
  Vf g = c.randn(T * H * HD), inv = inv_freq_of(HD);
  const Vi pos = positions(c);
  Tensor tg = c.act(g, {T, H, HD});
  ops::rope_interleaved_backward(tg, c.ints(pos, {T}), c.f32(inv, {HD / 2}));
  const Vf dx = c.get(tg);
  c.check("rope_interleaved_backward", dx, ref_rope_interleaved_backward(to_d(g), pos, inv, T, H, HD), kElem);
  if (c.fd(double(T * H * HD))) {
    Vd xd = to_d(c.randn(T * H * HD));
    auto loss = [&] { return dot(ref_rope_interleaved(xd, pos, inv, T, H, HD), g); };
    check_grad("dx", xd, dx, loss, 45, 100);
  }
}

void run_copy_columns(Run& c) {
  const int64_t N = c.s.N, Ws = c.s.IC, Wd = c.s.OC, sc = 1, dc = 2, W = std::min(Ws - sc, Wd - dc);
  Vf src = c.randn(N * Ws), dst = c.randn(N * Wd);
  const Vf dst0 = dst;
  Tensor ts = c.act(src, {N, Ws}), td = c.act(dst, {N, Wd});
  ops::copy_columns(td, dc, ts, sc, W);
  Vd want = to_d(dst0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < W; ++j) want[n * Wd + dc + j] = src[n * Ws + sc + j];
  c.check("copy_columns", c.get(td), want, kExact);
  ops::copy_columns(td, dc, ts, sc, W, true);  // accumulate: the copied columns double
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < W; ++j) want[n * Wd + dc + j] *= 2.0;
  c.check("copy_columns (accumulate)", c.get(td), want, kExact);
  EXPECT_THROW(ops::copy_columns(td, Wd - 1, ts, 0, 2), r1::Error);  // past dst's columns
}

void run_moe_route_forward(Run& c) {
  const Shape& s = c.s;
  RouteCase rc = route(c);
  const Vd logits = to_d(rc.logits);
  for (int64_t t = 0; t < s.T; ++t) {
    const Routed r = ref_route(logits.data() + t * s.E, rc.bias, s);
    expect_best(r, rc.experts[sz(t)], t);
  }
  c.check("moe_route_forward weights", c.get(rc.tweights), ref_weights(logits, rc.experts, s), kStatReduce);
  if (c.dev == Device::CUDA) expect_cpu_route(c, rc.texperts, rc.tweights, rc.logits, rc.bias, {});
  if (c.dev == Device::CUDA && c.dt == DType::BF16 && s.sigmoid) {
    // bf16 logits beside an f32 bias (transformers keeps e_score_correction_bias in fp32).
    Vf bias = c.randn(s.E, 0.1f, DType::F32);
    Tensor ex = c.ints(Vi(sz(s.T * s.K), -1), {s.T, s.K}), w = c.nan({s.T, s.K}, DType::F32);
    ops::moe_route_forward(ex, w, rc.tlogits, c.f32(bias, {s.E}), routing_of(s));
    expect_cpu_route(c, ex, w, rc.logits, bias, {});
  }
  if (s.masked) {  // renormalised: each token's weights sum to 1
    const Vf w = c.get(rc.tweights);
    for (int64_t t = 0; t < s.T; ++t)
      EXPECT_NEAR(std::accumulate(w.begin() + t * s.K, w.begin() + (t + 1) * s.K, 0.0), 1.0, 1e-6);
  }
  // Routing replay: the odd tokens take a drawn choice of experts (weights as if the router had
  // chosen them), the even ones (rows of -1) are routed as before.
  const RouteCase drawn_choice = drawn(c);
  std::vector<std::vector<int>> want = rc.experts;
  Vi replay(sz(s.T * s.K), -1);
  for (int64_t t = 1; t < s.T; t += 2) {
    want[sz(t)] = drawn_choice.experts[sz(t)];
    std::copy(want[sz(t)].begin(), want[sz(t)].end(), replay.begin() + t * s.K);
  }
  Tensor texperts = c.ints(Vi(sz(s.T * s.K), -1), {s.T, s.K}), tweights = c.nan({s.T, s.K}, DType::F32);
  ops::moe_route_forward(texperts, tweights, rc.tlogits, rc.tbias, routing_of(s), c.ints(replay, {s.T, s.K}));
  const Vi ex = Run::get_ints(texperts);
  for (int64_t t = 0; t < s.T; ++t)
    EXPECT_EQ(std::vector<int>(ex.begin() + t * s.K, ex.begin() + (t + 1) * s.K), want[sz(t)])
        << "replayed token " << t;
  c.check("moe_route_forward weights (replay)", c.get(tweights), ref_weights(logits, want, s), kStatReduce);
  if (c.dev == Device::CUDA) {
    expect_cpu_route(c, texperts, tweights, rc.logits, rc.bias, replay);
    return;  // index ranges are the caller's contract on CUDA (nothing reads them back)
  }
  replay[0] = int32_t(s.E);  // out of range
  EXPECT_THROW(ops::moe_route_forward(texperts, tweights, rc.tlogits, rc.tbias, routing_of(s),
                                      c.ints(replay, {s.T, s.K})),
               r1::Error);
}

// dlogits is f32, or (beside bf16 logits on CUDA) also bf16: the router's linear_backward takes it.
void run_moe_route_backward(Run& c) {
  const Shape& s = c.s;
  RouteCase rc = drawn(c);
  Vf dw = c.randn(s.T * s.K, 1.0f, DType::F32);
  std::vector<DType> grad_dtypes = {DType::F32};
  if (c.dt == DType::BF16) grad_dtypes.push_back(DType::BF16);
  for (DType gd : grad_dtypes) {
    Vf d0 = c.randn(s.T * s.E, 1.0f, gd);
    const Vf init = d0;
    Tensor tdl = c.put(d0, {s.T, s.E}, gd);
    ops::moe_route_backward(tdl, c.f32(dw, {s.T, s.K}), rc.tlogits, rc.texperts, routing_of(s));
    if (c.dev == Device::CPU) {
      const Vf got = diff(c.get(tdl), init);  // accumulated onto init
      Vd x = to_d(rc.logits);
      auto loss = [&] { return dot(ref_weights(x, rc.experts, s), dw); };
      check_grad("dlogits", x, got, loss, 46, 200);
      continue;
    }
    // CUDA: the CPU op (itself held to finite differences) on the same inputs. An f32 gradient is
    // compared as the increment; a bf16 one as the accumulated (rounded) values.
    Vf want = init, logits = rc.logits;
    Vi ex = Run::get_ints(rc.texperts);
    ops::moe_route_backward(host(want, {s.T, s.E}), host(dw, {s.T, s.K}), host(logits, {s.T, s.E}),
                            host(ex, {s.T, s.K}), routing_of(s));
    if (gd == DType::F32) {
      c.check("moe_route_backward dlogits", diff(c.get(tdl), init), to_d(diff(want, init)), kStatReduce);
    } else {
      c.check("moe_route_backward dlogits (bf16)", c.get(tdl), to_d(want), kReduce);
    }
  }
}

void run_moe_permute(Run& c) {
  const Shape& s = c.s;
  RouteCase rc = drawn(c);
  const int64_t R = s.T * s.K;
  Tensor order = c.ints(Vi(sz(R), -1), {R}), tokens = c.ints(Vi(sz(R), -1), {R});
  Tensor offsets = c.ints(Vi(sz(s.E + 1), -1), {s.E + 1});
  ops::moe_permute(order, tokens, offsets, rc.texperts);
  const Vi o = Run::get_ints(order), tk = Run::get_ints(tokens), off = Run::get_ints(offsets);
  EXPECT_EQ(off[0], 0);
  EXPECT_EQ(off[s.E], R);
  std::vector<bool> seen(sz(R), false);
  for (int64_t e = 0; e < s.E; ++e)
    for (int32_t r = off[e]; r < off[e + 1]; ++r) {
      ASSERT_TRUE(r >= 0 && r < R) << "offsets out of order at expert " << e;
      ASSERT_TRUE(o[r] >= 0 && o[r] < R);
      EXPECT_FALSE(seen[sz(o[r])]);
      seen[sz(o[r])] = true;
      EXPECT_EQ(rc.experts[sz(o[r] / s.K)][sz(o[r] % s.K)], e) << "row " << r;
      EXPECT_EQ(tk[r], o[r] / s.K);
      if (r > off[e]) {
        EXPECT_LT(o[r - 1], o[r]) << "stable: tokens in order within an expert";
      }
    }
}

namespace {
// A random grouping of T * K assignments (a permutation) and weights.
struct Combine {
  Vi order;
  Vf w, y;
};
Combine combine_case(Run& c) {
  const int64_t R = c.s.T * c.s.K;
  Combine k;
  k.order.resize(sz(R));
  std::iota(k.order.begin(), k.order.end(), 0);
  for (int64_t i = R - 1; i > 0; --i) std::swap(k.order[sz(i)], k.order[c.next_u32() % uint32_t(i + 1)]);
  k.w = c.randn(R);
  k.y = c.randn(R * c.s.C);
  return k;
}
Vd ref_combine(const Combine& k, const Vd& y, const Vd& w, int64_t T, int64_t K, int64_t C) {
  Vd out(sz(T * C), 0.0);
  for (int64_t r = 0; r < T * K; ++r)
    for (int64_t j = 0; j < C; ++j) out[(k.order[sz(r)] / K) * C + j] += w[sz(k.order[sz(r)])] * y[r * C + j];
  return out;
}
}  // namespace

void run_moe_combine_forward(Run& c) {
  const int64_t T = c.s.T, K = c.s.K, C = c.s.C;
  Combine k = combine_case(c);
  Tensor out = c.nan({T, C}, c.dt);
  ops::moe_combine_forward(out, c.act(k.y, {T * K, C}), c.ints(k.order, {T * K}), c.f32(k.w, {T, K}));
  c.check("moe_combine_forward", c.get(out), ref_combine(k, to_d(k.y), to_d(k.w), T, K, C), kReduce);
}

void run_moe_combine_backward(Run& c) {
  const int64_t T = c.s.T, K = c.s.K, C = c.s.C, R = T * K;
  Combine k = combine_case(c);
  Vf g = c.randn(T * C), dy0 = c.randn(R * C), dw0 = c.randn(R, 1.0f, DType::F32);
  const Vf dy_init = dy0, dw_init = dw0;
  Tensor tdy = c.act(dy0, {R, C}), tdw = c.f32(dw0, {T, K}), tg = c.act(g, {T, C}), ty = c.act(k.y, {R, C});
  Tensor torder = c.ints(k.order, {R}), tw = c.f32(k.w, {T, K});
  ops::moe_combine_backward(tdy, tdw, tg, ty, torder, tw);
  // The gradients themselves: dy[r] += w[a] dout[t], dweights[a] += dout[t] . y[r] (a = order[r]).
  Vd want_dy = to_d(dy_init), dots(sz(R), 0.0);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t a = k.order[sz(r)], t = a / K;
    for (int64_t j = 0; j < C; ++j) {
      want_dy[sz(r * C + j)] += double(k.w[sz(a)]) * g[sz(t * C + j)];
      dots[sz(a)] += double(g[sz(t * C + j)]) * k.y[sz(r * C + j)];
    }
  }
  c.check("moe_combine_backward dy", c.get(tdy), want_dy, kElem);
  const Vf got_dy = c.get(tdy), got_dw = c.get(tdw);
  c.check("moe_combine_backward dy", got_dy, want_dy, kElem);
  c.check("moe_combine_backward dweights", got_dw, plus(dw_init, dots), kStatReduce);
  if (c.fd(double(R * C))) {
    Vd y = to_d(k.y), w = to_d(k.w);
    auto loss = [&] { return dot(ref_combine(k, y, w, T, K, C), g); };
    check_grad("dy", y, diff(got_dy, dy_init), loss, 47, 100);
    check_grad("dweights", w, diff(got_dw, dw_init), loss, 48, 100);
  }
  // Without dy: dweights alone accumulates once more.
  ops::moe_combine_backward({}, tdw, tg, ty, torder, tw);
  Vd twice = plus(dw_init, dots);
  for (int64_t a = 0; a < R; ++a) twice[sz(a)] += dots[sz(a)];
  c.check("moe_combine_backward dweights (no dy)", c.get(tdw), twice, kStatReduce);
}

namespace {

// Offsets (E + 1) grouping R rows by expert: expert 0 takes the first row alone, experts 1, 4, 7, ...
// none (repeated offsets), the others a random share each.
Vi grouped_offsets(Run& c, int64_t R, int64_t E) {
  std::vector<int64_t> open, count(sz(E), 0);
  for (int64_t e = 2; e < E; ++e)
    if (e % 3 != 1) open.push_back(e);
  for (int64_t r = 0; r < R; ++r) ++count[sz(r == 0 || open.empty() ? 0 : open[c.next_u32() % open.size()])];
  Vi off(sz(E + 1), 0);
  for (int64_t e = 0; e < E; ++e) off[sz(e + 1)] = off[sz(e)] + int32_t(count[sz(e)]);
  return off;
}

// Row r's expert: the last e with offsets[e] <= r (an empty expert repeats the next one's offset).
int64_t expert_of(const Vi& off, int64_t r) {
  return int64_t(std::upper_bound(off.begin(), off.end(), int32_t(r)) - off.begin()) - 1;
}

// Rows `rows` of the grouped linear: row r of x (R, IN) through matrix expert_of(r) of w (E, OUT, IN).
Vd ref_grouped(const Vd& x, const Vd& w, const Vi& off, const Rows& rows, int64_t IN, int64_t OUT) {
  Vd out(rows.size() * sz(OUT));
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t r = rows[i], e = expert_of(off, r);
    for (int64_t o = 0; o < OUT; ++o) {
      double s = 0.0;
      for (int64_t k = 0; k < IN; ++k) s += x[sz(r * IN + k)] * w[sz((e * OUT + o) * IN + k)];
      out[i * sz(OUT) + sz(o)] = s;
    }
  }
  return out;
}

int64_t stride_of(const Shape& s) { return s.OC * s.IC + s.gap; }

// The packed matrices (E, OUT, IN) laid out at the case's stride in buf (the gaps keep buf's values).
void spread(Vf& buf, const Vf& packed, const Shape& s) {
  const int64_t m = s.OC * s.IC;
  for (int64_t e = 0; e < s.E; ++e) std::copy_n(packed.begin() + e * m, m, buf.begin() + e * stride_of(s));
}
Vf packed_of(const Vf& buf, const Shape& s) {
  const int64_t m = s.OC * s.IC;
  Vf p(sz(s.E * m));
  for (int64_t e = 0; e < s.E; ++e) std::copy_n(buf.begin() + e * stride_of(s), m, p.begin() + e * m);
  return p;
}

// The Stacked view of a buffer of E matrices (OUT, IN) at the case's stride.
ops::Stacked stacked_view(const Tensor& all, const Shape& s) {
  ops::Stacked st;
  st.first = all;
  st.first.ndim = 2;
  st.first.shape[0] = s.OC;
  st.first.shape[1] = s.IC;
  st.count = s.E;
  st.stride = stride_of(s);
  return st;
}

// The experts' weights w (E, OUT, IN) on the case's device at its stride, NaN in the gaps: an op
// that reads past a matrix shows it. buf keeps the tensor's host values.
ops::Stacked put_weights(Run& c, const Vf& w, Vf& buf) {
  buf.assign(sz(c.s.E * stride_of(c.s)), std::numeric_limits<float>::quiet_NaN());
  spread(buf, w, c.s);
  return stacked_view(c.act(buf, {c.s.E * stride_of(c.s)}), c.s);
}

// The gaps of a stacked gradient buffer are as they were.
void expect_gaps(const Run& c, const Vf& got, const Vf& init) {
  int64_t changed = 0;
  for (int64_t e = 0; e < c.s.E; ++e)
    for (int64_t j = c.s.OC * c.s.IC; j < stride_of(c.s); ++j)
      changed += got[sz(e * stride_of(c.s) + j)] != init[sz(e * stride_of(c.s) + j)];
  EXPECT_EQ(changed, 0) << c.label << ": elements between the stacked gradients changed";
}

}  // namespace

void run_grouped_linear_forward(Run& c) {
  const int64_t R = c.s.N, IN = c.s.IC, OUT = c.s.OC, E = c.s.E;
  const Vi off = grouped_offsets(c, R, E);
  Vf x = c.randn(R * IN), w = c.randn(E * OUT * IN, 1.0f / std::sqrt(float(IN))), wbuf;
  const ops::Stacked tw = put_weights(c, w, wbuf);
  Tensor tx = c.act(x, {R, IN}), toff = c.ints(off, {E + 1}), out = c.nan({R, OUT}, c.dt);
  ops::grouped_linear_forward(out, tx, tw, toff);
  const Vf got = c.get(out);
  const Rows rows = c.rows(R, double(IN * OUT));
  c.check("grouped_linear_forward", got, ref_grouped(to_d(x), to_d(w), off, rows, IN, OUT), rows, OUT,
          kReduce);
  c.check_untouched("grouped_linear_forward out", out);
  if (c.dev == Device::CPU) {
    Vi bad = off;
    bad[1] = int32_t(R + 1);  // past R, and above offsets[2]
    EXPECT_THROW(ops::grouped_linear_forward(out, tx, tw, c.ints(bad, {E + 1})), r1::Error);
    return;
  }
  // CUDA: the same bits on every run, and batch-invariant: without row 0 (expert 0's only row) every
  // other row is computed with the same bits, though its position and the rows beside it moved.
  Tensor again = c.nan({R, OUT}, c.dt);
  ops::grouped_linear_forward(again, tx, tw, toff);
  EXPECT_TRUE(c.get(again) == got) << c.label << ": a second run gave other bits";
  if (R > 1) {
    Vi off1 = off;
    for (size_t e = 1; e < off1.size(); ++e) off1[e] -= 1;
    Tensor part = c.nan({R - 1, OUT}, c.dt);
    ops::grouped_linear_forward(part, tx.rows(1, R), tw, c.ints(off1, {E + 1}));
    EXPECT_TRUE(c.get(part) == Vf(got.begin() + OUT, got.end()))
        << c.label << ": rows 1.. alone gave other bits";
  }
}

void run_grouped_linear_backward(Run& c) {
  const Shape& s = c.s;
  const int64_t R = s.N, IN = s.IC, OUT = s.OC, E = s.E;
  const Vi off = grouped_offsets(c, R, E);
  Vf x = c.randn(R * IN), w = c.randn(E * OUT * IN, 1.0f / std::sqrt(float(IN))), g = c.randn(R * OUT), wbuf;
  Vf dx0 = c.randn(R * IN), dw0 = c.randn(E * stride_of(s), 1.0f, DType::F32);
  const Vf dx_init = dx0, dw_init = dw0, dw_init_packed = packed_of(dw0, s);
  const ops::Stacked tw = put_weights(c, w, wbuf);
  Tensor tx = c.act(x, {R, IN}), tg = c.act(g, {R, OUT}), toff = c.ints(off, {E + 1});
  Tensor tdx = c.act(dx0, {R, IN}), tdw_all = c.f32(dw0, {E * stride_of(s)});
  const ops::Stacked tdw = stacked_view(tdw_all, s);
  ops::grouped_linear_backward(tdx, tdw, tg, tx, tw, toff);
  const Vf dx = c.get(tdx), dw_buf = c.get(tdw_all), dw = packed_of(dw_buf, s);

  // dinp row r += g[r] @ w[e(r)]; dweight row (e, o) += sum over e's rows r of g[r, o] x[r].
  const Rows xr = c.rows(R, double(OUT * IN)), wr = c.rows(E * OUT, double(R * IN) / double(E));
  Vd inc_dx(xr.size() * sz(IN), 0.0), inc_dw(wr.size() * sz(IN), 0.0);
  for (size_t i = 0; i < xr.size(); ++i) {
    const int64_t r = xr[i], e = expert_of(off, r);
    for (int64_t o = 0; o < OUT; ++o) {
      const double go = g[sz(r * OUT + o)];
      for (int64_t k = 0; k < IN; ++k) inc_dx[i * sz(IN) + sz(k)] += go * w[sz((e * OUT + o) * IN + k)];
    }
  }
  for (size_t i = 0; i < wr.size(); ++i) {
    const int64_t e = wr[i] / OUT, o = wr[i] % OUT;
    for (int64_t r = off[sz(e)]; r < off[sz(e + 1)]; ++r) {
      const double gr = g[sz(r * OUT + o)];
      for (int64_t k = 0; k < IN; ++k) inc_dw[i * sz(IN) + sz(k)] += gr * x[sz(r * IN + k)];
    }
  }
  // init + times * increment
  auto want = [](const Vf& init, const Rows& rows, int64_t len, const Vd& inc, double times) {
    Vd v = take_rows(init, rows, len);
    for (size_t i = 0; i < v.size(); ++i) v[i] += times * inc[i];
    return v;
  };
  c.check("grouped_linear_backward dinp", dx, want(dx_init, xr, IN, inc_dx, 1.0), xr, IN, kReduce);
  c.check("grouped_linear_backward dweight(f32)", dw, want(dw_init_packed, wr, IN, inc_dw, 1.0), wr, IN,
          kStatReduce);
  expect_gaps(c, dw_buf, dw_init);
  c.check_untouched("grouped_linear_backward dinp", tdx);
  if (c.fd(double(R * IN * OUT))) {
    Vd xd = to_d(x), wd = to_d(w);
    const Rows all = Run::all_rows(R);
    auto loss = [&] { return dot(ref_grouped(xd, wd, off, all, IN, OUT), g); };
    check_grad("dinp", xd, diff(dx, dx_init), loss, 49);
    check_grad("dweight", wd, diff(dw, dw_init_packed), loss, 50);
  }
  // Either gradient alone: without dinp, dweight adds its share again and dinp stays; then the reverse.
  // Two roundings of large partial sums: the normalised bounds only (no elementwise one).
  constexpr Bound kTwiceStat{kStatReduce.f32, kStatReduce.bf16}, kTwice{kReduce.f32, kReduce.bf16};
  ops::grouped_linear_backward(Tensor(), tdw, tg, tx, tw, toff);
  EXPECT_TRUE(c.get(tdx) == dx) << c.label << ": dinp changed without being asked for";
  const Vf dw_buf2 = c.get(tdw_all);
  c.check("grouped_linear_backward dweight alone", packed_of(dw_buf2, s),
          want(dw_init_packed, wr, IN, inc_dw, 2.0), wr, IN, kTwiceStat);
  ops::grouped_linear_backward(tdx, ops::Stacked(), tg, tx, tw, toff);
  EXPECT_TRUE(c.get(tdw_all) == dw_buf2) << c.label << ": dweight changed without being asked for";
  c.check("grouped_linear_backward dinp alone", c.get(tdx), want(dx_init, xr, IN, inc_dx, 2.0), xr, IN,
          kTwice);
  expect_gaps(c, c.get(tdw_all), dw_init);
  if (c.dev == Device::CPU || R < 2) return;
  // CUDA, batch-invariant: without row 0 (expert 0's only row), the other rows' dinp and the other
  // experts' dweight get the first call's bits.
  Vi off1 = off;
  for (size_t e = 1; e < off1.size(); ++e) off1[e] -= 1;
  Vf dx1(dx_init.begin() + IN, dx_init.end()), dw1 = dw_init;
  Tensor tdx1 = c.act(dx1, {R - 1, IN}), tdw1 = c.f32(dw1, {E * stride_of(s)});
  ops::grouped_linear_backward(tdx1, stacked_view(tdw1, s), tg.rows(1, R), tx.rows(1, R), tw,
                               c.ints(off1, {E + 1}));
  EXPECT_TRUE(c.get(tdx1) == Vf(dx.begin() + IN, dx.end()))
      << c.label << ": rows 1.. alone gave other dinp bits";
  const Vf dw1_got = c.get(tdw1);
  EXPECT_TRUE(std::equal(dw1_got.begin() + stride_of(s), dw1_got.end(), dw_buf.begin() + stride_of(s)))
      << c.label << ": rows 1.. alone gave other dweight bits";
}

}  // namespace optable
