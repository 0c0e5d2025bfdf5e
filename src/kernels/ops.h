#pragma once
// The op set: every op's forward and backward, side by side. Each op checks its shapes here (one
// place, naming the op and the offending tensor) and runs on the device its tensors live on.
//
// Conventions (all backends):
// - Shapes use dimension letters: T tokens (packed), C model width, V vocabulary, NH query heads,
//   NKV key/value heads, HD head dim (HDv: of values), I MLP width, B sequences; the KV cache: NB
//   blocks of BS rows, S sequences of at most MB blocks, L = MB * BS rows.
// - Backward ops ACCUMULATE (+=) into every gradient they write, so one buffer can gather the
//   gradients of several consumers (the residual stream, q/k/v projections of one input).
//   Callers zero gradient buffers when a step begins. Exception: rope_backward works in place.
// - An empty Tensor for an optional input (bias) or optional gradient output means "none".
// - Dtypes. CPU: everything f32. CUDA: an op's activations, weights and activation gradients share
//   one "compute dtype", f32 or bf16 (bf16: fp32 accumulation inside every kernel). Parameter
//   gradients (dweight, dbias, dtable, norm dweight) are always f32, as are the per-row statistics
//   (rstd, lse, logp, entropy, dlogp, mask), inv_freq and every AdamW operand; ids, positions,
//   slots, block tables and cu_seqlens are i32. So a bf16 model keeps fp32 gradients and fp32
//   master weights.
#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace r1::ops {

// out (T, C) = table[ids] ; ids (T) i32 in [0, V), table (V, C)
void embedding_forward(Tensor out, const Tensor& ids, const Tensor& table);
// dtable (V, C) += scatter of dout (T, C) by ids
void embedding_backward(Tensor dtable, const Tensor& dout, const Tensor& ids);

// out (N, C) = inp * rstd * weight, rstd (N) = 1/sqrt(mean(inp^2) + eps) saved for backward
void rmsnorm_forward(Tensor out, Tensor rstd, const Tensor& inp, const Tensor& weight, float eps);
// dinp (N, C) +=, dweight (C) +=
void rmsnorm_backward(Tensor dinp, Tensor dweight, const Tensor& dout, const Tensor& inp,
                      const Tensor& weight, const Tensor& rstd);

// out (N, OC) = inp (N, IC) @ weight (OC, IC)^T + bias (OC, optional)   [HF nn.Linear layout]
//              + residual (N, OC, optional; may be out itself)
// The residual is summed with the product before out is rounded (bf16: one rounding, where a
// separate add rounds twice): a decoder layer's o_proj and down_proj write the residual stream
// without an add kernel. With bf16 inp/weight and no bias or residual, out may be f32 (logits kept
// unrounded for sampling).
void linear_forward(Tensor out, const Tensor& inp, const Tensor& weight, const Tensor& bias,
                    const Tensor& residual = {});
// Several linears of one input, each what linear_forward gives it (without a residual):
// outs[i] (N, OC_i) = inp (N, IC) @ weights[i] (OC_i, IC)^T + biases[i] (OC_i; biases empty, or one
// per weight, each possibly empty), 1 to kMaxLinearsEach products. On CUDA a decode step's rows of
// all of them run in one launch (a layer's q, k and v: x read once, one kernel instead of three).
constexpr int kMaxLinearsEach = 3;
void linear_forward_each(const std::vector<Tensor>& outs, const Tensor& inp, const std::vector<Tensor>& weights,
                         const std::vector<Tensor>& biases);
// A decode step's RMSNorm and the product that reads it, in one op:
// out (N, OC) = rmsnorm(x; norm_weight, eps) @ weight (OC, IC)^T + bias (+ residual), or, with
// swiglu, weight holds [gate; up] rows (2 OC, IC) and out = silu(gate) * up of that product (no bias
// or residual). What rmsnorm_forward then linear_forward (and swiglu_packed_forward) compute, up to
// rounding on CUDA (the product takes bf16(x * norm_weight) and scales its sums by 1 / rms(x)).
// Returns false, having done nothing, where no fused kernel takes the case (supports(): on CUDA, the
// decode GEMM off, f32, more than 256 rows): the caller then runs those ops. The CPU always runs
// it, as those ops' references do, bitwise.
bool rmsnorm_linear_forward(Tensor out, const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& weight,
                            const Tensor& bias, const Tensor& residual, bool swiglu);
// A decode step's output projection and the RMSNorm of its result (the next block's input), in one op:
// out (N, OC) = inp (N, IC) @ weight (OC, IC)^T + bias (OC, optional) + residual (N, OC, optional;
// may be out), and normed (N, OC) = rmsnorm(out; norm_weight (OC), eps), bitwise rmsnorm_forward on
// out. What linear_forward then rmsnorm_forward compute: on CUDA the product sums K in another order
// (split into f32 partials in workspace: at least linear_rmsnorm_workspace elements), on the CPU
// those ops' references, bitwise. Returns false, having done nothing, where no kernel takes the case
// (supports(): on CUDA, f32, more than 256 rows or 8192 columns, the exact forward, the decode GEMM
// on): the caller then runs those ops.
bool linear_rmsnorm_forward(Tensor out, Tensor normed, const Tensor& inp, const Tensor& weight, const Tensor& bias,
                            const Tensor& residual, const Tensor& norm_weight, float eps, const Tensor& workspace);
// The f32 elements of workspace linear_rmsnorm_forward takes on `device` for the shape (0: none, or
// it declines the shape).
int64_t linear_rmsnorm_workspace(Device device, int64_t N, int64_t IC, int64_t OC);
// dinp (N, IC) += dout @ weight; dweight (OC, IC) += dout^T @ inp; dbias (OC) += sum_N dout.
// Any of dinp, dweight, dbias may be empty.
void linear_backward(Tensor dinp, Tensor dweight, Tensor dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& weight);

// Rotary embedding in place on x (T, H, HD), HF "rotate_half" layout: for j < HD/2, angle
// a = positions[t] * inv_freq[j]; (x_j, x_{j+HD/2}) -> (x_j cos a - x_{j+HD/2} sin a,
// x_{j+HD/2} cos a + x_j sin a). positions (T) i32, inv_freq (HD/2) f32.
void rope_forward(Tensor x, const Tensor& positions, const Tensor& inv_freq);
// dx (T, H, HD) in place: the gradient w.r.t. the rotated x becomes the gradient w.r.t. the input.
void rope_backward(Tensor dx, const Tensor& positions, const Tensor& inv_freq);

// Causal self-attention over packed variable-length sequences: sequence b owns tokens
// [cu_seqlens[b], cu_seqlens[b+1]) and attends only within itself. Query head h reads key/value
// head h / (NH / NKV) (grouped-query attention). q (T, NH, HD), k (T, NKV, HD), v (T, NKV, HDv):
// the value head dim may differ from the q/k one (MLA: HD 192, HDv 128); out (T, NH, HDv); lse
// (T, NH) f32 log-sum-exp of the scaled scores, saved for backward (memory linear in T:
// probabilities are recomputed). cu_seqlens (B + 1) i32 with cu_seqlens[0] = 0, cu_seqlens[B] = T.
// Which head dims run natively on each backend, and which take a declared fallback: supports.h.
void attention_forward(Tensor out, Tensor lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, float scale);
// dq (T, NH, HD) +=, dk (T, NKV, HD) +=, dv (T, NKV, HDv) +=; dout (T, NH, HDv)
void attention_backward(Tensor dq, Tensor dk, Tensor dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                        const Tensor& cu_seqlens, float scale);

// Paged KV cache. k_cache (NB, BS, NKV, HD) and v_cache (NB, BS, NKV, HDv): a pool of NB blocks of
// BS rows (keys and values keep their own head dims: MLA has HD 192, HDv 128). block_table (S, MB)
// i32 maps sequences to blocks: row j of sequence s is row j % BS of block block_table[s, j / BS],
// so a sequence holds at most L = MB * BS rows, and sequences may share blocks (a prompt's). Token
// t is row pos[t] of sequence slots[t]; slots, pos (T) i32.
// Latent cache (MLA decoding in the absorbed form, blocks/mla.h): v_cache empty means the keys
// carry the values, which are the first HDv columns of each key row (HDv <= HD, HDv from `out`),
// as FlashMLA lays out DeepSeek's compressed KV; kv_cache_write then takes an empty v. Both
// devices; CUDA takes HD up to 1024 there (DeepSeek: HD 576, HDv 512; supports.h).
// kv_cache_write: token t's keys k (T, NKV, HD) and values v (T, NKV, HDv) go to its row.
void kv_cache_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                    const Tensor& block_table, const Tensor& slots, const Tensor& pos);
// A cached forward's RoPE and cache write in one (one launch on CUDA instead of three): q
// (T, NH, HD) and k (T, NKV, HD) rotated in place by rope_forward at positions pos, then
// kv_cache_write of the rotated k and of v; bitwise those three ops. Not for a latent cache.
void rope_kv_cache_write(Tensor q, Tensor k, const Tensor& v, Tensor k_cache, Tensor v_cache,
                         const Tensor& block_table, const Tensor& slots, const Tensor& pos, const Tensor& inv_freq);
// rope_kv_cache_write of q, k and v packed in one (T, NH*HD + NKV*HD + NKV*HDv) tensor (a decode
// step's one product of the adjacent q/k/v weights): its q and k columns rotated in place, the
// rotated q also written to q_out (T, NH, HD), the rotated k and the v columns to the cache;
// bitwise rope_kv_cache_write of the three columns apart. With q_norm and k_norm (HD each, both
// or neither: qk_norm), each q and k head is first rmsnorm_forward'ed (eps), as the unfused
// forward does before RoPE; on CUDA bitwise those ops when HD is at most 32 16-byte packs (256 in
// bf16, 128 in f32), else within rounding. Not for a latent cache.
void rope_qkv_cache_write(Tensor q_out, Tensor qkv, Tensor k_cache, Tensor v_cache, const Tensor& block_table,
                          const Tensor& slots, const Tensor& pos, const Tensor& inv_freq, const Tensor& q_norm = {},
                          const Tensor& k_norm = {}, float eps = 0.0f);
// A decode step's rope_qkv_cache_write then attention_cached (out (T, NH, HDv), scale, workspace as
// there), bitwise those two ops. Every token must be in a slot of its own (one token per
// sequence), so that no token reads a cache row another token of the call writes: the CPU checks
// it; CUDA relies on it (a decode step's padding rows, whose results are dropped, may share one).
// On CUDA it is one launch (the tensor-core decode kernel rotates the queries as it loads them and
// writes each token's row before it reads it) for bf16 at the tensor-core head dims with at most
// 16 query heads per kv head, no q_norm, outside the batch-invariant forward; otherwise the two
// ops (supports.h). q_out (T, NH, HD) is the two ops' scratch: afterwards it and qkv's q and k
// columns hold the rotated values, or (fused) what they held before. Not for a latent cache.
void rope_qkv_attention_cached(Tensor out, Tensor q_out, Tensor qkv, Tensor k_cache, Tensor v_cache,
                               const Tensor& block_table, const Tensor& slots, const Tensor& pos,
                               const Tensor& inv_freq, float scale, const Tensor& workspace = {},
                               const Tensor& q_norm = {}, const Tensor& k_norm = {}, float eps = 0.0f);
// Attention of new tokens over the cache (prefill chunks and decode steps alike): query token t
// attends to rows [0, pos[t]] of its sequence. q (T, NH, HD), out (T, NH, HDv). Forward only.
// workspace (optional, f32, any shape, at least attention_cached_workspace(T, NH, HDv, L) elements,
// on the tensors' device): scratch that lets CUDA split long key ranges over more blocks (decode
// with few sequences); without it CUDA makes one pass. Its contents need no initialization and are
// garbage afterwards. The CPU ignores it. No allocation or synchronization on CUDA (graph capture).
void attention_cached(Tensor out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                      const Tensor& block_table, const Tensor& slots, const Tensor& pos, float scale,
                      const Tensor& workspace = {});
// The workspace elements attention_cached on CUDA uses for these shapes (any NKV; HDv the value head
// dim, L = MB * BS the longest sequence), for this device; 0 when it would not split, or without a
// usable CUDA device. Not monotone in T: a large T needs none (the grid fills the GPU without
// splitting), so size a shared buffer for every T it serves.
int64_t attention_cached_workspace(int64_t T, int64_t NH, int64_t HDv, int64_t L);

// RoPE in the interleaved layout (DeepSeek-V3's rope_interleave): the pairs are (x_{2j}, x_{2j+1}),
// and the result is written in rotate_half's layout, as transformers' apply_rotary_pos_emb_interleave
// (which permutes x to evens-then-odds, then rotates): out_j = x_{2j} cos a - x_{2j+1} sin a,
// out_{j+HD/2} = x_{2j+1} cos a + x_{2j} sin a. In place on x (T, H, HD).
void rope_interleaved_forward(Tensor x, const Tensor& positions, const Tensor& inv_freq);
// dx (T, H, HD) in place: the gradient w.r.t. the output becomes the gradient w.r.t. the input.
void rope_interleaved_backward(Tensor dx, const Tensor& positions, const Tensor& inv_freq);

// Columns [dst_col, dst_col + width) of dst (N, Wd) = (or += with accumulate) columns
// [src_col, src_col + width) of src (N, Ws): the split, concatenation and broadcast of per-head
// parts (MLA's rope and no-rope parts), and their backwards (accumulate).
void copy_columns(Tensor dst, int64_t dst_col, const Tensor& src, int64_t src_col, int64_t width,
                  bool accumulate = false);

// B matrices of one shape (rows, cols) in one tensor: matrix b's element (i, j) is the element
// b * stride + i * ld + j of base (counted in base's dtype from its data), so the matrices may
// follow one another (stride >= rows * ld) or sit side by side in shared rows (MLA's heads).
// ld >= cols, stride >= 0; base must hold every element the matrices reach (checked).
struct Batched {
  Tensor base;
  int64_t batch = 1, rows = 0, cols = 0, ld = 0, stride = 0;
};
// A batch of products, one op for all B (MLA's absorbed weights, every head at once): for b < B,
// out[b] (M, N) = inp[b] (M, K) @ w[b]^T with trans_w (w[b] is (N, K)), else @ w[b] (w[b] is (K, N)).
// f32, or bf16 on CUDA (fp32 accumulation, one rounding). out's matrices must not overlap each
// other or the inputs. Forward only; no allocation or synchronization on CUDA (graph capture).
void batched_matmul(const Batched& out, const Batched& inp, const Batched& w, bool trans_w);

// ---- Mixture of experts (E experts, K chosen per token, R = T * K assignments) ----
// How a router turns its logits into K experts and their weights (transformers' Qwen3-MoE and
// DeepSeek-V3 routers). Scores: softmax over the E logits, or each logit's sigmoid. The choice
// ranks score + bias (bias: DeepSeek-V3's e_score_correction_bias, for the choice only); with
// n_group > 1 only the topk_group groups of E / n_group experts whose two best choice scores sum
// highest are eligible (DeepSeek's reference Gate; transformers up to some 5.x versions masks the
// others' choice scores to 0 instead, which differs only if an eligible score + bias is < 0). The
// weights are the chosen experts' scores, divided by their sum (+ norm_eps) when norm_topk, times
// scaling.
struct MoeRouting {
  enum class Scoring : uint8_t { softmax, sigmoid };
  Scoring scoring = Scoring::softmax;
  int top_k = 1;
  int n_group = 1, topk_group = 1;
  bool norm_topk = false;
  float norm_eps = 0.0f;
  float scaling = 1.0f;
};
// experts (T, K) i32 in descending choice order, weights (T, K) f32, from logits (T, E) f32 and
// bias (E) f32 (optional). replay (T, K) i32 (optional; routing replay): a row of K distinct
// experts is taken as the choice (its weights are those experts' scores, normalised and scaled as
// if the router had chosen them); a row of -1 is routed.
void moe_route_forward(Tensor experts, Tensor weights, const Tensor& logits, const Tensor& bias,
                       const MoeRouting& r, const Tensor& replay = {});
// dlogits (T, E) f32 += the gradient through the chosen experts' weights, from dweights (T, K).
// The choice itself has no gradient.
void moe_route_backward(Tensor dlogits, const Tensor& dweights, const Tensor& logits, const Tensor& experts,
                        const MoeRouting& r);
// Groups the assignments by expert (a stable counting sort): rows [offsets[e], offsets[e+1]) are
// expert e's; row r holds assignment order[r] = t * K + k, of token tokens[r] = t. experts (T, K)
// i32 in [0, E); order, tokens (R) i32; offsets (E + 1) i32.
void moe_permute(Tensor order, Tensor tokens, Tensor offsets, const Tensor& experts);
// out (T, C) = sum over k of weights[t, k] * y[the row of assignment t * K + k]; y (R, C) the
// experts' outputs in grouped order, order (R) i32 from moe_permute, weights (T, K) f32, or empty:
// every weight 1 (a token's rows summed: the backward of the row gather that fed the experts).
void moe_combine_forward(Tensor out, const Tensor& y, const Tensor& order, const Tensor& weights);
// dy (R, C) +=, dweights (T, K) f32 += (either may be empty), from dout (T, C).
void moe_combine_backward(Tensor dy, Tensor dweights, const Tensor& dout, const Tensor& y, const Tensor& order,
                          const Tensor& weights);

// E matrices of one shape at a constant stride (one kind of the experts' weights, their gradients or
// their LoRA factors, as the model's layout places them): matrix e is the (OUT, IN) view `stride * e`
// elements after first's data. at(e) is that view.
struct Stacked {
  Tensor first;        // matrix 0, (OUT, IN)
  int64_t count = 0;   // E
  int64_t stride = 0;  // elements from one matrix to the next, >= OUT * IN
  bool empty() const { return first.empty(); }
  Tensor at(int64_t e) const;
};
// The experts' linears in one op each way (a grouped GEMM; no loop of small GEMMs on the host): rows
// [offsets[e], offsets[e + 1]) of inp go through matrix e. out (R, OUT) = inp (R, IN) @ weight[e]^T
// on those rows. offsets (E + 1) i32 on the tensors' device (moe_permute's), 0 = offsets[0] <= ...
// <= offsets[E] = R; CUDA reads them on the device only (no host read: decode steps are captured in
// graphs). The sum over IN runs in one fixed order whatever the rows (no split chosen from R).
void grouped_linear_forward(Tensor out, const Tensor& inp, const Stacked& weight, const Tensor& offsets);
// dinp (R, IN) += dout @ weight[e] on each expert's rows; dweight[e] (f32) += dout_e^T @ inp_e over
// expert e's rows (either may be empty). dout (R, OUT).
void grouped_linear_backward(Tensor dinp, const Stacked& dweight, const Tensor& dout, const Tensor& inp,
                             const Stacked& weight, const Tensor& offsets);

// out (N, I) = silu(gate) * up
void swiglu_forward(Tensor out, const Tensor& gate, const Tensor& up);
// dgate (N, I) +=, dup (N, I) +=
void swiglu_backward(Tensor dgate, Tensor dup, const Tensor& dout, const Tensor& gate, const Tensor& up);
// The same over packed rows, gate_up (N, 2I) = [gate | up] (one GEMM of the adjacent gate and up
// weights): out (N, I) = silu(gate_up[:, :I]) * gate_up[:, I:], bitwise swiglu_forward's values.
void swiglu_packed_forward(Tensor out, const Tensor& gate_up);
// dgate_up (N, 2I) += [dgate | dup]
void swiglu_packed_backward(Tensor dgate_up, const Tensor& dout, const Tensor& gate_up);

// Inverted dropout: out (N) = x * keep / (1 - p), keep_i from (seed, stream, i) by
// r1::dropout_keep (base/rng.h), the same mask on every device; p in [0, 1). Any shape (N = numel).
void dropout_forward(Tensor out, const Tensor& x, float p, uint64_t seed, uint64_t stream);
// dx (N) += dout * keep / (1 - p), the forward's mask regenerated.
void dropout_backward(Tensor dx, const Tensor& dout, float p, uint64_t seed, uint64_t stream);

// out = a + b (same numel; out may alias a or b). The residual add; its backward is add_inplace.
void add(Tensor out, const Tensor& a, const Tensor& b);
// dst += src
void add_inplace(Tensor dst, const Tensor& src);
// x *= s
void scale_inplace(Tensor x, float s);
void zero(Tensor x);
// Frees what the backend keeps for the temporaries of ops (the CUDA scratch area: attention-backward
// and log-prob tiles), so a phase that needs none leaves the memory to another (a GRPO step frees it
// between rollouts and training); it grows back on the next op that needs it. Waits for the device.
void release_workspace();
// dst (N) = src (N) f32 in dst's dtype (f32: a copy; bf16: rounded to nearest even), on one device
// (bf16 on the CPU too: it is only rounding). The compute weights from their fp32 master copy.
void convert(Tensor dst, const Tensor& src);

// Per-token log-probability of targets under softmax(hidden @ weight^T / temperature), computed in
// chunks of `vocab_chunk` vocabulary rows so the (T, V) logits are never stored.
// logp (T) = z[target]/tau - lse; lse (T) saved for backward; entropy (T, optional) of the
// distribution. hidden (T, C), weight (V, C), targets (T) i32 (target < 0: no target, logp = 0).
void token_logprobs_forward(Tensor logp, Tensor lse, Tensor entropy, const Tensor& hidden,
                            const Tensor& weight, const Tensor& targets, float temperature,
                            int64_t vocab_chunk);
// The sampler's side of token_logprobs_forward (rollout.exact_logprobs): out (R, V) f32 = hidden
// (R, C) @ weight (V, C)^T / temperature, the vocabulary in chunks of vocab_chunk rows, each chunk
// the product token_logprobs_forward forms for its tiles. With ops::batch_invariant() on
// (kernels/invariance.h), row r is the same bits as the trainer's logits of a token with that hidden
// state. hidden and weight in the compute dtype.
void lm_head_logits(Tensor out, const Tensor& hidden, const Tensor& weight, float temperature, int64_t vocab_chunk);
// logp (R) = log softmax(logits[r])[targets[r]] and lse (R), folded as token_logprobs_forward folds
// its tiles (the same vocabulary chunks, the same running state per row): on lm_head_logits' rows,
// the trainer's bits. logits (R, V) f32, targets (R) i32 in [0, V) (checked on the CPU). workspace
// (optional, f32, at least 6 R elements, on the tensors' device): CUDA keeps the rows' running state
// there, so the op allocates nothing (a captured decode step); without it, the backend's scratch.
void logprobs_of_logits(Tensor logp, Tensor lse, const Tensor& logits, const Tensor& targets, int64_t vocab_chunk,
                        const Tensor& workspace = {});
// Given dlogp (T): dhidden (T, C) +=, dweight (V, C) += (either may be empty).
void token_logprobs_backward(Tensor dhidden, Tensor dweight, const Tensor& dlogp, const Tensor& hidden,
                             const Tensor& weight, const Tensor& targets, const Tensor& lse,
                             float temperature, int64_t vocab_chunk);

// Mean cross-entropy over tokens with a target: loss = -sum(logp * mask) / sum(mask), mask (T) f32.
// Returns the loss; dlogp (T) += d loss / d logp.
float cross_entropy_forward(const Tensor& logp, const Tensor& mask);
void cross_entropy_backward(Tensor dlogp, const Tensor& mask);

// Sum of squares in double, for global gradient norms.
double sum_squares(const Tensor& x);

struct AdamWParams {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  int64_t step = 1;            // 1-based, for bias correction
  float grad_scale = 1.0f;     // gradients are multiplied by this first (clipping, accumulation)
};
// Decoupled weight decay (Loshchilov & Hutter): p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p).
// param, grad, m, v (N) f32. compute_copy (N, optional, bf16 or f32): receives the updated param
// rounded to its dtype in the same pass (the bf16 weights a CUDA model computes with).
void adamw_update(Tensor param, const Tensor& grad, Tensor m, Tensor v, const AdamWParams& hp,
                  Tensor compute_copy = {});

}  // namespace r1::ops
