// The op table's harness (op_table.h): a case's tensors on its device, sampled reference rows,
// the normalised-error checks and the finite-difference check.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

#include "base/bf16.h"
#include "base/error.h"
#include "op_table.h"
#include "tensor/device_memory.h"

namespace optable {

namespace {

// Multiply-adds the reference may spend on one output of a case before it samples rows.
constexpr double kReferenceBudget = 2e8;
constexpr size_t kSampledRows = 12;  // at least, when sampling

float round_to(float x, DType t) { return t == DType::BF16 ? r1::bf16_to_f32(r1::f32_to_bf16(x)) : x; }

Tensor view(void* data, DType t, Device dev, const std::vector<int64_t>& dims) {
  Tensor x;
  x.data = data;
  x.dtype = t;
  x.device = dev;
  x.ndim = int(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) x.shape[i] = dims[i];
  return x;
}

int64_t numel(const std::vector<int64_t>& dims) {
  return std::accumulate(dims.begin(), dims.end(), int64_t(1), std::multiplies<int64_t>());
}

}  // namespace

Run::Run(const Row& row, DType dt_, Device dev_, uint64_t seed) : s(row.s), dt(dt_), dev(dev_), rng_(seed) {}

Vf Run::randn(int64_t n, float scale, DType as) {
  Vf v(sz(n));
  for (auto& x : v) x = round_to(scale * rng_.normal(), as);
  return v;
}

Vi Run::randint(int64_t n, int32_t lo, int32_t hi) {
  Vi v(sz(n));
  for (auto& x : v) x = lo + int32_t(rng_.next_u32() % uint32_t(hi - lo));
  return v;
}

Tensor Run::put(Vf& v, std::vector<int64_t> dims, DType t) {
  for (auto& x : v) x = round_to(x, t);
  const int64_t n = numel(dims);
  EXPECT_EQ(n, int64_t(v.size())) << label;
  const size_t es = r1::dtype_size(t);
  bufs_.emplace_back(size_t(n + s.offset) * es + 16, dev);
  Tensor x = view(static_cast<char*>(bufs_.back().data()) + size_t(s.offset) * es, t, dev, dims);
  r1::copy_from_host_f32(x, v.data());
  if (s.offset > 0) {
    const Vf pre(sz(s.offset), kSentinel);
    r1::copy_from_host_f32(view(bufs_.back().data(), t, dev, {s.offset}), pre.data());
  }
  return x;
}

void Run::check_untouched(const std::string& what, const Tensor& t) {
  if (s.offset == 0) return;
  const size_t es = r1::dtype_size(t.dtype);
  const Vf pre = get(view(static_cast<char*>(t.data) - size_t(s.offset) * es, t.dtype, t.device, {s.offset}));
  for (float x : pre)
    EXPECT_EQ(x, kSentinel) << what << " " << label << ": an element before the view changed";
}

Tensor Run::ints(const Vi& v, std::vector<int64_t> dims) {
  bufs_.emplace_back(v.size() * sizeof(int32_t) + 16, dev);
  Tensor x = view(bufs_.back().data(), DType::I32, dev, dims);
  r1::copy_from_host(x, v.data());
  return x;
}

Tensor Run::nan(std::vector<int64_t> dims, DType t) {
  Vf v(sz(numel(dims)), std::numeric_limits<float>::quiet_NaN());
  return put(v, std::move(dims), t);
}

Vf Run::get(const Tensor& t) { return r1::to_host_f32(t); }

Vi Run::get_ints(const Tensor& t) {
  Vi v(sz(t.numel()));
  r1::devmem::copy(v.data(), Device::CPU, t.data, t.device, t.nbytes());
  return v;
}

Rows Run::all_rows(int64_t n) {
  Rows r(sz(n));
  std::iota(r.begin(), r.end(), int64_t(0));
  return r;
}

Rows Run::rows(int64_t n, double row_cost) {
  if (double(n) * row_cost <= kReferenceBudget || n <= int64_t(kSampledRows)) return all_rows(n);
  const size_t k = std::max(kSampledRows, size_t(kReferenceBudget / std::max(row_cost, 1.0)));
  if (k >= size_t(n)) return all_rows(n);
  Rows r = {0, n - 1};
  while (r.size() < k) r.push_back(int64_t(rng_.next_u32() % uint64_t(n)));
  std::sort(r.begin(), r.end());
  r.erase(std::unique(r.begin(), r.end()), r.end());
  return r;
}

void Run::check(const std::string& what, const Vf& got, const Vd& ref, const Rows& rows, int64_t row_len,
                const Bound& b) {
  ASSERT_EQ(ref.size(), rows.size() * sz(row_len)) << what << " " << label;
  const double tol = dt == DType::BF16 ? b.bf16 : b.f32;
  double num = 0.0, den = 0.0, worst = 0.0;
  int64_t worst_i = -1, bad = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int64_t c = 0; c < row_len; ++c) {
      const size_t gi = sz(rows[r] * row_len + c), ri = r * sz(row_len) + sz(c);
      ASSERT_LT(gi, got.size()) << what << " " << label;
      // An exact check compares with the reference rounded to f32 (its error is then 0 when exact).
      const double g = got[gi], e = tol == 0.0 ? double(float(ref[ri])) : ref[ri];
      if (!std::isfinite(g)) {
        if (bad++ == 0)
          ADD_FAILURE() << what << " " << label << "[" << gi << "] = " << g << ", expected " << e;
        continue;
      }
      // Exact (exact references of bf16 outputs are bf16 values).
      if (tol == 0.0 && g != e) {
        if (bad++ == 0)
          ADD_FAILURE() << what << " " << label << "[" << gi << "] = " << g << ", expected " << e;
      }
      num += (g - e) * (g - e);
      den += e * e;
      if (dev == Device::CPU && dt == DType::F32 && b.atol >= 0.0) {
        const double excess = std::fabs(g - e) - (b.atol + b.rtol * std::fabs(e));
        if (excess > worst) worst = excess, worst_i = int64_t(gi);
      }
    }
  }
  const double err = bad ? INFINITY : den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
  if (dev == Device::CUDA) {
    const std::string row = dt == DType::BF16 ? "bf16 " + what : what;
    std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", row.c_str(), label.c_str(), err, tol);
    std::fflush(stdout);
  }
  EXPECT_EQ(bad, 0) << what << " " << label << ": " << bad << " elements non-finite or not exact";
  if (tol > 0.0) {
    EXPECT_LE(err, tol) << what << " " << label << ": normalised error";
  }
  if (worst_i >= 0) {
    ADD_FAILURE() << what << " " << label << "[" << worst_i << "] = " << got[sz(worst_i)]
                  << " is off by more than " << b.atol << " + " << b.rtol << " |ref|";
  }
}

void Run::check_scalar(const std::string& what, double got, double ref, double rel_tol) {
  const double err =
      std::isfinite(got) ? (ref != 0.0 ? std::fabs(got - ref) / std::fabs(ref) : std::fabs(got)) : INFINITY;
  if (dev == Device::CUDA) {
    const std::string row = dt == DType::BF16 ? "bf16 " + what : what;
    std::printf("[ CUDAERR ] %-32s | %-44s | %.3e | tol %.0e\n", row.c_str(), label.c_str(), err, rel_tol);
    std::fflush(stdout);
  }
  EXPECT_LE(err, rel_tol) << what << " " << label << ": got " << got << ", expected " << ref;
}

Vf rounded(Vf v, DType t) {
  for (auto& x : v) x = round_to(x, t);
  return v;
}

Vd to_d(const Vf& v) { return Vd(v.begin(), v.end()); }

Vf diff(const Vf& a, const Vf& b) {
  Vf d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

double dot(const Vd& a, const Vf& r) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * double(r[i]);
  return s;
}

Vi make_cu(const std::vector<int>& lens) {
  Vi cu{0};
  for (int l : lens) cu.push_back(cu.back() + l);
  return cu;
}

Vd take_rows(const Vf& v, const Rows& rows, int64_t row_len) {
  Vd out;
  out.reserve(rows.size() * sz(row_len));
  for (int64_t r : rows) out.insert(out.end(), v.begin() + r * row_len, v.begin() + (r + 1) * row_len);
  return out;
}

Vd plus(const Vf& a, const Vd& b) {
  Vd out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = double(a[i]) + b[i];
  return out;
}

void check_grad(const std::string& what, Vd& x, const Vf& analytic, const std::function<double()>& loss,
                uint64_t seed, size_t max_checks, double eps, double rtol) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  std::vector<size_t> idx(x.size());
  std::iota(idx.begin(), idx.end(), sz(0));
  if (idx.size() > max_checks) {
    r1::Rng rng(seed, 7);
    for (size_t i = 0; i < max_checks; ++i) std::swap(idx[i], idx[i + rng.next_u32() % (idx.size() - i)]);
    idx.resize(max_checks);
  }
  double rms = 0.0;
  for (float g : analytic) rms += double(g) * g;
  rms = std::sqrt(rms / double(std::max<size_t>(analytic.size(), 1)));
  int failures = 0;
  for (size_t i : idx) {
    const double x0 = x[i];
    x[i] = x0 + eps;
    const double lp = loss();
    x[i] = x0 - eps;
    const double lm = loss();
    x[i] = x0;
    const double fd = (lp - lm) / (2 * eps);
    const double tol = rtol * std::max(std::fabs(fd), rms) + 1e-7;
    if (std::fabs(analytic[i] - fd) > tol && failures++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << ", finite difference " << fd;
    }
  }
  EXPECT_EQ(failures, 0) << what;
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no r1::Error thrown (expected: " << *parts.begin() << ")";
  } catch (const r1::Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

Runner runner(Op op) {
  switch (op) {
    case Op::embedding_forward:
      return run_embedding_forward;
    case Op::embedding_backward:
      return run_embedding_backward;
    case Op::rmsnorm_forward:
      return run_rmsnorm_forward;
    case Op::rmsnorm_backward:
      return run_rmsnorm_backward;
    case Op::linear_forward:
      return run_linear_forward;
    case Op::linear_forward_each:
      return run_linear_forward_each;
    case Op::linear_backward:
      return run_linear_backward;
    case Op::rope_forward:
      return run_rope_forward;
    case Op::rope_backward:
      return run_rope_backward;
    case Op::attention_forward:
      return run_attention_forward;
    case Op::attention_backward:
      return run_attention_backward;
    case Op::kv_cache_write:
      return run_kv_cache_write;
    case Op::rope_kv_cache_write:
      return run_rope_kv_cache_write;
    case Op::rope_qkv_cache_write:
      return run_rope_qkv_cache_write;
    case Op::rope_qkv_attention_cached:
      return run_rope_qkv_attention_cached;
    case Op::rmsnorm_linear_forward:
      return run_rmsnorm_linear_forward;
    case Op::linear_rmsnorm_forward:
      return run_linear_rmsnorm_forward;
    case Op::attention_cached:
      return run_attention_cached;
    case Op::swiglu_forward:
      return run_swiglu_forward;
    case Op::swiglu_backward:
      return run_swiglu_backward;
    case Op::swiglu_packed_forward:
      return run_swiglu_packed_forward;
    case Op::swiglu_packed_backward:
      return run_swiglu_packed_backward;
    case Op::dropout_forward:
      return run_dropout_forward;
    case Op::dropout_backward:
      return run_dropout_backward;
    case Op::add:
      return run_add;
    case Op::add_inplace:
      return run_add_inplace;
    case Op::scale_inplace:
      return run_scale_inplace;
    case Op::zero:
      return run_zero;
    case Op::convert:
      return run_convert;
    case Op::sum_squares:
      return run_sum_squares;
    case Op::token_logprobs_forward:
      return run_token_logprobs_forward;
    case Op::token_logprobs_backward:
      return run_token_logprobs_backward;
    case Op::cross_entropy_forward:
      return run_cross_entropy_forward;
    case Op::cross_entropy_backward:
      return run_cross_entropy_backward;
    case Op::adamw_update:
      return run_adamw_update;
    case Op::rope_interleaved_forward:
      return run_rope_interleaved_forward;
    case Op::rope_interleaved_backward:
      return run_rope_interleaved_backward;
    case Op::copy_columns:
      return run_copy_columns;
    case Op::moe_route_forward:
      return run_moe_route_forward;
    case Op::moe_route_backward:
      return run_moe_route_backward;
    case Op::moe_permute:
      return run_moe_permute;
    case Op::moe_combine_forward:
      return run_moe_combine_forward;
    case Op::moe_combine_backward:
      return run_moe_combine_backward;
    case Op::grouped_linear_forward:
      return run_grouped_linear_forward;
    case Op::grouped_linear_backward:
      return run_grouped_linear_backward;
    case Op::batched_matmul:
      return run_batched_matmul;
    case Op::lm_head_logits:
      return run_lm_head_logits;
    case Op::logprobs_of_logits:
      return run_logprobs_of_logits;
  }
  return nullptr;
}

}  // namespace optable
