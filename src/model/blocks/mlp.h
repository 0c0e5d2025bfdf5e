#pragma once
// The SwiGLU MLP block (Qwen2, Llama 3, Qwen3): out = down(silu(gate(x)) * up(x)).
#include "model/blocks/linear.h"

namespace r1::model {

struct MlpWeights {
  Linear gate, up, down;  // (I, C), (I, C), (C, I)
};

// Every parameter of the block in layout order, with its HF name under the layer.
template <class W, class F>
void visit_mlp(W& w, const ModelConfig& c, F&& f) {
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  f(w.gate.w, "mlp.gate_proj.weight", ParamShape{I, C});
  f(w.up.w, "mlp.up_proj.weight", ParamShape{I, C});
  f(w.down.w, "mlp.down_proj.weight", ParamShape{C, I});
}

// Every linear of the block with its HF module name, input and output width (LoRA targets).
template <class W, class F>
void visit_mlp_linears(W& w, const ModelConfig& c, F&& f) {
  const int64_t C = c.hidden_size, I = c.intermediate_size;
  f(w.gate, "mlp.gate_proj", C, I);
  f(w.up, "mlp.up_proj", C, I);
  f(w.down, "mlp.down_proj", I, C);
}

struct MlpSaved {
  LinearSaved gate_lin, up_lin, down_lin;
  Tensor gate, up;  // (T, I)
  Tensor act;       // (T, I); empty when the backward recomputes it
};

// out (T, C) = the block over x (T, C); s (when saving) keeps what mlp_backward reads.
void mlp_forward(const Pass& p, const MlpWeights& W, const Tensor& x, Tensor out, MlpSaved* s);
// From dout (T, C): dx (T, C) +=, and G's gradients +=. x is the forward's input.
void mlp_backward(const Pass& p, const MlpWeights& W, MlpWeights& G, const MlpSaved& s, const Tensor& x,
                  const Tensor& dout, Tensor dx);

}  // namespace r1::model
