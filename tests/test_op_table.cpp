// The op table (op_table.h): every op x dtype x device x shape against its double-precision
// reference, run as one parameterised test: {Cpu,Cuda}/OpTable.MatchesReference/<op> runs every
// row of the op on both dtypes; a failure names its case (op, dtype, device, sizes). The CUDA
// tests skip without a GPU.
//
// Rows: each op at the shapes of the old hand-written tests (tests/test_ops.cpp and the CUDA f32
// and bf16 op tests), odd sizes, and the attention head sizes 64/96/128/192/256 (and q/k 192 with
// v 128, MLA). Rows that fill a GPU run on CUDA only (their CPU reference samples rows).
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <vector>

#include "op_table.h"
#include "require_gpu.h"
#include "tensor/device_memory.h"

namespace optable {

namespace {

using ops::Path;
constexpr unsigned kGpu = kCuda;
constexpr int64_t M = 1024 * 1024;

// Each shape for each of the ops.
void add_rows(std::vector<Row>& rows, std::initializer_list<Op> ops_, std::initializer_list<Row> shapes) {
  for (Op op : ops_)
    for (Row r : shapes) {
      r.op = op;
      rows.push_back(r);
    }
}

std::vector<Row> table() {
  std::vector<Row> t;
  const Op any = Op::zero;  // placeholder: add_rows sets each row's op
  add_rows(t, {Op::embedding_forward, Op::embedding_backward},
           {{any, {.C = 37, .V = 11, .T = 13, .repeats = true}},
            {any, {.C = 37, .V = 7, .T = 13}},
            {any, {.C = 1024, .V = 5000, .T = 4096}, kF32, kGpu},
            {any, {.C = 896, .V = 32000, .T = 8192}, kBF16, kGpu}});
  add_rows(t, {Op::rmsnorm_forward, Op::rmsnorm_backward},
           {{any, {.N = 13, .C = 37}},
            {any, {.N = 37, .C = 100}},
            {any, {.N = 3, .C = 4099}},
            {any, {.N = 4096, .C = 1024}, kF32, kGpu},
            {any, {.N = 8192, .C = 896}, kBF16, kGpu},
            {any, {.N = 8192, .C = 1536}, kBF16, kGpu}});
  add_rows(t, {Op::linear_forward, Op::linear_backward},
           {{any, {.N = 13, .IC = 37, .OC = 19, .bias = true}},
            {any, {.N = 13, .IC = 37, .OC = 19}},
            {any, {.N = 1, .IC = 5, .OC = 3}},
            {any, {.N = 37, .IC = 100, .OC = 19, .bias = true}},
            {any, {.N = 37, .IC = 100, .OC = 19, .offset = 3, .bias = true}},  // unaligned operands
            {any, {.N = 33, .IC = 37, .OC = 29, .offset = 1}},
            {any, {.N = 2048, .IC = 1024, .OC = 1024, .bias = true}, kF32, kGpu},
            {any, {.N = 4096, .IC = 1024, .OC = 3072}, kF32, kGpu},
            {any, {.N = 8192, .IC = 1536, .OC = 4864}, kBF16, kGpu},                 // MLP up
            {any, {.N = 8192, .IC = 4864, .OC = 896}, kBF16, kGpu},                  // MLP down
            {any, {.N = 8192, .IC = 896, .OC = 1152, .bias = true}, kBF16, kGpu}});  // fused q/k/v
  add_rows(t, {Op::linear_forward}, {{any, {.N = 64, .IC = 32, .OC = 48, .wide_out = true}, kBF16}});
  // A decoder layer's o_proj and down_proj sum the residual stream in the product.
  add_rows(t, {Op::linear_forward},
           {{any, {.N = 13, .IC = 37, .OC = 19, .residual = true}},
            {any, {.N = 13, .IC = 37, .OC = 19, .bias = true, .residual = true}},
            {any, {.N = 33, .IC = 37, .OC = 29, .offset = 1, .residual = true}},  // unaligned operands
            {any, {.N = 37, .IC = 100, .OC = 19, .offset = 3, .bias = true, .residual = true}},
            {any, {.N = 64, .IC = 896, .OC = 896, .residual = true}, kBF16, kGpu},  // a decode step's o_proj
            {any, {.N = 8192, .IC = 4864, .OC = 896, .residual = true}, kBF16, kGpu},  // MLP down
            {any, {.N = 2048, .IC = 1024, .OC = 1024, .bias = true, .residual = true}, kF32, kGpu}});
  // A decode step's rows take the decode GEMM (kernels/cuda/decode_gemm.cu): one row, partial row,
  // column and K tiles, a split of K, 200 rows.
  add_rows(t, {Op::linear_forward},
           {{any, {.N = 1, .IC = 4864, .OC = 896, .residual = true}, kBF16, kGpu},
            {any, {.N = 37, .IC = 136, .OC = 130, .bias = true, .residual = true}, kBF16, kGpu},
            {any, {.N = 200, .IC = 1536, .OC = 2048, .bias = true}, kBF16, kGpu}});
  // A layer's q, k and v of one x (one launch at a decode step's rows on CUDA; a prefill's rows and
  // the CPU run each product).
  add_rows(t, {Op::linear_forward_each},
           {{any, {.N = 13, .IC = 40, .bias = true, .widths = {19, 8, 8}}},
            {any, {.N = 1, .IC = 64, .widths = {32}}},
            {any, {.N = 37, .IC = 136, .bias = true, .widths = {130, 64}}},
            {any, {.N = 64, .IC = 896, .bias = true, .widths = {896, 128, 128}}, kBF16, kGpu},
            {any, {.N = 200, .IC = 1536, .bias = true, .widths = {1536, 256, 256}}, kBF16, kGpu},
            {any, {.N = 2048, .IC = 896, .bias = true, .widths = {896, 128, 128}}, kBF16, kGpu}});
  // A decode step's RMSNorm and its product in one op (the decode GEMM on CUDA bf16, which the
  // runner switches on; K a multiple of 8 there): q/k/v with biases, o-like with a residual, and
  // gate/up with the SwiGLU, at 0.5B's widths and partial tiles.
  add_rows(t, {Op::rmsnorm_linear_forward},
           {{any, {.N = 13, .IC = 37, .OC = 19, .bias = true, .residual = true}, kBothDtypes, kCpu},
            {any, {.N = 5, .IC = 40, .OC = 24, .swiglu = true}},
            {any, {.N = 37, .IC = 136, .OC = 72, .bias = true}},
            {any, {.N = 37, .IC = 136, .OC = 130, .residual = true}},
            {any, {.N = 64, .IC = 896, .OC = 1152, .bias = true}, kBF16, kGpu},
            {any, {.N = 64, .IC = 896, .OC = 4864, .swiglu = true}, kBF16, kGpu},
            {any, {.N = 256, .IC = 1536, .OC = 8960, .swiglu = true}, kBF16, kGpu}});
  // An output projection and the next norm in one op (K split into partials on CUDA bf16, declined
  // in f32): o-like and down-like widths of 0.5B and 1.5B, a bias, partial rows, K that does not halve.
  add_rows(t, {Op::linear_rmsnorm_forward},
           {{any, {.N = 13, .IC = 40, .OC = 24, .bias = true, .residual = true}},
            {any, {.N = 5, .IC = 136, .OC = 72}},
            {any, {.N = 37, .IC = 256, .OC = 128, .residual = true}, kBothDtypes, kCpu},
            {any, {.N = 64, .IC = 896, .OC = 896, .residual = true}, kBF16, kGpu},
            {any, {.N = 64, .IC = 4864, .OC = 896, .residual = true}, kBF16, kGpu},
            {any, {.N = 256, .IC = 8960, .OC = 1536, .residual = true}, kBF16, kGpu},
            {any, {.N = 3, .IC = 1536, .OC = 1536, .bias = true, .residual = true}, kBF16, kGpu},
            // The finish's widest row (1024 threads of 8 columns; one pack more declines:
            // CudaOps.LinearNormDeclinesWhatItCannotTake).
            {any, {.N = 2, .IC = 64, .OC = 8192, .residual = true}, kBF16, kGpu}});
  add_rows(t, {Op::rope_forward, Op::rope_backward},
           {{any, {.T = 13, .H = 3, .HD = 16, .maxpos = 4000}},
            {any, {.T = 13, .H = 2, .HD = 8, .maxpos = 40}},
            {any, {.T = 13, .H = 3, .HD = 38, .maxpos = 7}},
            {any, {.T = 4096, .H = 16, .HD = 128, .maxpos = 32768}, kF32, kGpu},
            {any, {.T = 8192, .H = 16, .HD = 128, .maxpos = 32768}, kBF16, kGpu},
            {any, {.T = 8192, .H = 16, .HD = 64, .maxpos = 4096}, kBF16, kGpu}});
  add_rows(t, {Op::swiglu_forward, Op::swiglu_backward, Op::swiglu_packed_forward, Op::swiglu_packed_backward},
           {{any, {.N = 13, .I = 37}},
            {any, {.N = 3, .I = 4099}},
            {any, {.N = 4096, .I = 2816}, kF32, kGpu},
            {any, {.N = 8192, .I = 4864}, kBF16, kGpu}});
  add_rows(t, {Op::dropout_forward, Op::dropout_backward},
           {{any, {.N = 13, .I = 37}},
            {any, {.N = 3, .I = 4099}},
            {any, {.N = 1, .I = 5}},
            {any, {.N = 4096, .I = 2816}, kF32, kGpu},
            {any, {.N = 8192, .I = 3584}, kBF16, kGpu}});
  add_rows(t, {Op::add, Op::add_inplace, Op::scale_inplace, Op::zero, Op::convert, Op::sum_squares},
           {{any, {.N = 1001}},
            {any, {.N = 37}},
            {any, {.N = 1}},
            {any, {.N = 37, .offset = 3}},
            {any, {.N = 4 * M}, kF32, kGpu},
            {any, {.N = 8192 * 896}, kBF16, kGpu},
            {any, {.N = 8192 * 896 + 5, .offset = 3}, kBF16, kGpu}});
  add_rows(t, {Op::adamw_update},
           {{any, {.N = 37, .steps = 4}},
            {any, {.N = 481}},
            {any, {.N = 1000, .offset = 1}},
            {any, {.N = 4 * M}, kBothDtypes, kGpu},
            {any, {.N = 4 * M + 3, .offset = 1}, kBothDtypes, kGpu}});
  add_rows(t, {Op::cross_entropy_forward, Op::cross_entropy_backward},
           {{any, {.T = 9}}, {any, {.T = 13}}, {any, {.T = 13, .masked = true}}, {any, {.T = 4096}}});
  add_rows(
      t, {Op::attention_forward, Op::attention_backward},
      {{any, {.lens = {5, 1, 13, 7}, .NH = 4, .NKV = 2, .HD = 8}},  // GQA, a length-1 sequence
       {any, {.lens = {9, 4, 1}, .NH = 3, .NKV = 3, .HD = 12}},     // MHA
       {any, {.lens = {6, 0, 11}, .NH = 4, .NKV = 1, .HD = 6}},     // MQA, an empty sequence
       {any, {.lens = {1, 5, 7}, .NH = 3, .NKV = 1, .HD = 36}},
       {any, {.lens = {1, 1, 2}, .NH = 4, .NKV = 2, .HD = 80}},
       {any, {.lens = {0, 9, 0}, .NH = 2, .NKV = 2, .HD = 2}},
       {any, {.lens = {1, 5, 7}, .NH = 3, .NKV = 1, .HD = 16}},
       {any, {.lens = {33, 2}, .NH = 4, .NKV = 2, .HD = 40}},
       {any, {.lens = {1, 5, 7}, .NH = 3, .NKV = 1, .HD = 32}},
       {any, {.lens = {70, 1, 33}, .NH = 4, .NKV = 2, .HD = 64}},
       {any, {.lens = {0, 9, 0, 1}, .NH = 4, .NKV = 4, .HD = 96}},
       {any, {.lens = {129, 63, 65}, .NH = 6, .NKV = 2, .HD = 128}},
       {any, {.lens = {1, 70, 33}, .NH = 4, .NKV = 2, .HD = 192}},
       {any, {.lens = {40}, .NH = 2, .NKV = 1, .HD = 256}},
       {any, {.lens = {65, 2, 31}, .NH = 2, .NKV = 1, .HD = 256}},
       {any, {.lens = {70, 1, 33}, .NH = 4, .NKV = 2, .HD = 192, .HDv = 128}},  // MLA
       {any, {.lens = {9, 5}, .NH = 2, .NKV = 1, .HD = 64, .HDv = 32}},
       {any, {.lens = {33, 2}, .NH = 4, .NKV = 2, .HD = 64, .offset = 1}},  // unaligned views
       {any, {.lens = {2}, .NH = 1, .NKV = 1, .HD = 258}},                  // past CUDA's head dims
       {any, {.lens = {1024, 700, 1, 0, 333, 37}, .NH = 16, .NKV = 4, .HD = 128}, kF32, kGpu},
       {any, {.lens = {512, 512}, .NH = 8, .NKV = 8, .HD = 64}, kF32, kGpu},
       {any, {.lens = {1, 17, 300, 1024}, .NH = 14, .NKV = 2, .HD = 64}, kBF16, kGpu},
       {any, {.lens = {1, 17, 300, 1024}, .NH = 12, .NKV = 2, .HD = 128}, kBF16, kGpu},
       {any, {.lens = {1, 17, 300, 1024}, .NH = 14, .NKV = 2, .HD = 32}, kBF16, kGpu},
       {any,
        {.lens = {1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024}, .NH = 14, .NKV = 2, .HD = 64},
        kBF16,
        kGpu},
       {any,
        {.lens = {1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024}, .NH = 12, .NKV = 2, .HD = 128},
        kBF16,
        kGpu},
       {any,
        {.lens = {1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024}, .NH = 14, .NKV = 2, .HD = 32},
        kBF16,
        kGpu},
       {any, {.lens = {1, 17, 300, 1024}, .NH = 16, .NKV = 2, .HD = 192}, kBothDtypes, kGpu},
       {any, {.lens = {1, 17, 300, 1024}, .NH = 8, .NKV = 1, .HD = 256}, kBothDtypes, kGpu},
       {any, {.lens = {1, 17, 300, 1024}, .NH = 16, .NKV = 2, .HD = 192, .HDv = 128}, kBothDtypes, kGpu},
       {any, {.lens = {1024, 1024, 1024, 1024}, .NH = 16, .NKV = 16, .HD = 192, .HDv = 128}, kBF16, kGpu}});
  // The MLA and MoE ops. Small rows on both dtypes and devices (bf16 runs on CUDA only), then the
  // sizes of Moonlight / DeepSeek-V3 (128 query heads of 64 rope dims, 256 experts choosing 8 in 4
  // of 8 groups) and Qwen3-30B-A3B (128 experts, 8 chosen) on CUDA.
  add_rows(t, {Op::rope_interleaved_forward, Op::rope_interleaved_backward},
           {{any, {.T = 13, .H = 3, .HD = 8}},
            {any, {.T = 7, .H = 1, .HD = 64, .maxpos = 100}},
            {any, {.T = 5, .H = 2, .HD = 6}},
            {any, {.T = 4096, .H = 1, .HD = 64, .maxpos = 32768}, kBothDtypes, kGpu},
            {any, {.T = 1024, .H = 128, .HD = 64, .maxpos = 32768}, kBothDtypes, kGpu}});
  add_rows(t, {Op::copy_columns},
           {{any, {.N = 13, .IC = 24, .OC = 40}},
            {any, {.N = 5, .IC = 9, .OC = 7}},
            {any, {.N = 4096, .IC = 576, .OC = 192}, kBothDtypes, kGpu}});
  add_rows(
      t, {Op::moe_route_forward, Op::moe_route_backward, Op::moe_combine_forward, Op::moe_combine_backward},
      {{any, {.C = 24, .T = 37, .E = 8, .K = 2}},
       {any, {.C = 16, .T = 29, .E = 16, .K = 4, .G = 4, .TG = 2, .sigmoid = true}},
       {any, {.C = 8, .T = 5, .masked = true, .E = 6, .K = 6}},  // masked: renormalised
       {any, {.C = 13, .T = 11, .E = 5, .K = 2}},                // odd rows: element by element
       {any, {.C = 1024, .T = 2048, .E = 128, .K = 8}, kBothDtypes, kGpu},
       {any, {.C = 1024, .T = 2048, .E = 256, .K = 8, .G = 8, .TG = 4, .sigmoid = true}, kBothDtypes, kGpu}});
  // The grouping has i32 operands only: one dtype (asked as f32). A million assignments on CUDA.
  add_rows(t, {Op::moe_permute},
           {{any, {.T = 37, .E = 8, .K = 2}, kF32},
            {any, {.T = 29, .E = 16, .K = 4}, kF32},
            {any, {.T = 5, .E = 6, .K = 6}, kF32},
            {any, {.T = 1, .E = 300, .K = 3}, kF32},  // most experts empty
            {any, {.T = 4096, .E = 128, .K = 8}, kF32, kGpu},
            {any, {.T = 131072, .E = 256, .K = 8}, kF32, kGpu}});
  // The experts' grouped linears (N rows, IC in, OC out; experts 1, 4, 7, ... empty, expert 0 one
  // row): tails of every tile, stacked matrices with gaps between them, unaligned views and sizes off
  // the 16-byte copies (element by element), one expert, more experts than rows; then the tensor-core
  // sizes on CUDA (several row tiles per expert; 256 experts as DeepSeek-V3's).
  add_rows(t, {Op::grouped_linear_forward, Op::grouped_linear_backward},
           {{any, {.N = 37, .IC = 72, .OC = 40, .E = 6}},
            {any, {.N = 37, .IC = 72, .OC = 40, .E = 5, .gap = 24}},  // the last expert empty
            {any, {.N = 37, .IC = 72, .OC = 36, .E = 6, .gap = 12}},
            {any, {.N = 13, .IC = 19, .OC = 11, .E = 4, .gap = 5}},
            {any, {.N = 33, .IC = 40, .OC = 24, .offset = 3, .E = 5}},
            {any, {.N = 130, .IC = 64, .OC = 136, .E = 2}},
            {any, {.N = 9, .IC = 5, .OC = 3, .E = 1}},
            {any, {.N = 1, .IC = 16, .OC = 8, .E = 3}},
            {any, {.N = 7, .IC = 64, .OC = 48, .E = 300}},
            {any, {.N = 2000, .IC = 512, .OC = 256, .E = 64}, kBothDtypes, kGpu},
            {any, {.N = 3000, .IC = 1024, .OC = 384, .E = 8, .gap = 8}, kBothDtypes, kGpu},
            {any, {.N = 3001, .IC = 1000, .OC = 260, .E = 7, .gap = 3}, kBF16, kGpu},
            {any, {.N = 8192, .IC = 1024, .OC = 512, .E = 256}, kBF16, kGpu}});
  // MLA's absorbed products, every head in one op (T tokens, IC in, OC out, batch heads; trans:
  // w[b] (OC, IC)): matrices one after another with gaps after each row and matrix, and side by side
  // in shared rows (interleaved, as the heads in the tokens' rows), each way; one matrix, one token,
  // an empty sum (IC = 0), unaligned views; Moonlight's 16 heads (q_nope W_UK: 128 -> 512, then
  // W_UV^T: 512 -> 128), then DeepSeek-V3's 128 and a long prefill chunk on CUDA.
  add_rows(
      t, {Op::batched_matmul},
      {{any, {.T = 5, .IC = 16, .OC = 12, .batch = 3}},
       {any, {.T = 5, .IC = 16, .OC = 12, .batch = 3, .trans = true}},
       {any, {.T = 7, .IC = 19, .OC = 13, .gap = 5, .batch = 4}},
       {any, {.T = 7, .IC = 19, .OC = 13, .gap = 5, .batch = 4, .trans = true}},
       {any, {.T = 6, .IC = 24, .OC = 20, .gap = 3, .batch = 5, .interleaved = true}},
       {any, {.T = 6, .IC = 24, .OC = 20, .gap = 3, .batch = 5, .trans = true, .interleaved = true}},
       {any, {.T = 9, .IC = 33, .OC = 17, .gap = 2, .batch = 1}},
       {any, {.T = 1, .IC = 8, .OC = 4, .batch = 2, .trans = true, .interleaved = true}},
       {any, {.T = 3, .IC = 0, .OC = 5, .gap = 1, .batch = 2}},
       {any, {.T = 5, .IC = 40, .OC = 24, .offset = 3, .gap = 1, .batch = 3, .interleaved = true}},
       {any, {.T = 5, .IC = 128, .OC = 512, .gap = 64, .batch = 16, .interleaved = true}},
       {any, {.T = 5, .IC = 512, .OC = 128, .batch = 16, .trans = true, .interleaved = true}},
       {any,
        {.T = 64, .IC = 128, .OC = 512, .gap = 64, .batch = 128, .interleaved = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 64, .IC = 512, .OC = 128, .batch = 128, .trans = true, .interleaved = true},
        kBothDtypes,
        kGpu},
       {any, {.T = 2048, .IC = 128, .OC = 512, .gap = 64, .batch = 16, .interleaved = true}, kBF16, kGpu}});
  add_rows(t, {Op::kv_cache_write},
           {{any, {.T = 5, .NKV = 1, .HD = 6, .S = 2, .L = 9}},
            {any, {.T = 50, .NKV = 2, .HD = 192, .S = 3, .L = 40}},
            {any, {.T = 50, .NKV = 1, .HD = 256, .S = 3, .L = 40}},
            {any, {.T = 2048, .NKV = 4, .HD = 128, .S = 8, .L = 1024}, kF32, kGpu},
            {any, {.T = 2048, .NKV = 2, .HD = 64, .S = 8, .L = 1024}, kBF16, kGpu},
            {any, {.T = 4096, .NKV = 2, .HD = 128, .S = 16, .L = 512}, kBF16, kGpu},
            // blocks of 1 and 5 rows; keys and values with their own head dims (MLA)
            {any, {.T = 20, .NKV = 2, .HD = 12, .HDv = 8, .S = 3, .L = 30, .BS = 5}},
            {any, {.T = 50, .NKV = 2, .HD = 192, .HDv = 128, .S = 3, .L = 40, .BS = 1}},
            {any, {.T = 2048, .NKV = 16, .HD = 192, .HDv = 128, .S = 8, .L = 1024}, kBF16, kGpu},
            // a latent cache (MLA): keys only; odd rows (element by element), DeepSeek's 576
            {any, {.T = 7, .NKV = 1, .HD = 27, .S = 2, .L = 9, .BS = 4, .latent = true}},
            {any, {.T = 50, .NKV = 1, .HD = 576, .S = 3, .L = 40, .latent = true}},
            {any, {.T = 2048, .NKV = 1, .HD = 576, .S = 8, .L = 1024, .latent = true}, kBF16, kGpu}});
  add_rows(t, {Op::rope_kv_cache_write},
           {{any, {.T = 5, .NKV = 1, .HD = 6, .S = 2, .L = 9}},
            {any, {.T = 20, .NKV = 2, .HD = 12, .S = 3, .L = 30, .BS = 5}},
            {any, {.T = 64, .NKV = 2, .HD = 128, .S = 64, .L = 1200}, kBothDtypes, kGpu},  // a decode step
            {any, {.T = 2048, .NKV = 4, .HD = 64, .S = 8, .L = 1024}, kBF16, kGpu}});
  add_rows(t, {Op::rope_qkv_cache_write},
           {{any, {.T = 5, .NKV = 1, .HD = 6, .S = 2, .L = 9}},
            {any, {.T = 20, .NKV = 2, .HD = 12, .S = 3, .L = 30, .BS = 5}},
            {any, {.T = 64, .NKV = 2, .HD = 64, .S = 64, .L = 1200}, kBothDtypes, kGpu},  // a 0.5B decode step
            {any, {.T = 256, .NKV = 4, .HD = 128, .S = 256, .L = 1200}, kBF16, kGpu},
            // qk_norm (Qwen3): odd-sized heads (element loads), then a decode step of 8 KV heads
            {any, {.T = 20, .NKV = 2, .HD = 12, .S = 3, .L = 30, .BS = 5, .qk_norm = true}},
            {any, {.T = 64, .NKV = 8, .HD = 128, .S = 64, .L = 1200, .qk_norm = true}, kBothDtypes, kGpu}});
  add_rows(t, {Op::rope_qkv_attention_cached},
           {{any, {.T = 5, .NKV = 1, .HD = 6, .L = 9}},
            {any, {.T = 6, .NH = 6, .NKV = 2, .HD = 8, .L = 40, .BS = 4, .workspace = true}},
            {any, {.T = 4, .NKV = 2, .HD = 12, .L = 30, .BS = 5, .qk_norm = true}},
            // a 0.5B and a 1.5B decode step (CUDA bf16: one launch)
            {any, {.T = 64, .NH = 14, .NKV = 2, .HD = 64, .L = 1200, .workspace = true}, kBothDtypes, kGpu},
            {any, {.T = 64, .NH = 12, .NKV = 2, .HD = 128, .L = 1200, .workspace = true}, kBF16, kGpu},
            // short contexts (a block's first tiles reach its new row); 16 heads a group; 192/128
            {any, {.T = 16, .NH = 28, .NKV = 4, .HD = 128, .L = 100, .BS = 5}, kBF16, kGpu},
            {any, {.T = 8, .NH = 32, .NKV = 2, .HD = 64, .L = 300, .workspace = true}, kBF16, kGpu},
            {any, {.T = 6, .NH = 8, .NKV = 2, .HD = 192, .HDv = 128, .L = 500}, kBF16, kGpu},
            // long contexts: the key splits (the new row in the last split)
            {any, {.T = 3, .NH = 32, .NKV = 8, .HD = 128, .L = 9000, .workspace = true}, kBF16, kGpu},
            // CUDA's fallback: 20 heads a group; qk_norm
            {any, {.T = 4, .NH = 40, .NKV = 2, .HD = 64, .L = 300, .workspace = true}, kBF16, kGpu},
            {any, {.T = 8, .NH = 16, .NKV = 4, .HD = 128, .L = 300, .qk_norm = true}, kBF16, kGpu}});
  add_rows(
      t, {Op::attention_cached},
      {// scattered over the cache
       {any, {.T = 5, .NH = 3, .NKV = 1, .HD = 6, .S = 2, .L = 9, .scatter = true}},
       {any, {.T = 2048, .NH = 16, .NKV = 4, .HD = 128, .S = 8, .L = 1024, .scatter = true}, kF32, kGpu},
       {any, {.T = 2048, .NH = 14, .NKV = 2, .HD = 64, .S = 8, .L = 1024, .scatter = true}, kBF16, kGpu},
       {any, {.T = 4096, .NH = 12, .NKV = 2, .HD = 128, .S = 16, .L = 512, .scatter = true}, kBF16, kGpu},
       // decode steps, through the split (flash-decoding) path and without it
       {any,
        {.T = 1, .NH = 8, .NKV = 1, .HD = 128, .L = 1500, .rows = 1, .workspace = true}},  // the most splits
       {any, {.T = 5, .NH = 14, .NKV = 2, .HD = 64, .L = 1500, .rows = 1, .workspace = true}},  // G = 7
       {any, {.T = 5, .NH = 14, .NKV = 2, .HD = 64, .L = 1500, .rows = 1}},
       {any,
        {.T = 64, .NH = 12, .NKV = 2, .HD = 128, .L = 600, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 64, .NH = 4, .NKV = 2, .HD = 128, .L = 600, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 64, .NH = 2, .NKV = 2, .HD = 80, .L = 700, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any, {.T = 64, .NH = 2, .NKV = 2, .HD = 80, .L = 700, .rows = 1}, kBothDtypes, kGpu},
       {any, {.T = 6, .NH = 2, .NKV = 2, .HD = 80, .L = 300, .rows = 1, .workspace = true}},  // G = 1
       {any,
        {.T = 16, .NH = 8, .NKV = 2, .HD = 128, .L = 4500, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 8, .NH = 8, .NKV = 1, .HD = 256, .L = 4500, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 8, .NH = 8, .NKV = 1, .HD = 192, .L = 4500, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any, {.T = 8, .NH = 8, .NKV = 1, .HD = 192, .L = 1500, .rows = 1}, kBothDtypes, kGpu},
       {any,
        {.T = 3, .NH = 16, .NKV = 1, .HD = 64, .L = 1500, .rows = 1, .workspace = true}},  // two head groups
       {any,
        {.T = 4,
         .NH = 24,
         .NKV = 2,
         .HD = 64,
         .L = 1000,
         .rows = 1,
         .workspace = true}},  // groups of 8, 4
       // the tensor-core kernel (bf16): two groups of 16 and 4 heads; a long context (G = 7, as
       // Qwen2.5-7B) whose 4 warps' rounds and the splits leave partial tiles
       {any, {.T = 4, .NH = 40, .NKV = 2, .HD = 128, .L = 5000, .rows = 1, .workspace = true}, kBothDtypes, kGpu},
       {any, {.T = 24, .NH = 28, .NKV = 4, .HD = 128, .L = 9001, .rows = 1, .workspace = true}, kBothDtypes, kGpu},
       {any, {.T = 24, .NH = 28, .NKV = 4, .HD = 128, .L = 9001, .rows = 1}, kBothDtypes, kGpu},
                               // prefill chunks, and grids that fill the GPU without splitting
       {any,
        {.T = 48, .NH = 12, .NKV = 2, .HD = 128, .L = 1500, .rows = 16, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 48, .NH = 14, .NKV = 2, .HD = 64, .L = 1500, .rows = 16, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 512, .NH = 16, .NKV = 2, .HD = 64, .L = 1500, .rows = 128, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 512, .NH = 14, .NKV = 2, .HD = 64, .L = 160, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 48, .NH = 8, .NKV = 2, .HD = 192, .L = 600, .rows = 16, .workspace = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 48, .NH = 8, .NKV = 2, .HD = 256, .L = 600, .rows = 16, .workspace = true},
        kBothDtypes,
        kGpu},
       {any, {.T = 12, .NH = 4, .NKV = 2, .HD = 192, .L = 40, .rows = 4, .workspace = true}},
       {any, {.T = 12, .NH = 2, .NKV = 1, .HD = 256, .L = 40, .rows = 4, .workspace = true}},
       // head dims off the 16-byte path (element by element at 36; 198: 2 dims per thread)
       {any, {.T = 5, .NH = 6, .NKV = 2, .HD = 36, .L = 1500, .rows = 1, .workspace = true}},
       {any, {.T = 3, .NH = 4, .NKV = 1, .HD = 198, .L = 700, .rows = 1, .workspace = true}},
       {any, {.T = 3, .NH = 4, .NKV = 1, .HD = 198, .L = 700, .rows = 1}},
       {any, {.T = 2, .NH = 3, .NKV = 1, .HD = 6, .L = 300, .rows = 1, .workspace = true}},
       // block sizes: one row, not a power of two, larger than the kernel's key tile
       {any, {.T = 5, .NH = 14, .NKV = 2, .HD = 64, .L = 1500, .rows = 1, .BS = 1, .workspace = true}},
       {any, {.T = 5, .NH = 4, .NKV = 2, .HD = 32, .L = 700, .rows = 1, .BS = 5, .workspace = true}},
       {any, {.T = 4, .NH = 8, .NKV = 2, .HD = 64, .L = 1000, .rows = 1, .BS = 256, .workspace = true}},
       {any, {.T = 64, .NH = 14, .NKV = 2, .HD = 64, .L = 600, .rows = 1, .BS = 32}, kBothDtypes, kGpu},
       // keys and values with their own head dims (MLA: 192 and 128)
       {any, {.T = 30, .NH = 4, .NKV = 2, .HD = 12, .HDv = 8, .S = 3, .L = 20, .BS = 4, .scatter = true}},
       {any, {.T = 12, .NH = 4, .NKV = 4, .HD = 24, .HDv = 16, .L = 40, .rows = 4, .workspace = true}},
       {any, {.T = 8, .NH = 8, .NKV = 8, .HD = 192, .HDv = 128, .L = 600, .rows = 1, .workspace = true}},
       {any,
        {.T = 64, .NH = 16, .NKV = 16, .HD = 192, .HDv = 128, .L = 600, .rows = 1, .workspace = true},
        kBothDtypes,
        kGpu},
       {any, {.T = 2, .NH = 2, .NKV = 1, .HD = 258, .L = 10, .rows = 1}},  // past CUDA's head dims
       // A latent cache (MLA's absorbed decode): no v_cache, the values are the first HDv columns of
       // the keys (latent_attention.cu on CUDA). Small dims: decode steps split and not, scattered
       // rows, a prefill chunk over 2 kv heads, blocks of 1 row, odd dims (element by element, a
       // partial last chunk), HDv = HD.
       {any, {.T = 5, .NH = 3, .NKV = 1, .HD = 24, .HDv = 16, .L = 300, .rows = 1, .workspace = true, .latent = true}},
       {any, {.T = 5, .NH = 3, .NKV = 1, .HD = 24, .HDv = 16, .L = 300, .rows = 1, .latent = true}},
       {any,
        {.T = 30, .NH = 4, .NKV = 1, .HD = 24, .HDv = 16, .S = 3, .L = 20, .BS = 4, .scatter = true, .latent = true}},
       {any, {.T = 12, .NH = 4, .NKV = 2, .HD = 24, .HDv = 16, .L = 40, .rows = 4, .workspace = true, .latent = true}},
       {any,
        {.T = 3, .NH = 6, .NKV = 1, .HD = 24, .HDv = 16, .L = 100, .rows = 1, .BS = 1, .workspace = true, .latent = true}},
       {any,
        {.T = 3, .NH = 5, .NKV = 1, .HD = 27, .HDv = 13, .L = 300, .rows = 1, .BS = 5, .workspace = true, .latent = true}},
       {any, {.T = 2, .NH = 16, .NKV = 1, .HD = 40, .HDv = 40, .L = 100, .rows = 1, .latent = true}},
       // Moonlight-16B-A3B / DeepSeek-V2-Lite: 16 heads over rows of 512 + 64 (values 512), decode
       // steps of sequences of different lengths sharing a 256-row prompt's blocks, split and not;
       // a prefill chunk; a batch that fills the GPU without splitting.
       {any,
        {.T = 6, .NH = 16, .NKV = 1, .HD = 576, .HDv = 512, .L = 1500, .rows = 1, .prefix = 256, .workspace = true,
         .latent = true}},
       {any, {.T = 6, .NH = 16, .NKV = 1, .HD = 576, .HDv = 512, .L = 1500, .rows = 1, .prefix = 256, .latent = true}},
       {any,
        {.T = 48, .NH = 16, .NKV = 1, .HD = 576, .HDv = 512, .L = 600, .rows = 16, .prefix = 128, .workspace = true,
         .latent = true},
        kBothDtypes,
        kGpu},
       {any,
        {.T = 256, .NH = 16, .NKV = 1, .HD = 576, .HDv = 512, .L = 1024, .rows = 1, .prefix = 64, .workspace = true,
         .latent = true},
        kBF16,
        kGpu},
       // DeepSeek-V3: 128 heads (8 head groups of 16)
       {any, {.T = 2, .NH = 128, .NKV = 1, .HD = 576, .HDv = 512, .L = 300, .rows = 1, .latent = true}},
       {any,
        {.T = 4, .NH = 128, .NKV = 1, .HD = 576, .HDv = 512, .L = 2000, .rows = 1, .prefix = 512, .workspace = true,
         .latent = true},
        kBothDtypes,
        kGpu},
       // values wider than 512 (two value chunks per thread), the widest rows CUDA takes, and past them
       {any,
        {.T = 3, .NH = 8, .NKV = 1, .HD = 1024, .HDv = 1000, .L = 200, .rows = 1, .workspace = true, .latent = true}},
       {any, {.T = 2, .NH = 2, .NKV = 1, .HD = 1030, .HDv = 512, .L = 10, .rows = 1, .latent = true}}});
  for (float tau : {0.0f, 0.7f, 1.3f}) {                                     // 0: temperature 1
    for (int64_t chunk : {1, 7, 16, 53, 100}) {  // vocabulary chunks of 1 row to more than V
      add_rows(t, {Op::token_logprobs_forward, Op::token_logprobs_backward, Op::lm_head_logits, Op::logprobs_of_logits},
               {{any, {.C = 24, .V = 53, .T = 13, .chunk = chunk, .tau = tau}}});
    }
  }
  add_rows(t, {Op::lm_head_logits, Op::logprobs_of_logits},
           {{any, {.C = 896, .V = 151936, .T = 64, .chunk = 4096}, kBothDtypes, kGpu}});  // a decode step's rows
  add_rows(t, {Op::token_logprobs_forward, Op::token_logprobs_backward},
           {{any, {.C = 37, .V = 101, .T = 13, .chunk = 17, .tau = 1.3f}},
            {any, {.C = 8, .V = 3, .T = 1, .chunk = 1000}},
            {any, {.C = 1024, .V = 32000, .T = 1024, .chunk = 8192, .tau = 0.7f}, kF32, kGpu},
            {any, {.C = 896, .V = 151936, .T = 3000, .chunk = 16384}, kBF16, kGpu},
            {any, {.C = 1536, .V = 151936, .T = 1024, .chunk = 8192, .tau = 0.7f}, kBF16, kGpu}});
  return t;
}

// "N13_IC37_OC19_bias": the row's non-zero sizes and set flags.
std::string sizes(const Shape& s) {
  std::string n;
  auto put = [&](const char* k, int64_t v) {
    if (v) n += fmt::format("{}{}{}", n.empty() ? "" : "_", k, v);
  };
  auto flag = [&](const char* k, bool on) {
    if (on) n += fmt::format("{}{}", n.empty() ? "" : "_", k);
  };
  put("N", s.N), put("C", s.C), put("V", s.V), put("T", s.T), put("IC", s.IC), put("OC", s.OC), put("H", s.H);
  put("I", s.I);
  if (!s.lens.empty()) {
    n += n.empty() ? "lens" : "_lens";
    for (size_t i = 0; i < s.lens.size(); ++i) n += fmt::format("{}{}", i ? "x" : "", s.lens[i]);
  }
  put("NH", s.NH), put("NKV", s.NKV), put("HD", s.HD), put("HDv", s.HDv), put("S", s.S), put("L", s.L);
  put("BS", s.BS), put("prefix", s.prefix);
  put("rows", s.rows), put("chunk", s.chunk), put("maxpos", s.maxpos), put("steps", s.steps);
  put("offset", s.offset);
  if (s.tau > 0.0f) n += fmt::format("_tau{}", int(s.tau * 10 + 0.5f));
  flag("bias", s.bias), flag("ws", s.workspace), flag("scatter", s.scatter), flag("repeats", s.repeats);
  flag("wide", s.wide_out), flag("masked", s.masked), flag("latent", s.latent), flag("res", s.residual);
  put("E", s.E), put("K", s.K), put("G", s.G), put("TG", s.TG);
  flag("sigmoid", s.sigmoid);
  put("gap", s.gap);
  put("batch", s.batch);
  flag("trans", s.trans), flag("interleaved", s.interleaved);
  return n;
}

const std::vector<Row>& rows() {
  static const std::vector<Row> t = table();
  return t;
}

// FNV-1a: each case draws its own inputs, whatever else runs.
uint64_t seed_of(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

ops::OpShape op_shape(const Row& r, DType dt) {
  const bool aligned = r.s.offset * int64_t(r1::dtype_size(dt)) % 16 == 0;
  if (r.op != Op::rope_qkv_attention_cached) return {r.s.HD, r.s.HDv, aligned, r.s.latent};
  const int64_t NH = r.s.NH ? r.s.NH : 3 * r.s.NKV;  // its runner's default NH
  return {r.s.HD, r.s.HDv, aligned, false, NH / r.s.NKV, r.s.qk_norm};
}

// One case: the row on a dtype and device, where supports() says it runs (and through the path it
// says), else an error naming the op, the reason, and the shape when that is the reason.
Path run_case(const Row& row, DType dt, Device dev) {
  const std::string name = fmt::format("{} {} {} {}", ops::op_name(row.op), r1::dtype_name(dt),
                                       r1::device_name(dev), sizes(row.s));
  SCOPED_TRACE(name);
  const ops::OpShape shape = op_shape(row, dt);
  const ops::Support sup = ops::supports(row.op, shape, dt, dev);
  Run run(row, dt, dev, seed_of(name));
  run.label = sizes(row.s);
  const Runner fn = runner(row.op);
  EXPECT_NE(fn, nullptr);
  if (!fn) return sup.path;
  if (sup.path == Path::unsupported) {
    std::vector<std::string> parts = {ops::op_name(row.op), sup.how};
    if (ops::supports(row.op, {256, 0, true}, dt, dev).path != Path::unsupported) {
      parts.push_back(ops::describe(shape));  // the sizes are the reason
    }
    expect_error([&] { fn(run); }, parts);
    return sup.path;
  }
  ops::reset_path_counts();
  fn(run);
  const Path other = sup.path == Path::native ? Path::fallback : Path::native;
  EXPECT_GE(ops::path_count(row.op, sup.path), 1) << ops::path_name(sup.path) << ": " << sup.how;
  EXPECT_EQ(ops::path_count(row.op, other), 0)
      << "supports() said " << ops::path_name(sup.path) << ": " << sup.how;
  return sup.path;
}

// One test per (device, op): every row of the op on every dtype (one process per op keeps the
// suite quick on few cores; a failure names its case).
struct Param {
  Op op;
  Device dev;
};

class OpTable : public testing::TestWithParam<Param> {};

TEST_P(OpTable, MatchesReference) {
  const Param& p = GetParam();
  if (p.dev == Device::CUDA) REQUIRE_GPU();
  int cases[2][3] = {};  // [dtype][path]
  for (const Row& r : rows()) {
    if (r.op != p.op || !(r.devices & (p.dev == Device::CPU ? kCpu : kCuda))) continue;
    for (DType dt : {DType::F32, DType::BF16}) {
      if (r.dtypes & (dt == DType::F32 ? kF32 : kBF16))
        ++cases[dt == DType::BF16][int(run_case(r, dt, p.dev))];
    }
  }
  std::printf("[ OPTABLE ] %-24s %-4s f32: %d native, %d fallback, %d unsupported; bf16: %d, %d, %d\n",
              ops::op_name(p.op), r1::device_name(p.dev), cases[0][0], cases[0][1], cases[0][2], cases[1][0],
              cases[1][1], cases[1][2]);
  const int ran = cases[0][0] + cases[0][1] + cases[1][0] + cases[1][1];
  EXPECT_GT(ran, 0) << "no case of " << ops::op_name(p.op) << " ran";
}

std::vector<Param> params(Device dev) {
  std::vector<Param> out;
  for (int i = 0; i < ops::kNumOps; ++i) out.push_back({Op(i), dev});
  return out;
}

std::string param_name(const testing::TestParamInfo<Param>& info) { return ops::op_name(info.param.op); }

INSTANTIATE_TEST_SUITE_P(Cpu, OpTable, testing::ValuesIn(params(Device::CPU)), param_name);
INSTANTIATE_TEST_SUITE_P(Cuda, OpTable, testing::ValuesIn(params(Device::CUDA)), param_name);

}  // namespace

}  // namespace optable
