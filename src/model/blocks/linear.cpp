#include "model/blocks/linear.h"

#include "kernels/ops.h"
#include "tensor/device_memory.h"

namespace r1::model {

namespace {

bool adapted(const Pass& p, const Linear& W) { return p.adapters && !W.lora_a.empty(); }
bool dropping(const Pass& p) { return p.saving() && p.lora_dropout > 0.0f; }
uint64_t dropout_stream(const Pass& p, const Linear& W) { return (p.dropout_step << 16) + uint64_t(W.adapter); }

// The adapter's input: x, or x with the pass's dropout mask (training only).
Tensor adapter_input(const Pass& p, const Linear& W, const Tensor& x) {
  if (!dropping(p)) return x;
  Tensor xd = p.scratch(p.cd, {x.shape[0], x.shape[1]});
  ops::dropout_forward(xd, x, p.lora_dropout, p.dropout_seed, dropout_stream(p, W));
  return xd;
}

// s * h, in scratch.
Tensor scaled(const Pass& p, const Tensor& h) {
  Tensor hs = p.scratch(p.cd, {h.shape[0], h.shape[1]});
  copy_tensor(hs, h);
  ops::scale_inplace(hs, p.lora_scale);
  return hs;
}

}  // namespace

void linear_block_forward(const Pass& p, const Linear& W, const Tensor& x, Tensor out, LinearSaved* s) {
  ops::linear_forward(out, x, W.w, W.b);
  if (!adapted(p, W)) return;
  const int64_t T = x.shape[0], R = W.lora_a.shape[0], OUT = W.w.shape[0];
  Tensor h = p.keep(p.cd, {T, R});
  ops::linear_forward(h, adapter_input(p, W, x), W.lora_a, {});
  Tensor y = p.scratch(p.cd, {T, OUT});
  ops::linear_forward(y, scaled(p, h), W.lora_b, {});
  ops::add(out, out, y);
  if (s) s->h = h;
}

Tensor effective_weight(const Pass& p, const Linear& W) {
  if (!adapted(p, W)) return W.w;
  const int64_t OUT = W.w.shape[0], IN = W.w.shape[1];
  Tensor w = p.scratch(p.cd, {OUT, IN});
  copy_tensor(w, W.w);
  // (s B) A added as linear_backward's dinp += dout @ weight, with dout = s B (OUT, r), weight = A (r, IN).
  ops::linear_backward(w, {}, {}, scaled(p, W.lora_b), w, W.lora_a);
  return w;
}

void linear_block_backward(const Pass& p, const Linear& W, Linear& G, const LinearSaved& s, const Tensor& x,
                           const Tensor& dout, Tensor dx) {
  ops::linear_backward(dx, G.w, G.b, dout, x, W.w);
  if (!adapted(p, W)) return;
  const int64_t T = x.shape[0], IN = x.shape[1], R = W.lora_a.shape[0];
  // y = (s h) B^T: dB += dy^T (s h), d(s h) = dy B; h = x_d A^T: dA += dh^T x_d, dx_d = dh A.
  Tensor dhs = p.zeros(p.cd, {T, R});
  ops::linear_backward(dhs, G.lora_b, {}, dout, scaled(p, s.h), W.lora_b);
  ops::scale_inplace(dhs, p.lora_scale);
  if (!dropping(p)) {
    ops::linear_backward(dx, G.lora_a, {}, dhs, x, W.lora_a);
    return;
  }
  Tensor dxd = p.zeros(p.cd, {T, IN});
  ops::linear_backward(dxd, G.lora_a, {}, dhs, adapter_input(p, W, x), W.lora_a);
  ops::dropout_backward(dx, dxd, p.lora_dropout, p.dropout_seed, dropout_stream(p, W));
}

}  // namespace r1::model
