// Token sampling on the GPU, top-k and top-p draws: what rollout::sample_token draws.
//
// Truncated draws (truncated_kernel, top-k / top-p): one block of kBlock threads a row, no sort:
// (a) the max by a block reduction, then the log-sum-exp (the CPU's float e in double sums); (b)
// the kept set as a threshold on an order-preserving key of the logit, found by radix select (four
// 8-bit digits, shared-memory histograms: counts for top-k, probability mass for top-p); (c) the
// draw, the first id in id order whose running mass passes u * mass: a block-wide prefix sum of the
// kept mass, each thread owning a contiguous range of ids. Every pass re-reads the row (from L2
// where it fits); nothing is allocated.
//
// The CPU orders tokens by their float probability, ties by id; the truncated kernel orders them by
// logit, ties by id. The two differ only for distinct logits whose probabilities round to the same
// float: logits closer than ~T 2^-24 (possible only for |logit| < ~T/2) or underflowing ones. It
// shows only when such a pair straddles the top-k / top-p boundary, and then swaps two kept tokens
// of equal probability (or of zero mass, which no draw can pick).
#include <climits>
#include <cstdint>

#include "base/rng.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/sampling_kernels.h"

namespace r1::cuda {

namespace {

constexpr int kBlock = 1024;  // threads per row
constexpr int kBins = 256;    // one 8-bit digit of the key
constexpr unsigned kFull = 0xffffffffu;

struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a < b ? a : b;
  }
};

// Larger logit <=> larger key (the float's bits made monotone); -0 and +0 are one logit.
__device__ __forceinline__ uint32_t order_key(float z) {
  const uint32_t b = __float_as_uint(z == 0.0f ? 0.0f : z);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_logit(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// exp((z - max) / T) rounded to float, as the CPU's truncated draw computes it (explicit roundings: no fused
// ops).
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
  if (bin >= 0 && int(threadIdx.x & 31) == __ffs(peers) - 1) atomicAdd(&hist[bin], unsigned(__popc(peers)));
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

constexpr int kBatch = 8;  // loads in flight per thread in the max and mass passes

// Bits of the key above the digit at `shift` (none for the top digit).
__device__ __forceinline__ uint32_t high_mask(int shift) { return shift == 24 ? 0u : ~0u << (shift + 8); }

__global__ void __launch_bounds__(kBlock) truncated_kernel(SampleArgs p) {
  const int r = blockIdx.x;
  if (p.active && p.active[r] == 0) return;  // the whole row
  const int t = int(threadIdx.x), lane = t & 31, warp = t >> 5;
  const int nt = kBlock, V = p.V;
  const float* row = p.logits + int64_t(p.logit_row ? p.logit_row[r] : r) * p.ld;
  const double inv_t = 1.0 / double(p.temperature);

  // (a) The max and the tempered mass (for the log-probs), kBatch loads in flight a thread.
  float mx = -INFINITY;
  for (int base = t; base < V; base += kBatch * nt) {
    float z[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) z[j] = base + j * nt < V ? row[base + j * nt] : -INFINITY;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) mx = fmaxf(mx, z[j]);
  }
  mx = block_reduce(mx, MaxOp{}, -INFINITY);
  double part = 0.0;
  for (int base = t; base < V; base += kBatch * nt) {
    float z[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) z[j] = base + j * nt < V ? row[base + j * nt] : -INFINITY;
#pragma unroll
    for (int j = 0; j < kBatch; ++j)
      if (z[j] != -INFINITY) part += double(e_of(z[j], mx, inv_t));
  }
  const double sum = block_reduce(part, SumOp{}, 0.0);
  const double log_z = __dadd_rn(__dmul_rn(double(mx), inv_t), log(sum));
  auto logprob_of = [&](int i) { return float(__dsub_rn(__dmul_rn(double(row[i]), inv_t), log_z)); };
  const bool trunc_k = p.top_k > 0 && p.top_k < V, trunc_p = p.top_p < 1.0f;
  constexpr bool truncated = true;
  int last = -1;
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
    const double log_kept = p.sampled_logprobs ? log(mass / sum) : 0.0;
    p.logprob[r] = float(__dsub_rn(double(logprob_of(tok)), log_kept));
  }
}

}  // namespace

void launch_truncated(const SampleArgs& p, int64_t R) {
  truncated_kernel<<<unsigned(R), kBlock, 0, context().stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1::cuda
