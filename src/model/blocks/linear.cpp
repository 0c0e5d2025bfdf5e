#include "model/blocks/linear.h"

#include "base/error.h"
#include "kernels/ops.h"
#include "tensor/device_memory.h"

namespace r1::model {

namespace {

// The layer's products, for one weight or for the experts' grouped weights: out = x M^T (+ bias),
// and its backward. The adapter's arithmetic below is written once over them.
void product(const Linear&, Tensor out, const Tensor& x, const Tensor& m, const Tensor& bias,
             const Tensor& residual = {}) {
  ops::linear_forward(out, x, m, bias, residual);
}
void product(const GroupedLinear& L, Tensor out, const Tensor& x, const ops::Stacked& m, const Tensor&,
             const Tensor& residual = {}) {
  R1_CHECK(residual.empty(), "grouped linear: the experts' rows take no residual");
  ops::grouped_linear_forward(out, x, m, L.offsets);
}
void product_backward(const Linear&, Tensor dx, Tensor dm, Tensor dbias, const Tensor& dout, const Tensor& x,
                      const Tensor& m) {
  ops::linear_backward(dx, dm, dbias, dout, x, m);
}
void product_backward(const GroupedLinear& L, Tensor dx, const ops::Stacked& dm, Tensor, const Tensor& dout,
                      const Tensor& x, const ops::Stacked& m) {
  ops::grouped_linear_backward(dx, dm, dout, x, m, L.offsets);
}
const Tensor& matrix(const Tensor& m) { return m; }
const Tensor& matrix(const ops::Stacked& m) { return m.first; }

template <class L>
bool adapted(const Pass& p, const L& W) { return p.adapters && !W.lora_a.empty(); }
bool dropping(const Pass& p) { return p.saving() && p.lora_dropout > 0.0f; }
template <class L>
uint64_t dropout_stream(const Pass& p, const L& W) { return (p.dropout_step << 16) + uint64_t(W.adapter); }

// The adapter's input: x, or x with the pass's dropout mask (training only).
template <class L>
Tensor adapter_input(const Pass& p, const L& W, const Tensor& x) {
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

// out += the adapter's product over x, when it takes part.
template <class L>
void adapter_forward(const Pass& p, const L& W, const Tensor& x, Tensor out, LinearSaved* s) {
  if (!adapted(p, W)) return;
  const int64_t T = x.shape[0], R = matrix(W.lora_a).shape[0], OUT = matrix(W.w).shape[0];
  Tensor h = p.keep(p.cd, {T, R});
  product(W, h, adapter_input(p, W, x), W.lora_a, {});
  Tensor y = p.scratch(p.cd, {T, OUT});
  product(W, y, scaled(p, h), W.lora_b, {});
  ops::add(out, out, y);
  if (s) s->h = h;
}

template <class L>
void block_forward(const Pass& p, const L& W, const Tensor& x, Tensor out, LinearSaved* s,
                   const Tensor& residual = {}) {
  product(W, out, x, W.w, W.b, residual);
  adapter_forward(p, W, x, out, s);
}

template <class L>
void block_backward(const Pass& p, const L& W, L& G, const LinearSaved& s, const Tensor& x, const Tensor& dout,
                    Tensor dx) {
  product_backward(W, dx, G.w, G.b, dout, x, W.w);
  if (!adapted(p, W)) return;
  const int64_t T = x.shape[0], IN = x.shape[1], R = matrix(W.lora_a).shape[0];
  // y = (s h) B^T: dB += dy^T (s h), d(s h) = dy B; h = x_d A^T: dA += dh^T x_d, dx_d = dh A.
  Tensor dhs = p.zeros(p.cd, {T, R});
  product_backward(W, dhs, G.lora_b, {}, dout, scaled(p, s.h), W.lora_b);
  ops::scale_inplace(dhs, p.lora_scale);
  if (!dropping(p)) {
    product_backward(W, dx, G.lora_a, {}, dhs, x, W.lora_a);
    return;
  }
  Tensor dxd = p.zeros(p.cd, {T, IN});
  product_backward(W, dxd, G.lora_a, {}, dhs, adapter_input(p, W, x), W.lora_a);
  ops::dropout_backward(dx, dxd, p.lora_dropout, p.dropout_seed, dropout_stream(p, W));
}

}  // namespace

bool adapter_takes_part(const Pass& p, const Linear& W) { return adapted(p, W); }

void linear_block_forward(const Pass& p, const Linear& W, const Tensor& x, Tensor out, LinearSaved* s,
                          const Tensor& residual) {
  block_forward(p, W, x, out, s, residual);
}
void linear_block_forward(const Pass& p, const GroupedLinear& W, const Tensor& x, Tensor out, LinearSaved* s,
                          const Tensor& residual) {
  block_forward(p, W, x, out, s, residual);
}

void linear_blocks_forward(const Pass& p, const std::vector<const Linear*>& Ws, const Tensor& x,
                           const std::vector<Tensor>& outs, const std::vector<LinearSaved*>& saved) {
  R1_CHECK(outs.size() == Ws.size() && saved.size() == Ws.size(), "linear_blocks_forward: {} layers, {} outputs, "
           "{} saves", Ws.size(), outs.size(), saved.size());
  std::vector<Tensor> weights, biases;
  for (const Linear* W : Ws) weights.push_back(W->w), biases.push_back(W->b);
  ops::linear_forward_each(outs, x, weights, biases);
  for (size_t i = 0; i < Ws.size(); ++i) adapter_forward(p, *Ws[i], x, outs[i], saved[i]);
}

namespace {

// b's rows right after a's, as one (OUT_a + OUT_b, IN) matrix; empty when both are empty (a frozen
// base's gradients); nullopt when not adjacent.
std::optional<Tensor> rows_after(const Tensor& a, const Tensor& b) {
  if (a.empty() && b.empty()) return Tensor();
  if (a.empty() || b.empty() || a.dtype != b.dtype || a.device != b.device || a.ndim != b.ndim ||
      (a.ndim != 1 && a.ndim != 2) || (a.ndim == 2 && a.shape[1] != b.shape[1]))
    return std::nullopt;
  const char* end = static_cast<const char*>(a.data) + size_t(a.numel()) * dtype_size(a.dtype);
  if (static_cast<const void*>(end) != b.data) return std::nullopt;
  if (a.ndim == 1) return Tensor(a.data, a.dtype, {a.shape[0] + b.shape[0]}, a.device);
  return Tensor(a.data, a.dtype, {a.shape[0] + b.shape[0], a.shape[1]}, a.device);
}

std::optional<ops::Stacked> rows_after(const ops::Stacked& a, const ops::Stacked& b) {
  if (a.empty() && b.empty()) return ops::Stacked{};
  if (a.count != b.count || a.stride != b.stride) return std::nullopt;
  const std::optional<Tensor> first = rows_after(a.first, b.first);
  if (!first || first->empty()) return std::nullopt;
  return ops::Stacked{*first, a.count, a.stride};
}

}  // namespace

std::optional<Linear> packed_grads(const Linear& a, const Linear& b) {
  if (!a.b.empty() || !b.b.empty()) return std::nullopt;
  const std::optional<Tensor> w = rows_after(a.w, b.w);
  if (!w) return std::nullopt;
  Linear out;
  out.w = *w;
  return out;
}

std::optional<GroupedLinear> packed_grads(const GroupedLinear& a, const GroupedLinear& b) {
  const std::optional<ops::Stacked> w = rows_after(a.w, b.w);
  if (!w) return std::nullopt;
  GroupedLinear out;
  out.w = *w;
  out.offsets = a.offsets;
  return out;
}

std::optional<Linear> packed_rows(const Pass& p, const std::vector<const Linear*>& Ws) {
  if (Ws.empty() || Ws[0]->w.empty()) return std::nullopt;
  Linear out;
  out.w = Ws[0]->w;
  out.b = Ws[0]->b;
  for (size_t i = 0; i < Ws.size(); ++i) {
    if (adapted(p, *Ws[i])) return std::nullopt;
    if (i == 0) continue;
    const std::optional<Tensor> w = rows_after(out.w, Ws[i]->w), b = rows_after(out.b, Ws[i]->b);
    if (!w || !b) return std::nullopt;
    out.w = *w;
    out.b = *b;
  }
  return out;
}

std::optional<Linear> packed_pair(const Pass& p, const Linear& a, const Linear& b) {
  if (adapted(p, a) || adapted(p, b) || a.w.empty()) return std::nullopt;
  return packed_grads(a, b);
}

std::optional<GroupedLinear> packed_pair(const Pass& p, const GroupedLinear& a, const GroupedLinear& b) {
  if (adapted(p, a) || adapted(p, b) || a.w.empty()) return std::nullopt;
  return packed_grads(a, b);
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
  block_backward(p, W, G, s, x, dout, dx);
}
void linear_block_backward(const Pass& p, const GroupedLinear& W, GroupedLinear& G, const LinearSaved& s,
                           const Tensor& x, const Tensor& dout, Tensor dx) {
  block_backward(p, W, G, s, x, dout, dx);
}

}  // namespace r1::model
