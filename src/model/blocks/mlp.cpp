#include "model/blocks/mlp.h"

#include "kernels/ops.h"

namespace r1::model {

namespace {
int64_t width(const Linear& L) { return L.w.shape[0]; }
int64_t width(const GroupedLinear& L) { return L.w.first.shape[0]; }
}  // namespace

template <class L>
void mlp_forward(const Pass& p, const Swiglu<L>& W, const Tensor& x, Tensor out, MlpSaved* s) {
  const int64_t T = x.shape[0], I = width(W.gate);
  Tensor gate = p.keep(p.cd, {T, I}), up = p.keep(p.cd, {T, I});
  Tensor act = p.cheap(p.cd, {T, I});
  MlpSaved saved;
  linear_block_forward(p, W.gate, x, gate, &saved.gate_lin);
  linear_block_forward(p, W.up, x, up, &saved.up_lin);
  ops::swiglu_forward(act, gate, up);
  linear_block_forward(p, W.down, act, out, &saved.down_lin);
  if (s) saved.gate = gate, saved.up = up, saved.act = p.recompute ? Tensor() : act, *s = saved;
}

template <class L>
void mlp_backward(const Pass& p, const Swiglu<L>& W, Swiglu<L>& G, const MlpSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx) {
  const int64_t T = x.shape[0], I = width(W.gate);
  Tensor act = s.act;
  if (act.empty()) {  // the forward's op on the forward's inputs: bitwise the same
    act = p.scratch(p.cd, {T, I});
    ops::swiglu_forward(act, s.gate, s.up);
  }
  Tensor dact = p.zeros(p.cd, {T, I}), dgate = p.zeros(p.cd, {T, I}), dup = p.zeros(p.cd, {T, I});
  linear_block_backward(p, W.down, G.down, s.down_lin, act, dout, dact);
  ops::swiglu_backward(dgate, dup, dact, s.gate, s.up);
  linear_block_backward(p, W.gate, G.gate, s.gate_lin, x, dgate, dx);
  linear_block_backward(p, W.up, G.up, s.up_lin, x, dup, dx);
}

template void mlp_forward(const Pass&, const MlpWeights&, const Tensor&, Tensor, MlpSaved*);
template void mlp_forward(const Pass&, const GroupedMlpWeights&, const Tensor&, Tensor, MlpSaved*);
template void mlp_backward(const Pass&, const MlpWeights&, MlpWeights&, const MlpSaved&, const Tensor&, const Tensor&,
                           Tensor);
template void mlp_backward(const Pass&, const GroupedMlpWeights&, GroupedMlpWeights&, const MlpSaved&, const Tensor&,
                           const Tensor&, Tensor);

}  // namespace r1::model
