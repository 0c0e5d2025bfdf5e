// GEMMs through cuBLASLt (f32, or bf16 operands with a bf16 or f32 result; fp32 compute). Row-major
// callers, column-major library: C = op(A) op(B) row-major is C^T = op(B)^T op(A)^T column-major, so
// the operands swap and each keeps its own transpose flag. Each distinct problem (shape, strides,
// dtypes, transposes, beta != 0, alignments, bias epilogue, strided batch) gets its descriptors and
// heuristic algorithm once; later calls only set the bias pointer and launch.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <memory>
#include <unordered_map>

#include "base/error.h"
#include "kernels/cuda/cublas_check.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/invariance.h"

namespace r1::cuda {

namespace {

enum class Ty : uint8_t { F32, BF16 };

cudaDataType_t cuda_type(Ty t) { return t == Ty::BF16 ? CUDA_R_16BF : CUDA_R_32F; }
uint32_t elem_bytes(Ty t) { return t == Ty::BF16 ? 2 : 4; }
const char* ty_name(Ty t) { return t == Ty::BF16 ? "bf16" : "f32"; }

// `count` products at once (a strided batch): operand X's matrix i starts stride_x elements after
// its matrix i - 1 (0: one matrix for all). count 1 is the plain GEMM, its layouts as created.
struct Batch {
  int64_t count = 1, stride_a = 0, stride_b = 0, stride_c = 0;
  bool operator==(const Batch&) const = default;
};

// Largest power of two (element size .. 256) dividing the address, and in a batch the stride too
// (every matrix's start): cuBLASLt assumes 256-byte aligned operands unless told otherwise, and
// views into the middle of a tensor often are not.
uint32_t alignment(const void* p, Ty t, int64_t count, int64_t stride) {
  auto a = reinterpret_cast<uintptr_t>(p);
  if (count > 1) a |= uintptr_t(stride) * elem_bytes(t);
  uint32_t al = 256;
  while (al > elem_bytes(t) && a % al != 0) al >>= 1;
  return al;
}

struct Key {
  int64_t M, N, K, lda, ldb, ldc;
  bool trans_a, trans_b, beta_nonzero, bias, invariant, one_pass;
  int64_t ref_rows;  // invariant with a fixed algorithm: the rows it was chosen at (g_reference_rows), else 0
  Ty a, b, c;
  uint32_t al_a, al_b, al_c;
  Batch batch;
  bool operator==(const Key&) const = default;
};

struct KeyHash {
  size_t operator()(const Key& k) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    const Batch& b = k.batch;
    for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc, b.count, b.stride_a, b.stride_b, b.stride_c, k.ref_rows})
      mix(uint64_t(v));
    mix(uint64_t(k.trans_a) | uint64_t(k.trans_b) << 1 | uint64_t(k.beta_nonzero) << 2 | uint64_t(k.bias) << 3 |
        uint64_t(k.a) << 4 | uint64_t(k.b) << 6 | uint64_t(k.c) << 8 | uint64_t(k.invariant) << 10 |
        uint64_t(k.one_pass) << 11);
    mix(uint64_t(k.al_a) | uint64_t(k.al_b) << 16 | uint64_t(k.al_c) << 32);
    return size_t(h);
  }
};

// Descriptors and algorithm of one problem. Never destroyed (like the context: cuBLASLt must not be
// torn down after the runtime unloads at exit).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, c = nullptr;  // B^T, A^T, C^T
  cublasLtMatmulAlgo_t algo{};
};

// Owner of a preference object while the heuristic is queried.
struct Pref {
  cublasLtMatmulPreference_t p = nullptr;
  ~Pref() { if (p) cublasLtMatmulPreferenceDestroy(p); }
};

void set_pref(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, uint32_t v) {
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, attr, &v, sizeof(v)));
}

void set_batch(cublasLtMatrixLayout_t l, int64_t count, int64_t stride) {
  const int32_t n = int32_t(count);  // the attribute's type; batched_matmul checks the range
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &n, sizeof(n)));
  CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                sizeof(stride)));
}

// How a row-invariant plan takes its algorithm (set_invariant_gemm_policy): with a fixed algorithm
// (the default), the one-pass algorithm chosen for the same product at g_reference_rows rows,
// whatever the plan's M (one kernel for every M); or (0) the best one-pass algorithm for its own
// shape, whose K order may differ between M (measured on an H100: the f32 logits of a 256-wide head
// differed by an ulp between the sampler's 16 rows and the trainer's).
int64_t g_reference_rows = kInvariantGemmRows;

Plan* plan_for(const Key& k);

// Whether the algorithm sums K in one pass per output tile: a split-K count of 1 and no reduction.
bool one_pass(const cublasLtMatmulAlgo_t& algo) {
  int32_t splits = 1;
  uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
  size_t written = 0;
  CUBLAS_CHECK(
      cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof(splits), &written));
  CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                                    sizeof(scheme), &written));
  return splits <= 1 && scheme == CUBLASLT_REDUCTION_SCHEME_NONE;
}

// Null when cuBLASLt has no algorithm with the bias epilogue, or no one-pass algorithm for a OnePass
// problem (the caller falls back); otherwise no algorithm at all is an error.
std::unique_ptr<Plan> make_plan(const Key& k) {
  Context& ctx = context();
  auto plan = std::make_unique<Plan>();
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_first = k.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;   // B goes first
  const cublasOperation_t op_second = k.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;  // then A
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof(op_first)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof(op_second)));
  if (k.bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = cuda_type(k.c);
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                sizeof(bias_type)));
  }
  // Column-major shapes as stored: B^T is (N, K), or (K, N) when transposed; A^T is (K, M) or (M, K).
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->first, cuda_type(k.b), k.trans_b ? k.K : k.N,
                                          k.trans_b ? k.N : k.K, k.ldb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->second, cuda_type(k.a), k.trans_a ? k.M : k.K,
                                          k.trans_a ? k.K : k.M, k.lda));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c, cuda_type(k.c), k.N, k.M, k.ldc));
  if (const Batch& b = k.batch; b.count > 1) {  // each layout its operand's stride (B first, as above)
    set_batch(plan->first, b.count, b.stride_b);
    set_batch(plan->second, b.count, b.stride_a);
    set_batch(plan->c, b.count, b.stride_c);
  }

  auto drop = [&] {  // no plan: the descriptors go
    cublasLtMatmulDescDestroy(plan->desc);
    cublasLtMatrixLayoutDestroy(plan->first);
    cublasLtMatrixLayoutDestroy(plan->second);
    cublasLtMatrixLayoutDestroy(plan->c);
    return nullptr;
  };
  // A fixed-algorithm row-invariant plan takes the algorithm chosen at its reference rows, whatever
  // this M's own heuristic would pick; with a bias, whether the epilogue is used is also decided
  // there (null: the caller broadcasts, at every M alike). An M the algorithm cannot take fails.
  if (k.ref_rows > 0 && k.M != k.ref_rows) {
    Key ref = k;
    ref.M = k.ref_rows;
    const Plan* rp = plan_for(ref);
    if (!rp) return drop();
    plan->algo = rp->algo;
    cublasLtMatmulHeuristicResult_t check{};
    const cublasStatus_t ok = cublasLtMatmulAlgoCheck(ctx.lt, plan->desc, plan->first, plan->second, plan->c,
                                                      plan->c, &plan->algo, &check);
    if (ok != CUBLAS_STATUS_SUCCESS)
      fail("gemm: the batch-invariant forward's algorithm for N={} K={}{} (chosen at M={}) does not take M={}", k.N,
           k.K, k.bias ? " (bias epilogue)" : "", k.ref_rows, k.M);
    return plan;
  }

  Pref pref;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref.p));
  // Row-invariant or one pass: no workspace (so no split of K reduced through it) and no reduction scheme.
  const bool single = k.invariant || k.one_pass;
  const uint64_t ws = single ? 0 : ctx.workspace_bytes;
  if (single) set_pref(pref.p, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, CUBLASLT_REDUCTION_SCHEME_NONE);
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                    sizeof(ws)));
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, k.al_b);
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, k.al_a);
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, k.al_c);
  set_pref(pref.p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, k.al_c);
  constexpr int kAsk = 8;  // candidates, best first: a row-invariant plan takes the first without split-K
  cublasLtMatmulHeuristicResult_t heurs[kAsk]{};
  int found = 0;
  CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(ctx.lt, plan->desc, plan->first, plan->second, plan->c, plan->c,
                                              pref.p, single ? kAsk : 1, heurs, &found));
  int pick = found > 0 ? 0 : -1;
  if (single) {
    pick = -1;
    for (int i = 0; i < found && pick < 0; ++i)
      if (heurs[i].state == CUBLAS_STATUS_SUCCESS && one_pass(heurs[i].algo)) pick = i;
  }
  if (pick < 0) {
    drop();
    if (k.bias || k.one_pass) return nullptr;
    fail(
        "gemm: cuBLASLt has no algorithm{} for {} x {} -> {}{} M={} N={} K={} trans_a={} trans_b={} lda={} "
        "ldb={} ldc={} batch={} (strides {}, {}, {})",
        k.invariant ? " without a split of K (the batch-invariant forward)" : "", ty_name(k.a), ty_name(k.b),
        ty_name(k.c), k.bias ? " (bias epilogue)" : "", k.M, k.N, k.K, k.trans_a, k.trans_b, k.lda, k.ldb, k.ldc,
        k.batch.count, k.batch.stride_a, k.batch.stride_b, k.batch.stride_c);
  }
  plan->algo = heurs[pick].algo;
  return plan;
}

// Not thread-safe, like the rest of the backend (one stream, one scratch area).
Plan* plan_for(const Key& k) {
  static auto* cache = new std::unordered_map<Key, std::unique_ptr<Plan>, KeyHash>();
  auto it = cache->find(k);
  if (it == cache->end()) it = cache->emplace(k, make_plan(k)).first;
  return it->second.get();
}

// False (nothing done) only when a bias epilogue, or a OnePass problem, has no algorithm.
bool gemm_any(const Batch& bat, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const void* A, Ty at, int64_t lda, const void* B, Ty bt, int64_t ldb, float beta, void* C,
              Ty ct, int64_t ldc, const void* bias, GemmOrder order = GemmOrder::Any,
              const void* c_in = nullptr) {
  if (M == 0 || N == 0 || bat.count == 0) return true;
  Context& ctx = context();
  if (c_in == C) c_in = nullptr;
  R1_CHECK(!c_in || bat.count <= 1, "gemm: a separate C input is for one product only");
  if (K == 0) {
    // Empty sum: C = beta * C_in. Only beta = 0 (clear) and beta = 1 (keep) occur in the backend,
    // and callers with a bias handle K = 0 themselves.
    if (bias) return false;
    if (beta == 1.0f) {
      if (c_in) {
        const size_t es = elem_bytes(ct);
        CUDA_CHECK(cudaMemcpy2DAsync(C, size_t(ldc) * es, c_in, size_t(ldc) * es, size_t(N) * es, size_t(M),
                                     cudaMemcpyDeviceToDevice, ctx.stream));
      }
      return true;
    }
    R1_CHECK(beta == 0.0f, "gemm: K = 0 with beta = {} is not supported", beta);
    const size_t es = elem_bytes(ct);
    for (int64_t i = 0; i < bat.count; ++i) {
      void* Ci = static_cast<char*>(C) + size_t(i * bat.stride_c) * es;
      CUDA_CHECK(cudaMemset2DAsync(Ci, size_t(ldc) * es, 0, size_t(N) * es, size_t(M), ctx.stream));
    }
    return true;
  }
  const Batch b = bat.count > 1 ? bat : Batch{};  // one product: the plain GEMM's key
  const uint32_t al_a = alignment(A, at, b.count, b.stride_a), al_b = alignment(B, bt, b.count, b.stride_b),
                 al_c = std::min(alignment(C, ct, b.count, b.stride_c),
                                 c_in ? alignment(c_in, ct, b.count, b.stride_c) : 256u);
  const bool invariant = order == GemmOrder::RowInvariant, single = order == GemmOrder::OnePass;
  const bool no_workspace = invariant || single;  // no split of K reduced through the workspace
  // Each M's own invariant plan: whether a bias epilogue has an algorithm may depend on M, so the
  // caller always broadcasts (the fixed policy decides at its reference rows, for every M).
  if (invariant && bias && g_reference_rows == 0) return false;
  const Key key{M,         N,         K,      lda,   ldb,   ldc,  trans_a, trans_b, beta != 0.0f, bias != nullptr,
                invariant, single,    invariant ? g_reference_rows : 0, at, bt, ct, al_a, al_b, al_c, b};
  Plan* plan = plan_for(key);
  if (!plan) return false;
  if (bias) {
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  CUBLAS_CHECK(cublasLtMatmul(ctx.lt, plan->desc, &alpha, B, plan->first, A, plan->second, &beta,
                              c_in ? c_in : C, plan->c, C, plan->c, &plan->algo,
                              no_workspace ? nullptr : ctx.workspace, no_workspace ? 0 : ctx.workspace_bytes,
                              ctx.stream));
  return true;
}

}  // namespace

void set_invariant_gemm_policy(int64_t reference_rows) {
  if (reference_rows < 0) fail("set_invariant_gemm_policy: reference_rows = {} must be >= 0", reference_rows);
  g_reference_rows = reference_rows;
}

GemmOrder forward_order() { return ops::batch_invariant() ? GemmOrder::RowInvariant : GemmOrder::Any; }

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, GemmOrder order) {
  gemm_any({}, trans_a, trans_b, M, N, K, alpha, A, Ty::F32, lda, B, Ty::F32, ldb, beta, C, Ty::F32, ldc,
           nullptr, order);
}

bool gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
          int64_t lda, const bf16* B, int64_t ldb, float beta, bf16* C, int64_t ldc, const bf16* bias,
          GemmOrder order, const bf16* c_in) {
  return gemm_any({}, trans_a, trans_b, M, N, K, alpha, A, Ty::BF16, lda, B, Ty::BF16, ldb, beta, C, Ty::BF16,
                  ldc, bias, order, c_in);
}

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
          int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc, GemmOrder order) {
  gemm_any({}, trans_a, trans_b, M, N, K, alpha, A, Ty::BF16, lda, B, Ty::BF16, ldb, beta, C, Ty::F32, ldc,
           nullptr, order);
}

bool gemm_split_k(int64_t M, int64_t N, int64_t K, int splits, const bf16* A, int64_t lda, const bf16* W,
                  int64_t ldw, float* partials) {
  R1_CHECK(splits >= 1 && K % splits == 0, "gemm_split_k: K = {} is not split {} ways evenly", K, splits);
  const int64_t k = K / splits;
  return gemm_any({splits, k, k, M * N}, false, true, M, N, k, 1.0f, A, Ty::BF16, lda, W, Ty::BF16, ldw, 0.0f,
                  partials, Ty::F32, N, nullptr, GemmOrder::OnePass);
}

namespace {
// out[b] = inp[b] @ op(w[b]) for every b: one strided-batched GEMM (A = inp, B = w).
void batched(void* out, int64_t ld_out, int64_t stride_out, const void* inp, int64_t ld_inp,
             int64_t stride_inp, const void* w, int64_t ld_w, int64_t stride_w, Ty t, bool trans_w, int64_t B,
             int64_t M, int64_t N, int64_t K) {
  R1_CHECK(B <= INT32_MAX, "batched_matmul: {} matrices exceed cuBLASLt's i32 batch count", B);
  gemm_any({B, stride_inp, stride_w, stride_out}, false, trans_w, M, N, K, 1.0f, inp, t, ld_inp, w, t, ld_w,
           0.0f, out, t, ld_out, nullptr);
}
}  // namespace

void batched_matmul(float* out, int64_t ld_out, int64_t stride_out, const float* inp, int64_t ld_inp,
                    int64_t stride_inp, const float* w, int64_t ld_w, int64_t stride_w, bool trans_w,
                    int64_t B, int64_t M, int64_t N, int64_t K) {
  batched(out, ld_out, stride_out, inp, ld_inp, stride_inp, w, ld_w, stride_w, Ty::F32, trans_w, B, M, N, K);
}

void batched_matmul(bf16* out, int64_t ld_out, int64_t stride_out, const bf16* inp, int64_t ld_inp,
                    int64_t stride_inp, const bf16* w, int64_t ld_w, int64_t stride_w, bool trans_w,
                    int64_t B, int64_t M, int64_t N, int64_t K) {
  batched(out, ld_out, stride_out, inp, ld_inp, stride_inp, w, ld_w, stride_w, Ty::BF16, trans_w, B, M, N, K);
}

}  // namespace r1::cuda
