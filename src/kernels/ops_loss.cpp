// Dispatch of token log-probabilities, cross-entropy and the AdamW update (see ops_check.h).
#include "kernels/ops.h"
#include "kernels/ops_check.h"

namespace r1::ops {

using namespace check;

// ---------------------------------------------------------------------------------------------
// token log-probabilities

namespace {
DType logprobs_check(const char* op, const Tensor& hidden, const Tensor& weight, const Tensor& targets,
                     float temperature, int64_t vocab_chunk) {
  const DType dt = compute_dtype(op, "hidden", hidden);
  expect(op, "hidden", hidden, dt, {{"T", kAny}, {"C", kAny}});
  const int64_t T = hidden.shape[0], C = hidden.shape[1];
  expect(op, "weight", weight, dt, {{"V", kAny}, {"C", C}}, "hidden", &hidden);
  if (C == 0 || weight.shape[0] == 0) {
    fail("{}: hidden {} and weight {} must have C > 0 and V > 0", op, hidden.describe(), weight.describe());
  }
  expect(op, "targets", targets, I32, {{"T", T}}, "hidden", &hidden);
  if (!(temperature > 0.0f) || !std::isfinite(temperature)) fail("{}: temperature = {} must be > 0", op, temperature);
  if (vocab_chunk <= 0) fail("{}: vocab_chunk = {} must be > 0", op, vocab_chunk);
  return dt;
}

void check_targets(const char* op, const Tensor& targets, int64_t V) {
  const int32_t* p = ip(targets);
  for (int64_t t = 0; t < targets.numel(); ++t) {
    if (p[t] >= V) fail("{}: targets[{}] = {} is out of range (V = {}; < 0 means none)", op, t, p[t], V);
  }
}
}  // namespace

void token_logprobs_forward(Tensor logp, Tensor lse, Tensor entropy, const Tensor& hidden, const Tensor& weight,
                            const Tensor& targets, float temperature, int64_t vocab_chunk) {
  const Op id = Op::token_logprobs_forward;
  const char* op = op_name(id);
  const DType dt = logprobs_check(op, hidden, weight, targets, temperature, vocab_chunk);
  const int64_t T = hidden.shape[0], C = hidden.shape[1], V = weight.shape[0];
  expect(op, "logp", logp, F32, {{"T", T}}, "hidden", &hidden);
  expect(op, "lse", lse, F32, {{"T", T}}, "hidden", &hidden);
  expect_opt(op, "entropy", entropy, F32, {{"T", T}}, "hidden", &hidden);
  if (on_cuda(op, {{"logp", logp}, {"lse", lse}, {"entropy", entropy}, {"hidden", hidden}, {"weight", weight},
                   {"targets", targets}})) {
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::token_logprobs_forward(fp(logp), fp(lse), fp(entropy), bp(hidden), bp(weight),
                                                     ip(targets), T, C, V, temperature, vocab_chunk),
                        cuda::token_logprobs_forward(fp(logp), fp(lse), fp(entropy), fp(hidden), fp(weight),
                                                     ip(targets), T, C, V, temperature, vocab_chunk));
  }
  check_targets(op, targets, V);
  count_path(id, Path::native);
  cpu::token_logprobs_forward(fp(logp), fp(lse), fp(entropy), fp(hidden), fp(weight), ip(targets), T, C, V,
                              temperature, vocab_chunk);
}

void lm_head_logits(Tensor out, const Tensor& hidden, const Tensor& weight, float temperature, int64_t vocab_chunk) {
  const Op id = Op::lm_head_logits;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "hidden", hidden);
  expect(op, "hidden", hidden, dt, {{"R", kAny}, {"C", kAny}});
  const int64_t R = hidden.shape[0], C = hidden.shape[1];
  expect(op, "weight", weight, dt, {{"V", kAny}, {"C", C}}, "hidden", &hidden);
  const int64_t V = weight.shape[0];
  if (C == 0 || V == 0) fail("{}: hidden {} and weight {} must have C > 0 and V > 0", op, hidden.describe(), weight.describe());
  expect(op, "out", out, F32, {{"R", R}, {"V", V}}, "weight", &weight);
  if (!(temperature > 0.0f) || !std::isfinite(temperature)) fail("{}: temperature = {} must be > 0", op, temperature);
  if (vocab_chunk <= 0) fail("{}: vocab_chunk = {} must be > 0", op, vocab_chunk);
  if (on_cuda(op, {{"out", out}, {"hidden", hidden}, {"weight", weight}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::lm_head_logits(fp(out), bp(hidden), bp(weight), R, C, V, temperature, vocab_chunk),
                        cuda::lm_head_logits(fp(out), fp(hidden), fp(weight), R, C, V, temperature, vocab_chunk));
  }
  count_path(id, Path::native);
  cpu::lm_head_logits(fp(out), fp(hidden), fp(weight), R, C, V, temperature, vocab_chunk);
}

void logprobs_of_logits(Tensor logp, Tensor lse, const Tensor& logits, const Tensor& targets, int64_t vocab_chunk,
                        const Tensor& workspace) {
  const Op id = Op::logprobs_of_logits;
  const char* op = op_name(id);
  require_supported(id, {}, logits.dtype, logits.device, "logits", logits);
  expect(op, "logits", logits, F32, {{"R", kAny}, {"V", kAny}});
  const int64_t R = logits.shape[0], V = logits.shape[1];
  if (V == 0) fail("{}: logits {} must have V > 0", op, logits.describe());
  expect(op, "targets", targets, I32, {{"R", R}}, "logits", &logits);
  expect(op, "logp", logp, F32, {{"R", R}}, "logits", &logits);
  expect(op, "lse", lse, F32, {{"R", R}}, "logits", &logits);
  if (vocab_chunk <= 0) fail("{}: vocab_chunk = {} must be > 0", op, vocab_chunk);
  if (!workspace.empty()) {
    expect_f32(op, "workspace", workspace);
    if (workspace.numel() < 6 * R) fail("{}: workspace {} holds fewer than 6 R = {} floats", op, workspace.describe(), 6 * R);
  }
  if (on_cuda(op, {{"logp", logp}, {"lse", lse}, {"logits", logits}, {"targets", targets}, {"workspace", workspace}}))
    R1_CUDA_DISPATCH(op, F32,
                     cuda::logprobs_of_logits(fp(logp), fp(lse), fp(logits), ip(targets), R, V, vocab_chunk,
                                              workspace.empty() ? nullptr : fp(workspace)));
  const int32_t* tg = ip(targets);
  for (int64_t r = 0; r < R; ++r) {
    if (tg[r] < 0 || tg[r] >= V) fail("{}: targets[{}] = {} is out of range [0, {})", op, r, tg[r], V);
  }
  count_path(id, Path::native);
  cpu::logprobs_of_logits(fp(logp), fp(lse), fp(logits), tg, R, V, vocab_chunk);
}

void token_logprobs_backward(Tensor dhidden, Tensor dweight, const Tensor& dlogp, const Tensor& hidden,
                             const Tensor& weight, const Tensor& targets, const Tensor& lse, float temperature,
                             int64_t vocab_chunk) {
  const Op id = Op::token_logprobs_backward;
  const char* op = op_name(id);
  const DType dt = logprobs_check(op, hidden, weight, targets, temperature, vocab_chunk);
  const int64_t T = hidden.shape[0], C = hidden.shape[1], V = weight.shape[0];
  expect(op, "dlogp", dlogp, F32, {{"T", T}}, "hidden", &hidden);
  expect(op, "lse", lse, F32, {{"T", T}}, "hidden", &hidden);
  expect_opt(op, "dhidden", dhidden, dt, {{"T", T}, {"C", C}}, "hidden", &hidden);
  expect_opt(op, "dweight", dweight, F32, {{"V", V}, {"C", C}}, "weight", &weight);
  if (on_cuda(op, {{"dhidden", dhidden}, {"dweight", dweight}, {"dlogp", dlogp}, {"hidden", hidden},
                   {"weight", weight}, {"targets", targets}, {"lse", lse}})) {
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::token_logprobs_backward(bp(dhidden), fp(dweight), fp(dlogp), bp(hidden), bp(weight),
                                                      ip(targets), fp(lse), T, C, V, temperature, vocab_chunk),
                        cuda::token_logprobs_backward(fp(dhidden), fp(dweight), fp(dlogp), fp(hidden), fp(weight),
                                                      ip(targets), fp(lse), T, C, V, temperature, vocab_chunk));
  }
  check_targets(op, targets, V);
  count_path(id, Path::native);
  cpu::token_logprobs_backward(fp(dhidden), fp(dweight), fp(dlogp), fp(hidden), fp(weight), ip(targets), fp(lse),
                               T, C, V, temperature, vocab_chunk);
}

float cross_entropy_forward(const Tensor& logp, const Tensor& mask) {
  const Op id = Op::cross_entropy_forward;
  const char* op = op_name(id);
  require_supported(id, {}, logp.dtype, logp.device, "logp", logp);
  expect(op, "logp", logp, F32, {{"T", kAny}});
  expect(op, "mask", mask, F32, {{"T", logp.shape[0]}}, "logp", &logp);
  if (on_cuda(op, {{"logp", logp}, {"mask", mask}}))
    R1_CUDA_DISPATCH(op, F32, cuda::cross_entropy_forward(fp(logp), fp(mask), logp.shape[0]));
  count_path(id, Path::native);
  return cpu::cross_entropy_forward(fp(logp), fp(mask), logp.shape[0]);
}

void cross_entropy_backward(Tensor dlogp, const Tensor& mask) {
  const Op id = Op::cross_entropy_backward;
  const char* op = op_name(id);
  require_supported(id, {}, dlogp.dtype, dlogp.device, "dlogp", dlogp);
  expect(op, "dlogp", dlogp, F32, {{"T", kAny}});
  expect(op, "mask", mask, F32, {{"T", dlogp.shape[0]}}, "dlogp", &dlogp);
  if (on_cuda(op, {{"dlogp", dlogp}, {"mask", mask}}))
    R1_CUDA_DISPATCH(op, F32, cuda::cross_entropy_backward(fp(dlogp), fp(mask), dlogp.shape[0]));
  count_path(id, Path::native);
  cpu::cross_entropy_backward(fp(dlogp), fp(mask), dlogp.shape[0]);
}

// ---------------------------------------------------------------------------------------------
// optimizer

void adamw_update(Tensor param, const Tensor& grad, Tensor m, Tensor v, const AdamWParams& hp,
                  Tensor compute_copy) {
  const Op id = Op::adamw_update;
  const char* op = op_name(id);
  expect_f32(op, "param", param);
  const int64_t n = param.numel();
  expect_numel(op, "grad", grad, n, F32, "param", param);
  expect_numel(op, "m", m, n, F32, "param", param);
  expect_numel(op, "v", v, n, F32, "param", param);
  // The copy's dtype is the compute dtype (bf16 is converted on the CPU too: it is only rounding).
  const DType ct = compute_copy.empty() ? F32 : compute_copy.dtype;
  if (!compute_copy.empty()) {
    if (ct != F32 && ct != BF16) {
      fail("{}: compute_copy is {}, expected f32 or bf16 with {} elements", op, compute_copy.describe(), n);
    }
    expect_numel(op, "compute_copy", compute_copy, n, ct, "param", param);
  }
  if (hp.step < 1) fail("{}: step = {} must be >= 1 (1-based, for bias correction)", op, hp.step);
  if (on_cuda(op, {{"param", param}, {"grad", grad}, {"m", m}, {"v", v}, {"compute_copy", compute_copy}})) {
    R1_CUDA_DISPATCH_DT(op, ct,
                        cuda::adamw_update(fp(param), fp(grad), fp(m), fp(v), n, hp.lr, hp.beta1, hp.beta2, hp.eps,
                                           hp.weight_decay, hp.step, hp.grad_scale, bp(compute_copy)),
                        cuda::adamw_update(fp(param), fp(grad), fp(m), fp(v), n, hp.lr, hp.beta1, hp.beta2, hp.eps,
                                           hp.weight_decay, hp.step, hp.grad_scale, fp(compute_copy)));
  }
  count_path(id, Path::native);
  cpu::adamw_update(fp(param), fp(grad), fp(m), fp(v), n, hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
                    hp.step, hp.grad_scale, ct == F32 ? fp(compute_copy) : nullptr,
                    ct == BF16 ? static_cast<uint16_t*>(compute_copy.data) : nullptr);
}

}  // namespace r1::ops
