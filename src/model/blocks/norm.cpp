#include "model/blocks/norm.h"

#include "kernels/ops.h"

namespace r1::model {

namespace {
float eps(const Pass& p) { return float(p.cfg->rms_norm_eps); }
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
  if (!s.out.empty()) return s.out;
  const int64_t N = x.shape[0], C = x.shape[1];
  Tensor out = p.scratch(p.cd, {N, C});
  ops::rmsnorm_forward(out, p.scratch(DType::F32, {N}), x, weight, eps(p));
  return out;
}

Tensor PreNorm::normed(const Pass& p, const Tensor& x) const {
  if (!pending()) return x;
  Tensor out = p.scratch(p.cd, {x.shape[0], x.shape[1]});
  ops::rmsnorm_forward(out, p.scratch(DType::F32, {x.shape[0]}), x, weight, eps(p));
  return out;
}

void norm_backward(const Pass&, const Tensor& weight, Tensor dweight, const NormSaved& s, const Tensor& x,
                   const Tensor& dout, Tensor dx) {
  ops::rmsnorm_backward(dx, dweight, dout, x, weight, s.rstd);
}

}  // namespace r1::model
