#pragma once
// The dispatch layer, shared by the op files (ops_layers.cpp, ops_attention.cpp, ops_loss.cpp) and
// private to kernels/: every op validates its tensors here (dtype, rank, shapes, devices; index
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
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "base/error.h"
#include "kernels/invariance.h"
#include "kernels/ops.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/supports.h"
#include "tensor/device_memory.h"

#ifdef R1_HAVE_CUDA
#include "device/cuda_device.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/profiler.h"
#endif

namespace r1::ops::check {

inline constexpr DType F32 = DType::F32;
inline constexpr DType BF16 = DType::BF16;
inline constexpr DType I32 = DType::I32;
inline constexpr int64_t kAny = -1;

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

inline std::string expected_str(std::initializer_list<Dim> dims, DType dt) {
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
inline void expect(const char* op, const char* name, const Tensor& t, DType dt, std::initializer_list<Dim> dims,
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
inline void expect_opt(const char* op, const char* name, const Tensor& t, DType dt, std::initializer_list<Dim> dims,
                const char* ref_name = nullptr, const Tensor* ref = nullptr) {
  if (!t.empty()) expect(op, name, t, dt, dims, ref_name, ref);
}

// t must be non-empty, of dtype dt, with the same shape as ref.
inline void expect_like(const char* op, const char* name, const Tensor& t, DType dt, const char* ref_name,
                 const Tensor& ref) {
  if (t.empty()) fail("{}: {} is empty, expected the shape of {} {}", op, name, ref_name, ref.describe());
  bool ok = t.dtype == dt && t.ndim == ref.ndim;
  for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[i] == ref.shape[i];
  if (!ok) fail("{}: {} {} does not match {} {}: expected the same shape, {}", op, name, t.describe(), ref_name,
                ref.describe(), dtype_name(dt));
}

// t must be non-empty, of dtype dt, with numel n (any shape).
inline void expect_numel(const char* op, const char* name, const Tensor& t, int64_t n, DType dt, const char* ref_name,
                  const Tensor& ref) {
  if (t.empty()) fail("{}: {} is empty", op, name);
  if (t.dtype != dt || t.numel() != n) {
    fail("{}: {} {} does not match {} {}: expected {} with {} elements", op, name, t.describe(), ref_name,
         ref.describe(), dtype_name(dt), n);
  }
}

inline void expect_dtype(const char* op, const char* name, const Tensor& t, DType dt) {
  if (t.empty()) fail("{}: {} is empty", op, name);
  if (t.dtype != dt) fail("{}: {} is {}, expected {}", op, name, t.describe(), dtype_name(dt));
}

inline void expect_f32(const char* op, const char* name, const Tensor& t) { expect_dtype(op, name, t, F32); }

// The op's compute dtype, from its main activation t: bf16 for a bf16 CUDA tensor, otherwise f32
// (an empty or wrongly typed t is then reported by the expect() that follows, against f32).
inline DType compute_dtype(const char* op, const char* name, const Tensor& t) {
  if (t.empty() || t.dtype != BF16) return F32;
  if (t.device != Device::CUDA) {
    fail("{}: {} {}: bf16 tensors are supported on CUDA only", op, name, t.describe());
  }
  return BF16;
}

// Checks that all non-empty operands share a device; true when that device is CUDA.
inline bool on_cuda(const char* op, std::initializer_list<Arg> args) {
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
[[noreturn]] inline void no_cuda(const char* op) { fail("{}: CUDA tensors are handled by the CUDA backend", op); }
#endif

inline float* fp(const Tensor& t) { return t.empty() ? nullptr : static_cast<float*>(t.data); }
inline const int32_t* ip(const Tensor& t) { return static_cast<const int32_t*>(t.data); }

#ifdef R1_HAVE_CUDA
inline bf16* bp(const Tensor& t) { return t.empty() ? nullptr : static_cast<bf16*>(t.data); }

// A build with the CUDA backend can still run where no device is usable (CI): say so, naming the op.
inline void require_device(const char* op) {
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
// A fused op that may decline: `bf16_call` returns true when its kernel ran (native); f32, or a
// decline, is the declared fallback: nothing done, and false returned for the caller to run the ops.
#define R1_CUDA_OR_DECLINE(op, dt, bf16_call)                     \
  do {                                                            \
    require_device(op);                                           \
    const bool r1_native_ = (dt) == BF16 && (bf16_call);          \
    count_path(id, r1_native_ ? Path::native : Path::fallback);   \
    return r1_native_;                                            \
  } while (0)
#else
#define R1_CUDA_DISPATCH(op, dt, call) no_cuda(op)
#define R1_CUDA_DISPATCH_PATH(op, dt, bf16_call, f32_call) no_cuda(op)
#define R1_CUDA_OR_DECLINE(op, dt, bf16_call) no_cuda(op)
#endif
// The bf16 or the f32 overload of a CUDA kernel, by compute dtype.
#define R1_CUDA_DISPATCH_DT(op, dt, bf16_call, f32_call) \
  do {                                                   \
    if ((dt) == BF16) R1_CUDA_DISPATCH(op, dt, bf16_call); \
    R1_CUDA_DISPATCH(op, dt, f32_call);                  \
  } while (0)

// CPU-side checks of index tensors (they read the data, so only on CPU).
inline void check_range(const char* op, const char* name, const Tensor& idx, int64_t lo, int64_t hi, const char* what) {
  const int32_t* p = ip(idx);
  for (int64_t i = 0; i < idx.numel(); ++i) {
    if (p[i] < lo || p[i] >= hi) fail("{}: {}[{}] = {} is out of range [{}, {}) ({})", op, name, i, p[i], lo, hi, what);
  }
}

inline void check_cu_seqlens(const char* op, const Tensor& cu, int64_t T) {
  const int32_t* p = ip(cu);
  const int64_t n = cu.numel();
  if (p[0] != 0) fail("{}: cu_seqlens[0] = {}, expected 0", op, p[0]);
  for (int64_t b = 1; b < n; ++b) {
    if (p[b] < p[b - 1]) fail("{}: cu_seqlens decreases at {} ({} < {})", op, b, p[b], p[b - 1]);
  }
  if (p[n - 1] != T) fail("{}: cu_seqlens[B] = {}, expected T = {}", op, p[n - 1], T);
}

inline void check_heads(const char* op, int64_t NH, int64_t NKV) {
  if (NKV <= 0 || NH % NKV != 0) fail("{}: NH = {} is not a multiple of NKV = {}", op, NH, NKV);
}

inline bool all_aligned16(std::initializer_list<Arg> args) {
  for (const Arg& a : args)
    if (reinterpret_cast<uintptr_t>(a.t.data) % 16 != 0) return false;
  return true;
}

// Fails, naming the op, the operand that carries the shape and the shape, unless the backend of
// `device` runs this case (natively or through a declared fallback).
inline void require_supported(Op id, const OpShape& shape, DType dt, Device device, const char* name, const Tensor& t) {
  const Support s = supports(id, shape, dt, device);
  if (s.path == Path::unsupported) {
    fail("{}: {} {}: {} on {} {} is not supported: {}", op_name(id), name, t.describe(), describe(shape),
         device_name(device), dtype_name(dt), s.how);
  }
}

}  // namespace r1::ops::check
