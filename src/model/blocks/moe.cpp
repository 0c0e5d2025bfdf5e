#include "model/blocks/moe.h"

#include <algorithm>

#include "tensor/device_memory.h"

namespace r1::model {

ops::MoeRouting moe_routing(const ModelConfig& c) {
  ops::MoeRouting r;
  r.top_k = c.moe.num_experts_per_tok;
  r.norm_topk = c.moe.norm_topk_prob;
  if (c.is_mla()) {  // DeepseekV3TopkRouter
    r.scoring = ops::MoeRouting::Scoring::sigmoid;
    r.n_group = c.moe.n_group;
    r.topk_group = c.moe.topk_group;
    r.norm_eps = 1e-20f;
    r.scaling = float(c.moe.routed_scaling_factor);
  }
  return r;
}

namespace {

std::vector<int32_t> host_ints(const Tensor& t) {
  std::vector<int32_t> h(size_t(t.numel()));
  devmem::copy(h.data(), Device::CPU, t.data, t.device, t.nbytes());
  return h;
}

// Counts the replayed tokens of io.replay, and those whose experts are not the router's own choice.
void count_replaced(const Pass& p, const MoeWeights& W, const Tensor& logits, const RouteIo& io) {
  const int64_t T = logits.shape[0], K = p.cfg->moe.num_experts_per_tok;
  const Tensor own = p.scratch(DType::I32, {T, K}), w = p.scratch(DType::F32, {T, K});
  ops::moe_route_forward(own, w, logits, W.score_bias, moe_routing(*p.cfg));
  std::vector<int32_t> a = host_ints(own), b = host_ints(io.replay);
  for (int64_t t = 0; t < T; ++t) {
    if (b[size_t(t * K)] < 0) continue;
    ++*io.replayed;
    std::sort(a.begin() + t * K, a.begin() + (t + 1) * K);
    std::sort(b.begin() + t * K, b.begin() + (t + 1) * K);
    if (!std::equal(a.begin() + t * K, a.begin() + (t + 1) * K, b.begin() + t * K)) ++*io.replaced;
  }
}

}  // namespace

void moe_forward(const Pass& p, const MoeWeights& W, const Tensor& x, Tensor out, MoeSaved* s,
                 const RouteIo* io) {
  const ModelConfig& c = *p.cfg;
  const int64_t T = x.shape[0], C = c.hidden_size, E = c.moe.num_experts, K = c.moe.num_experts_per_tok;
  const int64_t R = T * K;
  MoeSaved local;
  MoeSaved& m = s ? *s : local;
  m.logits = p.keep(p.cd, {T, E});
  ops::linear_forward(m.logits, x, W.router, {});
  m.experts = p.keep(DType::I32, {T, K});
  m.weights = p.keep(DType::F32, {T, K});
  const Tensor replay = io ? io->replay : Tensor();
  if (!replay.empty() && io->replayed && io->replaced) count_replaced(p, W, m.logits, *io);
  ops::moe_route_forward(m.experts, m.weights, m.logits, W.score_bias, moe_routing(c), replay);
  if (io && io->chosen) *io->chosen = host_ints(m.experts);
  m.order = p.keep(DType::I32, {R});
  m.tokens = p.keep(DType::I32, {R});
  const Tensor offsets = p.scratch(DType::I32, {E + 1});
  ops::moe_permute(m.order, m.tokens, offsets, m.experts);
  m.offsets.assign(size_t(E + 1), 0);  // the only host read: which rows each expert runs over
  devmem::copy(m.offsets.data(), Device::CPU, offsets.data, offsets.device, offsets.nbytes());
  m.xs = p.keep(p.cd, {R, C});
  m.ys = p.keep(p.cd, {R, C});
  ops::embedding_forward(m.xs, m.tokens, x);  // a row gather: x is the table
  m.expert.assign(size_t(E), {});
  for (int64_t e = 0; e < E; ++e) {
    const int64_t a = m.offsets[size_t(e)], b = m.offsets[size_t(e) + 1];
    if (io && io->counts) (*io->counts)[size_t(e)] += b - a;
    if (a == b) continue;
    mlp_forward(p, W.experts[size_t(e)], m.xs.rows(a, b), m.ys.rows(a, b), s ? &m.expert[size_t(e)] : nullptr);
  }
  ops::moe_combine_forward(out, m.ys, m.order, m.weights);
  if (!W.shared.gate.w.empty()) {
    const Tensor y = p.scratch(p.cd, {T, C});
    mlp_forward(p, W.shared, x, y, s ? &m.shared : nullptr);
    ops::add(out, out, y);
  }
}

void moe_backward(const Pass& p, const MoeWeights& W, MoeWeights& G, const MoeSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx) {
  const ModelConfig& c = *p.cfg;
  const int64_t T = x.shape[0], C = c.hidden_size, E = c.moe.num_experts, K = c.moe.num_experts_per_tok;
  const int64_t R = T * K;
  if (!W.shared.gate.w.empty()) mlp_backward(p, W.shared, G.shared, s.shared, x, dout, dx);
  Tensor dys = p.zeros(p.cd, {R, C}), dweights = p.zeros(DType::F32, {T, K});
  ops::moe_combine_backward(dys, dweights, dout, s.ys, s.order, s.weights);
  Tensor dxs = p.zeros(p.cd, {R, C});
  for (int64_t e = 0; e < E; ++e) {
    const int64_t a = s.offsets[size_t(e)], b = s.offsets[size_t(e) + 1];
    if (a == b) continue;
    mlp_backward(p, W.experts[size_t(e)], G.experts[size_t(e)], s.expert[size_t(e)], s.xs.rows(a, b),
                 dys.rows(a, b), dxs.rows(a, b));
  }
  ops::embedding_backward(dx, dxs, s.tokens);  // the gather's backward: a scatter-add by token
  Tensor dlogits = p.zeros(p.cd, {T, E});
  ops::moe_route_backward(dlogits, dweights, s.logits, s.experts, moe_routing(c));
  ops::linear_backward(dx, G.router, {}, dlogits, x, W.router);
}

}  // namespace r1::model
