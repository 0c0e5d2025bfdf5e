#pragma once
// Which op cases a backend runs, and how: natively (the op's own kernel), through a declared
// fallback (a slower path that computes the same thing), or not at all. r1::ops (ops.cpp) asks
// supports() before it runs a case, so an unsupported case is an r1::Error naming the op and the
// shape, and a fallback is never silent: supports() reports it, and the path counters record which
// path each call took (the op tests assert that the two agree).
//
// What decides the path (everything else runs natively on both backends, f32 on the CPU and f32 or
// bf16 on CUDA):
// - The dtype: the op's compute dtype (ops.h): f32 everywhere, bf16 on CUDA only. Ops whose
//   operands are f32 by definition (cross_entropy_*) take f32 only; adamw_update's dtype is its
//   compute copy's, f32 or bf16, on either device.
// - attention_forward/backward: the q/k head dim HD and the value head dim HDv. CPU: any. CUDA f32:
//   each <= 256 (attention.cu). CUDA bf16: the tensor-core kernels for (HD, HDv) in {(32, 32),
//   (64, 64), (96, 96), (128, 128), (192, 192), (256, 256), (192, 128)} with 16-byte aligned
//   operands; any other HD, HDv <= 256, or an unaligned view, takes the declared fallback (the f32
//   kernels on widened copies: exact to bf16 rounding, several times slower, 4 extra f32 copies).
// - attention_cached: HD and HDv. CUDA: each <= 256 (decode_attention.cu); over a latent cache (no
//   v_cache, OpShape::latent) 1 <= HDv <= HD <= 1024 (latent_attention.cu); the CPU any.
// - rope_qkv_attention_cached: natively (one launch) on CUDA for bf16 at the tensor-core head dims
//   (HD = HDv), aligned, group <= 16 query heads per kv head, without qk_norm, outside the
//   batch-invariant forward; otherwise the declared fallback, rope_qkv_cache_write then
//   attention_cached (two launches, the same bits). The CPU runs the two ops' references.
// - rmsnorm_linear_forward: natively (one launch) on CUDA for bf16 on the decode GEMM
//   (decode_gemm.cu), aligned, outside the batch-invariant forward, while the decode GEMM is on
//   (cuda::set_decode_gemm; off by default) and for at most 256 rows; otherwise it declines (the
//   declared fallback: it does nothing and returns false, and the caller runs rmsnorm_forward and
//   the product). The CPU runs the two ops' references.
// - linear_rmsnorm_forward: natively (two launches: the product with K split in two f32 partials,
//   then their sum, the residual and the norm; K whole where IC is not a multiple of 16) on CUDA
//   for bf16, IC and OC multiples of 8, OC at most 8192, aligned, at most 256 rows, outside the
//   batch-invariant forward and while the decode GEMM is off (cuda::set_linear_norm_splits may
//   switch it off); otherwise it declines (the declared fallback: it does nothing and returns
//   false, and the caller runs linear_forward and rmsnorm_forward). The CPU runs the two ops'
//   references.
// - The MLA and mixture-of-experts ops (rope_interleaved_*, copy_columns, moe_*, grouped_linear_*,
//   batched_matmul) run natively on both (kernels/cuda/moe.cu, rope.cu, grouped_gemm.cu, gemm.cpp);
//   moe_permute has only i32 operands and is asked as f32.
//   CUDA takes E <= 2048 experts and interleaved head dims <= 4096 (shared memory; beyond, the op
//   fails naming the sizes).
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace r1::ops {

// Every op of ops.h, by name.
enum class Op : uint8_t {
  embedding_forward,
  embedding_backward,
  rmsnorm_forward,
  rmsnorm_backward,
  linear_forward,
  linear_backward,
  rope_forward,
  rope_backward,
  attention_forward,
  attention_backward,
  kv_cache_write,
  attention_cached,
  swiglu_forward,
  swiglu_backward,
  dropout_forward,
  dropout_backward,
  add,
  add_inplace,
  scale_inplace,
  zero,
  convert,
  sum_squares,
  token_logprobs_forward,
  token_logprobs_backward,
  cross_entropy_forward,
  cross_entropy_backward,
  adamw_update,
  rope_interleaved_forward,
  rope_interleaved_backward,
  copy_columns,
  moe_route_forward,
  moe_route_backward,
  moe_permute,
  moe_combine_forward,
  moe_combine_backward,
  grouped_linear_forward,
  grouped_linear_backward,
  batched_matmul,
  lm_head_logits,
  logprobs_of_logits,
  swiglu_packed_forward,
  swiglu_packed_backward,
  rope_kv_cache_write,
  linear_forward_each,
  rope_qkv_cache_write,
  rope_qkv_attention_cached,
  rmsnorm_linear_forward,
  linear_rmsnorm_forward,
};
constexpr int kNumOps = int(Op::linear_rmsnorm_forward) + 1;
const char* op_name(Op op);  // "attention_forward"

enum class Path : uint8_t { native, fallback, unsupported };
const char* path_name(Path p);  // "native" | "fallback" | "unsupported"

// The sizes that decide how an op runs (0: not given, or not relevant to the op).
struct OpShape {
  int64_t HD = 0;       // q/k head dim (attention ops)
  int64_t HDv = 0;      // value head dim (attention ops); 0: HDv = HD
  bool aligned = true;  // every operand 16-byte aligned (tensors from buffers and arenas are)
  bool latent = false;  // attention_cached over a latent cache (the values inside the keys, ops.h)
  int64_t group = 0;    // query heads per kv head (rope_qkv_attention_cached; 0: not given)
  bool qk_norm = false;  // q_norm and k_norm given (rope_qkv_attention_cached)
};
// "HD=192 HDv=128", "HD=64 unaligned", "HD=576 HDv=512 latent", "" when nothing is given
std::string describe(const OpShape& s);

struct Support {
  Path path = Path::native;
  const char* how = "";  // the kernel that runs, the fallback and its cost, or why the case cannot run
                         // (a static string: asking costs no allocation)
};

// How `op` runs for this shape and compute dtype on `device`, in this build (whether a GPU is
// present at run time is device_usable's question, tensor/device_memory.h).
Support supports(Op op, const OpShape& shape, DType dtype, Device device = Device::CPU);

// Calls of each op by path, in this process, counted by ops.cpp when a case runs (host calls: a
// replayed CUDA graph does not count again). For tests and profiles; cheap (one relaxed atomic).
int64_t path_count(Op op, Path path);
void reset_path_counts();
void count_path(Op op, Path path);

}  // namespace r1::ops
