#include "model/blocks/moe.h"

#include <algorithm>

#include "base/error.h"
#include "model/kv_cache.h"
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

namespace {

// One kind of the experts' tensors (say, every expert's gate weight) as E matrices at one stride.
ops::Stacked stack(const std::vector<MlpWeights>& experts, Linear MlpWeights::*lin, Tensor Linear::*part,
                   const char* what) {
  const int64_t E = int64_t(experts.size());
  const Tensor& first = experts[0].*lin.*part;
  ops::Stacked s{first, E, 0};
  const auto at = [&](int64_t e) -> const Tensor& { return experts[size_t(e)].*lin.*part; };
  if (first.empty()) {
    for (int64_t e = 1; e < E; ++e)
      R1_CHECK(at(e).empty(), "the experts' {}: expert {} has one and expert 0 none (adapters go on all or none)",
               what, e);
    return s;
  }
  const size_t elt = dtype_size(first.dtype);
  if (E > 1) {
    const auto gap = static_cast<const char*>(at(1).data) - static_cast<const char*>(first.data);
    R1_CHECK(!at(1).empty() && gap > 0 && size_t(gap) % elt == 0,
             "the experts' {}: expert 1's is not after expert 0's in the layout", what);
    s.stride = int64_t(size_t(gap) / elt);
  }
  for (int64_t e = 1; e < E; ++e) {
    const Tensor& t = at(e);
    R1_CHECK(!t.empty() && t.dtype == first.dtype && t.device == first.device && t.ndim == 2 &&
                 t.shape[0] == first.shape[0] && t.shape[1] == first.shape[1] &&
                 t.data == static_cast<const char*>(first.data) + size_t(e * s.stride) * elt,
             "the experts' {}: expert {}'s is not {} elements after expert {}'s, or differs in shape (adapters "
             "go on all experts or none, with one rank)",
             what, e, s.stride, e - 1);
  }
  return s;
}

GroupedLinear group(const std::vector<MlpWeights>& experts, Linear MlpWeights::*lin, const char* name,
                    const Tensor& offsets) {
  GroupedLinear g;
  g.w = stack(experts, lin, &Linear::w, name);
  g.lora_a = stack(experts, lin, &Linear::lora_a, name);
  g.lora_b = stack(experts, lin, &Linear::lora_b, name);
  g.adapter = (experts[0].*lin).adapter;
  g.offsets = offsets;
  return g;
}

}  // namespace

GroupedMlpWeights grouped_experts(const std::vector<MlpWeights>& experts, const Tensor& offsets) {
  R1_CHECK(!experts.empty(), "a mixture-of-experts layer without experts");
  return {group(experts, &MlpWeights::gate, "gate_proj", offsets), group(experts, &MlpWeights::up, "up_proj", offsets),
          group(experts, &MlpWeights::down, "down_proj", offsets)};
}

void moe_forward(const Pass& p, const MoeWeights& W, const Tensor& x, Tensor out, MoeSaved* s,
                 const RouteIo* io, const Tensor& residual) {
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
  if (io && !io->record.empty()) {
    // Beside the row's keys, as kv_cache_write writes a latent row: the ids travel as the 4-byte
    // words they are (the write only moves words, so their f32 reading never matters).
    Tensor pool = io->record, chosen = m.experts.reshape({T, 1, K});
    pool.dtype = chosen.dtype = DType::F32;
    ops::kv_cache_write(pool, {}, chosen, {}, p.cache->table, p.slots, p.pos);
  }
  m.order = p.keep(DType::I32, {R});
  m.tokens = p.keep(DType::I32, {R});
  m.offsets = p.keep(DType::I32, {E + 1});
  ops::moe_permute(m.order, m.tokens, m.offsets, m.experts);
  if (io && io->counts) {  // load-balance statistics: a host read, only when asked for
    const std::vector<int32_t> o = host_ints(m.offsets);
    for (int64_t e = 0; e < E; ++e) (*io->counts)[size_t(e)] += o[size_t(e) + 1] - o[size_t(e)];
  }
  m.xs = p.keep(p.cd, {R, C});
  m.ys = p.keep(p.cd, {R, C});
  ops::embedding_forward(m.xs, m.tokens, x);  // a row gather: x is the table
  mlp_forward(p, grouped_experts(W.experts, m.offsets), m.xs, m.ys, s ? &m.experts_mlp : nullptr);
  ops::moe_combine_forward(out, m.ys, m.order, m.weights);
  if (!W.shared.gate.w.empty()) {  // the shared experts, the residual summed in their product
    const Tensor y = p.scratch(p.cd, {T, C});
    mlp_forward(p, W.shared, x, y, s ? &m.shared : nullptr, residual);
    ops::add(out, out, y);
  } else if (!residual.empty()) {
    ops::add(out, out, residual);
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
  GroupedMlpWeights grads = grouped_experts(G.experts, s.offsets);
  mlp_backward(p, grouped_experts(W.experts, s.offsets), grads, s.experts_mlp, s.xs, dys, dxs);
  // The gather's backward: each token's K rows summed (no atomics; dx is an activation gradient,
  // in the compute dtype), added to dx.
  const Tensor dx_routed = p.scratch(p.cd, {T, C});
  ops::moe_combine_forward(dx_routed, dxs, s.order, {});
  ops::add(dx, dx, dx_routed);
  Tensor dlogits = p.zeros(p.cd, {T, E});
  ops::moe_route_backward(dlogits, dweights, s.logits, s.experts, moe_routing(c));
  ops::linear_backward(dx, G.router, {}, dlogits, x, W.router);
}

}  // namespace r1::model
