#pragma once
// The rollout engine: batched generation over a paged KV cache with continuous batching. Each
// request is a prompt sampled n times (a GRPO group); the prompt is prefilled once and its cache
// blocks are shared by the samples (copy-on-write of its last, partial block). Sequences take
// blocks from one pool as they grow; a finished sequence frees its slot and blocks at once for the
// next waiting sample. When the pool runs out, the youngest sequences are preempted and later
// resumed by recomputing their prefix (rollout/scheduler.h): any length runs, only slower, and the
// samples stay what they would have been. The engine (pool, graphs, plans) is meant to live as long
// as its model: a GRPO run builds one.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/transformer.h"
#include "model/kv_cache.h"
#include "rollout/sampler.h"
#include "rollout/turns.h"

namespace r1::rollout {

enum class FinishReason { Stop, Length };
const char* finish_reason_name(FinishReason r);

struct Request {
  std::vector<int32_t> prompt;
  int n = 1;  // samples of this prompt
  // Names the prompt in the random streams (with the sample index and step); -1: its position in
  // the call. Give dataset indices to get the same samples however prompts are batched.
  int64_t id = -1;
  // New tokens each of its samples may take; 0: GenerateParams::max_new_tokens. (A partial rollout
  // continued from an earlier step asks for what its own length limit leaves.)
  int max_new_tokens = 0;
};

struct GenerateParams {
  SamplingParams sampling;
  int max_new_tokens = 256;
  std::vector<int32_t> stop_ids;          // e.g. the tokenizer's EOS ids
  std::vector<std::string> stop_strings;  // matched on decoded text; needs token_text
  // Decoded text of one token (bytes; may be part of a UTF-8 character). Required for stop_strings.
  std::function<std::string(int32_t)> token_text;
  // Called for every sampled token as it is accepted (streaming output).
  std::function<void(int64_t prompt, int64_t sample, int32_t token)> on_token;
  // Progress of a long generation: called after each decode step (CUDA: each run of
  // EngineConfig::sync_every steps) with the sequence-steps it decoded (new tokens, counting a
  // sequence that stopped inside the run to its end).
  std::function<void(int64_t tokens)> on_decoded;
  // Multi-turn rollouts (rollout/turns.h); off when empty. With turns, max_new_tokens bounds the
  // whole trajectory (model and observation tokens), as the context does.
  TurnHooks turns;
  // Routing replay: record the experts of every token in Completion::routes (mixture-of-experts
  // models). The CPU engine keeps a row's first record; the GPU engine records beside each cached
  // row on the device (KVCache::route_t), so a preempted sequence's recomputed rows carry the
  // recomputation's experts.
  bool record_routes = false;
  // Log-probs bit for bit the trainer's (recipe key rollout.exact_logprobs): the sampler draws from
  // the trainer's tempered logits (model::CachedInputs::trainer_temperature) and reports
  // ops::logprobs_of_logits of them, the trainer's own fold. Needs ops::batch_invariant() on (so the
  // forward's bits do not depend on the batch), a temperature > 0 and the tempered log-probs
  // (SamplingParams::sampled_logprobs off). Both engines.
  bool exact_logprobs = false;
};

struct Completion {
  int64_t prompt_index = 0, sample_index = 0;
  // The trajectory after the prompt: generated tokens (including the stop token or string's last
  // token) and, in multi-turn rollouts, the observation tokens between the model's turns.
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;   // per token, see Draw::logprob; 0 for observation tokens (not sampled)
  // Per token: 1 sampled by the model, 0 an observation. Empty: every token is the model's (the
  // engine always fills it; completions built elsewhere may leave it empty).
  std::vector<uint8_t> from_model;
  int turns = 0;  // observations appended
  FinishReason finish = FinishReason::Length;
  // With GenerateParams::record_routes: the experts each token of prompt + tokens was sent to in
  // the MoE layers (rows of tokens never fed to the model, such as the last, unrecorded).
  model::ExpertRoutes routes;
};

// Whether token t of c was sampled by the model (not an observation), and how many were.
inline bool is_model_token(const Completion& c, size_t t) { return c.from_model.empty() || c.from_model[t] != 0; }
int64_t model_token_count(const Completion& c);

struct EngineConfig {
  int max_batch = 64;         // sequences decoded together (slots: rows of the block table)
  int max_seq_len = 2048;     // prompt + completion tokens of one sequence (at most the model's positions)
  int prefill_tokens = 4096;  // prompt tokens per prefill forward
  // GPU: decode steps run between two looks of the host at the sequences (finished ones free their
  // slots then; stop strings and on_token are handled then). Fewer looks, less host time; more,
  // less time a finished slot waits for a new sample.
  int sync_every = 16;
  // The KV cache's pool (rollout/scheduler.h: plan_kv_layout): this share of the device's free
  // memory when the engine is built (the host's available memory on the CPU), or kv_cache_tokens
  // tokens when > 0; never more than max_batch sequences of max_seq_len tokens can use. Blocks of
  // kv_block_size tokens.
  double kv_memory_fraction = 0.9;
  int64_t kv_cache_tokens = 0;
  int kv_block_size = 16;
};

struct GenerateStats {
  int64_t prompt_tokens = 0, prefill_tokens = 0, generated_tokens = 0, decode_steps = 0;
  int64_t decode_rows = 0;  // rows the decode steps computed (GPU: padded to the graph's batch size)
  int64_t graph_captures = 0, host_syncs = 0;  // GPU
  // Sequences in flight summed over the decode steps (decode_seqs / decode_steps: the mean
  // concurrency); sequences preempted for KV blocks (each resumed by a recompute).
  int64_t decode_seqs = 0, preemptions = 0;
  // The batch's capacity summed over the decode steps: per step, the sequences its generate call
  // could run at once (min(max_batch, the call's samples)). decode_seqs / decode_capacity is the
  // occupancy (occupancy()): 1 while every slot the call could fill decodes, lower in a tail.
  int64_t decode_capacity = 0;
  // The KV cache's pool: blocks, tokens per block, and the most blocks in use at once since the
  // engine was built or reset_kv_peak().
  int64_t kv_blocks = 0, kv_block_size = 0, kv_blocks_peak = 0;
  int64_t turns = 0, observation_tokens = 0;   // multi-turn: observations appended, their tokens
  double tool_wait_seconds = 0;  // time the decoding thread waited with no sequence to decode
  double prefill_seconds = 0, decode_seconds = 0, sample_seconds = 0;
};

// The new tokens request `r` may take under `p`.
inline int64_t new_token_limit(const Request& r, const GenerateParams& p) {
  return r.max_new_tokens > 0 ? r.max_new_tokens : p.max_new_tokens;
}

// The mean sequences in flight over the decode steps of `s` as a share of the batch's capacity
// (GenerateStats::decode_capacity); 0 without decode steps. Differences of two stats() give a window's.
double occupancy(const GenerateStats& s);

class GpuEngine;
class Scheduler;

class Engine {
 public:
  // The KV cache and activations live on the model's device. On CUDA the whole decode loop runs on
  // the GPU (rollout/gpu_engine.h); on the CPU, sampling runs between forwards.
  Engine(const model::Transformer& m, const EngineConfig& cfg);
  ~Engine();
  // Generates every sample of every request. Completions come back ordered by (prompt, sample).
  // on_progress(done, total) is called as sequences finish.
  std::vector<Completion> generate(const std::vector<Request>& requests, const GenerateParams& params,
                                   const std::function<void(int64_t, int64_t)>& on_progress = {});
  const GenerateStats& stats() const { return stats_; }
  // Starts a new window for stats().kv_blocks_peak (e.g. a training step's).
  void reset_kv_peak();
  // CUDA: gives the KV cache pool's memory back to the device until the next generate (a training
  // step uses it meanwhile); the pool comes back at the same address, so the captured decode steps
  // stay valid. On the CPU the pool stays; the forward scratch of prefills and recomputes is freed
  // on both.
  void release_kv_memory();
  const model::Transformer& model() const { return model_; }
  const EngineConfig& config() const { return cfg_; }

 private:
  std::vector<Completion> generate_cpu(const std::vector<Request>& requests, const GenerateParams& params,
                                       const std::function<void(int64_t, int64_t)>& on_progress);

  const model::Transformer& model_;
  EngineConfig cfg_;
  std::unique_ptr<model::KVCache> cache_;  // CPU
  std::unique_ptr<Scheduler> sched_;       // CPU
  std::unique_ptr<GpuEngine> gpu_;         // CUDA
  Arena arena_;
  GenerateStats stats_;
};

}  // namespace r1::rollout
