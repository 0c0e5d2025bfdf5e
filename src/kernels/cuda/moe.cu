// The mixture-of-experts ops (router, grouping by expert, weighted combination) and the column copy
// MLA splits and joins its per-head parts with, on f32 or bf16 (fp32 math inside). They mirror the
// CPU reference (kernels/cpu/moe.cpp) step for step, so both backends choose the same experts: the
// scores in double rounded to f32, the same f32 choice scores and the same order (the higher score
// first, the lower index among equals). Every kernel is deterministic (no float atomics), allocates
// nothing and never waits for the device, so all of them can run inside a CUDA graph capture
// (moe_combine_forward's one exception: see rows_in_out).
#include <climits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

constexpr unsigned kFull = 0xffffffffu;

// ---- copy_columns ----

template <typename T>
__global__ void copy_columns_kernel(T* dst, int64_t Wd, int64_t dc, const T* src, int64_t Ws, int64_t sc,
                                    int64_t W, int64_t n, bool accumulate) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / W, j = i % W;
    T* d = dst + row * Wd + dc + j;
    const T s = src[row * Ws + sc + j];
    *d = accumulate ? from_f32<T>(to_f32(*d) + to_f32(s)) : s;
  }
}

template <typename T>
void copy_columns_t(T* dst, int64_t Wd, int64_t dc, const T* src, int64_t Ws, int64_t sc, int64_t W,
                    int64_t N, bool accumulate) {
  const int64_t n = N * W;
  if (n == 0) return;
  copy_columns_kernel<<<grid_for(n), kThreads, 0, context().stream>>>(dst, Wd, dc, src, Ws, sc, W, n,
                                                                      accumulate);
  CUDA_CHECK_LAUNCH();
}

// ---- the router: one warp per token ----

constexpr int kRouteWarps = 4;               // warps (tokens) per block, fewer when E is large
constexpr int kSharedWords = 48 * 1024 / 4;  // the default dynamic shared memory limit, in words

// A candidate expert (or group) in the router's order: the higher value first, and among equal values
// the lower index, as the CPU's top_n. A strict total order (without NaN), so a warp reduction
// finds the same best whatever the lanes' order.
struct Pick {
  float v;
  int i;
};
__device__ __forceinline__ bool before(Pick a, Pick b) { return a.v > b.v || (a.v == b.v && a.i < b.i); }

// The first of v[0, n) in the router's order that comes after `prev` (after nothing when first).
// Picking K times from the previous pick enumerates the K best in order without marking anything.
__device__ Pick warp_next(const float* v, int n, Pick prev, bool first) {
  const int lane = threadIdx.x & 31;
  Pick best{-INFINITY, INT_MAX};  // after every real candidate, -inf ones included
  for (int i = lane; i < n; i += 32) {
    const Pick c{v[i], i};
    if ((first || before(prev, c)) && before(c, best)) best = c;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Pick other{__shfl_xor_sync(kFull, best.v, o), __shfl_xor_sync(kFull, best.i, o)};
    if (before(other, best)) best = other;
  }
  return best;
}

// One token's scores into s[0, E) (this lane's strided share): softmax in double rounded once, or
// each logit's sigmoid, exactly as the CPU's router_scores.
template <typename TL>
__device__ void router_scores(float* s, const TL* z, int E, bool sigmoid) {
  const int lane = threadIdx.x & 31;
  if (sigmoid) {
    for (int e = lane; e < E; e += 32) s[e] = float(1.0 / (1.0 + exp(-double(to_f32(z[e])))));
    return;
  }
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) {
    s[e] = to_f32(z[e]);
    mx = fmaxf(mx, s[e]);
  }
  mx = warp_reduce(mx, MaxOp{});
  double sum = 0.0;
  for (int e = lane; e < E; e += 32) sum += exp(double(s[e]) - double(mx));
  sum = warp_reduce(sum, SumOp{});
  for (int e = lane; e < E; e += 32) s[e] = float(exp(double(s[e]) - double(mx)) / sum);
}

// The largest and second largest of v[0, n) (with multiplicity), by one lane.
__device__ void best_two(const float* v, int n, float& m1, float& m2) {
  m1 = m2 = -INFINITY;
  for (int i = 0; i < n; ++i) {
    if (v[i] > m1) {
      m2 = m1;
      m1 = v[i];
    } else if (v[i] > m2) {
      m2 = v[i];
    }
  }
}

// Group-limited routing: the experts outside the topk_group groups whose two best choice scores sum
// highest get a choice score of -inf (the CPU's limit_groups). group, keep: G words of scratch.
__device__ void limit_groups(float* choice, float* group, int* keep, int E, int G, int topk_group) {
  const int lane = threadIdx.x & 31, per = E / G;
  for (int g = lane; g < G; g += 32) {
    float m1, m2;
    best_two(choice + g * per, per, m1, m2);
    group[g] = float(per > 1 ? double(m1) + double(m2) : double(m1));
    keep[g] = 0;
  }
  __syncwarp();
  Pick p{0.0f, -1};
  for (int j = 0; j < topk_group; ++j) {
    p = warp_next(group, G, p, j == 0);
    if (lane == 0) keep[p.i] = 1;
  }
  __syncwarp();
  for (int e = lane; e < E; e += 32)
    if (!keep[e / per]) choice[e] = -INFINITY;
  __syncwarp();
}

// Words of shared memory one warp uses (kept even, so a double array at the start stays aligned).
int route_forward_words(int E, int G, int K) { return (2 * E + 2 * G + K + 1) & ~1; }
int route_backward_words(int E, int K) { return (2 * K + E + K + 1) & ~1; }

int route_warps(int words) { return std::max(1, std::min(kRouteWarps, kSharedWords / words)); }

template <typename TL, typename TB>
__global__ void moe_route_forward_kernel(int32_t* experts, float* weights, const TL* logits, const TB* bias,
                                         const int32_t* replay, int64_t T_, int E, Routing r, int words) {
  extern __shared__ float route_smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, K = r.top_k, G = r.n_group;
  const int64_t t = blockIdx.x * int64_t(blockDim.x >> 5) + warp;
  if (t >= T_) return;  // the whole warp: nothing below synchronizes the block
  float* scores = route_smem + warp * words;
  float* choice = scores + E;
  float* group = choice + E;
  int* keep = reinterpret_cast<int*>(group + G);
  int* chosen = keep + G;

  router_scores(scores, logits + t * E, E, r.sigmoid);
  const int32_t* rep = replay ? replay + t * K : nullptr;
  if (rep && rep[0] >= 0) {  // routing replay: the recorded experts, weighted by today's scores
    for (int k = lane; k < K; k += 32) chosen[k] = rep[k];
  } else {
    for (int e = lane; e < E; e += 32) choice[e] = scores[e] + (bias ? to_f32(bias[e]) : 0.0f);
    __syncwarp();
    if (G > 1) limit_groups(choice, group, keep, E, G, r.topk_group);
    Pick p{0.0f, -1};
    for (int k = 0; k < K; ++k) {
      p = warp_next(choice, E, p, k == 0);
      if (lane == 0) chosen[k] = p.i;
    }
  }
  __syncwarp();
  // Every lane adds the chosen scores in the CPU's order (the same double sum), then writes its share.
  double sum = 0.0;
  for (int k = 0; k < K; ++k) sum += scores[chosen[k]];
  const double denom = r.norm_topk ? sum + double(r.norm_eps) : 1.0;
  for (int k = lane; k < K; k += 32) {
    experts[t * K + k] = chosen[k];
    weights[t * K + k] = float(double(scores[chosen[k]]) / denom * double(r.scaling));
  }
}

template <typename TL, typename TD>
__global__ void moe_route_backward_kernel(TD* dlogits, const float* dweights, const TL* logits,
                                          const int32_t* experts, int64_t T_, int E, Routing r, int words) {
  extern __shared__ float route_smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, K = r.top_k;
  const int64_t t = blockIdx.x * int64_t(blockDim.x >> 5) + warp;
  if (t >= T_) return;
  double* ds = reinterpret_cast<double*>(route_smem + warp * words);  // words is even: 8-byte aligned
  float* scores = reinterpret_cast<float*>(ds + K);
  int* ex = reinterpret_cast<int*>(scores + E);

  router_scores(scores, logits + t * E, E, r.sigmoid);
  for (int k = lane; k < K; k += 32) ex[k] = experts[t * K + k];
  __syncwarp();
  // d loss / d score of each chosen expert through the renormalisation and the scaling; every lane
  // runs the CPU's sequential double sums, lane k % 32 keeps ds[k].
  const float* dw = dweights + t * K;
  double sum = 0.0, gs = 0.0;
  for (int k = 0; k < K; ++k) sum += scores[ex[k]];
  const double denom = r.norm_topk ? sum + double(r.norm_eps) : 1.0;
  for (int k = 0; k < K; ++k) gs += double(dw[k]) * double(r.scaling) * scores[ex[k]];
  double dot = 0.0;
  for (int k = 0; k < K; ++k) {
    const double d = double(dw[k]) * double(r.scaling) / denom - (r.norm_topk ? gs / (denom * denom) : 0.0);
    dot += d * scores[ex[k]];
    if ((k & 31) == lane) ds[k] = d;
  }
  __syncwarp();
  TD* dz = dlogits + t * E;
  if (r.sigmoid) {
    // One lane, in k order: the chosen experts are distinct, but the += must not race if they are not.
    if (lane == 0) {
      for (int k = 0; k < K; ++k) {
        const double s = scores[ex[k]];
        dz[ex[k]] = from_f32<TD>(to_f32(dz[ex[k]]) + float(ds[k] * s * (1.0 - s)));
      }
    }
    return;
  }
  // Softmax: dz_e = p_e (ds_e - dot), ds_e = 0 for an expert not chosen (the last k naming e wins,
  // as the CPU's dsel).
  for (int e = lane; e < E; e += 32) {
    double dsel = 0.0;
    for (int k = 0; k < K; ++k)
      if (ex[k] == e) dsel = ds[k];
    dz[e] = from_f32<TD>(to_f32(dz[e]) + float(double(scores[e]) * (dsel - dot)));
  }
}

template <typename TL, typename TB>
void route_forward_t(int32_t* experts, float* weights, const TL* logits, const TB* bias,
                     const int32_t* replay, int64_t T_, int64_t E, const Routing& r) {
  if (T_ == 0) return;
  const int words = route_forward_words(int(E), r.n_group, r.top_k);
  if (E > kMaxExperts || words > kSharedWords) throw_error("moe_route_forward: too many experts for CUDA");
  const int warps = route_warps(words);
  const unsigned blocks = unsigned((T_ + warps - 1) / warps);
  moe_route_forward_kernel<<<blocks, 32 * warps, size_t(warps) * words * 4, context().stream>>>(
      experts, weights, logits, bias, replay, T_, int(E), r, words);
  CUDA_CHECK_LAUNCH();
}

template <typename TL, typename TD>
void route_backward_t(TD* dlogits, const float* dweights, const TL* logits, const int32_t* experts,
                      int64_t T_, int64_t E, const Routing& r) {
  if (T_ == 0) return;
  const int words = route_backward_words(int(E), r.top_k);
  if (E > kMaxExperts || words > kSharedWords) throw_error("moe_route_backward: too many experts for CUDA");
  const int warps = route_warps(words);
  const unsigned blocks = unsigned((T_ + warps - 1) / warps);
  moe_route_backward_kernel<<<blocks, 32 * warps, size_t(warps) * words * 4, context().stream>>>(
      dlogits, dweights, logits, experts, T_, int(E), r, words);
  CUDA_CHECK_LAUNCH();
}

// ---- moe_permute: a stable counting sort ----

// Exclusive prefix sum of v over the block (blockDim.x a multiple of 32); total gets the block's sum.
// Safe to call repeatedly (it waits for the previous call's readers first).
__device__ int block_exclusive_scan(int v, int& total) {
  __shared__ int warp_sum[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += n;
  }
  __syncthreads();
  if (lane == 31) warp_sum[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    int s = lane < nwarps ? warp_sum[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int n = __shfl_up_sync(kFull, s, o);
      if (lane >= o) s += n;
    }
    if (lane < nwarps) warp_sum[lane] = s;
  }
  __syncthreads();
  total = warp_sum[nwarps - 1];
  return (warp ? warp_sum[warp - 1] : 0) + incl - v;
}

// counts[e] += assignments of expert e (counts = offsets + 1, zeroed first): a histogram per block
// in shared memory, then one integer atomic per expert and block (integer sums: any order gives the
// same counts). Out-of-range experts are skipped rather than written out of bounds.
__global__ void expert_counts_kernel(int32_t* counts, const int32_t* experts, int64_t R, int E) {
  extern __shared__ int hist[];
  for (int e = threadIdx.x; e < E; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < R;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int e = experts[i];
    if (unsigned(e) < unsigned(E)) atomicAdd(&hist[e], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x)
    if (hist[e]) atomicAdd(&counts[e], hist[e]);
}

// offsets[1, E] from counts to their inclusive prefix sums (offsets[0] is 0), one block.
__global__ void offsets_scan_kernel(int32_t* offsets, int E) {
  int carry = 0;
  for (int base = 0; base < E; base += blockDim.x) {
    const int i = base + threadIdx.x;
    const int v = i < E ? offsets[1 + i] : 0;
    int total;
    const int before = block_exclusive_scan(v, total);
    if (i < E) offsets[1 + i] = carry + before + v;
    carry += total;
  }
}

constexpr int kScatterThreads = 256, kScatterPerThread = 4;

// Block e writes expert e's rows: it walks the assignments in order, kScatterPerThread consecutive
// ones per thread, and ranks its matches with a block-wide prefix sum, so within the expert the
// rows keep assignment order (the stable sort). It stops once all of the expert's rows are written.
__global__ void scatter_rows_kernel(int32_t* order, int32_t* tokens, const int32_t* offsets,
                                    const int32_t* experts, int64_t R, int K) {
  const int e = blockIdx.x;
  const int start = offsets[e], count = offsets[e + 1] - start;
  constexpr int kTile = kScatterThreads * kScatterPerThread;
  int done = 0;
  for (int64_t base = 0; base < R && done < count; base += kTile) {
    const int64_t first = base + int64_t(threadIdx.x) * kScatterPerThread;
    bool hit[kScatterPerThread];
    int mine = 0;
#pragma unroll
    for (int j = 0; j < kScatterPerThread; ++j) {
      hit[j] = first + j < R && experts[first + j] == e;
      mine += hit[j];
    }
    int total;
    int row = start + done + block_exclusive_scan(mine, total);
#pragma unroll
    for (int j = 0; j < kScatterPerThread; ++j) {
      if (!hit[j]) continue;
      order[row] = int32_t(first + j);
      tokens[row] = int32_t((first + j) / K);
      ++row;
    }
    done += total;  // the same on every thread: the loop's exit is uniform
  }
}

// ---- moe_combine_* ----

// Where the row of each assignment t * K + k is kept while the forward runs: rows[t * stride + k].
struct RowTable {
  int32_t* rows;
  int64_t stride;
};

// The inverse of the grouping: rows[order[r]] = r, each entry written once (order is a permutation).
__global__ void rows_of_kernel(RowTable tab, const int32_t* order, int64_t R, int K) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < R;
       r += int64_t(gridDim.x) * blockDim.x) {
    const int64_t a = order[r];
    tab.rows[(a / K) * tab.stride + a % K] = int32_t(r);
  }
}

// Token t's row of out = sum over k of weights[t, k] * y[row k] in k order from 0 (the CPU's f32
// sum), V columns per access. The rows and weights go to shared memory first: when they are kept in
// out's own row (rows_in_out), every thread must read them before any thread writes the row.
template <int V, typename T>
__global__ void combine_forward_kernel(T* out, const T* y, RowTable tab, const float* weights, int64_t T_,
                                       int K, int64_t C) {
  extern __shared__ int combine_smem[];
  int* rows = combine_smem;
  float* w = reinterpret_cast<float*>(combine_smem + K);
  for (int64_t t = blockIdx.x; t < T_; t += gridDim.x) {
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
      rows[k] = tab.rows[t * tab.stride + k];
      w[k] = weights ? weights[t * K + k] : 1.0f;  // no weights: the plain sum
    }
    __syncthreads();
    for (int64_t c = int64_t(threadIdx.x) * V; c < C; c += int64_t(blockDim.x) * V) {
      float acc[V] = {};
      for (int k = 0; k < K; ++k) {
        float v[V];
        load_vec<V>(v, y + int64_t(rows[k]) * C + c);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] += w[k] * v[i];
      }
      store_vec<V>(out + t * C + c, acc);
    }
    __syncthreads();  // the next token's rows overwrite the shared arrays
  }
}

// Row r of the grouped outputs, assignment a = order[r] of token t = a / K: dy[r] += weights[a] *
// dout[t] and dweights[a] += dout[t] . y[r] (a double sum, one block per row, so each entry has
// one writer and a fixed reduction order). No inverse of order needed.
template <int V, typename T>
__global__ void combine_backward_kernel(T* dy, float* dweights, const T* dout, const T* y,
                                        const int32_t* order, const float* weights, int64_t R, int K,
                                        int64_t C) {
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const int64_t a = order[r], t = a / K;
    const float w = weights[a];
    double dot = 0.0;
    for (int64_t c = int64_t(threadIdx.x) * V; c < C; c += int64_t(blockDim.x) * V) {
      float g[V];
      load_vec<V>(g, dout + t * C + c);
      if (dy) {
        float d[V];
        load_vec<V>(d, dy + r * C + c);
#pragma unroll
        for (int i = 0; i < V; ++i) d[i] += w * g[i];
        store_vec<V>(dy + r * C + c, d);
      }
      if (dweights) {
        float v[V];
        load_vec<V>(v, y + r * C + c);
#pragma unroll
        for (int i = 0; i < V; ++i) dot += double(g[i]) * double(v[i]);
      }
    }
    if (dweights) {  // uniform over the block: block_reduce synchronizes it
      dot = block_reduce(dot, SumOp{}, 0.0);
      if (threadIdx.x == 0) dweights[a] += float(dot);
    }
  }
}

// Blocks for a loop over n rows, one block each: enough to fill the chip.
unsigned row_blocks(int64_t n) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(n, int64_t(context().sm_count) * 16)));
}

// The row table lives in out itself when each of out's rows has room for its K row numbers (4-byte
// aligned): the forward then needs no memory of its own, graph capture included. Otherwise (C *
// sizeof(T) < 4 K, or bf16 rows of odd length) it takes R ints of the context's scratch.
template <typename T>
bool rows_in_out(const T* out, int64_t K, int64_t C) {
  const int64_t row_bytes = C * int64_t(sizeof(T));
  return reinterpret_cast<uintptr_t>(out) % 4 == 0 && row_bytes % 4 == 0 && row_bytes >= 4 * K;
}

template <typename T>
void combine_forward_t(T* out, const T* y, const int32_t* order, const float* weights, int64_t T_, int64_t K,
                       int64_t C) {
  const int64_t R = T_ * K;
  if (T_ == 0 || C == 0) return;
  if (R > INT_MAX) throw_error("moe_combine_forward: more than 2^31 assignments");
  RowTable tab;
  if (rows_in_out(out, K, C)) {
    tab = {reinterpret_cast<int32_t*>(out), C * int64_t(sizeof(T)) / 4};
  } else {
    tab = {static_cast<int32_t*>(context().scratch(size_t(R) * sizeof(int32_t))), K};
  }
  if (R > 0) {
    rows_of_kernel<<<grid_for(R), kThreads, 0, context().stream>>>(tab, order, R, int(K));
    CUDA_CHECK_LAUNCH();
  }
  const size_t smem = size_t(K) * (sizeof(int) + sizeof(float));
  constexpr int V = kVec<T>;
  if (C % V == 0 && aligned16(out) && aligned16(y)) {
    combine_forward_kernel<V>
        <<<row_blocks(T_), kThreads, smem, context().stream>>>(out, y, tab, weights, T_, int(K), C);
  } else {
    combine_forward_kernel<1>
        <<<row_blocks(T_), kThreads, smem, context().stream>>>(out, y, tab, weights, T_, int(K), C);
  }
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void combine_backward_t(T* dy, float* dweights, const T* dout, const T* y, const int32_t* order,
                        const float* weights, int64_t T_, int64_t K, int64_t C) {
  const int64_t R = T_ * K;
  if (R == 0 || (!dy && !dweights)) return;
  constexpr int V = kVec<T>;
  if (C % V == 0 && (!dy || aligned16(dy)) && aligned16(dout) && aligned16(y)) {
    combine_backward_kernel<V><<<row_blocks(R), kThreads, 0, context().stream>>>(dy, dweights, dout, y, order,
                                                                                 weights, R, int(K), C);
  } else {
    combine_backward_kernel<1><<<row_blocks(R), kThreads, 0, context().stream>>>(dy, dweights, dout, y, order,
                                                                                 weights, R, int(K), C);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void copy_columns(float* dst, int64_t Wd, int64_t dc, const float* src, int64_t Ws, int64_t sc, int64_t W,
                  int64_t N, bool accumulate) {
  copy_columns_t(dst, Wd, dc, src, Ws, sc, W, N, accumulate);
}
void copy_columns(bf16* dst, int64_t Wd, int64_t dc, const bf16* src, int64_t Ws, int64_t sc, int64_t W,
                  int64_t N, bool accumulate) {
  copy_columns_t(dp(dst), Wd, dc, dp(src), Ws, sc, W, N, accumulate);
}

void moe_route_forward(int32_t* experts, float* weights, const float* logits, const float* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r) {
  route_forward_t(experts, weights, logits, bias, replay, T, E, r);
}
void moe_route_forward(int32_t* experts, float* weights, const bf16* logits, const bf16* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r) {
  route_forward_t(experts, weights, dp(logits), dp(bias), replay, T, E, r);
}
void moe_route_forward(int32_t* experts, float* weights, const bf16* logits, const float* bias,
                       const int32_t* replay, int64_t T, int64_t E, const Routing& r) {
  route_forward_t(experts, weights, dp(logits), bias, replay, T, E, r);
}

void moe_route_backward(float* dlogits, const float* dweights, const float* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r) {
  route_backward_t(dlogits, dweights, logits, experts, T, E, r);
}
void moe_route_backward(float* dlogits, const float* dweights, const bf16* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r) {
  route_backward_t(dlogits, dweights, dp(logits), experts, T, E, r);
}
void moe_route_backward(bf16* dlogits, const float* dweights, const bf16* logits, const int32_t* experts,
                        int64_t T, int64_t E, const Routing& r) {
  route_backward_t(dp(dlogits), dweights, dp(logits), experts, T, E, r);
}

void moe_permute(int32_t* order, int32_t* tokens, int32_t* offsets, const int32_t* experts, int64_t T,
                 int64_t K, int64_t E) {
  const int64_t R = T * K;
  if (R > INT_MAX) throw_error("moe_permute: more than 2^31 assignments");
  if (E > kMaxExperts) throw_error("moe_permute: too many experts for CUDA");
  cudaStream_t s = context().stream;
  CUDA_CHECK(cudaMemsetAsync(offsets, 0, size_t(E + 1) * sizeof(int32_t), s));
  if (R == 0 || E == 0) return;
  // About 16 assignments per thread, so each block's E global atomics are spread over many of them.
  expert_counts_kernel<<<grid_for((R + 15) / 16), kThreads, size_t(E) * sizeof(int), s>>>(offsets + 1,
                                                                                          experts, R, int(E));
  CUDA_CHECK_LAUNCH();
  offsets_scan_kernel<<<1, 1024, 0, s>>>(offsets, int(E));
  CUDA_CHECK_LAUNCH();
  scatter_rows_kernel<<<unsigned(E), kScatterThreads, 0, s>>>(order, tokens, offsets, experts, R, int(K));
  CUDA_CHECK_LAUNCH();
}

void moe_combine_forward(float* out, const float* y, const int32_t* order, const float* weights, int64_t T,
                         int64_t K, int64_t C) {
  combine_forward_t(out, y, order, weights, T, K, C);
}
void moe_combine_forward(bf16* out, const bf16* y, const int32_t* order, const float* weights, int64_t T,
                         int64_t K, int64_t C) {
  combine_forward_t(dp(out), dp(y), order, weights, T, K, C);
}

void moe_combine_backward(float* dy, float* dweights, const float* dout, const float* y, const int32_t* order,
                          const float* weights, int64_t T, int64_t K, int64_t C) {
  combine_backward_t(dy, dweights, dout, y, order, weights, T, K, C);
}
void moe_combine_backward(bf16* dy, float* dweights, const bf16* dout, const bf16* y, const int32_t* order,
                          const float* weights, int64_t T, int64_t K, int64_t C) {
  combine_backward_t(dp(dy), dweights, dp(dout), dp(y), order, weights, T, K, C);
}

}  // namespace r1::cuda
