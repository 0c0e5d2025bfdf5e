#pragma once
// The per-sequence state of GPU decoding, kept on the device so that a decode step (forward, draw,
// append, stop check) runs without the host: the step can be captured in a CUDA graph and replayed
// many times between the host's looks at it. Plain C++ header: with kernels/sampling.h, the GPU-only
// ops of the rollout engine's decode loop (CUDA builds; the CPU engine runs the same loop on the host).
#include <cstdint>

namespace r1::cuda {

// What a slot is doing. Everything but Running makes the decode step skip it.
enum DecodeFinish : int32_t { kRunning = 0, kStopToken = 1, kLength = 2, kIdle = 3 };

// Device arrays over S + 1 slots (the last, S, is never used: padding rows point at it).
struct DecodeSlots {
  int32_t* token = nullptr;    // the last token: the next step's input
  int32_t* pos = nullptr;      // its position in the sequence
  int32_t* count = nullptr;    // tokens generated so far (in this device segment)
  int32_t* step0 = nullptr;    // the stream step of the segment's first token: a draw's step is step0 + count
  int32_t* limit = nullptr;    // tokens this slot may generate
  int32_t* finish = nullptr;   // DecodeFinish
  uint64_t* stream = nullptr;  // Philox counter high word of its draws: (prompt id << 32) | sample
  int32_t* out_tokens = nullptr;   // (S + 1, stride): generated tokens
  float* out_logprobs = nullptr;   // (S + 1, stride): their log-probs
  int64_t stride = 0;
  const int32_t* stop_ids = nullptr;  // tokens that end a sequence
  int32_t n_stop = 0;
};

// Starts n device segments: slot[i] feeds token[i] (drawn on the host's side of the loop: a first
// token, or the token after a recompute or an observation) at position pos[i] next, and draws at
// steps step0[i], step0[i] + 1, ... of stream[i], at most limit[i] tokens.
void decode_start(const DecodeSlots& st, const int32_t* slot, const int32_t* token, const int32_t* pos,
                  const int32_t* limit, const int32_t* step0, const uint64_t* stream, int64_t n);

// Inputs of a step over `rows` rows: row r decodes slot row_slot[r]. Running slots give their token,
// position and slot to the forward (ids, slots, pos) and their stream and step (step0 + count) to
// the sampler (stream, step; active = 1). Other rows (finished slots, padding) compute on row 0 of the unused
// slot `spare_slot` and are inactive.
void decode_prepare(const DecodeSlots& st, const int32_t* row_slot, int64_t rows, int32_t spare_slot,
                    int32_t* ids, int32_t* slots, int32_t* pos, uint64_t* stream, int32_t* step, int32_t* active);

// Appends each active row's draw to its slot and ends the slot on a stop token or at its limit.
void decode_commit(const DecodeSlots& st, const int32_t* row_slot, const int32_t* active, int64_t rows,
                   const int32_t* token, const float* logprob);

// Sets finish[slot[i]] = value for n slots (the host ends a sequence it stopped on a stop string).
void decode_set_finish(const DecodeSlots& st, const int32_t* slot, int64_t n, int32_t value);

}  // namespace r1::cuda
