#pragma once
// The op table test (test_op_table.cpp): every op of kernels/ops.h x dtype (f32, bf16) x device
// (CPU, CUDA) x shape, each case checked against a double-precision reference written in the tests,
// with a per-op, per-dtype bound on the normalised error ||got - ref|| / ||ref||; every backward
// also against central finite differences of its reference forward on the CPU. A case runs where
// ops::supports() says it runs (natively or through a declared fallback, and the path counters must
// show that path was taken), and where it says it does not, running it must fail with an r1::Error
// that names the op.
//
// This header is the harness the op runners share (test_op_table_*.cpp): the table row (Row), one
// case being run (Run: inputs on the case's device, sampled reference rows, checks), the finite-
// difference check, and the runners' registry.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "base/rng.h"
#include "kernels/ops.h"
#include "kernels/supports.h"
#include "tensor/tensor.h"

namespace optable {

using r1::Device;
using r1::DType;
using r1::Tensor;
using r1::ops::Op;
using Vf = std::vector<float>;
using Vd = std::vector<double>;
using Vi = std::vector<int32_t>;
using Rows = std::vector<int64_t>;
namespace ops = r1::ops;

inline size_t sz(int64_t n) { return static_cast<size_t>(n); }

// The sizes and options of one table row; each op reads the fields it needs (dimension letters as
// in ops.h). Zero fields are left out of the case's name.
struct Shape {
  int64_t N = 0, C = 0, V = 0, T = 0, IC = 0, OC = 0, H = 0, I = 0;  // I: MLP width (swiglu)
  std::vector<int> lens;                     // attention: sequence lengths (cu_seqlens)
  int64_t NH = 0, NKV = 0, HD = 0, HDv = 0;  // HDv: value head dim (0: = HD)
  int64_t S = 0, L = 0, rows = 0;            // KV cache sequences, rows each; tokens per sequence
  int64_t BS = 0;                            // KV cache block size (0: 16)
  int64_t prefix = 0;                        // KV cache: rows (whole blocks) all sequences share, a prompt's
  int64_t chunk = 0;                         // log-probs vocabulary chunk
  int64_t maxpos = 0, steps = 0;             // RoPE positions in [0, maxpos); AdamW steps
  int64_t offset = 0;                        // float operands are views this many elements into their buffers
  float tau = 0.0f;                          // log-probs temperature (0: 1)
  bool bias = false, workspace = false, scatter = false, repeats = false, wide_out = false, masked = false;
  bool latent = false;  // KV cache without values: they are the keys' first HDv columns (MLA)
  bool residual = false;  // linear_forward: + a residual (N, OC), a separate tensor and out itself
  int64_t E = 0, K = 0, G = 0, TG = 0;  // MoE: experts, chosen per token, groups, eligible groups
  bool sigmoid = false;                 // MoE: sigmoid scores with a choice bias (else softmax)
  int64_t gap = 0;                      // grouped linear: elements between stacked matrices past OUT * IN
  // batched_matmul: `batch` products (T, IC) @ op(w) -> (T, OC), w[b] (OC, IC) with trans, else (IC, OC);
  // gap elements after each row and matrix, or, interleaved, the matrices side by side in shared rows.
  int64_t batch = 0;
  bool trans = false, interleaved = false;
  std::vector<int64_t> widths;  // linear_forward_each: each product's OC
  bool qk_norm = false;          // rope_qkv_cache_write: each q and k head RMS-normed first
  bool swiglu = false;           // rmsnorm_linear_forward: [gate; up] weights, the SwiGLU out
};

enum : unsigned { kF32 = 1, kBF16 = 2, kBothDtypes = 3 };
enum : unsigned { kCpu = 1, kCuda = 2, kBothDevices = 3 };

// One table row: an op at one shape, run on the dtypes and devices of its masks. Rows whose
// reference would be slow on the CPU (sizes that fill a GPU) run on CUDA only.
struct Row {
  Op op;
  Shape s;
  unsigned dtypes = kBothDtypes;
  unsigned devices = kBothDevices;
};

// How close an output must be: relative L2 error at most `f32` in an f32 case and `bf16` in a bf16
// case (0: exactly the reference rounded to the output's dtype). On the CPU in f32, also
// elementwise |got - ref| <= atol + rtol * |ref| when atol >= 0 (the CPU reference's own bound).
struct Bound {
  double f32 = 1e-5, bf16 = 1e-2;
  double atol = -1.0, rtol = 0.0;
};
// Bounds by kind of computation. Elementwise: libm-level functions. Reduce: sums in another order
// (GEMMs, softmax). An output that stays f32 in a bf16 case (statistics, parameter gradients)
// computed from the same values keeps an f32-level bound.
constexpr Bound kExact{0.0, 0.0};
constexpr Bound kElem{1e-5, 1e-2, 1e-5, 1e-5};
constexpr Bound kReduce{1e-4, 1e-2, 1e-5, 1e-5};
constexpr Bound kStat{1e-5, 1e-5, 1e-5, 1e-5};
constexpr Bound kStatReduce{1e-4, 1e-4, 1e-5, 1e-5};

constexpr float kSentinel = 7.0f;  // in the buffer before an offset view

// One case being run: a row on a dtype and device.
class Run {
 public:
  Run(const Row& row, DType dt, Device dev, uint64_t seed);
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  const Shape& s;
  const DType dt;    // the case's compute dtype
  const Device dev;  // where the op runs
  // Finite-difference checks run on the CPU f32 cases whose reference is cheap enough.
  bool fd(double reference_cost) const {
    return dev == Device::CPU && dt == DType::F32 && reference_cost <= 4e5;
  }

  // Normal values times scale, rounded to `as` (bf16: the reference sees exactly the op's inputs).
  Vf randn(int64_t n, float scale, DType as);
  Vf randn(int64_t n, float scale = 1.0f) { return randn(n, scale, dt); }
  Vi randint(int64_t n, int32_t lo, int32_t hi);
  uint32_t next_u32() { return rng_.next_u32(); }

  // A tensor on the case's device with dtype `t` holding v (rounded to t in place first), a view
  // s.offset elements into its buffer (those hold kSentinel). dims: the tensor's shape.
  Tensor put(Vf& v, std::vector<int64_t> dims, DType t);
  Tensor act(Vf& v, std::vector<int64_t> dims) { return put(v, std::move(dims), dt); }  // compute dtype
  Tensor f32(Vf& v, std::vector<int64_t> dims) { return put(v, std::move(dims), DType::F32); }
  Tensor ints(const Vi& v, std::vector<int64_t> dims);
  // With s.offset > 0: the elements of t's buffer before t still hold what put() wrote there.
  void check_untouched(const std::string& what, const Tensor& t);
  // An output tensor filled with NaN, so an element the op leaves unwritten fails its check.
  Tensor nan(std::vector<int64_t> dims, DType t);
  static Vf get(const Tensor& t);  // any device, f32 or bf16
  static Vi get_ints(const Tensor& t);  // any device, i32

  // Rows of an n-row output to compare: all of them, or, when n * row_cost (multiply-adds of the
  // reference per row) exceeds the reference budget, a fixed random subset (first and last kept).
  Rows rows(int64_t n, double row_cost);
  static Rows all_rows(int64_t n);

  // Compares rows `rows` (each row_len long) of got with ref (rows.size() * row_len values, in
  // rows' order) within the bound for this case's dtype; a "[ CUDAERR ]" line per CUDA check.
  void check(const std::string& what, const Vf& got, const Vd& ref, const Rows& rows, int64_t row_len,
             const Bound& b);
  void check(const std::string& what, const Vf& got, const Vd& ref, const Bound& b) {
    check(what, got, ref, all_rows(int64_t(got.size())), 1, b);
  }
  void check_scalar(const std::string& what, double got, double ref, double rel_tol);

  std::string label;  // the case's sizes, for messages

 private:
  r1::Rng rng_;
  std::vector<r1::Buffer> bufs_;
};

Vf rounded(Vf v, DType t);  // each value rounded to t (f32: unchanged)
Vd to_d(const Vf& v);
Vf diff(const Vf& a, const Vf& b);
double dot(const Vd& a, const Vf& r);
Vi make_cu(const std::vector<int>& lens);
// Values of rows `rows` (row_len each) of v.
Vd take_rows(const Vf& v, const Rows& rows, int64_t row_len);
Vd plus(const Vf& a, const Vd& b);  // a + b elementwise (an accumulated gradient's expected value)

// Compares the analytic gradient of loss() w.r.t. x with central differences on x (double), over all
// elements or a fixed random subset of max_checks. Tolerance is relative to max(|fd|, rms(grad)).
void check_grad(const std::string& what, Vd& x, const Vf& analytic, const std::function<double()>& loss,
                uint64_t seed, size_t max_checks = 50, double eps = 1e-5, double rtol = 1e-4);

// Throws r1::Error whose message contains every substring.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts);

// ---- the runners: one per op, in test_op_table_{nn,attention,logprobs,misc,moe,batched}.cpp ----
using Runner = void (*)(Run&);
Runner runner(Op op);
void run_embedding_forward(Run&);
void run_embedding_backward(Run&);
void run_rmsnorm_forward(Run&);
void run_rmsnorm_backward(Run&);
void run_linear_forward(Run&);
void run_linear_backward(Run&);
void run_linear_forward_each(Run&);
void run_rope_forward(Run&);
void run_rope_backward(Run&);
void run_swiglu_forward(Run&);
void run_swiglu_backward(Run&);
void run_swiglu_packed_forward(Run&);
void run_swiglu_packed_backward(Run&);
void run_dropout_forward(Run&);
void run_dropout_backward(Run&);
void run_add(Run&);
void run_add_inplace(Run&);
void run_scale_inplace(Run&);
void run_zero(Run&);
void run_convert(Run&);
void run_sum_squares(Run&);
void run_adamw_update(Run&);
void run_cross_entropy_forward(Run&);
void run_cross_entropy_backward(Run&);
void run_attention_forward(Run&);
void run_attention_backward(Run&);
void run_kv_cache_write(Run&);
void run_rope_kv_cache_write(Run&);
void run_rope_qkv_cache_write(Run&);
void run_rope_qkv_attention_cached(Run&);
void run_rmsnorm_linear_forward(Run&);
void run_linear_rmsnorm_forward(Run&);
void run_attention_cached(Run&);
void run_token_logprobs_forward(Run&);
void run_token_logprobs_backward(Run&);
void run_rope_interleaved_forward(Run&);
void run_rope_interleaved_backward(Run&);
void run_copy_columns(Run&);
void run_moe_route_forward(Run&);
void run_moe_route_backward(Run&);
void run_moe_permute(Run&);
void run_moe_combine_forward(Run&);
void run_moe_combine_backward(Run&);
void run_grouped_linear_forward(Run&);
void run_grouped_linear_backward(Run&);
void run_batched_matmul(Run&);
void run_lm_head_logits(Run&);
void run_logprobs_of_logits(Run&);

}  // namespace optable
