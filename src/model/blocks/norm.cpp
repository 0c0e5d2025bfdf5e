#include "model/blocks/norm.h"

#include "kernels/ops.h"

namespace r1::model {

namespace {
float eps(const Pass& p) { return float(p.cfg->rms_norm_eps); }

// The norm of x into scratch (nothing saved).
Tensor scratch_norm(const Pass& p, const Tensor& weight, const Tensor& x) {
  const int64_t N = x.shape[0], C = x.shape[1];
  Tensor out = p.scratch(p.cd, {N, C});
  ops::rmsnorm_forward(out, p.scratch(DType::F32, {N}), x, weight, eps(p));
  return out;
}
}  // namespace

Tensor norm_forward(const Pass& p, const Tensor& weight, const Tensor& x, NormSaved* s) {
  const int64_t N = x.shape[0], C = x.shape[1];
  Tensor out = p.cheap(p.cd, {N, C});
  Tensor rstd = p.keep(DType::F32, {N});
  ops::rmsnorm_forward(out, rstd, x, weight, eps(p));
  if (s) *s = {p.recompute ? Tensor() : out, rstd};
  return out;
}

Tensor norm_output(const Pass& p, const Tensor& weight, const Tensor& x, const NormSaved& s) {
  return s.out.empty() ? scratch_norm(p, weight, x) : s.out;
}

Tensor PreNorm::normed(const Pass& p, const Tensor& x) const { return pending() ? scratch_norm(p, weight, x) : x; }

bool PreNorm::fused_product(const Pass& p, Tensor out, const Tensor& x, const Tensor& w, const Tensor& b,
                            bool swiglu) const {
  return pending() && ops::rmsnorm_linear_forward(out, x, weight, eps(p), w, b, {}, swiglu);
}

bool PostNorm::product(const Pass& p, const Linear& W, const Tensor& x, Tensor out, LinearSaved* s,
                       const Tensor& residual) const {
  if (asked() && !s && !adapter_takes_part(p, W)) {
    const int64_t T = x.shape[0], IN = x.shape[1], OUT = W.w.shape[0];
    const int64_t ws = ops::linear_rmsnorm_workspace(x.device, T, IN, OUT);
    const Tensor work = ws > 0 ? p.scratch(DType::F32, {ws}) : Tensor();
    if (ops::linear_rmsnorm_forward(out, normed, x, W.w, W.b, residual, weight, eps(p), work)) return true;
  }
  linear_block_forward(p, W, x, out, s, residual);
  return false;
}

void norm_backward(const Pass&, const Tensor& weight, Tensor dweight, const NormSaved& s, const Tensor& x,
                   const Tensor& dout, Tensor dx) {
  ops::rmsnorm_backward(dx, dweight, dout, x, weight, s.rstd);
}

}  // namespace r1::model
