#pragma once
// The SwiGLU MLP block (Qwen2, Llama 3, Qwen3): out = down(silu(gate(x)) * up(x)).
#include <string>

#include "model/blocks/linear.h"
#include "model/blocks/norm.h"

namespace r1::model {

// The weights of a SwiGLU MLP: one (Linear), or the E experts of a mixture-of-experts layer at once
// (GroupedLinear: each row goes through its expert's).
template <class L>
struct Swiglu {
  L gate, up, down;  // (I, C), (I, C), (C, I)
};
using MlpWeights = Swiglu<Linear>;
using GroupedMlpWeights = Swiglu<GroupedLinear>;

// Every parameter of a SwiGLU MLP of width I under `prefix` ("mlp.", "mlp.experts.3."), in layout order.
template <class W, class F>
void visit_swiglu(W& w, const std::string& prefix, int64_t C, int64_t I, F&& f) {
  f(w.gate.w, prefix + "gate_proj.weight", ParamShape{I, C});
  f(w.up.w, prefix + "up_proj.weight", ParamShape{I, C});
  f(w.down.w, prefix + "down_proj.weight", ParamShape{C, I});
}

// Every linear of a SwiGLU MLP of width I under `prefix` ("mlp.", "mlp.experts.3."), with its HF
// module name, input and output width (LoRA targets).
template <class W, class F>
void visit_swiglu_linears(W& w, const std::string& prefix, int64_t C, int64_t I, F&& f) {
  f(w.gate, prefix + "gate_proj", C, I);
  f(w.up, prefix + "up_proj", C, I);
  f(w.down, prefix + "down_proj", I, C);
}

// The dense MLP of a layer, with its HF names under the layer.
template <class W, class F>
void visit_mlp(W& w, const ModelConfig& c, F&& f) {
  visit_swiglu(w, "mlp.", c.hidden_size, c.intermediate_size, f);
}

// Every linear of the dense MLP with its HF module name, input and output width (LoRA targets).
template <class W, class F>
void visit_mlp_linears(W& w, const ModelConfig& c, F&& f) {
  visit_swiglu_linears(w, "mlp.", c.hidden_size, c.intermediate_size, f);
}

struct MlpSaved {
  LinearSaved gate_lin, up_lin, down_lin;
  Tensor gate, up;  // (T, I); empty when the forward packed them:
  Tensor gate_up;   // (T, 2I) = [gate | up], one GEMM of the adjacent weights (packed_pair)
  Tensor act;       // (T, I); empty when the backward recomputes it
};

// out (N, C) = the block over x (N, C) (N: the batch's tokens, or the experts' grouped rows); its
// width is the weights'. residual (N, C; not for the experts' rows): summed in down_proj's product.
// s (when saving) keeps what mlp_backward reads. L: Linear or GroupedLinear. pre (dense, not while
// saving): x is the residual stream before the block's RMSNorm; the gate/up product takes the norm
// in, and the SwiGLU out (ops::rmsnorm_linear_forward), where a kernel does. post (dense, not while
// saving): the next block's norm, which down_proj's product may write too: returns whether it did.
template <class L>
bool mlp_forward(const Pass& p, const Swiglu<L>& W, const Tensor& x, Tensor out, MlpSaved* s,
                 const Tensor& residual = {}, const PreNorm& pre = {}, const PostNorm& post = {});
// From dout (T, C): dx (T, C) +=, and G's gradients +=. x is the forward's input.
template <class L>
void mlp_backward(const Pass& p, const Swiglu<L>& W, Swiglu<L>& G, const MlpSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx);

}  // namespace r1::model
