#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"

namespace r1::cpu {

namespace {

inline float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

inline void axpy(float* y, float a, const float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// One query row (HD) over n keys (HD) and values (HDV): key j at key(j), value j at value(j).
// Writes out (HDV) and returns the log-sum-exp of the scaled scores. s: scratch of >= n floats.
template <class KeyRow, class ValueRow>
float attend_row(float* out, const float* qr, KeyRow key, ValueRow value, int64_t n, int64_t HD, int64_t HDV,
                 float scale, float* s) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    s[j] = scale * dot(qr, key(j), HD);
    m = std::max(m, s[j]);
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - m);
    sum += s[j];
  }
  std::memset(out, 0, size_t(HDV) * sizeof(float));
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; ++j) axpy(out, s[j] * inv, value(j), HDV);
  return m + std::log(sum);
}

// Rows base + j * stride: keys or values of one kv head in a packed batch.
struct StridedRows {
  const float* base;
  int64_t stride;
  const float* operator()(int64_t j) const { return base + j * stride; }
};

// Rows of one kv head of a sequence in the paged cache: its row j is pool row rows[j].
struct PagedRows {
  const float* cache;  // + the head's offset in a row
  const int64_t* rows;
  int64_t stride;  // elements per pool row
  const float* operator()(int64_t j) const { return cache + rows[j] * stride; }
};

// The pool rows of a sequence's rows [0, n), looked up in its block table once for all its heads.
void pool_rows(std::vector<int64_t>& rows, const int32_t* blocks, int64_t BS, int64_t n) {
  rows.resize(size_t(n));
  for (int64_t j = 0; j < n; ++j) rows[size_t(j)] = int64_t(blocks[j / BS]) * BS + j % BS;
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* cu_seqlens, int64_t B, int64_t T, int64_t NH, int64_t NKV,
                       int64_t HD, int64_t HDV, float scale) {
  std::vector<int32_t> start(static_cast<size_t>(T));
  int64_t maxlen = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = cu_seqlens[b]; t < cu_seqlens[b + 1]; ++t) start[size_t(t)] = cu_seqlens[b];
    maxlen = std::max<int64_t>(maxlen, cu_seqlens[b + 1] - cu_seqlens[b]);
  }
  const int64_t group = NH / NKV, kstride = NKV * HD, vstride = NKV * HDV;
#pragma omp parallel if (T * maxlen * NH * (HD + HDV) / 2 >= kParallelMin)
  {
    std::vector<float> s(static_cast<size_t>(std::max<int64_t>(maxlen, 1)));
#pragma omp for schedule(dynamic, 8)
    for (int64_t th = 0; th < T * NH; ++th) {
      const int64_t t = th / NH, h = th % NH, g = h / group, s0 = start[size_t(t)];
      lse[th] =
          attend_row(out + th * HDV, q + th * HD, StridedRows{k + s0 * kstride + g * HD, kstride},
                     StridedRows{v + s0 * vstride + g * HDV, vstride}, t - s0 + 1, HD, HDV, scale, s.data());
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const int32_t* cu_seqlens,
                        int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale) {
  (void)T;
  // One task per (sequence, kv head): it owns dk/dv of that kv head in that sequence and dq of the
  // query heads that share it, so tasks never write the same memory. Longest sequences first.
  std::vector<int64_t> order(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) order[size_t(b)] = b;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return cu_seqlens[a + 1] - cu_seqlens[a] > cu_seqlens[b + 1] - cu_seqlens[b];
  });
  const int64_t group = NH / NKV, kstride = NKV * HD, vstride = NKV * HDV, qstride = NH * HD, ostride = NH * HDV;
#pragma omp parallel if (T * NH * HD * 16 >= kParallelMin)
  {
    std::vector<float> dq_acc(static_cast<size_t>(HD));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < B * NKV; ++task) {
      const int64_t b = order[size_t(task / NKV)], g = task % NKV;
      const int64_t s0 = cu_seqlens[b], s1 = cu_seqlens[b + 1];
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        for (int64_t i = s0; i < s1; ++i) {
          const float* qi = q + i * qstride + h * HD;
          const float* doi = dout + i * ostride + h * HDV;
          const float* oi = out + i * ostride + h * HDV;
          const float li = lse[i * NH + h];
          const float Di = dot(doi, oi, HDV);
          std::fill(dq_acc.begin(), dq_acc.end(), 0.0f);
          for (int64_t j = s0; j <= i; ++j) {
            const float* kj = k + j * kstride + g * HD;
            const float* vj = v + j * vstride + g * HDV;
            const float p = std::exp(scale * dot(qi, kj, HD) - li);
            const float dp = dot(doi, vj, HDV);
            const float ds = p * (dp - Di);
            axpy(dq_acc.data(), ds, kj, HD);
            axpy(dk + j * kstride + g * HD, scale * ds, qi, HD);
            axpy(dv + j * vstride + g * HDV, p, doi, HDV);
          }
          axpy(dq + i * qstride + h * HD, scale, dq_acc.data(), HD);
        }
      }
    }
  }
}

void kv_cache_write(float* k_cache, float* v_cache, const float* k, const float* v,
                    const int32_t* block_table, const int32_t* slots, const int32_t* pos, int64_t T,
                    int64_t BS, int64_t MB, int64_t NKV, int64_t HD, int64_t HDV) {
  const int64_t krow = NKV * HD, vrow = NKV * HDV;
#pragma omp parallel for schedule(static) if (T * (krow + vrow) >= kParallelMin)
  for (int64_t t = 0; t < T; ++t) {
    const int64_t j = pos[t], r = int64_t(block_table[int64_t(slots[t]) * MB + j / BS]) * BS + j % BS;
    std::memcpy(k_cache + r * krow, k + t * krow, size_t(krow) * sizeof(float));
    if (v_cache) std::memcpy(v_cache + r * vrow, v + t * vrow, size_t(vrow) * sizeof(float));
  }
}

void attention_cached(float* out, const float* q, const float* k_cache, const float* v_cache,
                      const int32_t* block_table, const int32_t* slots, const int32_t* pos, int64_t T,
                      int64_t BS, int64_t MB, int64_t NH, int64_t NKV, int64_t HD, int64_t HDV, float scale) {
  int64_t maxlen = 0;
  for (int64_t t = 0; t < T; ++t) maxlen = std::max<int64_t>(maxlen, int64_t(pos[t]) + 1);
  // No v_cache: the latent cache, whose values are each key row's first HDV columns.
  const int64_t group = NH / NKV, kstride = NKV * HD, vstride = v_cache ? NKV * HDV : kstride,
                vhead = v_cache ? HDV : HD;
  const float* vbase = v_cache ? v_cache : k_cache;
#pragma omp parallel if (T * maxlen * NH * (HD + HDV) / 2 >= kParallelMin)
  {
    std::vector<float> s(static_cast<size_t>(std::max<int64_t>(maxlen, 1)));
    std::vector<int64_t> rows;
    int64_t rows_of = -1;  // the token whose rows `rows` holds (consecutive th share a token)
#pragma omp for schedule(dynamic, 8)
    for (int64_t th = 0; th < T * NH; ++th) {
      const int64_t t = th / NH, h = th % NH, g = h / group, n = int64_t(pos[t]) + 1;
      if (rows_of != t) {
        pool_rows(rows, block_table + int64_t(slots[t]) * MB, BS, n);
        rows_of = t;
      }
      attend_row(out + th * HDV, q + th * HD, PagedRows{k_cache + g * HD, rows.data(), kstride},
                 PagedRows{vbase + g * vhead, rows.data(), vstride}, n, HD, HDV, scale, s.data());
    }
  }
}

}  // namespace r1::cpu
