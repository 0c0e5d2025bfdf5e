// Dispatch of the ops of the layers: embedding, RMSNorm, linear (and MLA's batched matmul), RoPE, SwiGLU,
// elementwise (see ops_check.h).
#include <vector>

#include "kernels/ops.h"
#include "kernels/ops_check.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_context.h"
#endif

namespace r1::ops {

using namespace check;

// ---------------------------------------------------------------------------------------------
// embedding

void embedding_forward(Tensor out, const Tensor& ids, const Tensor& table) {
  const Op id = Op::embedding_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "table", table);
  expect(op, "ids", ids, I32, {{"T", kAny}});
  expect(op, "table", table, dt, {{"V", kAny}, {"C", kAny}});
  const int64_t T = ids.shape[0], V = table.shape[0], C = table.shape[1];
  expect(op, "out", out, dt, {{"T", T}, {"C", C}}, "table", &table);
  if (on_cuda(op, {{"out", out}, {"ids", ids}, {"table", table}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::embedding_forward(bp(out), ip(ids), bp(table), T, C),
                        cuda::embedding_forward(fp(out), ip(ids), fp(table), T, C));
  }
  check_range(op, "ids", ids, 0, V, "vocabulary");
  count_path(id, Path::native);
  cpu::embedding_forward(fp(out), ip(ids), fp(table), T, C);
}

void embedding_backward(Tensor dtable, const Tensor& dout, const Tensor& ids) {
  const Op id = Op::embedding_backward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "dout", dout);
  expect(op, "ids", ids, I32, {{"T", kAny}});
  expect(op, "dtable", dtable, F32, {{"V", kAny}, {"C", kAny}});
  const int64_t T = ids.shape[0], V = dtable.shape[0], C = dtable.shape[1];
  expect(op, "dout", dout, dt, {{"T", T}, {"C", C}}, "dtable", &dtable);
  if (on_cuda(op, {{"dtable", dtable}, {"dout", dout}, {"ids", ids}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::embedding_backward(fp(dtable), bp(dout), ip(ids), T, C),
                        cuda::embedding_backward(fp(dtable), fp(dout), ip(ids), T, C));
  }
  check_range(op, "ids", ids, 0, V, "vocabulary");
  count_path(id, Path::native);
  cpu::embedding_backward(fp(dtable), fp(dout), ip(ids), T, C);
}

// ---------------------------------------------------------------------------------------------
// rmsnorm

void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& inp, const Tensor& weight, float eps) {
  const Op id = Op::rmsnorm_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "inp", inp);
  expect(op, "inp", inp, dt, {{"N", kAny}, {"C", kAny}});
  const int64_t N = inp.shape[0], C = inp.shape[1];
  expect(op, "weight", weight, dt, {{"C", C}}, "inp", &inp);
  expect(op, "out", out, dt, {{"N", N}, {"C", C}}, "inp", &inp);
  expect(op, "rstd", rstd, F32, {{"N", N}}, "inp", &inp);
  if (on_cuda(op, {{"out", out}, {"rstd", rstd}, {"inp", inp}, {"weight", weight}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::rmsnorm_forward(bp(out), fp(rstd), bp(inp), bp(weight), N, C, eps),
                        cuda::rmsnorm_forward(fp(out), fp(rstd), fp(inp), fp(weight), N, C, eps));
  }
  count_path(id, Path::native);
  cpu::rmsnorm_forward(fp(out), fp(rstd), fp(inp), fp(weight), N, C, eps);
}

void rmsnorm_backward(Tensor dinp, Tensor dweight, const Tensor& dout, const Tensor& inp, const Tensor& weight,
                      const Tensor& rstd) {
  const Op id = Op::rmsnorm_backward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "inp", inp);
  expect(op, "inp", inp, dt, {{"N", kAny}, {"C", kAny}});
  const int64_t N = inp.shape[0], C = inp.shape[1];
  expect(op, "weight", weight, dt, {{"C", C}}, "inp", &inp);
  expect(op, "rstd", rstd, F32, {{"N", N}}, "inp", &inp);
  expect(op, "dout", dout, dt, {{"N", N}, {"C", C}}, "inp", &inp);
  expect_opt(op, "dinp", dinp, dt, {{"N", N}, {"C", C}}, "inp", &inp);
  expect_opt(op, "dweight", dweight, F32, {{"C", C}}, "inp", &inp);
  if (on_cuda(op, {{"dinp", dinp}, {"dweight", dweight}, {"dout", dout}, {"inp", inp}, {"weight", weight},
                   {"rstd", rstd}})) {
    R1_CUDA_DISPATCH_DT(
        op, dt, cuda::rmsnorm_backward(bp(dinp), fp(dweight), bp(dout), bp(inp), bp(weight), fp(rstd), N, C),
        cuda::rmsnorm_backward(fp(dinp), fp(dweight), fp(dout), fp(inp), fp(weight), fp(rstd), N, C));
  }
  count_path(id, Path::native);
  cpu::rmsnorm_backward(fp(dinp), fp(dweight), fp(dout), fp(inp), fp(weight), fp(rstd), N, C);
}

// ---------------------------------------------------------------------------------------------
// linear

namespace {

struct LinearDims {
  DType dt;
  int64_t N, IC, OC;
  bool wide_out;  // bf16 operands, f32 rows
  bool on_device;  // CUDA tensors
};

// linear_forward's checks of one product (names as `weight`, `bias`, `out` say: with an index in
// linear_forward_each).
LinearDims check_linear(const char* op, const Tensor& out, const Tensor& inp, const Tensor& weight,
                        const Tensor& bias, const Tensor& residual, const char* weight_name = "weight",
                        const char* bias_name = "bias", const char* out_name = "out") {
  const DType dt = compute_dtype(op, "inp", inp);
  expect(op, "inp", inp, dt, {{"N", kAny}, {"IC", kAny}});
  const int64_t N = inp.shape[0], IC = inp.shape[1];
  expect(op, weight_name, weight, dt, {{"OC", kAny}, {"IC", IC}}, "inp", &inp);
  const int64_t OC = weight.shape[0];
  expect_opt(op, bias_name, bias, dt, {{"OC", OC}}, weight_name, &weight);
  // bf16 operands may produce f32 rows (logits for sampling: no rounding before the softmax).
  const bool wide_out = dt == BF16 && out.dtype == F32 && bias.empty() && residual.empty();
  expect(op, out_name, out, wide_out ? F32 : dt, {{"N", N}, {"OC", OC}}, weight_name, &weight);
  expect_opt(op, "residual", residual, dt, {{"N", N}, {"OC", OC}}, out_name, &out);
  const bool on_device = on_cuda(op, {{out_name, out}, {"inp", inp}, {weight_name, weight}, {bias_name, bias},
                                      {"residual", residual}});
  return {dt, N, IC, OC, wide_out, on_device};
}

}  // namespace

void linear_forward(Tensor out, const Tensor& inp, const Tensor& weight, const Tensor& bias,
                    const Tensor& residual) {
  const Op id = Op::linear_forward;
  const char* op = op_name(id);
  const auto [dt, N, IC, OC, wide_out, on_device] = check_linear(op, out, inp, weight, bias, residual);
  if (on_device) {
    if (wide_out) R1_CUDA_DISPATCH(op, dt, cuda::linear_forward(fp(out), bp(inp), bp(weight), N, IC, OC));
    R1_CUDA_DISPATCH_DT(
        op, dt, cuda::linear_forward(bp(out), bp(inp), bp(weight), bp(bias), bp(residual), N, IC, OC),
        cuda::linear_forward(fp(out), fp(inp), fp(weight), fp(bias), fp(residual), N, IC, OC));
  }
  count_path(id, Path::native);
  cpu::linear_forward(fp(out), fp(inp), fp(weight), fp(bias), fp(residual), N, IC, OC);
}

void linear_forward_each(const std::vector<Tensor>& outs, const Tensor& inp, const std::vector<Tensor>& weights,
                         const std::vector<Tensor>& biases) {
  const Op id = Op::linear_forward_each;
  const char* op = op_name(id);
  const size_t n = weights.size();
  if (n < 1 || n > size_t(kMaxLinearsEach) || outs.size() != n || (!biases.empty() && biases.size() != n))
    fail("{}: {} weights, {} outputs and {} biases (1 to {} weights, one output each, and no biases or one "
         "(possibly empty) each)",
         op, n, outs.size(), biases.size(), kMaxLinearsEach);
  static const char* kW[] = {"weights[0]", "weights[1]", "weights[2]"};
  static const char* kB[] = {"biases[0]", "biases[1]", "biases[2]"};
  static const char* kO[] = {"outs[0]", "outs[1]", "outs[2]"};
  static_assert(kMaxLinearsEach == 3, "the names above");
  const Tensor none;
  auto bias = [&](size_t i) -> const Tensor& { return biases.empty() ? none : biases[i]; };
  LinearDims d[kMaxLinearsEach];
  for (size_t i = 0; i < n; ++i) {
    d[i] = check_linear(op, outs[i], inp, weights[i], bias(i), none, kW[i], kB[i], kO[i]);
    if (d[i].wide_out) fail("{}: {} is f32 for bf16 operands; the products here keep the operands' dtype", op, kO[i]);
    if (d[i].on_device != d[0].on_device) fail("{}: {} and {} are on different devices", op, kW[0], kW[i]);
  }
#ifdef R1_HAVE_CUDA
  if (d[0].on_device && d[0].dt == BF16) {
    require_device(op);
    bf16* o[kMaxLinearsEach];
    const bf16 *w[kMaxLinearsEach], *b[kMaxLinearsEach];
    int64_t oc[kMaxLinearsEach];
    for (size_t i = 0; i < n; ++i) o[i] = bp(outs[i]), w[i] = bp(weights[i]), b[i] = bp(bias(i)), oc[i] = d[i].OC;
    if (cuda::linear_forward_each(op, o, bp(inp), w, b, oc, int(n), d[0].N, d[0].IC)) {
      count_path(id, Path::native);
      return;
    }
  }
#endif
  // One product at a time (the CPU; on CUDA, rows the one launch does not take).
  count_path(id, Path::native);
  for (size_t i = 0; i < n; ++i) linear_forward(outs[i], inp, weights[i], bias(i));
}

bool rmsnorm_linear_forward(Tensor out, const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                            const Tensor& bias, const Tensor& residual, bool swiglu) {
  const Op id = Op::rmsnorm_linear_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "x", x);
  expect(op, "x", x, dt, {{"N", kAny}, {"IC", kAny}});
  const int64_t N = x.shape[0], IC = x.shape[1];
  expect(op, "norm_weight", norm_weight, dt, {{"IC", IC}}, "x", &x);
  expect(op, "weight", weight, dt, {{swiglu ? "2 OC" : "OC", kAny}, {"IC", IC}}, "x", &x);
  R1_CHECK(!swiglu || weight.shape[0] % 2 == 0, "{}: with swiglu, weight has {} rows, not [gate; up] of equal heights",
           op, weight.shape[0]);
  const int64_t OC = swiglu ? weight.shape[0] / 2 : weight.shape[0];
  R1_CHECK(!swiglu || (bias.empty() && residual.empty()), "{}: with swiglu there is no bias or residual", op);
  expect_opt(op, "bias", bias, dt, {{"OC", OC}}, "weight", &weight);
  expect(op, "out", out, dt, {{"N", N}, {"OC", OC}}, "weight", &weight);
  expect_opt(op, "residual", residual, dt, {{"N", N}, {"OC", OC}}, "out", &out);
  if (on_cuda(op, {{"out", out}, {"x", x}, {"norm_weight", norm_weight}, {"weight", weight}, {"bias", bias},
                   {"residual", residual}})) {
    R1_CUDA_OR_DECLINE(op, dt, cuda::rmsnorm_linear_forward(op, bp(out), bp(x), bp(norm_weight), eps, bp(weight),
                                                            bp(bias), bp(residual), N, IC, OC, swiglu));
  }
  // The CPU: the ops' references in turn, on host temporaries (bitwise those ops).
  count_path(id, Path::native);
  std::vector<float> normed(static_cast<size_t>(N * IC)), rstd(static_cast<size_t>(N));
  cpu::rmsnorm_forward(normed.data(), rstd.data(), fp(x), fp(norm_weight), N, IC, eps);
  if (!swiglu) {
    cpu::linear_forward(fp(out), normed.data(), fp(weight), fp(bias), fp(residual), N, IC, OC);
    return true;
  }
  std::vector<float> gate_up(static_cast<size_t>(N * 2 * OC));
  cpu::linear_forward(gate_up.data(), normed.data(), fp(weight), nullptr, nullptr, N, IC, 2 * OC);
  cpu::swiglu_forward(fp(out), gate_up.data(), gate_up.data() + OC, N, OC, 2 * OC);
  return true;
}

bool linear_rmsnorm_forward(Tensor out, Tensor normed, const Tensor& inp, const Tensor& weight, const Tensor& bias,
                            const Tensor& residual, const Tensor& norm_weight, float eps, const Tensor& workspace) {
  const Op id = Op::linear_rmsnorm_forward;
  const char* op = op_name(id);
  const LinearDims d = check_linear(op, out, inp, weight, bias, residual);
  const DType dt = d.dt;
  const int64_t N = d.N, IC = d.IC, OC = d.OC;
  if (d.wide_out) fail("{}: out is f32 for bf16 operands; the product here keeps the operands' dtype", op);
  expect(op, "normed", normed, dt, {{"N", N}, {"OC", OC}}, "out", &out);
  expect(op, "norm_weight", norm_weight, dt, {{"OC", OC}}, "weight", &weight);
  if (!workspace.empty()) expect_f32(op, "workspace", workspace);
  if (on_cuda(op, {{"out", out}, {"normed", normed}, {"inp", inp}, {"weight", weight}, {"bias", bias},
                   {"residual", residual}, {"norm_weight", norm_weight}, {"workspace", workspace}})) {
    const int64_t ws = workspace.empty() ? 0 : workspace.numel();  // an empty Tensor's numel() is 1
    R1_CUDA_OR_DECLINE(op, dt, cuda::linear_norm_forward(op, bp(out), bp(normed), bp(inp), bp(weight), bp(bias),
                                                         bp(residual), bp(norm_weight), eps, fp(workspace), ws, N,
                                                         IC, OC));
  }
  // The CPU: the ops' references in turn (bitwise those ops).
  count_path(id, Path::native);
  std::vector<float> rstd(static_cast<size_t>(N));
  cpu::linear_forward(fp(out), fp(inp), fp(weight), fp(bias), fp(residual), N, IC, OC);
  cpu::rmsnorm_forward(fp(normed), rstd.data(), fp(out), fp(norm_weight), N, OC, eps);
  return true;
}

int64_t linear_rmsnorm_workspace(Device device, int64_t N, int64_t IC, int64_t OC) {
#ifdef R1_HAVE_CUDA
  if (device == Device::CUDA) return cuda::linear_norm_workspace(N, IC, OC);
#endif
  (void)device, (void)N, (void)IC, (void)OC;
  return 0;
}

void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& weight) {
  const Op id = Op::linear_backward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "inp", inp);
  expect(op, "inp", inp, dt, {{"N", kAny}, {"IC", kAny}});
  const int64_t N = inp.shape[0], IC = inp.shape[1];
  expect(op, "weight", weight, dt, {{"OC", kAny}, {"IC", IC}}, "inp", &inp);
  const int64_t OC = weight.shape[0];
  expect(op, "dout", dout, dt, {{"N", N}, {"OC", OC}}, "weight", &weight);
  expect_opt(op, "dinp", dinp, dt, {{"N", N}, {"IC", IC}}, "inp", &inp);
  expect_opt(op, "dweight", dweight, F32, {{"OC", OC}, {"IC", IC}}, "weight", &weight);
  expect_opt(op, "dbias", dbias, F32, {{"OC", OC}}, "weight", &weight);
  if (on_cuda(op, {{"dinp", dinp}, {"dweight", dweight}, {"dbias", dbias}, {"dout", dout}, {"inp", inp},
                   {"weight", weight}})) {
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::linear_backward(bp(dinp), fp(dweight), fp(dbias), bp(dout), bp(inp), bp(weight), N,
                                              IC, OC),
                        cuda::linear_backward(fp(dinp), fp(dweight), fp(dbias), fp(dout), fp(inp), fp(weight), N,
                                              IC, OC));
  }
  count_path(id, Path::native);
  cpu::linear_backward(fp(dinp), fp(dweight), fp(dbias), fp(dout), fp(inp), fp(weight), N, IC, OC);
}

// ---------------------------------------------------------------------------------------------
// batched matmul

namespace {

// The bytes [lo, hi) a Batched operand's matrices span (lo == hi: none).
struct Span {
  uintptr_t lo = 0, hi = 0;
  bool overlaps(const Span& o) const { return lo < hi && o.lo < o.hi && lo < o.hi && o.lo < hi; }
};

// x holds `batch` matrices (rows, cols) of dtype dt inside its base; returns the bytes they span.
Span expect_batched(const char* op, const char* name, const Batched& x, DType dt, int64_t batch, int64_t rows,
                    int64_t cols) {
  expect_dtype(op, name, x.base, dt);
  if (x.batch != batch || x.rows != rows || x.cols != cols)
    fail("{}: {} is {} matrices ({}, {}), expected {} of ({}, {})", op, name, x.batch, x.rows, x.cols, batch,
         rows, cols);
  if (x.ld < x.cols || x.stride < 0)
    fail("{}: {} has ld = {} and stride = {}: a row holds its {} columns (ld >= cols) and stride >= 0", op,
         name, x.ld, x.stride, x.cols);
  if (x.batch == 0 || x.rows == 0 || x.cols == 0) return {};
  const int64_t last = (x.batch - 1) * x.stride + (x.rows - 1) * x.ld + x.cols - 1;
  if (last >= x.base.numel())
    fail("{}: {}'s {} matrices ({}, {}) at ld {} and stride {} reach element {}, past its base {}", op, name,
         x.batch, x.rows, x.cols, x.ld, x.stride, last, x.base.describe());
  const auto lo = reinterpret_cast<uintptr_t>(x.base.data);
  return {lo, lo + uintptr_t(last + 1) * dtype_size(dt)};
}

}  // namespace

void batched_matmul(const Batched& out, const Batched& inp, const Batched& w, bool trans_w) {
  const Op id = Op::batched_matmul;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "inp", inp.base);
  const int64_t B = inp.batch, M = inp.rows, K = inp.cols, N = trans_w ? w.rows : w.cols;
  if (B < 0 || M < 0 || K < 0 || N < 0)
    fail("{}: negative sizes: B = {}, M = {}, K = {}, N = {}", op, B, M, K, N);
  const Span si = expect_batched(op, "inp", inp, dt, B, M, K);
  const Span sw = trans_w ? expect_batched(op, "w", w, dt, B, N, K) : expect_batched(op, "w", w, dt, B, K, N);
  const Span so = expect_batched(op, "out", out, dt, B, M, N);
  // out's matrices one after another, or side by side within its rows (heads): never one element twice.
  const bool after = out.stride >= (M - 1) * out.ld + N,
             beside = out.stride >= N && (B - 1) * out.stride + N <= out.ld;
  if (B > 1 && M > 0 && N > 0 && !after && !beside)
    fail("{}: out's {} matrices ({}, {}) at ld {} and stride {} overlap one another", op, B, M, N, out.ld,
         out.stride);
  if (so.overlaps(si) || so.overlaps(sw))
    fail("{}: out shares memory with {}", op, so.overlaps(si) ? "inp" : "w");
  if (on_cuda(op, {{"out", out.base}, {"inp", inp.base}, {"w", w.base}})) {
    if (batch_invariant())  // kernels/invariance.h
      fail("{}: MLA's absorbed decode has no batch-invariant form (rollout.exact_logprobs)", op);
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::batched_matmul(bp(out.base), out.ld, out.stride, bp(inp.base), inp.ld,
                                             inp.stride, bp(w.base), w.ld, w.stride, trans_w, B, M, N, K),
                        cuda::batched_matmul(fp(out.base), out.ld, out.stride, fp(inp.base), inp.ld,
                                             inp.stride, fp(w.base), w.ld, w.stride, trans_w, B, M, N, K));
  }
  count_path(id, Path::native);
  cpu::batched_matmul(fp(out.base), out.ld, out.stride, fp(inp.base), inp.ld, inp.stride, fp(w.base), w.ld,
                      w.stride, trans_w, B, M, N, K);
}

// ---------------------------------------------------------------------------------------------
// rope

namespace {
DType rope_check(const char* op, const char* xname, const Tensor& x, const Tensor& positions,
                 const Tensor& inv_freq) {
  const DType dt = compute_dtype(op, xname, x);
  expect(op, xname, x, dt, {{"T", kAny}, {"H", kAny}, {"HD", kAny}});
  const int64_t T = x.shape[0], HD = x.shape[2];
  if (HD % 2 != 0) fail("{}: {} {} has odd head dim HD = {}", op, xname, x.describe(), HD);
  expect(op, "positions", positions, I32, {{"T", T}}, xname, &x);
  expect(op, "inv_freq", inv_freq, F32, {{"HD/2", HD / 2}}, xname, &x);
  return dt;
}
}  // namespace

void rope_forward(Tensor x, const Tensor& positions, const Tensor& inv_freq) {
  const Op id = Op::rope_forward;
  const char* op = op_name(id);
  const DType dt = rope_check(op, "x", x, positions, inv_freq);
  const int64_t T = x.shape[0], H = x.shape[1], HD = x.shape[2];
  if (on_cuda(op, {{"x", x}, {"positions", positions}, {"inv_freq", inv_freq}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::rope_forward(bp(x), ip(positions), fp(inv_freq), T, H, HD),
                        cuda::rope_forward(fp(x), ip(positions), fp(inv_freq), T, H, HD));
  }
  count_path(id, Path::native);
  cpu::rope_forward(fp(x), ip(positions), fp(inv_freq), T, H, HD);
}

void rope_backward(Tensor dx, const Tensor& positions, const Tensor& inv_freq) {
  const Op id = Op::rope_backward;
  const char* op = op_name(id);
  const DType dt = rope_check(op, "dx", dx, positions, inv_freq);
  const int64_t T = dx.shape[0], H = dx.shape[1], HD = dx.shape[2];
  if (on_cuda(op, {{"dx", dx}, {"positions", positions}, {"inv_freq", inv_freq}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::rope_backward(bp(dx), ip(positions), fp(inv_freq), T, H, HD),
                        cuda::rope_backward(fp(dx), ip(positions), fp(inv_freq), T, H, HD));
  }
  count_path(id, Path::native);
  cpu::rope_backward(fp(dx), ip(positions), fp(inv_freq), T, H, HD);
}

// ---------------------------------------------------------------------------------------------
// swiglu

namespace {

// Rows of a (…, I) tensor: its elements over its last dimension (a flat tensor is one row).
int64_t last_dim(const Tensor& t) { return t.ndim == 0 ? 1 : t.size(-1); }
int64_t rows_of(const Tensor& t) { return last_dim(t) == 0 ? 0 : t.numel() / last_dim(t); }

}  // namespace

void swiglu_forward(Tensor out, const Tensor& gate, const Tensor& up) {
  const Op id = Op::swiglu_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "gate", gate);
  expect_dtype(op, "gate", gate, dt);
  expect_like(op, "up", up, dt, "gate", gate);
  expect_like(op, "out", out, dt, "gate", gate);
  const int64_t rows = rows_of(gate), F = last_dim(gate);
  if (on_cuda(op, {{"out", out}, {"gate", gate}, {"up", up}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::swiglu_forward(bp(out), bp(gate), bp(up), rows, F, F),
                        cuda::swiglu_forward(fp(out), fp(gate), fp(up), rows, F, F));
  }
  count_path(id, Path::native);
  cpu::swiglu_forward(fp(out), fp(gate), fp(up), rows, F, F);
}

void swiglu_backward(Tensor dgate, Tensor dup, const Tensor& dout, const Tensor& gate, const Tensor& up) {
  const Op id = Op::swiglu_backward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "gate", gate);
  expect_dtype(op, "gate", gate, dt);
  expect_like(op, "up", up, dt, "gate", gate);
  expect_like(op, "dout", dout, dt, "gate", gate);
  expect_like(op, "dgate", dgate, dt, "gate", gate);
  expect_like(op, "dup", dup, dt, "up", up);
  const int64_t rows = rows_of(gate), F = last_dim(gate);
  if (on_cuda(op, {{"dgate", dgate}, {"dup", dup}, {"dout", dout}, {"gate", gate}, {"up", up}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::swiglu_backward(bp(dgate), bp(dup), bp(dout), bp(gate), bp(up), rows, F, F),
                        cuda::swiglu_backward(fp(dgate), fp(dup), fp(dout), fp(gate), fp(up), rows, F, F));
  }
  count_path(id, Path::native);
  cpu::swiglu_backward(fp(dgate), fp(dup), fp(dout), fp(gate), fp(up), rows, F, F);
}

namespace {

// gate_up (N, 2I) = [gate | up] rows: its dtype, N and I.
struct Packed {
  DType dt;
  int64_t N, I;
};
Packed packed_check(const char* op, const Tensor& gate_up) {
  const DType dt = compute_dtype(op, "gate_up", gate_up);
  expect(op, "gate_up", gate_up, dt, {{"N", kAny}, {"2I", kAny}});
  R1_CHECK(gate_up.shape[1] % 2 == 0, "{}: gate_up has {} columns, not [gate | up] of equal widths", op,
           gate_up.shape[1]);
  return {dt, gate_up.shape[0], gate_up.shape[1] / 2};
}

}  // namespace

void swiglu_packed_forward(Tensor out, const Tensor& gate_up) {
  const Op id = Op::swiglu_packed_forward;
  const char* op = op_name(id);
  const auto [dt, N, I] = packed_check(op, gate_up);
  expect(op, "out", out, dt, {{"N", N}, {"I", I}}, "gate_up", &gate_up);
  if (on_cuda(op, {{"out", out}, {"gate_up", gate_up}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::swiglu_forward(bp(out), bp(gate_up), bp(gate_up) + I, N, I, 2 * I),
                        cuda::swiglu_forward(fp(out), fp(gate_up), fp(gate_up) + I, N, I, 2 * I));
  }
  count_path(id, Path::native);
  cpu::swiglu_forward(fp(out), fp(gate_up), fp(gate_up) + I, N, I, 2 * I);
}

void swiglu_packed_backward(Tensor dgate_up, const Tensor& dout, const Tensor& gate_up) {
  const Op id = Op::swiglu_packed_backward;
  const char* op = op_name(id);
  const auto [dt, N, I] = packed_check(op, gate_up);
  expect_like(op, "dgate_up", dgate_up, dt, "gate_up", gate_up);
  expect(op, "dout", dout, dt, {{"N", N}, {"I", I}}, "gate_up", &gate_up);
  if (on_cuda(op, {{"dgate_up", dgate_up}, {"dout", dout}, {"gate_up", gate_up}})) {
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::swiglu_backward(bp(dgate_up), bp(dgate_up) + I, bp(dout), bp(gate_up), bp(gate_up) + I,
                                              N, I, 2 * I),
                        cuda::swiglu_backward(fp(dgate_up), fp(dgate_up) + I, fp(dout), fp(gate_up), fp(gate_up) + I,
                                              N, I, 2 * I));
  }
  count_path(id, Path::native);
  cpu::swiglu_backward(fp(dgate_up), fp(dgate_up) + I, fp(dout), fp(gate_up), fp(gate_up) + I, N, I, 2 * I);
}

// ---------------------------------------------------------------------------------------------
// elementwise

void add(Tensor out, const Tensor& a, const Tensor& b) {
  const Op id = Op::add;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "a", a);
  expect_dtype(op, "a", a, dt);
  expect_numel(op, "b", b, a.numel(), dt, "a", a);
  expect_numel(op, "out", out, a.numel(), dt, "a", a);
  if (on_cuda(op, {{"out", out}, {"a", a}, {"b", b}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::add(bp(out), bp(a), bp(b), a.numel()),
                        cuda::add(fp(out), fp(a), fp(b), a.numel()));
  }
  count_path(id, Path::native);
  cpu::add(fp(out), fp(a), fp(b), a.numel());
}

void dropout_forward(Tensor out, const Tensor& x, float p, uint64_t seed, uint64_t stream) {
  const Op id = Op::dropout_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "x", x);
  expect_dtype(op, "x", x, dt);
  expect_numel(op, "out", out, x.numel(), dt, "x", x);
  R1_CHECK(p >= 0.0f && p < 1.0f, "{}: p = {} is outside [0, 1)", op, p);
  if (on_cuda(op, {{"out", out}, {"x", x}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::dropout_forward(bp(out), bp(x), p, seed, stream, x.numel()),
                        cuda::dropout_forward(fp(out), fp(x), p, seed, stream, x.numel()));
  }
  count_path(id, Path::native);
  cpu::dropout_forward(fp(out), fp(x), p, seed, stream, x.numel());
}

void dropout_backward(Tensor dx, const Tensor& dout, float p, uint64_t seed, uint64_t stream) {
  const Op id = Op::dropout_backward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "dout", dout);
  expect_dtype(op, "dout", dout, dt);
  expect_numel(op, "dx", dx, dout.numel(), dt, "dout", dout);
  R1_CHECK(p >= 0.0f && p < 1.0f, "{}: p = {} is outside [0, 1)", op, p);
  if (on_cuda(op, {{"dx", dx}, {"dout", dout}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::dropout_backward(bp(dx), bp(dout), p, seed, stream, dout.numel()),
                        cuda::dropout_backward(fp(dx), fp(dout), p, seed, stream, dout.numel()));
  }
  count_path(id, Path::native);
  cpu::dropout_backward(fp(dx), fp(dout), p, seed, stream, dout.numel());
}

void add_inplace(Tensor dst, const Tensor& src) {
  const Op id = Op::add_inplace;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "dst", dst);
  expect_dtype(op, "dst", dst, dt);
  expect_numel(op, "src", src, dst.numel(), dt, "dst", dst);
  if (on_cuda(op, {{"dst", dst}, {"src", src}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::add_inplace(bp(dst), bp(src), dst.numel()),
                        cuda::add_inplace(fp(dst), fp(src), dst.numel()));
  }
  count_path(id, Path::native);
  cpu::add_inplace(fp(dst), fp(src), dst.numel());
}

void scale_inplace(Tensor x, float s) {
  const Op id = Op::scale_inplace;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "x", x);
  expect_dtype(op, "x", x, dt);
  if (on_cuda(op, {{"x", x}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::scale_inplace(bp(x), s, x.numel()), cuda::scale_inplace(fp(x), s, x.numel()));
  }
  count_path(id, Path::native);
  cpu::scale_inplace(fp(x), s, x.numel());
}

void zero(Tensor x) {
  const Op id = Op::zero;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "x", x);
  expect_dtype(op, "x", x, dt);
  if (on_cuda(op, {{"x", x}})) R1_CUDA_DISPATCH_DT(op, dt, cuda::zero(bp(x), x.numel()), cuda::zero(fp(x), x.numel()));
  count_path(id, Path::native);
  cpu::zero(fp(x), x.numel());
}

void release_workspace() {
#ifdef R1_HAVE_CUDA
  if (cuda::Context* ctx = cuda::context_if_created()) ctx->release_scratch();
#endif
}

void convert(Tensor dst, const Tensor& src) {
  const Op id = Op::convert;
  const char* op = op_name(id);
  if (dst.dtype != F32 && dst.dtype != BF16) fail("{}: dst is {}, expected f32 or bf16", op, dst.describe());
  const int64_t n = dst.numel();
  expect_numel(op, "src", src, n, F32, "dst", dst);
  if (on_cuda(op, {{"dst", dst}, {"src", src}})) {
    R1_CUDA_DISPATCH_DT(op, dst.dtype, cuda::convert(bp(dst), fp(src), n), cuda::convert(fp(dst), fp(src), n));
  }
  count_path(id, Path::native);
  if (dst.dtype == F32) cpu::copy(fp(dst), fp(src), n);
  else cpu::convert_to_bf16(static_cast<uint16_t*>(dst.data), fp(src), n);
}

double sum_squares(const Tensor& x) {
  const Op id = Op::sum_squares;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "x", x);
  expect_dtype(op, "x", x, dt);
  if (on_cuda(op, {{"x", x}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::sum_squares(bp(x), x.numel()), cuda::sum_squares(fp(x), x.numel()));
  }
  count_path(id, Path::native);
  return cpu::sum_squares(fp(x), x.numel());
}

}  // namespace r1::ops
