#include "model/blocks/mlp.h"

#include <optional>
#include <type_traits>

#include "base/error.h"
#include "kernels/ops.h"

namespace r1::model {

namespace {
int64_t width(const Linear& L) { return L.w.shape[0]; }
int64_t width(const GroupedLinear& L) { return L.w.first.shape[0]; }
}  // namespace

// The gate and up projections run as one GEMM of [gate | up] rows (packed_pair: their weights are
// adjacent) whenever no adapter on them takes part; the SwiGLU then reads the packed rows. Same
// products, one launch fewer per layer, and twice the width for the GEMM to fill the GPU with.
template <class L>
bool mlp_forward(const Pass& p, const Swiglu<L>& W, const Tensor& x_in, Tensor out, MlpSaved* s,
                 const Tensor& residual, const PreNorm& pre, const PostNorm& post) {
  R1_CHECK(!(s && (pre.pending() || post.asked())), "mlp_forward: a fused norm while saving for the backward");
  const int64_t T = x_in.shape[0], I = width(W.gate);
  Tensor act = p.cheap(p.cd, {T, I});
  MlpSaved saved;
  const std::optional<L> gu = packed_pair(p, W.gate, W.up);
  bool fused = false;  // the norm, gate/up and SwiGLU in one op (a decode step's rows on the decode GEMM)
  if constexpr (std::is_same_v<L, Linear>) fused = gu && pre.fused_product(p, act, x_in, gu->w, {}, true);
  if (!fused) {
    const Tensor x = pre.normed(p, x_in);
    if (gu) {
      Tensor gate_up = p.keep(p.cd, {T, 2 * I});
      linear_block_forward(p, *gu, x, gate_up, nullptr);
      ops::swiglu_packed_forward(act, gate_up);
      saved.gate_up = gate_up;
    } else {
      Tensor gate = p.keep(p.cd, {T, I}), up = p.keep(p.cd, {T, I});
      linear_block_forward(p, W.gate, x, gate, &saved.gate_lin);
      linear_block_forward(p, W.up, x, up, &saved.up_lin);
      ops::swiglu_forward(act, gate, up);
      saved.gate = gate, saved.up = up;
    }
  }
  bool normed = false;
  if constexpr (std::is_same_v<L, Linear>)
    normed = post.product(p, W.down, act, out, s ? &saved.down_lin : nullptr, residual);
  else
    linear_block_forward(p, W.down, act, out, &saved.down_lin, residual);
  if (s) saved.act = p.recompute ? Tensor() : act, *s = saved;
  return normed;
}

template <class L>
void mlp_backward(const Pass& p, const Swiglu<L>& W, Swiglu<L>& G, const MlpSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx) {
  const int64_t T = x.shape[0], I = width(W.gate);
  const bool packed = !s.gate_up.empty();
  Tensor act = s.act;
  if (act.empty()) {  // the forward's op on the forward's inputs: bitwise the same
    act = p.scratch(p.cd, {T, I});
    if (packed) ops::swiglu_packed_forward(act, s.gate_up);
    else ops::swiglu_forward(act, s.gate, s.up);
  }
  Tensor dact = p.zeros(p.cd, {T, I});
  linear_block_backward(p, W.down, G.down, s.down_lin, act, dout, dact);
  if (packed) {
    Tensor dgate_up = p.zeros(p.cd, {T, 2 * I});
    ops::swiglu_packed_backward(dgate_up, dact, s.gate_up);
    const std::optional<L> gu = packed_pair(p, W.gate, W.up);
    std::optional<L> ggu = packed_grads(G.gate, G.up);
    R1_CHECK(gu && ggu, "mlp_backward: the forward packed gate and up, and their weights or gradients are no longer "
             "adjacent");
    linear_block_backward(p, *gu, *ggu, {}, x, dgate_up, dx);
    return;
  }
  Tensor dgate = p.zeros(p.cd, {T, I}), dup = p.zeros(p.cd, {T, I});
  ops::swiglu_backward(dgate, dup, dact, s.gate, s.up);
  linear_block_backward(p, W.gate, G.gate, s.gate_lin, x, dgate, dx);
  linear_block_backward(p, W.up, G.up, s.up_lin, x, dup, dx);
}

template bool mlp_forward(const Pass&, const MlpWeights&, const Tensor&, Tensor, MlpSaved*, const Tensor&,
                          const PreNorm&, const PostNorm&);
template bool mlp_forward(const Pass&, const GroupedMlpWeights&, const Tensor&, Tensor, MlpSaved*, const Tensor&,
                          const PreNorm&, const PostNorm&);
template void mlp_backward(const Pass&, const MlpWeights&, MlpWeights&, const MlpSaved&, const Tensor&, const Tensor&,
                           Tensor);
template void mlp_backward(const Pass&, const GroupedMlpWeights&, GroupedMlpWeights&, const MlpSaved&, const Tensor&,
                           const Tensor&, Tensor);

}  // namespace r1::model
