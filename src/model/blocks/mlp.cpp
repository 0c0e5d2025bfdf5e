#include "model/blocks/mlp.h"

#include "kernels/ops.h"

namespace r1::model {

void mlp_forward(const Pass& p, const MlpWeights& W, const Tensor& x, Tensor out, MlpSaved* s) {
  const int64_t T = x.shape[0], I = W.gate.shape[0];
  Tensor gate = p.keep(p.cd, {T, I}), up = p.keep(p.cd, {T, I});
  Tensor act = p.cheap(p.cd, {T, I});
  ops::linear_forward(gate, x, W.gate, {});
  ops::linear_forward(up, x, W.up, {});
  ops::swiglu_forward(act, gate, up);
  ops::linear_forward(out, act, W.down, {});
  if (s) *s = {gate, up, p.recompute ? Tensor() : act};
}

void mlp_backward(const Pass& p, const MlpWeights& W, MlpWeights& G, const MlpSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx) {
  const int64_t T = x.shape[0], I = W.gate.shape[0];
  Tensor act = s.act;
  if (act.empty()) {  // the forward's op on the forward's inputs: bitwise the same
    act = p.scratch(p.cd, {T, I});
    ops::swiglu_forward(act, s.gate, s.up);
  }
  Tensor dact = p.zeros(p.cd, {T, I}), dgate = p.zeros(p.cd, {T, I}), dup = p.zeros(p.cd, {T, I});
  ops::linear_backward(dact, G.down, {}, dout, act, W.down);
  ops::swiglu_backward(dgate, dup, dact, s.gate, s.up);
  ops::linear_backward(dx, G.gate, {}, dgate, x, W.gate);
  ops::linear_backward(dx, G.up, {}, dup, x, W.up);
}

}  // namespace r1::model
