#pragma once
// A linear layer of a block (HF nn.Linear layout), with an optional LoRA adapter:
//   out = x W^T + b + s * dropout(x) A^T B^T,  A (r, IN), B (OUT, r), s = alpha / r (or / sqrt(r)).
// The base weights may be frozen (no gradients): the backward then only carries dx and the
// adapter's gradients. Without an adapter it is exactly ops::linear_forward/backward.
#include "model/blocks/pass.h"

namespace r1::model {

struct Linear {
  Tensor w;       // (OUT, IN)
  Tensor b;       // (OUT) or empty
  Tensor lora_a;  // (r, IN) or empty: no adapter on this linear
  Tensor lora_b;  // (OUT, r)
  int adapter = -1;  // the adapter's index in the model (its dropout stream); -1: none
};

struct LinearSaved {
  Tensor h;  // (T, r) = dropout(x) A^T, when the linear has an adapter that is on
};

// out (T, OUT) = the layer over x (T, IN); s (when saving) keeps what linear_block_backward reads.
void linear_block_forward(const Pass& p, const Linear& W, const Tensor& x, Tensor out, LinearSaved* s);
// The weight the layer applies, W + s * B A (OUT, IN), in scratch when an adapter is on, else W.w:
// for the products that use a weight other than as x W^T (MLA's absorbed decode). No dropout.
Tensor effective_weight(const Pass& p, const Linear& W);
// From dout (T, OUT): dx (T, IN) +=, and G's gradients += (those G has: a frozen base has no w/b).
void linear_block_backward(const Pass& p, const Linear& W, Linear& G, const LinearSaved& s, const Tensor& x,
                           const Tensor& dout, Tensor dx);

}  // namespace r1::model
