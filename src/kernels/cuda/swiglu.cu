// SwiGLU: out = silu(gate) * up, and its backward; f32 or bf16 storage, fp32 math with expf at full
// precision (as on the CPU), 16-byte packs when aligned. Over `rows` rows of F elements whose gate and
// up rows are `stride` apart: stride F for separate tensors (one row of n), 2F for the packed
// [gate | up] rows of one GEMM (the MLP's fused gate/up projection).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

// Element i of the (rows, F) output reads its inputs at this offset.
struct Rows {
  int64_t F, stride;
  __device__ int64_t at(int64_t i) const { return stride == F ? i : (i / F) * stride + i % F; }
};

template <typename T>
struct SwigluF {
  T* out;
  const T* gate;
  const T* up;
  Rows r;
  template <int V>
  __device__ void apply(int64_t i) const {
    float g[V], u[V];
    const int64_t a = r.at(i);
    load_vec<V>(g, gate + a);
    load_vec<V>(u, up + a);
#pragma unroll
    for (int k = 0; k < V; ++k) g[k] = g[k] / (1.0f + expf(-g[k])) * u[k];
    store_vec<V>(out + i, g);
  }
};

// silu(g) = g * sig(g); silu'(g) = sig(g) * (1 + g * (1 - sig(g))).
template <typename T>
struct SwigluBackF {
  T* dgate;
  T* dup;
  const T* dout;
  const T* gate;
  const T* up;
  Rows r;
  template <int V>
  __device__ void apply(int64_t i) const {
    float g[V], u[V], d[V], dg[V], du[V];
    const int64_t a = r.at(i);
    load_vec<V>(g, gate + a);
    load_vec<V>(u, up + a);
    load_vec<V>(d, dout + i);
    load_vec<V>(dg, dgate + a);
    load_vec<V>(du, dup + a);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float sig = 1.0f / (1.0f + expf(-g[k]));
      dg[k] += d[k] * u[k] * sig * (1.0f + g[k] * (1.0f - sig));
      du[k] += d[k] * g[k] * sig;
    }
    store_vec<V>(dgate + a, dg);
    store_vec<V>(dup + a, du);
  }
};

// A pack of V stays inside a row and 16-byte aligned when F and the stride are multiples of the pack.
template <typename T>
bool packs(Rows r) {
  return r.F % kVec<T> == 0 && r.stride % kVec<T> == 0;
}

template <typename T>
void swiglu_forward_t(T* out, const T* gate, const T* up, int64_t rows, Rows r) {
  launch_packed_map<T>(SwigluF<T>{out, gate, up, r}, rows * r.F,
                       packs<T>(r) && aligned16(out) && aligned16(gate) && aligned16(up));
}

template <typename T>
void swiglu_backward_t(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t rows, Rows r) {
  const bool al = packs<T>(r) && aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) &&
                  aligned16(up);
  launch_packed_map<T>(SwigluBackF<T>{dgate, dup, dout, gate, up, r}, rows * r.F, al);
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t rows, int64_t F, int64_t stride) {
  swiglu_forward_t(out, gate, up, rows, Rows{F, stride});
}
void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t rows, int64_t F, int64_t stride) {
  swiglu_forward_t(dp(out), dp(gate), dp(up), rows, Rows{F, stride});
}
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t rows, int64_t F, int64_t stride) {
  swiglu_backward_t(dgate, dup, dout, gate, up, rows, Rows{F, stride});
}
void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t rows,
                     int64_t F, int64_t stride) {
  swiglu_backward_t(dp(dgate), dp(dup), dp(dout), dp(gate), dp(up), rows, Rows{F, stride});
}

}  // namespace r1::cuda
