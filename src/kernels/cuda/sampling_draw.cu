// Token sampling on the GPU, untruncated and greedy draws: what rollout::sample_token draws, bit for bit.
//
// Untruncated and greedy draws (draw_kernel): one read of the row. Warps take the row's chunks of
// kChunk ids (base/sampling_math.h), a lane kPerLane consecutive ids held in registers: the chunk's
// largest logit m by a warp max, each id's float weight e^((z - m) / T) (exp_f: float multiplies
// and adds, the CPU's bits), the lanes' float sums, their lane scan in double. Each chunk leaves
// (m, total) in shared memory; then one warp scales the chunks to the row's largest logit, adds
// them as rollout::sample_token states, finds the crossing chunk and re-reads that chunk alone to
// find the token (finish_row: its reads of the chunks' state issued in batches ahead of the adds,
// the crossing lane's chunks weighed by the whole warp; the token's logit kept from the re-read
// instead of read again). A row takes one block of kDrawBlock threads, or a cluster of 2 or 4 of them when
// there are few rows (more SMs a row; the draws are the same bits: which warp weighs a chunk does
// not enter the sums).
#include <cooperative_groups.h>

#include <climits>
#include <cstdint>

#include "base/rng.h"
#include "base/sampling_math.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/sampling_kernels.h"

namespace r1::cuda {

namespace {

using sampling::kChunk;
using sampling::kLanes;
using sampling::kPerLane;

constexpr unsigned kFull = 0xffffffffu;

// Warp-wide max of (v, lowest i on ties); every lane gets it.
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

// Barrier over a row's threads: one block, or draw_kernel's cluster of kCtas blocks.
template <int kCtas>
__device__ __forceinline__ void row_sync() {
  if constexpr (kCtas > 1) {
    cooperative_groups::this_cluster().sync();
  } else {
    __syncthreads();
  }
}
// Element `at` of the shared memory of the row's block `block` (this block's own when kCtas = 1).
template <int kCtas, typename T>
__device__ __forceinline__ T row_shared_at(const T* at, int block) {
  if constexpr (kCtas > 1) {
    return *cooperative_groups::this_cluster().map_shared_rank(const_cast<T*>(at), block);
  } else {
    return *at;
  }
}

constexpr int kDrawWarps = kDrawBlock / 32;

// Where chunk c's (m, total) lives: row warp c % warps weighs it, in block (c % warps) / kDrawWarps,
// slot (c / warps) * kDrawWarps + its warp in that block.
struct StatSlot {
  int block, slot;
};
__device__ __forceinline__ StatSlot stat_slot(int c, int warps) {
  const int w = c % warps;
  return {w / kDrawWarps, (c / warps) * kDrawWarps + w % kDrawWarps};
}
// Slots a block needs for V ids at `warps` warps a row.
__host__ __device__ inline int stat_slots(int V, int warps) {
  const int chunks = (V + kChunk - 1) / kChunk;
  return (chunks + warps - 1) / warps * kDrawWarps;
}

__host__ __device__ inline size_t stat_bytes(int V, int warps) {
  return size_t(stat_slots(V, warps)) * (sizeof(double) + sizeof(float));
}

// Per row: the chunks' largest logits (m) and lane-scan totals (s), in dynamic shared memory.
struct Stats {
  double* s;
  float* m;
  int warps;
  template <int kCtas>
  __device__ void get(int c, float& mc, double& sc) const {
    const StatSlot at = stat_slot(c, warps);
    mc = row_shared_at<kCtas>(m + at.slot, at.block);
    sc = row_shared_at<kCtas>(s + at.slot, at.block);
  }
};

// Chunk c's mass on the row's scale (largest logit M): its total times its scale e^((m - M) / T).
struct ChunkMass {
  float m;       // the chunk's largest logit
  double scale;  // e^((m - M) / T)
  double mass;
};
__device__ __forceinline__ ChunkMass chunk_mass(float mc, double sc, float M, float inv_t) {
  const double scale = double(sampling::weight_f(mc, M, inv_t));
  return {mc, scale, sampling::mul_d(sc, scale)};
}

// Lane l's kPerLane logits of chunk c (ids c * kChunk + l * kPerLane + j), -inf past V; vec: the row
// is 16-byte aligned.
__device__ __forceinline__ void load_lane(const float* row, int V, int c, bool vec, float (&z)[kPerLane]) {
  const int base = c * kChunk + int(threadIdx.x & 31) * kPerLane;
  if (vec && base + kPerLane <= V) {
    const float4* q = reinterpret_cast<const float4*>(row + base);
#pragma unroll
    for (int j = 0; j < kPerLane / 4; ++j) {
      const float4 v = __ldg(q + j);
      z[4 * j] = v.x;
      z[4 * j + 1] = v.y;
      z[4 * j + 2] = v.z;
      z[4 * j + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) z[j] = base + j < V ? __ldg(row + base + j) : -INFINITY;
  }
}

// Chunk c's weights against its largest logit m (a warp), each lane's float sum of them (a) and
// the lanes' inclusive scan in double (incl), the order rollout's weigh_chunk takes.
struct LaneWeights {
  float e[kPerLane];
  float a;
  double incl;
};
__device__ __forceinline__ void weigh_lane(const float (&z)[kPerLane], float m, float inv_t, LaneWeights& w) {
  w.a = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    w.e[j] = sampling::weight_f(z[j], m, inv_t);
    w.a = sampling::add_f(w.a, w.e[j]);
  }
  w.incl = double(w.a);
  const int lane = int(threadIdx.x & 31);
#pragma unroll
  for (int o = 1; o < kLanes; o <<= 1) {
    const double y = __shfl_up_sync(kFull, w.incl, o);
    if (lane >= o) w.incl = sampling::add_d(w.incl, y);
  }
}

// A drawn id and its logit (a warp; every lane gets both); id -1: none.
struct Drawn {
  int id;
  float z;
};

// The chunk's last id of positive weight, or -1 (a warp).
__device__ __forceinline__ Drawn last_positive(const float (&z)[kPerLane], const LaneWeights& w, int c) {
  int j_last = -1;
  float z_last = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j)
    if (w.e[j] > 0.0f) {
      j_last = j;
      z_last = z[j];
    }
  const unsigned has = __ballot_sync(kFull, j_last >= 0);
  if (!has) return {-1, 0.0f};
  const int l = 31 - __clz(has);
  return {c * kChunk + l * kPerLane + __shfl_sync(kFull, j_last, l), __shfl_sync(kFull, z_last, l)};
}

// rollout's walk_chunk for chunk c of largest logit m (a warp).
__device__ Drawn walk_chunk(const float* row, int V, bool vec, int c, float m, float inv_t, double lower,
                            double scale, double target) {
  float z[kPerLane];
  load_lane(row, V, c, vec, z);
  LaneWeights w;
  weigh_lane(z, m, inv_t, w);
  const unsigned pass = __ballot_sync(kFull, sampling::add_d(lower, sampling::mul_d(w.incl, scale)) > target);
  if (!pass) return last_positive(z, w, c);
  const int k = __ffs(pass) - 1, lane = int(threadIdx.x & 31);
  double excl = __shfl_up_sync(kFull, w.incl, 1);
  if (lane == 0) excl = 0.0;
  int found = -1;
  float z_found = 0.0f;
  if (lane == k) {
    float f = 0.0f;
    bool crossed = false;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {  // the last id of positive weight up to the crossing
      f = sampling::add_f(f, w.e[j]);
      if (crossed || !(w.e[j] > 0.0f)) continue;
      found = c * kChunk + k * kPerLane + j;
      z_found = z[j];
      crossed = sampling::add_d(lower, sampling::mul_d(sampling::add_d(excl, double(f)), scale)) > target;
    }
  }
  return {__shfl_sync(kFull, found, k), __shfl_sync(kFull, z_found, k)};
}

// The last id of positive weight in chunks [from, to), or -1 (a warp): the draw's fallback when
// rounding leaves the target past every partial sum.
template <int kCtas>
__device__ Drawn last_of(const float* row, int V, bool vec, const Stats& st, float M, float inv_t, int from,
                         int to) {
  for (int c = to - 1; c >= from; --c) {
    float mc;
    double sc;
    st.get<kCtas>(c, mc, sc);
    if (!(chunk_mass(mc, sc, M, inv_t).mass > 0.0)) continue;
    float z[kPerLane];
    load_lane(row, V, c, vec, z);
    LaneWeights w;
    weigh_lane(z, mc, inv_t, w);
    const Drawn t = last_positive(z, w, c);
    if (t.id >= 0) return t;
  }
  return {-1, 0.0f};
}

// One warp finishes row r from its chunks' (m, total): the row's largest logit M and its lowest
// id, the 32 row lanes' sums over their runs of q chunks and their scan (rollout::sample_token's
// order), then the draw. Loads are issued ahead of the adds that wait on them: a row lane fetches
// kBatch chunks' state at a time, and the crossing lane's run is weighed by all 32 lanes at once,
// then added in order.
template <int kCtas>
__device__ void finish_row(const SampleArgs& p, int r, const float* row, bool vec, int chunks,
                           const Stats& st, const float* warp_max, const int* warp_arg, float inv_t) {
  constexpr int warps = kDrawWarps * kCtas, kBatch = 8;
  const int lane = int(threadIdx.x & 31), V = p.V;
  float M = -INFINITY;
  int argmax = INT_MAX;
#pragma unroll
  for (int w0 = 0; w0 < warps; w0 += 32) {
    const int w = w0 + lane;
    if (w >= warps) continue;
    const float v = row_shared_at<kCtas>(warp_max + w % kDrawWarps, w / kDrawWarps);
    const int i = row_shared_at<kCtas>(warp_arg + w % kDrawWarps, w / kDrawWarps);
    if (i != INT_MAX && (v > M || (v == M && i < argmax))) {
      M = v;
      argmax = i;
    }
  }
  warp_argmax(M, argmax);
  if (argmax == INT_MAX) argmax = 0;  // every logit NaN
  const int q = (chunks + kLanes - 1) / kLanes, c0 = min(chunks, lane * q), c1 = min(chunks, c0 + q);
  double b = 0.0;
  for (int c = c0; c < c1; c += kBatch) {
    float mc[kBatch] = {};
    double sc[kBatch] = {};
#pragma unroll
    for (int i = 0; i < kBatch; ++i)
      if (c + i < c1) st.get<kCtas>(c + i, mc[i], sc[i]);
#pragma unroll
    for (int i = 0; i < kBatch; ++i)
      if (c + i < c1) b = sampling::add_d(b, chunk_mass(mc[i], sc[i], M, inv_t).mass);
  }
#pragma unroll
  for (int o = 1; o < kLanes; o <<= 1) {
    const double y = __shfl_up_sync(kFull, b, o);
    if (lane >= o) b = sampling::add_d(b, y);
  }
  const double mass = __shfl_sync(kFull, b, kLanes - 1);
  const double inv_t_d = p.temperature == 0.0f ? 1.0 : 1.0 / double(p.temperature);
  const double log_z = __dadd_rn(__dmul_rn(double(M), inv_t_d), log(mass));
  Drawn t{-1, 0.0f};
  if (p.temperature != 0.0f) {
    uint32_t w4[4];
    Philox::generate(p.seed, p.stream[r], uint64_t(int64_t(p.step[r])), w4);
    const double target = __dmul_rn(uniform53(w4), mass);
    const unsigned pass = __ballot_sync(kFull, b > target);
    if (!pass) {
      t = last_of<kCtas>(row, V, vec, st, M, inv_t, 0, chunks);
    } else {
      // Row lane L's run: its running mass from the scan's mass before it, chunk by chunk.
      const int L = __ffs(pass) - 1, from = min(chunks, L * q), to = min(chunks, from + q);
      const double before = __shfl_sync(kFull, b, max(L - 1, 0));
      double acc = L == 0 ? 0.0 : before;
      int hit = -1;
      ChunkMass at{0.0f, 0.0, 0.0};
      double lower = 0.0;
      for (int c = from; c < to && hit < 0; c += kLanes) {
        ChunkMass cm{0.0f, 0.0, 0.0};
        if (c + lane < to) {
          float mc;
          double sc;
          st.get<kCtas>(c + lane, mc, sc);
          cm = chunk_mass(mc, sc, M, inv_t);
        }
        const int n = min(kLanes, to - c);
        for (int i = 0; i < n; ++i) {  // acc is the same in every lane: the branch is the warp's
          const double next = sampling::add_d(acc, __shfl_sync(kFull, cm.mass, i));
          if (next > target) {
            hit = c + i;
            lower = acc;
            at = {__shfl_sync(kFull, cm.m, i), __shfl_sync(kFull, cm.scale, i), 0.0};
            break;
          }
          acc = next;
        }
      }
      t = hit >= 0 ? walk_chunk(row, V, vec, hit, at.m, inv_t, lower, at.scale, target)
                   : last_of<kCtas>(row, V, vec, st, M, inv_t, from, to);
    }
  }
  if (lane == 0) {
    const int token = t.id >= 0 ? t.id : argmax;
    const float z = t.id >= 0 ? t.z : row[token];
    p.token[r] = token;
    p.logprob[r] = float(__dsub_rn(__dmul_rn(double(z), inv_t_d), log_z));
  }
}

template <int kCtas>
__global__ void __launch_bounds__(kDrawBlock, 2) draw_kernel(SampleArgs p) {
  const int r = blockIdx.x / kCtas, cta = blockIdx.x % kCtas;  // a cluster's blocks are consecutive
  if (p.active && p.active[r] == 0) return;                    // the whole row
  const int lane = int(threadIdx.x & 31), lw = int(threadIdx.x >> 5);
  constexpr int warps = kDrawWarps * kCtas;  // the row's
  const int warp = cta * kDrawWarps + lw, V = p.V, chunks = (V + kChunk - 1) / kChunk;
  const float* row = p.logits + int64_t(p.logit_row ? p.logit_row[r] : r) * p.ld;
  const bool vec = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
  const float inv_t = sampling::inv_temperature_f(p.temperature);
  extern __shared__ double stat_mem[];
  const Stats st{stat_mem, reinterpret_cast<float*>(stat_mem + stat_slots(V, warps)), warps};
  __shared__ float warp_max[kDrawWarps];
  __shared__ int warp_arg[kDrawWarps];

  // Each warp weighs its chunks; it keeps the largest logit it saw with its lowest id.
  float best = -INFINITY;
  int best_id = INT_MAX;
  for (int c = warp; c < chunks; c += warps) {
    float z[kPerLane];
    load_lane(row, V, c, vec, z);
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) m = fmaxf(m, z[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(kFull, m, o));
    int jm = kPerLane;
#pragma unroll
    for (int j = kPerLane - 1; j >= 0; --j)
      if (z[j] == m) jm = j;
    const unsigned has = __ballot_sync(kFull, jm < kPerLane);
    if (has && (best_id == INT_MAX || m > best)) {  // later chunks hold higher ids
      const int l = __ffs(has) - 1;
      best = m;
      best_id = c * kChunk + l * kPerLane + __shfl_sync(kFull, jm, l);
    }
    LaneWeights w;
    weigh_lane(z, m, inv_t, w);
    if (lane == kLanes - 1) {
      const StatSlot at = stat_slot(c, warps);
      st.m[at.slot] = m;
      st.s[at.slot] = w.incl;
    }
  }
  if (lane == 0) {
    warp_max[lw] = best;
    warp_arg[lw] = best_id;
  }
  row_sync<kCtas>();
  // Warp 0 of the row finishes it; the others wait at the row_sync below.
  if (cta == 0 && lw == 0) finish_row<kCtas>(p, r, row, vec, chunks, st, warp_max, warp_arg, inv_t);
  row_sync<kCtas>();  // no block leaves while warp 0 may read its shared memory
}

// The dynamic shared memory of draw_kernel<kCtas> for V ids. The default limit is 48 KiB less the
// kernel's static shared memory (warp_max, warp_arg): past 46 KiB (V beyond about 2M ids at one
// block a row, 8M at four) the kernel's limit is raised first, once.
template <int kCtas>
size_t draw_shared_bytes(int V) {
  const size_t bytes = stat_bytes(V, kDrawWarps * kCtas);
  if (bytes > 46 * 1024) {
    static const bool raised = [] {
      CUDA_CHECK(cudaFuncSetAttribute(draw_kernel<kCtas>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      int(stat_bytes((1 << 23) - 1, kDrawWarps * kCtas))));
      return true;
    }();
    (void)raised;
  }
  return bytes;
}

template <int kCtas>
void launch_draw(const SampleArgs& p, int64_t R) {
  cudaLaunchConfig_t lc{};
  lc.gridDim = dim3(unsigned(kCtas * R));
  lc.blockDim = dim3(kDrawBlock);
  lc.dynamicSmemBytes = draw_shared_bytes<kCtas>(p.V);
  lc.stream = context().stream;
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = kCtas;
  cluster.val.clusterDim.y = cluster.val.clusterDim.z = 1;
  lc.attrs = &cluster;
  lc.numAttrs = kCtas > 1 ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&lc, draw_kernel<kCtas>, p));
}

}  // namespace

void launch_draw(const SampleArgs& p, int64_t R, int ctas) {
  switch (ctas) {
    case 4:
      return launch_draw<4>(p, R);
    case 2:
      return launch_draw<2>(p, R);
    default:
      return launch_draw<1>(p, R);
  }
}

}  // namespace r1::cuda
