#pragma once
// The GPU engine's insides (rollout/gpu_engine.h), shared by gpu_engine.cpp (device state, graphs,
// the decode loop) and gpu_admission.cpp (admissions, prefills, recomputes, tool turns). CUDA builds
// only.
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/thread_pool.h"
#include "device/graph.h"
#include "kernels/decode_state.h"
#include "kernels/sampling.h"
#include "rollout/gpu_engine.h"
#include "rollout/requests.h"
#include "rollout/scheduler.h"
#include "tensor/device_memory.h"

namespace r1::rollout {

template <typename T>
T* ptr(const Buffer& b) {
  return static_cast<T*>(b.data());
}

// A device array of n elements of T, grown (contents dropped) when too small.
template <typename T>
void reserve(Buffer& b, int64_t n) {
  if (b.size() < size_t(n) * sizeof(T)) b = Buffer(size_t(std::max<int64_t>(n, 1)) * sizeof(T), Device::CUDA);
}

template <typename T>
void upload(Buffer& b, const std::vector<T>& v) {
  reserve<T>(b, int64_t(v.size()));
  if (!v.empty()) devmem::copy(b.data(), Device::CUDA, v.data(), Device::CPU, v.size() * sizeof(T));
}

template <typename T>
void download(std::vector<T>& v, const T* dev, int64_t n) {
  v.resize(size_t(n));
  if (n > 0) devmem::copy(v.data(), Device::CPU, dev, Device::CUDA, size_t(n) * sizeof(T));
}

// The device state that outlives a generate call: per-slot decode state, the step's buffers, the
// captured steps (one per batch-size bucket), the sampling configuration baked into them.
struct GpuEngine::Impl {
  Impl(const model::Transformer& m, const EngineConfig& cfg, model::KVCache& cache, Scheduler& sched);
  Tensor rows_tensor(const Buffer& b, int rows) const {
    return Tensor(b.data(), DType::I32, {int64_t(rows)}, Device::CUDA);
  }
  // One decode step over `rows` rows of row_slot: prepare, forward, draw and (commit) append.
  void run_step(int rows, bool commit);
  // The captured step for a bucket: captured on first use, replayed after.
  cuda::Graph& graph_for(int bucket, GenerateStats& stats);
  // Sampling parameters, stop ids and the weights' addresses are baked into the captured steps: new
  // ones drop the graphs.
  void configure(const GenerateParams& params);

  const model::Transformer& m;
  EngineConfig cfg;
  model::KVCache& cache;
  Scheduler& sched;
  int S;  // slots; also the index of the spare slot (its table row names only block 0) padding rows compute
          // on
  int64_t V, L;
  // Per slot (S + 1).
  Buffer token, pos, count, step0, limit, finish, stream, out_tokens, out_logprobs, stop_ids;
  cuda::DecodeSlots st;
  // Per row of a step (up to S rows): the forward's and the sampler's inputs and outputs.
  Buffer row_slot, ids, slots, rpos, rstream, rstep, active, rtoken, rlogprob;
  Buffer attention_workspace;  // sized for every bucket: the arena must not grow after a capture
  int64_t workspace_floats = 0;
  // Per call: every sample's stream (turn 0) and first token, drawn when its prompt is prefilled.
  Buffer all_stream, zeros, first_tok, first_lp;
  // Draws after recomputes and observations, and the starts of device segments.
  Buffer d_stream, d_step, d_token, d_logprob, a_slot, a_token, a_pos, a_limit, a_step0, a_stream;
  Arena step_arena, prefill_arena;
  Arena route_arena;  // reading recorded routes back (routing replay)
  std::map<int, std::unique_ptr<cuda::Graph>> graphs;
  const void* captured_weights = nullptr;  // the model's weight buffer when the graphs were captured
  bool step_arena_sized = false;
  cuda::SampleConfig scfg;
  // Exact log-probs (GenerateParams::exact_logprobs): the forwards form the trainer's logits at this
  // temperature (> 0; 0: off), the sampler draws from them at temperature 1, and each draw's
  // log-prob is the trainer's fold of them (exact_logprobs below), its state in exact_state.
  float trainer_temperature = 0.0f;
  Buffer exact_state, exact_lse;
  // logp[r] = the trainer's log-prob of tokens[r] under logits row r (row stride ld: V, or 0 for one
  // row shared by all R draws), for r < R; queued on the stream, no allocation.
  void exact_logprobs(float* logp, const float* logits, int64_t ld, const int32_t* tokens, int64_t R);
  std::vector<int32_t> stop;
  std::vector<int32_t> rows_on_device;
  std::vector<int> buckets;
};

// The host's view of one slot.
struct HostSlot {
  bool active = false;
  int64_t prompt = -1, sample = -1, flat = -1;
  int32_t prompt_len = 0;
  bool on_device = false;   // a device segment runs (started, not yet ended or parked)
  int32_t limit = 0;        // tokens the device segment may generate
  int32_t seen = 0;         // tokens of the segment already streamed (on_token) and checked
  std::string text;         // decoded completion so far, for stop strings
  int32_t total_limit = 0;  // tokens the completion may take
  // Multi-turn: the model's current turn (and its random stream's segment) from turn_begin in the
  // completion; its pending tool call; the first completion token not yet in the cache.
  std::string turn_text;
  size_t turn_begin = 0;
  bool in_tool = false;
  size_t unfed = 0;
  std::future<Observation> pending;
};

// One generate call on the GPU.
class GpuGeneration {
 public:
  GpuGeneration(GpuEngine::Impl& e, const std::vector<Request>& requests, const GenerateParams& params,
                const std::function<void(int64_t, int64_t)>& on_progress, GenerateStats& stats);
  std::vector<Completion> run();

 private:
  enum class Next { Decode, Finished, ToolCall };
  // gpu_engine.cpp: the host's look at the device segments, and a decode burst.
  void look();
  void decode();
  // Appends the device segment's first n tokens of slot si to its completion.
  void take_segment(int64_t si, int32_t n);
  // gpu_admission.cpp
  void admit();
  std::vector<int64_t> take_observations(bool block);
  void reserve_for(const std::vector<int64_t>& resumed_in, std::vector<int64_t>& resumed);
  // Feeds each feed's tokens and draws its sequence's next token (a recompute, or after an
  // observation); the draws are returned as (token, logprob).
  std::vector<std::pair<int32_t, float>> feed_and_draw(const std::vector<Feed>& feeds);
  // A token drawn on the host's side joins the completion: what the sequence does next.
  Next accept(HostSlot& sl, int32_t token, float logprob);
  void after(int64_t si, Next next, std::vector<int64_t>& starts);
  // Starts device segments for the slots whose last token is their next input.
  void start(const std::vector<int64_t>& slots);
  void finish(int64_t si);
  // Routing replay: the completion of slot si takes the experts recorded beside its rows (every row
  // but the last token's, which was never fed).
  void take_routes(int64_t si);
  void call_tool(HostSlot& sl);
  void park(int64_t si);
  uint64_t stream_of(const HostSlot& sl) const;
  int32_t token_at(const HostSlot& sl, int32_t pos) const;

  GpuEngine::Impl& e_;
  const std::vector<Request>& requests_;
  const GenerateParams& params_;
  const std::function<void(int64_t, int64_t)>& on_progress_;
  GenerateStats& stats_;
  const TurnHooks& hooks_;
  std::vector<int64_t> first_;
  std::vector<Completion> out_;
  std::vector<HostSlot> hs_;
  std::map<int64_t, HostSlot> parked_;  // preempted sequences by flat index
  // First tokens of every sample, drawn when its prompt was prefilled (token, logprob; per flat).
  std::vector<int32_t> first_token_;
  std::vector<float> first_logprob_;
  std::vector<bool> drawn_;     // per prompt: its samples' first tokens were drawn
  std::vector<int32_t> cnt_;    // per slot: tokens in its device segment at the last look
  bool stream_tokens_ = false;  // the host reads every token as it comes (on_token, stop strings, turns)
  int64_t done_ = 0;
  std::optional<ThreadPool> tools_;  // destroyed first: its jobs read hooks_
};

}  // namespace r1::rollout
