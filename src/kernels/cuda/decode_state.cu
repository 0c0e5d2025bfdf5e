// Decode-state kernels (decode_state.h): tiny, one thread per row; they keep the host out of the
// decode loop.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/decode_state.h"

namespace r1::cuda {

namespace {

constexpr int kRowThreads = 128;

unsigned row_blocks(int64_t n) { return unsigned((n + kRowThreads - 1) / kRowThreads); }

// Appends one drawn token to slot s; ends it on a stop token or at its limit.
__device__ void append_token(const DecodeSlots& st, int32_t s, int32_t tok, float logprob) {
  const int32_t n = st.count[s];
  st.out_tokens[int64_t(s) * st.stride + n] = tok;
  st.out_logprobs[int64_t(s) * st.stride + n] = logprob;
  st.count[s] = n + 1;
  st.token[s] = tok;
  st.pos[s] += 1;
  bool stop = false;
  for (int32_t i = 0; i < st.n_stop; ++i) stop |= st.stop_ids[i] == tok;
  if (stop) {
    st.finish[s] = kStopToken;
  } else if (n + 1 >= st.limit[s]) {
    st.finish[s] = kLength;
  }
}

__global__ void start_kernel(DecodeSlots st, const int32_t* slot, const int32_t* token, const int32_t* pos,
                             const int32_t* limit, const int32_t* step0, const uint64_t* stream, int64_t n) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const int32_t s = slot[i];
  st.token[s] = token[i];
  st.pos[s] = pos[i];
  st.limit[s] = limit[i];
  st.step0[s] = step0[i];
  st.stream[s] = stream[i];
  st.count[s] = 0;
  st.finish[s] = kRunning;
}

__global__ void prepare_kernel(DecodeSlots st, const int32_t* row_slot, int64_t rows, int32_t spare_slot,
                               int32_t* ids, int32_t* slots, int32_t* pos, uint64_t* stream, int32_t* step,
                               int32_t* active) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const int32_t s = row_slot[r];
  const bool run = st.finish[s] == kRunning;
  ids[r] = run ? st.token[s] : 0;
  slots[r] = run ? s : spare_slot;
  pos[r] = run ? st.pos[s] : 0;
  stream[r] = st.stream[s];
  step[r] = st.step0[s] + st.count[s];
  active[r] = run ? 1 : 0;
}

__global__ void commit_kernel(DecodeSlots st, const int32_t* row_slot, const int32_t* active, int64_t rows,
                              const int32_t* token, const float* logprob) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r < rows && active[r]) append_token(st, row_slot[r], token[r], logprob[r]);
}

__global__ void set_finish_kernel(DecodeSlots st, const int32_t* slot, int64_t n, int32_t value) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i < n) st.finish[slot[i]] = value;
}

}  // namespace

void decode_start(const DecodeSlots& st, const int32_t* slot, const int32_t* token, const int32_t* pos,
                  const int32_t* limit, const int32_t* step0, const uint64_t* stream, int64_t n) {
  if (n == 0) return;
  start_kernel<<<row_blocks(n), kRowThreads, 0, context().stream>>>(st, slot, token, pos, limit, step0,
                                                                    stream, n);
  CUDA_CHECK_LAUNCH();
}

void decode_prepare(const DecodeSlots& st, const int32_t* row_slot, int64_t rows, int32_t spare_slot,
                    int32_t* ids, int32_t* slots, int32_t* pos, uint64_t* stream, int32_t* step, int32_t* active) {
  if (rows == 0) return;
  prepare_kernel<<<row_blocks(rows), kRowThreads, 0, context().stream>>>(st, row_slot, rows, spare_slot, ids, slots,
                                                                          pos, stream, step, active);
  CUDA_CHECK_LAUNCH();
}

void decode_commit(const DecodeSlots& st, const int32_t* row_slot, const int32_t* active, int64_t rows,
                   const int32_t* token, const float* logprob) {
  if (rows == 0) return;
  commit_kernel<<<row_blocks(rows), kRowThreads, 0, context().stream>>>(st, row_slot, active, rows, token, logprob);
  CUDA_CHECK_LAUNCH();
}

void decode_set_finish(const DecodeSlots& st, const int32_t* slot, int64_t n, int32_t value) {
  if (n == 0) return;
  set_finish_kernel<<<row_blocks(n), kRowThreads, 0, context().stream>>>(st, slot, n, value);
  CUDA_CHECK_LAUNCH();
}

}  // namespace r1::cuda
