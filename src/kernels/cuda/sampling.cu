// Token sampling on the GPU, drawing exactly what rollout::sample_token draws. One block per row
// (or, for untruncated and greedy draws of few rows, a cluster of two blocks sharing its 1024
// threads: row_sync, row_shared, row_argmax, row_reduce), no sort: (a) max / argmax by a block
// reduction, then the log-sum-exp (the CPU's float e in double sums) with one exp per token: each
// warp sums its contiguous share of the row, tile by tile, into at most kSegs segment sums kept in
// shared memory; (b) the kept set as a threshold on an order-preserving key of the logit, found by
// radix select (four 8-bit digits, shared-memory histograms: counts for top-k, probability mass for
// top-p); (c) the draw, the first id in id order whose running mass passes u * mass. Untruncated,
// the warp whose share passes it walks its segment sums, then recomputes one segment's tiles (the
// pass's adds, in its order, so it finds the crossing); truncated, a block-wide prefix sum of the
// kept mass, each thread owning a contiguous range of ids. Every pass re-reads the row (from L2
// where it fits); nothing is allocated.
//
// The CPU orders tokens by their float probability, ties by id; this orders them by logit, ties by
// id. The two differ only for distinct logits whose probabilities round to the same float: logits
// closer than ~T 2^-24 (possible only for |logit| < ~T/2) or underflowing ones. It shows only when
// such a pair straddles the top-k / top-p boundary, and then swaps two kept tokens of equal
// probability (or of zero mass, which no draw can pick).
#include "kernels/sampling.h"

#include <climits>

#include <cooperative_groups.h>

#include "base/rng.h"
#include "kernels/cuda/cuda_common.cuh"

namespace r1::cuda {

namespace {

constexpr int kBlock = 1024;  // threads per row
constexpr int kBins = 256;    // one 8-bit digit of the key
constexpr unsigned kFull = 0xffffffffu;

struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// Larger logit <=> larger key (the float's bits made monotone); -0 and +0 are one logit.
__device__ __forceinline__ uint32_t order_key(float z) {
  const uint32_t b = __float_as_uint(z == 0.0f ? 0.0f : z);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_logit(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// exp((z - max) / T) rounded to float, as the CPU computes it (explicit roundings: no fused ops).
__device__ __forceinline__ float e_of(float z, float mx, double inv_t) {
  return float(exp(__dmul_rn(__dsub_rn(double(z), double(mx)), inv_t)));
}

// Probability mass in fixed point, hi * 2^-40 + lo * 2^-80: integer sums are exact, so histograms do
// not depend on the order of their atomics and the draw is deterministic. e <= 1 and V < 2^23 keep
// every sum below 2^63; the truncation (< 2^-80 a token) is far below any mass that decides a draw.
struct Fixed {
  unsigned long long hi, lo;
};
__device__ __forceinline__ Fixed to_fixed(float e) {
  const double x = double(e) * 0x1p40, h = floor(x);  // exact
  return {(unsigned long long)h, (unsigned long long)((x - h) * 0x1p40)};
}
__device__ __forceinline__ double fixed_value(unsigned long long hi, unsigned long long lo) {
  hi += lo >> 40;
  lo &= (1ull << 40) - 1;
  return double(hi) * 0x1p-40 + double(lo) * 0x1p-80;
}

// Histogram adds with one atomic per distinct bin of the warp: neighbouring tokens share few bins,
// and same-address atomics of one warp serialise. bin < 0 adds nothing. Every lane must call.
__device__ __forceinline__ void warp_add_count(unsigned* hist, int bin) {
  if (!__any_sync(kFull, bin >= 0)) return;  // the whole warp: most tokens miss the prefix
  const unsigned peers = __match_any_sync(kFull, bin);
  if (bin >= 0 && int(threadIdx.x & 31) == __ffs(peers) - 1)
    atomicAdd(&hist[bin], unsigned(__popc(peers)));
}

__device__ __forceinline__ void warp_add_mass(unsigned long long* hist_hi, unsigned long long* hist_lo,
                                              int bin, Fixed v) {
  if (!__any_sync(kFull, bin >= 0)) return;  // the whole warp
  const int lane = int(threadIdx.x & 31);
  const unsigned peers = __match_any_sync(kFull, bin);
  // Tree sum within each group of peers: each round a lane adds its next remaining peer's partial
  // sum, then the lanes of odd rank (among those remaining) drop out; the lowest lane ends with all.
  // The lanes without a bin need no sum.
  unsigned above = bin >= 0 ? peers & ~((2u << lane) - 1u) : 0u;
  unsigned rank = unsigned(__popc(peers & ((1u << lane) - 1u)));
  while (__any_sync(kFull, above != 0)) {
    const int next = __ffs(above);  // 1-based, 0: none
    const int src = next > 0 ? next - 1 : lane;
    const unsigned long long h = __shfl_sync(kFull, v.hi, src), l = __shfl_sync(kFull, v.lo, src);
    if (next > 0) {
      v.hi += h;
      v.lo += l;
    }
    above &= ~__ballot_sync(kFull, rank & 1u);
    rank >>= 1;
  }
  if (bin >= 0 && lane == __ffs(peers) - 1) {
    atomicAdd(&hist_hi[bin], v.hi);
    atomicAdd(&hist_lo[bin], v.lo);
  }
}

// Block-wide max of (v, lowest i on ties); every thread gets it.
__device__ __forceinline__ void warp_argmax(float& v, int& i) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, o);
    const int oi = __shfl_xor_sync(kFull, i, o);
    if (ov > v || (ov == v && oi < i)) {
      v = ov;
      i = oi;
    }
  }
}
__device__ void block_argmax(float& v, int& i) {
  __shared__ float pv[32];
  __shared__ int pi[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  warp_argmax(v, i);
  __syncthreads();
  if (lane == 0) {
    pv[warp] = v;
    pi[warp] = i;
  }
  __syncthreads();
  v = lane < nwarps ? pv[lane] : -INFINITY;
  i = lane < nwarps ? pi[lane] : INT_MAX;
  warp_argmax(v, i);
}

// A row's threads may be one block of kBlock or a cluster of kCtas blocks of kBlock / kCtas (the
// untruncated and greedy draws, for few rows: more SMs per row). Thread t of the row is thread
// t mod (kBlock / kCtas) of block t / (kBlock / kCtas); every partition and every order of adds is
// the one-block kernel's, so the draws are bit for bit the same.
template <int kCtas>
__device__ __forceinline__ void row_sync() {
  if constexpr (kCtas > 1) {
    cooperative_groups::this_cluster().sync();
  } else {
    __syncthreads();
  }
}
// Element i of a per-block shared array that holds `per` entries of each block, i in row order.
template <int kCtas, typename T>
__device__ __forceinline__ T row_shared(T* a, int per, int i) {
  if constexpr (kCtas > 1) {
    return *cooperative_groups::this_cluster().map_shared_rank(a + i % per, i / per);
  } else {
    return a[i];
  }
}

// row_argmax: block_argmax over the row's threads (the max with the lowest id among equals does not
// depend on the order it is taken in). Ends with the row's blocks synchronised, so a block may leave
// only after a later row_sync (its shared memory is read by the others until then).
template <int kCtas>
__device__ void row_argmax(float& v, int& i) {
  if constexpr (kCtas == 1) {
    block_argmax(v, i);
  } else {
    __shared__ float pv[32];
    __shared__ int pi[32];
    constexpr int per = kBlock / kCtas / 32;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    warp_argmax(v, i);
    if (lane == 0) {
      pv[warp] = v;
      pi[warp] = i;
    }
    row_sync<kCtas>();
    v = row_shared<kCtas>(pv, per, lane);
    i = row_shared<kCtas>(pi, per, lane);
    warp_argmax(v, i);
  }
}

// block_reduce over the row's threads, for order-free ops (min, max); every thread gets it. Ends as
// row_argmax does.
template <int kCtas, typename T, typename Op>
__device__ T row_reduce(T v, Op op, T identity) {
  v = block_reduce(v, op, identity);
  if constexpr (kCtas > 1) {
    __shared__ T mine;
    if (threadIdx.x == 0) mine = v;
    row_sync<kCtas>();
    for (int c = 0; c < kCtas; ++c) v = op(v, *cooperative_groups::this_cluster().map_shared_rank(&mine, c));
  }
  return v;
}

// Exclusive prefix sum over the threads in order, and the total; every thread gets the same total.
template <typename T>
__device__ T block_exclusive_scan(T v, T& total) {
  __shared__ T warp_total[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  T incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const T y = __shfl_up_sync(kFull, incl, o);
    if (lane >= o) incl += y;
  }
  T excl = __shfl_up_sync(kFull, incl, 1);
  if (lane == 0) excl = T(0);
  __syncthreads();  // the previous call's readers are done
  if (lane == 31) warp_total[warp] = incl;
  __syncthreads();
  T base = T(0), sum = T(0);
  for (int k = 0; k < nwarps; ++k) {
    if (k == warp) base = sum;
    sum += warp_total[k];
  }
  total = sum;
  return base + excl;
}

struct Pick {
  int digit;
  double above;  // the bins above it
};

// Radix-select step: thread t < kBins passes the bin of digit kBins - 1 - t (descending digits);
// returns the digit d with above(d) < need <= above(d) + bin(d), above(d) the sum of the higher
// bins. The bounds come from one scan (each thread's lower bound is its predecessor's upper bound,
// bit for bit), so exactly one digit qualifies; need is clamped to the total, which the rounding of
// masses may leave a hair below it. Whole block; every thread gets the answer.
__device__ Pick pick_bin(double v, double need) {
  __shared__ double warp_total[kBins / 32];
  __shared__ Pick result;
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
  double incl = v, excl = 0.0;
  if (t < kBins) {  // whole warps
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const double y = __shfl_up_sync(kFull, incl, o);
      if (lane >= o) incl += y;
    }
    excl = __shfl_up_sync(kFull, incl, 1);
    if (lane == 0) excl = 0.0;
  }
  __syncthreads();  // the previous call's readers are done
  if (t < kBins && lane == 31) warp_total[warp] = incl;
  if (t == 0) result = {0, 0.0};
  __syncthreads();
  if (t < kBins) {
    double base = 0.0, total = 0.0;
    for (int k = 0; k < kBins / 32; ++k) {
      if (k == warp) base = total;
      total += warp_total[k];
    }
    const double n = need < total ? need : total, lo = base + excl, hi = base + incl;
    if (lo < n && n <= hi) result = {kBins - 1 - t, lo};
  }
  __syncthreads();
  return result;
}

constexpr int kWarps = kBlock / 32;
constexpr int kSegs = 64;  // segment sums kept per warp for the draw

// Warp w's share of the row's tiles of 32 ids, [begin, end), in segments of per_seg tiles.
struct Tiles {
  int begin, end, per_seg;
};
__device__ __forceinline__ Tiles tiles_of(int V, int warp) {
  const int tiles = (V + 31) / 32, per_warp = (tiles + kWarps - 1) / kWarps;
  const int begin = min(tiles, warp * per_warp);
  return {begin, min(tiles, begin + per_warp), max(1, (per_warp + kSegs - 1) / kSegs)};
}

// The lanes' inclusive prefix sums (Kogge-Stone, offsets 1, 2, 4, ...).
__device__ __forceinline__ double tile_inclusive(double x) {
  const int lane = int(threadIdx.x & 31);
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, x, o);
    if (lane >= o) x += y;
  }
  return x;
}

constexpr int kBatch = 8;  // loads in flight per thread in the max and mass passes

struct Params {
  int32_t* token;
  float* logprob;
  const float* logits;
  int64_t ld;
  int V;
  float temperature, top_p;
  int top_k;
  uint64_t seed;
  const uint64_t* stream;
  const int32_t* step;
  const int32_t* logit_row;
  const int32_t* active;
  bool sampled_logprobs;
};

// Bits of the key above the digit at `shift` (none for the top digit).
__device__ __forceinline__ uint32_t high_mask(int shift) { return shift == 24 ? 0u : ~0u << (shift + 8); }

template <int kCtas>
__global__ void __launch_bounds__(kBlock / kCtas) sample_kernel(Params p) {
  constexpr int kLocalWarps = kWarps / kCtas;  // warps of one block
  const int r = blockIdx.x / kCtas, cta = blockIdx.x % kCtas;  // a cluster's blocks are consecutive
  if (p.active && p.active[r] == 0) return;  // the whole row
  // The row's thread t (of nt = kBlock), warp `warp`; `lw`, the warp in this block.
  const int t = cta * (kBlock / kCtas) + threadIdx.x, lane = t & 31, warp = t >> 5, lw = warp - cta * kLocalWarps;
  const int nt = kBlock, V = p.V;
  const float* row = p.logits + int64_t(p.logit_row ? p.logit_row[r] : r) * p.ld;
  const bool greedy = p.temperature == 0.0f;
  const double inv_t = greedy ? 1.0 : 1.0 / double(p.temperature);

  // (a) Max (lowest id among equals, as the CPU's strict >) and log-sum-exp.
  float mx = -INFINITY;
  int argmax = INT_MAX;
  for (int base = t; base < V; base += kBatch * nt) {  // kBatch loads in flight, then in id order
    float z[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) z[j] = base + j * nt < V ? row[base + j * nt] : 0.0f;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = base + j * nt;
      if (i < V && (argmax == INT_MAX || z[j] > mx)) {
        mx = z[j];
        argmax = i;
      }
    }
  }
  row_argmax<kCtas>(mx, argmax);
  // The tempered mass, one exp per token: warp w sums its contiguous tiles of 32 ids, each tile by
  // a butterfly, into at most kSegs segment sums (kept for the draw); the warps' totals are added in
  // order, so ahead[w + 1] = ahead[w] + total[w] exactly.
  __shared__ double seg_sum[kLocalWarps][kSegs];
  __shared__ double warp_total[kLocalWarps];
  const Tiles tl = tiles_of(V, warp);
  int last = -1;  // this lane's last id with e > 0
  {
    // kBatch tiles at a time: their loads, exps and butterflies are independent (a warp would
    // otherwise wait out one tile's whole chain before starting the next); then added in order,
    // closing a segment every per_seg tiles.
    double W = 0.0, S = 0.0;
    int s = 0, in_seg = 0;
    for (int kb = tl.begin; kb < tl.end; kb += kBatch) {
      float z[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const int i = (kb + j) * 32 + lane;
        z[j] = kb + j < tl.end && i < V ? row[i] : -INFINITY;
      }
      double x[kBatch];
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const float e = z[j] == -INFINITY ? 0.0f : e_of(z[j], mx, inv_t);
        if (e > 0.0f) last = (kb + j) * 32 + lane;
        x[j] = double(e);
      }
      // Each tile's sum by a butterfly with offsets 1, 2, 4, ...: it adds the same pairs in the same
      // tree as tile_inclusive's lane 31 (addition commutes bitwise), so every lane gets that
      // lane's value, bit for bit, and the draw's walk reproduces it.
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
#pragma unroll
        for (int j = 0; j < kBatch; ++j) x[j] += __shfl_xor_sync(kFull, x[j], o);
      }
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        if (kb + j >= tl.end) break;
        S += x[j];
        if (++in_seg == tl.per_seg || kb + j + 1 == tl.end) {
          if (lane == 0) seg_sum[lw][s] = S;
          W += S;
          S = 0.0;
          in_seg = 0;
          ++s;
        }
      }
    }
    if (lane == 0) warp_total[lw] = W;
  }
  row_sync<kCtas>();
  double sum = 0.0, ahead = 0.0;  // all warps' mass; the mass of the warps before this one
  for (int w = 0; w < kWarps; ++w) {
    if (w == warp) ahead = sum;
    sum += row_shared<kCtas>(warp_total, kLocalWarps, w);
  }
  row_sync<kCtas>();  // no block reads another's warp_total from here on
  const double log_z = __dadd_rn(__dmul_rn(double(mx), inv_t), log(sum));
  auto logprob_of = [&](int i) { return float(__dsub_rn(__dmul_rn(double(row[i]), inv_t), log_z)); };
  if (greedy) {
    if (t == 0) {
      p.token[r] = argmax;
      p.logprob[r] = logprob_of(argmax);
    }
    return;  // the whole row
  }
  const bool trunc_k = p.top_k > 0 && p.top_k < V, trunc_p = p.top_p < 1.0f;
  const bool truncated = trunc_k || trunc_p;
  if (!truncated) {
    // (c') Inverse CDF over all tokens in id order: the first id whose running mass exceeds
    // u * sum. The one warp whose range passes the target walks its segments' sums, then the
    // crossing segment's tiles, repeating the sums above add for add, so it finds the crossing.
    uint32_t w4[4];
    Philox::generate(p.seed, p.stream[r], uint64_t(int64_t(p.step[r])), w4);
    const double target = __dmul_rn(uniform53(w4), sum);
    int found = INT_MAX;
    if (ahead <= target && ahead + warp_total[lw] > target) {  // warp-uniform
      double Wp = 0.0;
      int s = 0;
      for (int k0 = tl.begin; k0 < tl.end; k0 += tl.per_seg, ++s) {
        const double Wn = Wp + seg_sum[lw][s];
        if (ahead + Wn > target) {
          double S = 0.0;
          for (int k = k0; k < min(tl.end, k0 + tl.per_seg) && found == INT_MAX; ++k) {
            const int i = k * 32 + lane;
            const float e = i < V ? e_of(row[i], mx, inv_t) : 0.0f;
            const double incl = tile_inclusive(double(e));
            const unsigned hit = __ballot_sync(kFull, e > 0.0f && ahead + (Wp + (S + incl)) > target);
            if (hit) found = k * 32 + __ffs(hit) - 1;
            S += __shfl_sync(kFull, incl, 31);
          }
          break;
        }
        Wp = Wn;
      }
    }
    found = row_reduce<kCtas>(found, MinOp{}, INT_MAX);
    last = row_reduce<kCtas>(last, MaxOp{}, -1);
    if (t == 0) {
      const int tok = found != INT_MAX ? found : last;  // rounding left the target unreached
      p.token[r] = tok;
      p.logprob[r] = logprob_of(tok);
    }
    row_sync<kCtas>();  // the other blocks have read this one's shared memory
    return;  // the whole row
  }
  if constexpr (kCtas == 1) {  // the host sends truncated draws to one block a row
    // (b) The kept set is a prefix of the order (logit desc, id asc): every key above K, and the
    // first n (by id) of the keys equal to K.
    __shared__ unsigned count[kBins];
    __shared__ unsigned long long mass_hi[kBins], mass_lo[kBins];
    uint32_t K = 0;
    int n = INT_MAX;
    if (trunc_k) {
      // The top_k-th key from the top, and how many of its ties fit.
      int need = p.top_k;
      uint32_t prefix = 0;
      for (int shift = 24; shift >= 0; shift -= 8) {
        const uint32_t hm = high_mask(shift);
        if (t < kBins) count[t] = 0;
        __syncthreads();
        for (int base = warp * 32; base < V; base += nt) {  // warp-uniform trip count
          const int i = base + lane;
          int bin = -1;
          if (i < V) {
            const uint32_t key = order_key(row[i]);
            if ((key & hm) == prefix) bin = int((key >> shift) & 0xffu);
          }
          warp_add_count(count, bin);
        }
        __syncthreads();
        const Pick pk = pick_bin(t < kBins ? double(count[kBins - 1 - t]) : 0.0, double(need));
        need -= int(pk.above);
        prefix |= uint32_t(pk.digit) << shift;
      }
      K = prefix;
      n = need;
    }
    if (trunc_p) {
      // The mass of the top-k set: the keys above K and n ties at K (equal logits, equal e).
      const float eK = trunc_k ? e_of(key_logit(K), mx, inv_t) : 0.0f;
      const Fixed fK = to_fixed(eK);
      double kept = sum;
      if (trunc_k) {
        double a = 0.0;
        for (int i = t; i < V; i += nt) {
          const float z = row[i];
          if (order_key(z) > K) a += double(e_of(z, mx, inv_t));
        }
        kept = __dadd_rn(block_reduce(a, SumOp{}, 0.0), __dmul_rn(double(n), double(eK)));
      }
      // The key where the mass from the top reaches top_p * kept, and how many of its ties it takes.
      double need = __dmul_rn(double(p.top_p), kept);
      uint32_t prefix = 0;
      for (int shift = 24; shift >= 0; shift -= 8) {
        const uint32_t hm = high_mask(shift);
        if (t < kBins) mass_hi[t] = mass_lo[t] = 0;
        __syncthreads();
        for (int base = warp * 32; base < V; base += nt) {  // warp-uniform trip count
          const int i = base + lane;
          int bin = -1;
          Fixed v{0, 0};
          if (i < V) {
            const float z = row[i];
            const uint32_t key = order_key(z);
            if ((key & hm) == prefix && (!trunc_k || key > K)) {
              bin = int((key >> shift) & 0xffu);
              v = to_fixed(e_of(z, mx, inv_t));
            }
          }
          warp_add_mass(mass_hi, mass_lo, bin, v);
        }
        if (trunc_k && t == 0 && (K & hm) == prefix) {  // the top-k set's ties at K
          const int b = int((K >> shift) & 0xffu);
          atomicAdd(&mass_hi[b], fK.hi * (unsigned long long)n);
          atomicAdd(&mass_lo[b], fK.lo * (unsigned long long)n);
        }
        __syncthreads();
        const double v = t < kBins ? fixed_value(mass_hi[kBins - 1 - t], mass_lo[kBins - 1 - t]) : 0.0;
        const Pick pk = pick_bin(v, need);
        need = __dsub_rn(need, pk.above);
        prefix |= uint32_t(pk.digit) << shift;
      }
      // The picked key holds mass, so it is in the top-k set (prefix >= K) and its e > 0; all its
      // ties weigh e, so the count is a division.
      const double c = ceil(need / double(e_of(key_logit(prefix), mx, inv_t)));
      const int np = c >= 1.0 ? (c < double(INT_MAX) ? int(c) : INT_MAX) : 1;
      if (!trunc_k || prefix != K) {
        K = prefix;
        n = np;
      } else {
        n = min(n, np);
      }
    }


    // (c) Inverse CDF over the kept tokens in id order, as the CPU: the first id whose running mass
    // exceeds u * mass. Thread t owns ids [lo, hi).
    const int chunk = (V + nt - 1) / nt, lo = min(V, t * chunk), hi = min(V, lo + chunk);
    int rank0 = 0;  // ties at K before lo
    if (truncated) {
      int c = 0;
      for (int i = lo; i < hi; ++i) c += order_key(row[i]) == K;
      int ties;
      rank0 = block_exclusive_scan(c, ties);
    }
    auto dropped = [&](uint32_t key, int& rank) { return truncated && (key < K || (key == K && rank++ >= n)); };
    double m = 0.0;  // this range's kept mass, summed in id order
    last = -1;       // its last kept id with e > 0
    {
      int rank = rank0;
      for (int i = lo; i < hi; ++i) {
        const float z = row[i];
        if (dropped(order_key(z), rank)) continue;
        const float e = e_of(z, mx, inv_t);
        if (e > 0.0f) {
          m += double(e);
          last = i;
        }
      }
    }
    double mass;
    const double before = block_exclusive_scan(m, mass);
    uint32_t w[4];
    Philox::generate(p.seed, p.stream[r], uint64_t(int64_t(p.step[r])), w);
    const double target = __dmul_rn(uniform53(w), mass);
    // A range whose end passes the target holds the crossing or follows it; the walk repeats the sum
    // above add for add, so it finds a crossing there. The first range's is the CPU's.
    int found = INT_MAX;
    if (before + m > target) {
      int rank = rank0;
      double acc = 0.0;
      for (int i = lo; i < hi; ++i) {
        const float z = row[i];
        if (dropped(order_key(z), rank)) continue;
        const float e = e_of(z, mx, inv_t);
        if (e > 0.0f) {
          acc += double(e);
          if (before + acc > target) {
            found = i;
            break;
          }
        }
      }
    }
    found = block_reduce(found, MinOp{}, INT_MAX);
    last = block_reduce(last, MaxOp{}, -1);
    if (t == 0) {
      const int tok = found != INT_MAX ? found : last;  // rounding left the target unreached: the last kept
      p.token[r] = tok;
      // The distribution sampled from: the kept tokens' share of the tempered mass taken out.
      const double log_kept = p.sampled_logprobs && truncated ? log(mass / sum) : 0.0;
      p.logprob[r] = float(__dsub_rn(double(logprob_of(tok)), log_kept));
    }
  }
}

int g_blocks_per_row = 0;  // set_sampling_blocks_per_row

}  // namespace

// Two blocks a row (a cluster: twice the SMs) for the untruncated and greedy draws when every block
// still has an SM of its own; otherwise, and for top-k / top-p, one. V: top_k >= V truncates
// nothing (0: unknown, so top_k > 0 truncates).
int sampling_blocks_per_row(int64_t R, const SampleConfig& cfg, int64_t V) {
  const bool untruncated = cfg.temperature == 0.0f ||
                           ((cfg.top_k == 0 || (V > 0 && cfg.top_k >= V)) && cfg.top_p >= 1.0f);
  if (g_blocks_per_row == 1 || !untruncated) return 1;
  return g_blocks_per_row == 2 || 2 * R <= context().sm_count ? 2 : 1;
}

void sample_tokens(int32_t* token, float* logprob, const float* logits, int64_t ld, int64_t R, int64_t V,
                   const SampleConfig& cfg, const uint64_t* stream, const int32_t* step,
                   const int32_t* logit_row, const int32_t* active) {
  if (R == 0) return;
  if (R < 0 || R > INT_MAX) throw_error("sample_tokens: row count out of range");
  if (V <= 0 || V >= (int64_t(1) << 23)) throw_error("sample_tokens: vocabulary size must be in [1, 2^23)");
  if (!(cfg.temperature >= 0 && cfg.top_p > 0 && cfg.top_p <= 1 && cfg.top_k >= 0))
    throw_error("sample_tokens: temperature must be >= 0, top_p in (0, 1], top_k >= 0");
  const Params p{token,     logprob,  logits, ld,   int(V),    cfg.temperature, cfg.top_p,
                 cfg.top_k, cfg.seed, stream, step, logit_row, active, cfg.sampled_logprobs};
  if (sampling_blocks_per_row(R, cfg, V) == 1) {
    sample_kernel<1><<<unsigned(R), kBlock, 0, context().stream>>>(p);
    CUDA_CHECK_LAUNCH();
    return;
  }
  cudaLaunchConfig_t lc{};
  lc.gridDim = dim3(unsigned(2 * R));
  lc.blockDim = dim3(kBlock / 2);
  lc.stream = context().stream;
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = 2;
  cluster.val.clusterDim.y = cluster.val.clusterDim.z = 1;
  lc.attrs = &cluster;
  lc.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&lc, sample_kernel<2>, p));
}

void set_sampling_blocks_per_row(int n) { g_blocks_per_row = n == 1 || n == 2 ? n : 0; }

int sampling_blocks_per_row(int64_t R, const SampleConfig& cfg) { return sampling_blocks_per_row(R, cfg, 0); }

}  // namespace r1::cuda
