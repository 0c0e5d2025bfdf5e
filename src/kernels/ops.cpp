// The dispatch layer: every op validates its tensors here (dtype, rank, shapes, devices; index
// ranges on CPU) and then runs the backend of the device its tensors live on. The compute dtype
// (f32, or bf16 on CUDA) is the dtype of the op's main activation (compute_dtype); the op's other
// activations and weights must share it. When all operands are CUDA tensors, on_cuda() is true and
// R1_CUDA_DISPATCH returns the CUDA kernel's result (builds with R1_HAVE_CUDA; timed by the
// profiler when it is on) or fails with "CUDA tensors are handled by the CUDA backend" (builds
// without). Every run counts its path (kernels/supports.h); ops whose cases depend on the shape
// (attention) ask supports() first, so an unsupported case fails here, naming the op and the shape:
//
//   const Op id = Op::the_op;
//   const char* op = op_name(id);
//   const DType dt = compute_dtype(op, "x", x);
//   if (on_cuda(op, {...})) R1_CUDA_DISPATCH_DT(op, dt, cuda::the_op(bp(x)...), cuda::the_op(fp(x)...));
//   check_range(...);  // index-range checks read the data, so they stay CPU-only
//   count_path(id, Path::native);
//   cpu::the_op(...);
#include "kernels/ops.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "base/error.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/supports.h"
#include "tensor/device_memory.h"
#ifdef R1_HAVE_CUDA
#include "device/cuda_device.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/profiler.h"
#endif

namespace r1::ops {

namespace {

constexpr DType F32 = DType::F32;
constexpr DType BF16 = DType::BF16;
constexpr DType I32 = DType::I32;
constexpr int64_t kAny = -1;

// One expected dimension: a letter for messages and the size (kAny: anything).
struct Dim {
  const char* name;
  int64_t size;
};

// A named operand, for device checks.
struct Arg {
  const char* name;
  const Tensor& t;
};

std::string expected_str(std::initializer_list<Dim> dims, DType dt) {
  std::string s = "(";
  bool first = true;
  for (const Dim& d : dims) {
    s += first ? "" : ", ";
    s += d.name;
    if (d.size != kAny) {
      s += '=';
      s += std::to_string(d.size);
    }
    first = false;
  }
  return s + ") " + dtype_name(dt);
}

// t must be non-empty, of dtype dt, with exactly dims. ref (optional) is the tensor the expected
// sizes came from, named in the message.
void expect(const char* op, const char* name, const Tensor& t, DType dt, std::initializer_list<Dim> dims,
            const char* ref_name = nullptr, const Tensor* ref = nullptr) {
  if (t.empty()) fail("{}: {} is empty, expected {}", op, name, expected_str(dims, dt));
  bool ok = t.dtype == dt && t.ndim == int(dims.size());
  int i = 0;
  for (const Dim& d : dims) {
    if (!ok) break;
    ok = d.size == kAny || t.shape[i] == d.size;
    ++i;
  }
  if (ok) return;
  if (ref) {
    fail("{}: {} {} does not match {} {}: expected {}", op, name, t.describe(), ref_name, ref->describe(),
         expected_str(dims, dt));
  }
  fail("{}: {} is {}, expected {}", op, name, t.describe(), expected_str(dims, dt));
}

// Same as expect, but an empty tensor (an optional input or gradient output) is accepted.
void expect_opt(const char* op, const char* name, const Tensor& t, DType dt, std::initializer_list<Dim> dims,
                const char* ref_name = nullptr, const Tensor* ref = nullptr) {
  if (!t.empty()) expect(op, name, t, dt, dims, ref_name, ref);
}

// t must be non-empty, of dtype dt, with the same shape as ref.
void expect_like(const char* op, const char* name, const Tensor& t, DType dt, const char* ref_name,
                 const Tensor& ref) {
  if (t.empty()) fail("{}: {} is empty, expected the shape of {} {}", op, name, ref_name, ref.describe());
  bool ok = t.dtype == dt && t.ndim == ref.ndim;
  for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[i] == ref.shape[i];
  if (!ok) fail("{}: {} {} does not match {} {}: expected the same shape, {}", op, name, t.describe(), ref_name,
                ref.describe(), dtype_name(dt));
}

// t must be non-empty, of dtype dt, with numel n (any shape).
void expect_numel(const char* op, const char* name, const Tensor& t, int64_t n, DType dt, const char* ref_name,
                  const Tensor& ref) {
  if (t.empty()) fail("{}: {} is empty", op, name);
  if (t.dtype != dt || t.numel() != n) {
    fail("{}: {} {} does not match {} {}: expected {} with {} elements", op, name, t.describe(), ref_name,
         ref.describe(), dtype_name(dt), n);
  }
}

void expect_dtype(const char* op, const char* name, const Tensor& t, DType dt) {
  if (t.empty()) fail("{}: {} is empty", op, name);
  if (t.dtype != dt) fail("{}: {} is {}, expected {}", op, name, t.describe(), dtype_name(dt));
}

void expect_f32(const char* op, const char* name, const Tensor& t) { expect_dtype(op, name, t, F32); }

// The op's compute dtype, from its main activation t: bf16 for a bf16 CUDA tensor, otherwise f32
// (an empty or wrongly typed t is then reported by the expect() that follows, against f32).
DType compute_dtype(const char* op, const char* name, const Tensor& t) {
  if (t.empty() || t.dtype != BF16) return F32;
  if (t.device != Device::CUDA) {
    fail("{}: {} {}: bf16 tensors are supported on CUDA only", op, name, t.describe());
  }
  return BF16;
}

// Checks that all non-empty operands share a device; true when that device is CUDA.
bool on_cuda(const char* op, std::initializer_list<Arg> args) {
  const Arg* first = nullptr;
  for (const Arg& a : args) {
    if (a.t.empty()) continue;
    if (!first) {
      first = &a;
    } else if (a.t.device != first->t.device) {
      fail("{}: {} {} and {} {} are on different devices", op, first->name, first->t.describe(), a.name,
           a.t.describe());
    }
  }
  return first && first->t.device == Device::CUDA;
}

#ifndef R1_HAVE_CUDA
[[noreturn]] void no_cuda(const char* op) { fail("{}: CUDA tensors are handled by the CUDA backend", op); }
#endif

float* fp(const Tensor& t) { return t.empty() ? nullptr : static_cast<float*>(t.data); }
const int32_t* ip(const Tensor& t) { return static_cast<const int32_t*>(t.data); }

#ifdef R1_HAVE_CUDA
bf16* bp(const Tensor& t) { return t.empty() ? nullptr : static_cast<bf16*>(t.data); }

// A build with the CUDA backend can still run where no device is usable (CI): say so, naming the op.
void require_device(const char* op) {
  if (!cuda::cuda_available()) {
    fail("{}: CUDA tensors are handled by the CUDA backend, which cannot run here: {}", op,
         cuda::cuda_device_description());
  }
}
// Runs `call` on CUDA as the op's native path (`id`, the op's Op, is in scope) and returns.
#define R1_CUDA_DISPATCH(op, dt, call)                                \
  do {                                                               \
    require_device(op);                                              \
    const cuda::ProfileScope r1_profile_scope_(op, dtype_name(dt));  \
    count_path(id, Path::native);                                    \
    return call;                                                     \
  } while (0)
// The same for a bf16 kernel that may take a declared fallback: `bf16_call` returns true when it ran
// natively; the f32 kernels have one path.
#define R1_CUDA_DISPATCH_PATH(op, dt, bf16_call, f32_call)                            \
  do {                                                                               \
    require_device(op);                                                              \
    const cuda::ProfileScope r1_profile_scope_(op, dtype_name(dt));                  \
    const bool r1_native_ = (dt) == BF16 ? (bf16_call) : ((f32_call), true);          \
    count_path(id, r1_native_ ? Path::native : Path::fallback);                      \
    return;                                                                          \
  } while (0)
#else
#define R1_CUDA_DISPATCH(op, dt, call) no_cuda(op)
#define R1_CUDA_DISPATCH_PATH(op, dt, bf16_call, f32_call) no_cuda(op)
#endif
// The bf16 or the f32 overload of a CUDA kernel, by compute dtype.
#define R1_CUDA_DISPATCH_DT(op, dt, bf16_call, f32_call) \
  do {                                                   \
    if ((dt) == BF16) R1_CUDA_DISPATCH(op, dt, bf16_call); \
    R1_CUDA_DISPATCH(op, dt, f32_call);                  \
  } while (0)

// CPU-side checks of index tensors (they read the data, so only on CPU).
void check_range(const char* op, const char* name, const Tensor& idx, int64_t lo, int64_t hi, const char* what) {
  const int32_t* p = ip(idx);
  for (int64_t i = 0; i < idx.numel(); ++i) {
    if (p[i] < lo || p[i] >= hi) fail("{}: {}[{}] = {} is out of range [{}, {}) ({})", op, name, i, p[i], lo, hi, what);
  }
}

void check_cu_seqlens(const char* op, const Tensor& cu, int64_t T) {
  const int32_t* p = ip(cu);
  const int64_t n = cu.numel();
  if (p[0] != 0) fail("{}: cu_seqlens[0] = {}, expected 0", op, p[0]);
  for (int64_t b = 1; b < n; ++b) {
    if (p[b] < p[b - 1]) fail("{}: cu_seqlens decreases at {} ({} < {})", op, b, p[b], p[b - 1]);
  }
  if (p[n - 1] != T) fail("{}: cu_seqlens[B] = {}, expected T = {}", op, p[n - 1], T);
}

void check_heads(const char* op, int64_t NH, int64_t NKV) {
  if (NKV <= 0 || NH % NKV != 0) fail("{}: NH = {} is not a multiple of NKV = {}", op, NH, NKV);
}

bool all_aligned16(std::initializer_list<Arg> args) {
  for (const Arg& a : args)
    if (reinterpret_cast<uintptr_t>(a.t.data) % 16 != 0) return false;
  return true;
}

// Fails, naming the op, the operand that carries the shape and the shape, unless the backend of
// `device` runs this case (natively or through a declared fallback).
void require_supported(Op id, const OpShape& shape, DType dt, Device device, const char* name, const Tensor& t) {
  const Support s = supports(id, shape, dt, device);
  if (s.path == Path::unsupported) {
    fail("{}: {} {}: {} on {} {} is not supported: {}", op_name(id), name, t.describe(), describe(shape),
         device_name(device), dtype_name(dt), s.how);
  }
}

}  // namespace

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

void linear_forward(Tensor out, const Tensor& inp, const Tensor& weight, const Tensor& bias) {
  const Op id = Op::linear_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "inp", inp);
  expect(op, "inp", inp, dt, {{"N", kAny}, {"IC", kAny}});
  const int64_t N = inp.shape[0], IC = inp.shape[1];
  expect(op, "weight", weight, dt, {{"OC", kAny}, {"IC", IC}}, "inp", &inp);
  const int64_t OC = weight.shape[0];
  expect_opt(op, "bias", bias, dt, {{"OC", OC}}, "weight", &weight);
  // bf16 operands may produce f32 rows (logits for sampling: no rounding before the softmax).
  const bool wide_out = dt == BF16 && out.dtype == F32 && bias.empty();
  expect(op, "out", out, wide_out ? F32 : dt, {{"N", N}, {"OC", OC}}, "weight", &weight);
  if (on_cuda(op, {{"out", out}, {"inp", inp}, {"weight", weight}, {"bias", bias}})) {
    if (wide_out) R1_CUDA_DISPATCH(op, dt, cuda::linear_forward(fp(out), bp(inp), bp(weight), N, IC, OC));
    R1_CUDA_DISPATCH_DT(op, dt, cuda::linear_forward(bp(out), bp(inp), bp(weight), bp(bias), N, IC, OC),
                        cuda::linear_forward(fp(out), fp(inp), fp(weight), fp(bias), N, IC, OC));
  }
  count_path(id, Path::native);
  cpu::linear_forward(fp(out), fp(inp), fp(weight), fp(bias), N, IC, OC);
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
// attention

namespace {
// The checks attention_forward and attention_backward share: q (T, NH, HD), k (T, NKV, HD), v (T,
// NKV, HDv) with HDv from `vref` (out, the value rows' consumer), cu_seqlens (B + 1), lse (T, NH).
struct AttentionDims {
  DType dt;
  int64_t T, NH, NKV, HD, HDv, B;
};
AttentionDims attention_check(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens) {
  const DType dt = compute_dtype(op, "q", q);
  expect(op, "q", q, dt, {{"T", kAny}, {"NH", kAny}, {"HD", kAny}});
  const int64_t T = q.shape[0], NH = q.shape[1], HD = q.shape[2];
  expect(op, "k", k, dt, {{"T", T}, {"NKV", kAny}, {"HD", HD}}, "q", &q);
  const int64_t NKV = k.shape[1];
  check_heads(op, NH, NKV);
  expect(op, "out", out, dt, {{"T", T}, {"NH", NH}, {"HDv", kAny}}, "q", &q);
  const int64_t HDv = out.shape[2];
  expect(op, "v", v, dt, {{"T", T}, {"NKV", NKV}, {"HDv", HDv}}, "out", &out);
  expect(op, "cu_seqlens", cu_seqlens, I32, {{"B+1", kAny}});
  if (cu_seqlens.shape[0] < 1) fail("{}: cu_seqlens {} is empty, expected (B+1)", op, cu_seqlens.describe());
  expect(op, "lse", lse, F32, {{"T", T}, {"NH", NH}}, "q", &q);
  return {dt, T, NH, NKV, HD, HDv, cu_seqlens.shape[0] - 1};
}
}  // namespace

void attention_forward(Tensor out, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, float scale) {
  const Op id = Op::attention_forward;
  const char* op = op_name(id);
  const auto [dt, T, NH, NKV, HD, HDv, B] = attention_check(op, q, k, v, out, lse, cu_seqlens);
  if (on_cuda(op, {{"out", out}, {"lse", lse}, {"q", q}, {"k", k}, {"v", v}, {"cu_seqlens", cu_seqlens}})) {
    const bool aligned = all_aligned16({{"out", out}, {"q", q}, {"k", k}, {"v", v}});
    require_supported(id, {HD, HDv, aligned}, dt, Device::CUDA, "q", q);
    R1_CUDA_DISPATCH_PATH(
        op, dt,
        cuda::attention_forward(bp(out), fp(lse), bp(q), bp(k), bp(v), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale),
        cuda::attention_forward(fp(out), fp(lse), fp(q), fp(k), fp(v), ip(cu_seqlens), B, T, NH, NKV, HD, HDv,
                                scale));
  }
  check_cu_seqlens(op, cu_seqlens, T);
  count_path(id, Path::native);
  cpu::attention_forward(fp(out), fp(lse), fp(q), fp(k), fp(v), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale);
}

void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens,
                        float scale) {
  const Op id = Op::attention_backward;
  const char* op = op_name(id);
  const auto [dt, T, NH, NKV, HD, HDv, B] = attention_check(op, q, k, v, out, lse, cu_seqlens);
  expect(op, "dout", dout, dt, {{"T", T}, {"NH", NH}, {"HDv", HDv}}, "out", &out);
  expect(op, "dq", dq, dt, {{"T", T}, {"NH", NH}, {"HD", HD}}, "q", &q);
  expect(op, "dk", dk, dt, {{"T", T}, {"NKV", NKV}, {"HD", HD}}, "k", &k);
  expect(op, "dv", dv, dt, {{"T", T}, {"NKV", NKV}, {"HDv", HDv}}, "v", &v);
  if (on_cuda(op, {{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"q", q}, {"k", k}, {"v", v},
                   {"out", out}, {"lse", lse}, {"cu_seqlens", cu_seqlens}})) {
    const bool aligned = all_aligned16(
        {{"dq", dq}, {"dk", dk}, {"dv", dv}, {"dout", dout}, {"q", q}, {"k", k}, {"v", v}, {"out", out}});
    require_supported(id, {HD, HDv, aligned}, dt, Device::CUDA, "q", q);
    R1_CUDA_DISPATCH_PATH(op, dt,
                          cuda::attention_backward(bp(dq), bp(dk), bp(dv), bp(dout), bp(q), bp(k), bp(v), bp(out),
                                                   fp(lse), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale),
                          cuda::attention_backward(fp(dq), fp(dk), fp(dv), fp(dout), fp(q), fp(k), fp(v), fp(out),
                                                   fp(lse), ip(cu_seqlens), B, T, NH, NKV, HD, HDv, scale));
  }
  check_cu_seqlens(op, cu_seqlens, T);
  count_path(id, Path::native);
  cpu::attention_backward(fp(dq), fp(dk), fp(dv), fp(dout), fp(q), fp(k), fp(v), fp(out), fp(lse), ip(cu_seqlens),
                          B, T, NH, NKV, HD, HDv, scale);
}

void kv_cache_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v, const Tensor& slots,
                    const Tensor& pos) {
  const Op id = Op::kv_cache_write;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "k_cache", k_cache);
  expect(op, "k_cache", k_cache, dt, {{"S", kAny}, {"L", kAny}, {"NKV", kAny}, {"HD", kAny}});
  const int64_t S = k_cache.shape[0], L = k_cache.shape[1], NKV = k_cache.shape[2], HD = k_cache.shape[3];
  expect(op, "v_cache", v_cache, dt, {{"S", S}, {"L", L}, {"NKV", NKV}, {"HD", HD}}, "k_cache", &k_cache);
  expect(op, "k", k, dt, {{"T", kAny}, {"NKV", NKV}, {"HD", HD}}, "k_cache", &k_cache);
  const int64_t T = k.shape[0];
  expect(op, "v", v, dt, {{"T", T}, {"NKV", NKV}, {"HD", HD}}, "k", &k);
  expect(op, "slots", slots, I32, {{"T", T}}, "k", &k);
  expect(op, "pos", pos, I32, {{"T", T}}, "k", &k);
  if (on_cuda(op, {{"k_cache", k_cache}, {"v_cache", v_cache}, {"k", k}, {"v", v}, {"slots", slots},
                   {"pos", pos}})) {
    R1_CUDA_DISPATCH_DT(
        op, dt, cuda::kv_cache_write(bp(k_cache), bp(v_cache), bp(k), bp(v), ip(slots), ip(pos), T, L, NKV, HD),
        cuda::kv_cache_write(fp(k_cache), fp(v_cache), fp(k), fp(v), ip(slots), ip(pos), T, L, NKV, HD));
  }
  check_range(op, "slots", slots, 0, S, "cache slots S");
  check_range(op, "pos", pos, 0, L, "cache length L");
  count_path(id, Path::native);
  cpu::kv_cache_write(fp(k_cache), fp(v_cache), fp(k), fp(v), ip(slots), ip(pos), T, L, NKV, HD);
}

void attention_cached(Tensor out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                      const Tensor& slots, const Tensor& pos, float scale, const Tensor& workspace) {
  const Op id = Op::attention_cached;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "q", q);
  expect(op, "q", q, dt, {{"T", kAny}, {"NH", kAny}, {"HD", kAny}});
  const int64_t T = q.shape[0], NH = q.shape[1], HD = q.shape[2];
  expect(op, "k_cache", k_cache, dt, {{"S", kAny}, {"L", kAny}, {"NKV", kAny}, {"HD", HD}}, "q", &q);
  const int64_t S = k_cache.shape[0], L = k_cache.shape[1], NKV = k_cache.shape[2];
  check_heads(op, NH, NKV);
  expect(op, "v_cache", v_cache, dt, {{"S", S}, {"L", L}, {"NKV", NKV}, {"HD", HD}}, "k_cache", &k_cache);
  expect(op, "slots", slots, I32, {{"T", T}}, "q", &q);
  expect(op, "pos", pos, I32, {{"T", T}}, "q", &q);
  expect(op, "out", out, dt, {{"T", T}, {"NH", NH}, {"HD", HD}}, "q", &q);
  if (!workspace.empty()) expect_f32(op, "workspace", workspace);
  if (on_cuda(op, {{"out", out}, {"q", q}, {"k_cache", k_cache}, {"v_cache", v_cache}, {"slots", slots},
                   {"pos", pos}, {"workspace", workspace}})) {
    require_supported(id, {HD, HD}, dt, Device::CUDA, "q", q);
    const int64_t ws = workspace.empty() ? 0 : workspace.numel();  // an empty Tensor's numel() is 1
    const int64_t need = ws == 0 ? 0 : attention_cached_workspace(T, NH, HD, L);
    if (ws < need) {
      fail("{}: workspace {} is too small: {} f32 elements needed (attention_cached_workspace(T={}, NH={}, HD={}, "
           "L={}))", op, workspace.describe(), need, T, NH, HD, L);
    }
    R1_CUDA_DISPATCH_DT(op, dt,
                        cuda::attention_cached(bp(out), bp(q), bp(k_cache), bp(v_cache), ip(slots), ip(pos), T, L,
                                               NH, NKV, HD, scale, fp(workspace), ws),
                        cuda::attention_cached(fp(out), fp(q), fp(k_cache), fp(v_cache), ip(slots), ip(pos), T, L,
                                               NH, NKV, HD, scale, fp(workspace), ws));
  }
  check_range(op, "slots", slots, 0, S, "cache slots S");
  check_range(op, "pos", pos, 0, L, "cache length L");
  count_path(id, Path::native);
  cpu::attention_cached(fp(out), fp(q), fp(k_cache), fp(v_cache), ip(slots), ip(pos), T, L, NH, NKV, HD, scale);
}

int64_t attention_cached_workspace(int64_t T, int64_t NH, int64_t HD, int64_t L) {
#ifdef R1_HAVE_CUDA
  if (cuda::cuda_available()) return cuda::attention_cached_workspace(T, NH, HD, L);
#endif
  (void)T, (void)NH, (void)HD, (void)L;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// swiglu

void swiglu_forward(Tensor out, const Tensor& gate, const Tensor& up) {
  const Op id = Op::swiglu_forward;
  const char* op = op_name(id);
  const DType dt = compute_dtype(op, "gate", gate);
  expect_dtype(op, "gate", gate, dt);
  expect_like(op, "up", up, dt, "gate", gate);
  expect_like(op, "out", out, dt, "gate", gate);
  const int64_t n = gate.numel();
  if (on_cuda(op, {{"out", out}, {"gate", gate}, {"up", up}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::swiglu_forward(bp(out), bp(gate), bp(up), n),
                        cuda::swiglu_forward(fp(out), fp(gate), fp(up), n));
  }
  count_path(id, Path::native);
  cpu::swiglu_forward(fp(out), fp(gate), fp(up), n);
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
  const int64_t n = gate.numel();
  if (on_cuda(op, {{"dgate", dgate}, {"dup", dup}, {"dout", dout}, {"gate", gate}, {"up", up}})) {
    R1_CUDA_DISPATCH_DT(op, dt, cuda::swiglu_backward(bp(dgate), bp(dup), bp(dout), bp(gate), bp(up), n),
                        cuda::swiglu_backward(fp(dgate), fp(dup), fp(dout), fp(gate), fp(up), n));
  }
  count_path(id, Path::native);
  cpu::swiglu_backward(fp(dgate), fp(dup), fp(dout), fp(gate), fp(up), n);
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
