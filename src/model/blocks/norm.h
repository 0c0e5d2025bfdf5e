#pragma once
// RMSNorm as a block: out = x * rstd * weight over the last dimension, rstd saved for the backward.
// The output is one of the cheap activations: kept, or recomputed bitwise by norm_output.
#include "model/blocks/linear.h"
#include "model/blocks/pass.h"

namespace r1::model {

struct NormSaved {
  Tensor out;   // (N, C); empty when the backward recomputes it
  Tensor rstd;  // (N) f32
};

// out (N, C) = rmsnorm(x) with `weight` (C); s (when saving) keeps what norm_backward reads.
Tensor norm_forward(const Pass& p, const Tensor& weight, const Tensor& x, NormSaved* s);
// The forward's output again: the saved one, or recomputed from x with the same op (bitwise equal).
Tensor norm_output(const Pass& p, const Tensor& weight, const Tensor& x, const NormSaved& s);
// A block's input whose RMSNorm may still be due: x before the norm with `weight`, or, with weight
// empty, x already normed. A decode step's blocks fuse the norm into the product that reads it
// (ops::rmsnorm_linear_forward) where a kernel takes the pair, and otherwise run it first (normed).
struct PreNorm {
  Tensor weight;
  bool pending() const { return !weight.empty(); }
  // x normed (scratch: nothing is saved), or x itself when no norm is pending.
  Tensor normed(const Pass& p, const Tensor& x) const;
  // out = the pending norm of x, then the product with w (+ b), or with swiglu its SwiGLU, in one op
  // (ops::rmsnorm_linear_forward): false, having done nothing, when no norm is pending or no kernel
  // takes the case (the caller then runs normed(), then the product).
  bool fused_product(const Pass& p, Tensor out, const Tensor& x, const Tensor& w, const Tensor& b, bool swiglu) const;
};
// A block's output that the next block reads through an RMSNorm: with weight set, a decode step's
// output projection (o_proj, down_proj) writes that norm of its result too, in the same op
// (ops::linear_rmsnorm_forward), where a kernel takes the pair; the next block then runs no norm.
struct PostNorm {
  Tensor weight;  // (C); empty: none asked
  Tensor normed;  // (T, C): where the norm goes
  bool asked() const { return !weight.empty(); }
  // out = W's layer over x (+ residual; s: saving, linear_block_forward), and, where asked and a
  // kernel takes the pair (not saving, W's adapter not taking part), normed = rmsnorm(out; weight) in
  // the same op: returns whether normed was written.
  bool product(const Pass& p, const Linear& W, const Tensor& x, Tensor out, LinearSaved* s,
               const Tensor& residual) const;
};
// dx (N, C) += d/dx, dweight (C) += d/dweight, from dout (N, C).
void norm_backward(const Pass& p, const Tensor& weight, Tensor dweight, const NormSaved& s, const Tensor& x,
                   const Tensor& dout, Tensor dx);

}  // namespace r1::model
