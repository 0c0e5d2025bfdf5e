#pragma once
// A linear layer of a block (HF nn.Linear layout), with an optional LoRA adapter:
//   out = x W^T + b + s * dropout(x) A^T B^T,  A (r, IN), B (OUT, r), s = alpha / r (or / sqrt(r)).
// The base weights may be frozen (no gradients): the backward then only carries dx and the
// adapter's gradients. Without an adapter it is exactly ops::linear_forward/backward.
#include <optional>

#include "kernels/ops.h"
#include "model/blocks/pass.h"

namespace r1::model {

struct Linear {
  Tensor w;       // (OUT, IN)
  Tensor b;       // (OUT) or empty
  Tensor lora_a;  // (r, IN) or empty: no adapter on this linear
  Tensor lora_b;  // (OUT, r)
  int adapter = -1;  // the adapter's index in the model (its dropout stream); -1: none
};

// The same layer for E experts at once (a mixture-of-experts layer's gate, up or down projections):
// rows [offsets[e], offsets[e + 1]) of the input go through expert e's weight and adapter
// (ops::grouped_linear_*). The adapters of all experts share one dropout stream, `adapter`'s (the
// first expert's): a row's mask is still its own.
struct GroupedLinear {
  ops::Stacked w;       // E of (OUT, IN)
  ops::Stacked lora_a;  // E of (r, IN), or empty: no adapters on these experts
  ops::Stacked lora_b;  // E of (OUT, r)
  int adapter = -1;
  Tensor offsets;       // (E + 1) i32 on the device, from ops::moe_permute
  Tensor b;             // always empty: experts have no bias
};

struct LinearSaved {
  Tensor h;  // (T, r) = dropout(x) A^T, when the linear has an adapter that is on
};

// Two linears of the same input as one: a's and b's weights (OUT_a + OUT_b, IN) in one product, when
// b's rows follow a's in memory (the flat layout keeps a SwiGLU's up_proj right after its
// gate_proj), neither has a bias, and neither adapter takes part in this pass. The pair's
// gradients are the same view of the gradient buffer (empty when the base is frozen). nullopt when
// they cannot be packed.
std::optional<Linear> packed_pair(const Pass& p, const Linear& a, const Linear& b);
std::optional<GroupedLinear> packed_pair(const Pass& p, const GroupedLinear& a, const GroupedLinear& b);
// Linears of the same input as one (a layer's q, k and v at a decode step): their weights
// (sum of OUT, IN) as one matrix and their biases as one vector, when each one's rows follow the
// previous one's in memory (the flat layout keeps q, k and v's weights together, then their
// biases: blocks/attention.h), all or none have a bias, and no adapter takes part in this pass.
// Forward only. nullopt when they cannot be packed.
std::optional<Linear> packed_rows(const Pass& p, const std::vector<const Linear*>& Ws);
// The same view of a pair's gradients (no adapter or pass checks), nullopt when not adjacent.
std::optional<Linear> packed_grads(const Linear& a, const Linear& b);
std::optional<GroupedLinear> packed_grads(const GroupedLinear& a, const GroupedLinear& b);

// Whether W's adapter takes part in the pass (it has one, and the pass runs adapters).
bool adapter_takes_part(const Pass& p, const Linear& W);
// out (T, OUT) = the layer over x (T, IN) (+ residual (T, OUT), summed in the base product: see
// ops::linear_forward); s (when saving) keeps what linear_block_backward reads.
void linear_block_forward(const Pass& p, const Linear& W, const Tensor& x, Tensor out, LinearSaved* s,
                          const Tensor& residual = {});
void linear_block_forward(const Pass& p, const GroupedLinear& W, const Tensor& x, Tensor out, LinearSaved* s,
                          const Tensor& residual = {});  // the experts' rows: no residual
// Several layers over one x (a layer's q, k and v): outs[i] = Ws[i]'s layer over x, saving into
// saved[i] (null: not saving). Their base products run as one op (ops::linear_forward_each: one
// launch at a decode step's rows), then each adapter.
void linear_blocks_forward(const Pass& p, const std::vector<const Linear*>& Ws, const Tensor& x,
                           const std::vector<Tensor>& outs, const std::vector<LinearSaved*>& saved);
// The weight the layer applies, W + s * B A (OUT, IN), in scratch when an adapter is on, else W.w:
// for the products that use a weight other than as x W^T (MLA's absorbed decode). No dropout.
Tensor effective_weight(const Pass& p, const Linear& W);
// From dout (T, OUT): dx (T, IN) +=, and G's gradients += (those G has: a frozen base has no w/b).
void linear_block_backward(const Pass& p, const Linear& W, Linear& G, const LinearSaved& s, const Tensor& x,
                           const Tensor& dout, Tensor dx);
void linear_block_backward(const Pass& p, const GroupedLinear& W, GroupedLinear& G, const LinearSaved& s,
                           const Tensor& x, const Tensor& dout, Tensor dx);

}  // namespace r1::model
