#include "kernels/supports.h"

#include <fmt/format.h>

#include <array>
#include <atomic>

#include "kernels/invariance.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

namespace r1::ops {

namespace {

// clang-format off
constexpr std::array<const char*, kNumOps> kOpNames = {
    "embedding_forward",     "embedding_backward",     "rmsnorm_forward",
    "rmsnorm_backward",      "linear_forward",         "linear_backward",
    "rope_forward",          "rope_backward",          "attention_forward",
    "attention_backward",    "kv_cache_write",         "attention_cached",
    "swiglu_forward",        "swiglu_backward",        "dropout_forward",
    "dropout_backward",      "add",
    "add_inplace",           "scale_inplace",          "zero",
    "convert",               "sum_squares",           "token_logprobs_forward", "token_logprobs_backward",
    "cross_entropy_forward", "cross_entropy_backward", "adamw_update",
    "rope_interleaved_forward", "rope_interleaved_backward", "copy_columns",
    "moe_route_forward",     "moe_route_backward",     "moe_permute",
    "moe_combine_forward",   "moe_combine_backward",   "grouped_linear_forward",
    "grouped_linear_backward", "batched_matmul",      "lm_head_logits",
    "logprobs_of_logits",    "swiglu_packed_forward", "swiglu_packed_backward",
    "rope_kv_cache_write",   "linear_forward_each",    "rope_qkv_cache_write",
    "rope_qkv_attention_cached", "rmsnorm_linear_forward", "linear_rmsnorm_forward",
};
// clang-format on

std::array<std::array<std::atomic<int64_t>, 3>, kNumOps> g_counts{};

Support native(const char* how) { return {Path::native, how}; }
Support unsupported(const char* why) { return {Path::unsupported, why}; }

// The CPU runs every op in f32 (adamw_update's compute copy may also be bf16: it is only rounding).
Support on_cpu(Op op, DType dtype) {
  if (dtype == DType::F32) return native("the f32 CPU reference (kernels/cpu)");
  if (dtype == DType::BF16 && op == Op::adamw_update)
    return native("the f32 CPU update, the copy rounded to bf16");
  if (dtype == DType::BF16 && op == Op::convert) return native("f32 rounded to bf16 on the CPU");
  if (dtype == DType::BF16) return unsupported("bf16 tensors are supported on CUDA only");
  return unsupported("not a compute dtype (f32, or bf16 on CUDA)");
}

#ifdef R1_HAVE_CUDA
Support fallback(const char* how) { return {Path::fallback, how}; }

bool is_attention(Op op) {
  return op == Op::attention_forward || op == Op::attention_backward || op == Op::attention_cached;
}

Support attention_on_cuda(Op op, const OpShape& s, DType dtype) {
  const int64_t HD = s.HD, HDv = s.HDv ? s.HDv : s.HD;
  if (op == Op::attention_cached && s.latent && batch_invariant())
    return unsupported("the batch-invariant forward (rollout.exact_logprobs) has no decode over a latent (MLA) cache");
  if (op == Op::attention_cached && s.latent) {
    if (HD < 1 || HDv < 1 || HDv > HD || HD > cuda::kMaxLatentHeadDim) {
      static_assert(cuda::kMaxLatentHeadDim == 1024, "the message below");
      return unsupported("CUDA attention over a latent cache takes head dims 1 <= HDv <= HD <= 1024");
    }
    return native("latent_attention.cu (the heads share each staged latent row, CUDA cores)");
  }
  if (HD < 1 || HDv < 1 || HD > cuda::kMaxHeadDim || HDv > cuda::kMaxHeadDim) {
    static_assert(cuda::kMaxHeadDim == 256, "the message below");
    return unsupported("CUDA attention takes head dims 1 to 256");
  }
  if (batch_invariant() && op != Op::attention_backward) {  // kernels/invariance.h: one order for both forwards
    if (dtype != DType::BF16 || !cuda::flash_attention_native(HD, HDv) || !s.aligned)
      return unsupported(
          "the batch-invariant forward (rollout.exact_logprobs) takes bf16 attention at the tensor-core head dims, "
          "16-byte aligned");
    if (op == Op::attention_cached) return native("decode_exact.cu (the training forward's key tiles, one pass)");
  }
  if (op == Op::attention_cached) return native("decode_attention.cu (flash-decoding over the paged cache)");
  if (dtype == DType::F32) return native("the f32 kernels of attention.cu");
  if (!cuda::flash_attention_native(HD, HDv)) {
    return fallback(
        "no tensor-core instantiation for these head dims: the f32 kernels on widened copies (4 extra f32 "
        "copies of the operands, several times slower)");
  }
  if (!s.aligned) return fallback("operands not 16-byte aligned: the f32 kernels on widened copies");
  return native("the bf16 tensor-core flash kernels (flash_forward.cu, flash_backward.cu)");
}
#endif

Support on_cuda(Op op, const OpShape& s, DType dtype) {
#ifdef R1_HAVE_CUDA
  if (dtype != DType::F32 && dtype != DType::BF16) {
    return unsupported("not a compute dtype (f32 or bf16)");
  }
  if (is_attention(op)) return attention_on_cuda(op, s, dtype);
  if (op == Op::rope_qkv_attention_cached) {
    const bool fused = dtype == DType::BF16 && cuda::flash_attention_native(s.HD, s.HDv ? s.HDv : s.HD) &&
                       s.aligned && s.group >= 1 && s.group <= cuda::kFusedRopeMaxGroup && !s.qk_norm && !batch_invariant();
    if (fused) return native("decode_attention_mma.cu: RoPE, cache write and attention in one launch");
    return fallback("rope_qkv_cache_write then attention_cached: two launches, the same bits");
  }
  if (op == Op::rmsnorm_linear_forward) {
    if (dtype == DType::BF16 && s.aligned && !batch_invariant())
      return native("decode_gemm.cu: the norm in the product's prologue, SwiGLU in its epilogue (one launch; "
                    "with the decode GEMM on and at most 256 rows, else it declines)");
    return fallback("declined: the caller runs rmsnorm_forward then the product");
  }
  if (op == Op::linear_rmsnorm_forward) {
    if (dtype == DType::BF16 && s.aligned && !batch_invariant())
      return native("linear_norm.cu: the product's K split into f32 partials (one cuBLASLt launch), then their "
                    "sum, the residual and the norm in one launch (at most 256 rows and 8192 columns, the decode GEMM "
                    "off; else it declines)");
    return fallback("declined: the caller runs linear_forward then rmsnorm_forward");
  }
  if (op == Op::batched_matmul) return native("one strided-batched cuBLASLt GEMM (gemm.cpp)");
  return native(dtype == DType::F32 ? "the f32 CUDA kernel" : "the bf16 CUDA kernel");
#else
  (void)op, (void)s, (void)dtype;
  return unsupported("this build has no CUDA backend");
#endif
}

}  // namespace

const char* op_name(Op op) { return kOpNames[size_t(op)]; }

const char* path_name(Path p) {
  switch (p) {
    case Path::native:
      return "native";
    case Path::fallback:
      return "fallback";
    case Path::unsupported:
      return "unsupported";
  }
  return "?";
}

std::string describe(const OpShape& s) {
  std::string d;
  if (s.HD) d = fmt::format("HD={}", s.HD);
  if (s.HDv && s.HDv != s.HD) d += fmt::format("{}HDv={}", d.empty() ? "" : " ", s.HDv);
  if (!s.aligned) d += d.empty() ? "unaligned" : " unaligned";
  if (s.latent) d += d.empty() ? "latent" : " latent";
  if (s.group) d += fmt::format("{}group={}", d.empty() ? "" : " ", s.group);
  if (s.qk_norm) d += d.empty() ? "qk_norm" : " qk_norm";
  return d;
}

Support supports(Op op, const OpShape& shape, DType dtype, Device device) {
  if (op == Op::cross_entropy_forward || op == Op::cross_entropy_backward) {
    if (dtype != DType::F32) return unsupported("the cross-entropy takes f32 log-probs and mask");
  }
  if (op == Op::logprobs_of_logits && dtype != DType::F32) return unsupported("the log-probs of logits take f32 logits");
  return device == Device::CPU ? on_cpu(op, dtype) : on_cuda(op, shape, dtype);
}

int64_t path_count(Op op, Path path) {
  return g_counts[size_t(op)][size_t(path)].load(std::memory_order_relaxed);
}

void reset_path_counts() {
  for (auto& per_op : g_counts)
    for (auto& c : per_op) c.store(0, std::memory_order_relaxed);
}

void count_path(Op op, Path path) {
  g_counts[size_t(op)][size_t(path)].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace r1::ops
