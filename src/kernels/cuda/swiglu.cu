// SwiGLU: out = silu(gate) * up, and its backward; f32 or bf16 storage, fp32 math with expf at full
// precision (as on the CPU), 16-byte packs when aligned.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"

namespace r1::cuda {

namespace {

template <typename T>
struct SwigluF {
  T* out;
  const T* gate;
  const T* up;
  template <int V>
  __device__ void apply(int64_t i) const {
    float g[V], u[V];
    load_vec<V>(g, gate + i);
    load_vec<V>(u, up + i);
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
  template <int V>
  __device__ void apply(int64_t i) const {
    float g[V], u[V], d[V], dg[V], du[V];
    load_vec<V>(g, gate + i);
    load_vec<V>(u, up + i);
    load_vec<V>(d, dout + i);
    load_vec<V>(dg, dgate + i);
    load_vec<V>(du, dup + i);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float sig = 1.0f / (1.0f + expf(-g[k]));
      dg[k] += d[k] * u[k] * sig * (1.0f + g[k] * (1.0f - sig));
      du[k] += d[k] * g[k] * sig;
    }
    store_vec<V>(dgate + i, dg);
    store_vec<V>(dup + i, du);
  }
};

template <typename T>
void swiglu_forward_t(T* out, const T* gate, const T* up, int64_t n) {
  launch_packed_map<T>(SwigluF<T>{out, gate, up}, n, aligned16(out) && aligned16(gate) && aligned16(up));
}

template <typename T>
void swiglu_backward_t(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
  const bool al = aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up);
  launch_packed_map<T>(SwigluBackF<T>{dgate, dup, dout, gate, up}, n, al);
}

}  // namespace

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  swiglu_forward_t(out, gate, up, n);
}
void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, int64_t n) {
  swiglu_forward_t(dp(out), dp(gate), dp(up), n);
}
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n) {
  swiglu_backward_t(dgate, dup, dout, gate, up, n);
}
void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up, int64_t n) {
  swiglu_backward_t(dp(dgate), dp(dup), dp(dout), dp(gate), dp(up), n);
}

}  // namespace r1::cuda
