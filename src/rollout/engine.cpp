#include "rollout/engine.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <optional>

#include "base/error.h"
#include "base/log.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "kernels/invariance.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "rollout/gpu_engine.h"
#include "rollout/requests.h"
#include "rollout/route_record.h"
#include "rollout/scheduler.h"
#include "tensor/device_memory.h"

namespace r1::rollout {

const char* finish_reason_name(FinishReason r) { return r == FinishReason::Stop ? "stop" : "length"; }

int64_t model_token_count(const Completion& c) {
  if (c.from_model.empty()) return int64_t(c.tokens.size());
  return int64_t(std::count(c.from_model.begin(), c.from_model.end(), uint8_t(1)));
}

namespace {
// The configuration checked, its max_seq_len cut to the model's positions: a sequence ends at the
// model's last position (finish: length), as vLLM's max_model_len; the trainer's forward refuses a
// position past it, and the model was never trained there.
EngineConfig checked(EngineConfig cfg, const model::ModelConfig& mc) {
  R1_CHECK(cfg.max_batch > 0 && cfg.max_seq_len > 1 && cfg.prefill_tokens > 0 && cfg.sync_every > 0,
           "rollout: max_batch, max_seq_len, prefill_tokens and sync_every must be positive");
  const int64_t positions = mc.max_position_embeddings;
  if (positions > 1 && cfg.max_seq_len > positions) {
    log::info("rollout: sequences end at the model's max_position_embeddings ({} tokens, prompt included); {} "
              "were asked for",
              positions, cfg.max_seq_len);
    cfg.max_seq_len = int(positions);
  }
  return cfg;
}
}  // namespace

Engine::Engine(const model::Transformer& m, const EngineConfig& cfg)
    : model_(m), cfg_(checked(cfg, m.config())), arena_(0, m.device()) {
  // The pool is sized (and a size that cannot hold one sequence rejected) before anything else.
  cache_ =
      std::make_unique<model::KVCache>(m, plan_kv_layout(m.config(), m.compute_dtype(), m.device(), cfg_));
  sched_ = std::make_unique<Scheduler>(*cache_, cfg_.max_batch);
  if (m.device() == Device::CUDA) gpu_ = std::make_unique<GpuEngine>(m, cfg_, *cache_, *sched_);
  stats_.kv_blocks = sched_->blocks().capacity();
  stats_.kv_block_size = cache_->layout.block_size;
}

Engine::~Engine() = default;

void Engine::release_kv_memory() {
  cache_->release_pool();
  arena_ = Arena(0, model_.device());  // the CPU path's forward scratch
  if (gpu_) gpu_->release_scratch();   // the GPU path's prefill scratch
}

void Engine::reset_kv_peak() {
  sched_->blocks().reset_peak();
  stats_.kv_blocks_peak = sched_->blocks().peak();
}

std::vector<Completion> Engine::generate(const std::vector<Request>& requests, const GenerateParams& params,
                                         const std::function<void(int64_t, int64_t)>& on_progress) {
  if (params.exact_logprobs) {
    R1_CHECK(ops::batch_invariant(), "generate: exact log-probs need the batch-invariant forward "
             "(ops::set_batch_invariant), or a token's logits depend on its batch");
    R1_CHECK(params.sampling.temperature > 0.0f, "generate: exact log-probs need a temperature > 0 (got {})",
             params.sampling.temperature);
    R1_CHECK(!params.sampling.sampled_logprobs, "generate: exact log-probs are the trainer's tempered ones; "
             "sampled_logprobs asks for the truncated distribution's");
  }
  cache_->acquire_pool();
  int64_t samples = 0;
  for (const Request& r : requests) samples += r.n;
  const int64_t steps_before = stats_.decode_steps;
  std::vector<Completion> out = gpu_ ? gpu_->generate(requests, params, on_progress, stats_)
                                     : generate_cpu(requests, params, on_progress);
  stats_.kv_blocks_peak = sched_->blocks().peak();
  stats_.preemptions = sched_->preemptions();
  // Counted here, for both engines alike, from the decode steps each of them counts.
  stats_.decode_capacity += (stats_.decode_steps - steps_before) * std::min<int64_t>(cfg_.max_batch, samples);
  return out;
}

double occupancy(const GenerateStats& s) {
  return s.decode_capacity > 0 ? double(s.decode_seqs) / double(s.decode_capacity) : 0.0;
}

namespace {

// One slot: the sequence it decodes and where that sequence stands.
struct Slot {
  bool active = false;
  int64_t prompt = -1, sample = -1, flat = -1;
  int32_t prompt_len = 0;
  std::string text;       // decoded completion so far, for stop strings
  std::string turn_text;  // multi-turn: the model's current turn, since the last observation
  size_t turn_begin = 0;  // where that turn starts in the completion
  size_t segment = 0;  // where the tokens drawn since the last observation start (their steps count from it)
  bool in_tool = false;   // its tool call runs on a worker; the slot is not decoded meanwhile
  size_t unfed = 0;       // first completion token whose keys/values are not in the cache yet
  std::future<Observation> pending;
};

// Logits for host sampling: read in place from a CPU f32 tensor, copied (and widened) otherwise.
struct HostLogits {
  std::vector<float> copy;
  const float* read(const Tensor& logits) {
    if (logits.device == Device::CPU && logits.dtype == DType::F32) return logits.f32();
    copy = to_host_f32(logits);
    return copy.data();
  }
};

enum class Next { Decode, Finished, ToolCall };

// The draw's parameters: with exact log-probs the logits come divided by the temperature (the
// trainer's), so the draw takes them at temperature 1 (top-k and top-p keep the same tokens).
SamplingParams draw_params(const GenerateParams& p) {
  SamplingParams s = p.sampling;
  if (p.exact_logprobs) s.temperature = 1.0f;
  return s;
}

// One generate call on the host: admission and preemption by the scheduler, forwards over the
// paged cache, sampling between them.
class CpuGeneration {
 public:
  CpuGeneration(const model::Transformer& m, const EngineConfig& cfg, model::KVCache& cache, Scheduler& sched,
                Arena& arena, GenerateStats& stats, const std::vector<Request>& requests,
                const GenerateParams& params, const std::function<void(int64_t, int64_t)>& on_progress)
      : m_(m),
        cfg_(cfg),
        cache_(cache),
        sched_(sched),
        arena_(arena),
        stats_(stats),
        requests_(requests),
        params_(params),
        on_progress_(on_progress),
        hooks_(params.turns),
        V_(m.config().vocab_size),
        draw_params_(draw_params(params)),
        routes_(params.record_routes) {}

  std::vector<Completion> run();

 private:
  int64_t flat(int64_t prompt, int64_t sample) const { return first_[size_t(prompt)] + sample; }
  Completion& completion(const Slot& sl) { return out_[size_t(sl.flat)]; }
  int32_t token_at(const Slot& sl, int32_t pos) const {
    return pos < sl.prompt_len ? requests_[size_t(sl.prompt)].prompt[size_t(pos)]
                               : out_[size_t(sl.flat)].tokens[size_t(pos - sl.prompt_len)];
  }
  // Tokens the completion may still take: its own limit and the context's.
  int64_t room(const Slot& sl) const {
    const int64_t n = int64_t(out_[size_t(sl.flat)].tokens.size());
    return std::min<int64_t>(new_token_limit(requests_[size_t(sl.prompt)], params_) - n,
                             cfg_.max_seq_len - sl.prompt_len - n);
  }
  // The uniform of a slot's next draw: step k of its current segment's stream (requests.h).
  double next_uniform(const Slot& sl) const {
    const Completion& c = out_[size_t(sl.flat)];
    return sample_uniform(params_.sampling.seed, stream_id(requests_, sl.prompt),
                          turn_stream_sample(sl.sample, c.turns), int64_t(c.tokens.size() - sl.segment));
  }
  Next accept(Slot& sl, const Draw& d);
  void draw_next(Slot& sl, const float* logits);
  void finish(int64_t si);
  void call_tool(Slot& sl);
  void park(int64_t si);
  std::vector<int64_t> take_observations(bool block);
  // Runs the feeds (several per forward, up to prefill_tokens), handing each feed's logits to use().
  void run_feeds(const std::vector<Feed>& feeds, const std::function<void(size_t, const float*)>& use);
  void admit_and_prefill();
  void decode_step();
  // The logits of a forward over the cache (token t at row pos[t] of slot slots[t]'s sequence),
  // recording each token's experts when asked (routing replay).
  const float* forward(const std::vector<int32_t>& ids, const std::vector<int32_t>& slots,
                       const std::vector<int32_t>& pos, const std::vector<int32_t>& rows);

  const model::Transformer& m_;
  const EngineConfig& cfg_;
  model::KVCache& cache_;
  Scheduler& sched_;
  Arena& arena_;
  GenerateStats& stats_;
  const std::vector<Request>& requests_;
  const GenerateParams& params_;
  const std::function<void(int64_t, int64_t)>& on_progress_;
  const TurnHooks& hooks_;
  const int64_t V_;
  const SamplingParams draw_params_;  // exact log-probs: the logits are tempered already
  std::vector<int64_t> first_;
  std::vector<Completion> out_;
  std::vector<Slot> slots_;
  std::map<int64_t, Slot> parked_;                       // preempted sequences by flat index
  std::map<int64_t, std::vector<float>> prompt_logits_;  // last-token logits of prompts with samples to start
  std::map<int64_t, int> starts_left_;  // samples of a prompt that have not drawn their first token
  std::vector<float> scratch_;
  HostLogits host_;
  int64_t done_ = 0;
  RouteRecord routes_;
  std::optional<ThreadPool> tools_;  // destroyed first: its jobs read hooks_
};

const float* CpuGeneration::forward(const std::vector<int32_t>& ids, const std::vector<int32_t>& slots,
                                    const std::vector<int32_t>& pos, const std::vector<int32_t>& rows) {
  arena_.reset();
  const float trainer_temperature = params_.exact_logprobs ? params_.sampling.temperature : 0.0f;
  const float* logits = host_.read(
      model::forward_cached(m_, cache_, ids, slots, pos, rows, arena_, {}, routes_.forward(), trainer_temperature));
  for (size_t t = 0; t < ids.size() && routes_.forward(); ++t) {
    const Slot& sl = slots_[size_t(slots[t])];
    // A prompt's rows are fed once for all its samples (they share its blocks).
    if (pos[t] < sl.prompt_len) routes_.prompt_token(sl.prompt, pos[t], int64_t(t));
    else routes_.completion_token(sl.flat, pos[t], int64_t(t));
  }
  return logits;
}

// Appends a sampled token to a slot's completion and says what the sequence does next.
Next CpuGeneration::accept(Slot& sl, const Draw& d) {
  Completion& c = completion(sl);
  c.tokens.push_back(d.token);
  c.logprobs.push_back(d.logprob);
  c.from_model.push_back(1);
  ++stats_.generated_tokens;
  if (params_.on_token) params_.on_token(sl.prompt, sl.sample, d.token);
  const bool turns = hooks_.enabled() && c.turns < hooks_.max_turns;
  bool stop = std::find(params_.stop_ids.begin(), params_.stop_ids.end(), d.token) != params_.stop_ids.end();
  std::string piece;
  if (!stop && (turns || !params_.stop_strings.empty())) piece = params_.token_text(d.token);
  if (!stop && !params_.stop_strings.empty()) {
    const size_t before = sl.text.size();
    sl.text += piece;
    stop = hits_stop_string(sl.text, before, params_.stop_strings);
  }
  if (stop) {
    c.finish = FinishReason::Stop;
    return Next::Finished;
  }
  c.finish = FinishReason::Length;
  if (room(sl) <= 0) return Next::Finished;
  if (turns) {
    sl.turn_text += piece;
    if (hooks_.ends_turn(sl.prompt, sl.sample, sl.turn_text)) return Next::ToolCall;
  }
  return Next::Decode;
}

void CpuGeneration::draw_next(Slot& sl, const float* logits) {
  Draw d = sample_token(logits, V_, draw_params_, next_uniform(sl), scratch_);
  if (params_.exact_logprobs) {  // the trainer's fold of the trainer's logits
    float lse = 0.0f;
    int32_t token = d.token;
    ops::logprobs_of_logits(Tensor::f32(&d.logprob, {1}), Tensor::f32(&lse, {1}),
                            Tensor::f32(const_cast<float*>(logits), {1, V_}), Tensor::i32(&token, {1}),
                            model::kVocabChunk);
  }
  const Next next = accept(sl, d);
  if (next == Next::Finished) finish(int64_t(&sl - slots_.data()));
  if (next == Next::ToolCall) call_tool(sl);
}

void CpuGeneration::finish(int64_t si) {
  slots_[size_t(si)] = Slot{};
  sched_.finish(si);
  ++done_;
  if (on_progress_) on_progress_(done_, int64_t(out_.size()));
}

// The model's turn ended in a tool call: it runs on a worker while the other slots decode.
void CpuGeneration::call_tool(Slot& sl) {
  const Completion& c = completion(sl);
  Turn t{sl.prompt, sl.sample, {c.tokens.begin() + int64_t(sl.turn_begin), c.tokens.end()}, sl.turn_text};
  sl.in_tool = true;
  sl.unfed = c.tokens.size() - 1;  // the call's last token was drawn, not yet fed
  const TurnHooks& hooks = hooks_;
  sl.pending = tools_->submit([&hooks, t = std::move(t)] { return hooks.respond(t); });
}

// A preempted sequence waits, its state kept, until admitted again for a recompute.
void CpuGeneration::park(int64_t si) {
  Slot& sl = slots_[size_t(si)];
  parked_[sl.flat] = std::move(sl);
  sl = Slot{};
}

// Appends the observations of finished tool calls (waiting for one when `block`) and returns the
// slots that continue: their unfed tokens are fed and their next token drawn after admission.
std::vector<int64_t> CpuGeneration::take_observations(bool block) {
  std::vector<int64_t> resumed;
  for (size_t si = 0; si < slots_.size(); ++si) {
    Slot& sl = slots_[si];
    if (!sl.in_tool) continue;
    if (!block && sl.pending.wait_for(std::chrono::seconds(0)) != std::future_status::ready) continue;
    if (block) {
      Timer t_wait;
      sl.pending.wait();
      stats_.tool_wait_seconds += t_wait.seconds();
      block = false;
    }
    Observation ob = sl.pending.get();
    sl.in_tool = false;
    Completion& c = completion(sl);
    const int64_t fits = std::max<int64_t>(0, room(sl) - 1);  // leave room for the model's answer
    const bool cut = int64_t(ob.tokens.size()) > fits;
    if (cut) ob.tokens.resize(size_t(fits));
    c.tokens.insert(c.tokens.end(), ob.tokens.begin(), ob.tokens.end());
    c.logprobs.insert(c.logprobs.end(), ob.tokens.size(), 0.0f);
    c.from_model.insert(c.from_model.end(), ob.tokens.size(), uint8_t(0));
    ++c.turns;
    ++stats_.turns;
    stats_.observation_tokens += int64_t(ob.tokens.size());
    sl.turn_text.clear();
    sl.turn_begin = c.tokens.size();
    sl.segment = c.tokens.size();
    if (ob.end || cut) {
      c.finish = ob.end && !cut ? FinishReason::Stop : FinishReason::Length;
      finish(int64_t(si));
      continue;
    }
    resumed.push_back(int64_t(si));
  }
  return resumed;
}

void CpuGeneration::run_feeds(const std::vector<Feed>& feeds,
                              const std::function<void(size_t, const float*)>& use) {
  for (size_t i = 0; i < feeds.size();) {
    const FeedBatch b = feed_batch(feeds, i, cfg_.prefill_tokens, [&](const Feed& f, int32_t pos) {
      return token_at(slots_[size_t(f.slot)], pos);
    });
    sched_.sync();
    const float* logits = forward(b.ids, b.slots, b.pos, b.rows);
    stats_.prefill_tokens += int64_t(b.ids.size());
    for (size_t r = 0; r < b.rows.size(); ++r) use(i + r, logits + int64_t(r) * V_);
    i = b.end;
  }
}

// Fills free slots from the waiting sequences: each new prompt is prefilled once (several per
// forward) and its samples draw their first tokens from its logits; a preempted sequence recomputes
// its prefix and draws its next token.
void CpuGeneration::admit_and_prefill() {
  const std::vector<Scheduler::Admitted> admitted = sched_.admit([&](int64_t p, int64_t s) {
    return int64_t(requests_[size_t(p)].prompt.size() + out_[size_t(flat(p, s))].tokens.size());
  });
  std::vector<Feed> feeds;
  std::vector<bool> recompute;  // per feed: a preempted sequence's prefix (else a prompt)
  std::vector<int64_t> starts;  // slots that draw their first token from the prompt's logits
  for (const Scheduler::Admitted& a : admitted) {
    Slot& sl = slots_[size_t(a.slot)];
    const int64_t f = flat(a.prompt, a.sample);
    if (a.kind == Scheduler::Kind::Recompute) {
      sl = std::move(parked_.at(f));
      parked_.erase(f);
      feeds.push_back({a.slot, 0, sl.prompt_len + int32_t(out_[size_t(f)].tokens.size())});
      recompute.push_back(true);
      continue;
    }
    sl = Slot{};
    sl.active = true;
    sl.prompt = a.prompt;
    sl.sample = a.sample;
    sl.flat = f;
    sl.prompt_len = int32_t(requests_[size_t(a.prompt)].prompt.size());
    out_[size_t(f)].prompt_index = a.prompt;
    out_[size_t(f)].sample_index = a.sample;
    if (a.kind == Scheduler::Kind::Prefill) {
      feeds.push_back({a.slot, 0, sl.prompt_len});
      recompute.push_back(false);
    }
    starts.push_back(a.slot);
  }
  Timer t_prefill;
  run_feeds(feeds, [&](size_t i, const float* logits) {
    Slot& sl = slots_[size_t(feeds[i].slot)];
    if (recompute[i]) return draw_next(sl, logits);
    stats_.prompt_tokens += sl.prompt_len;
    // A prompt prefilled again (its blocks were let go under memory pressure) keeps its first logits.
    if (!prompt_logits_.count(sl.prompt)) prompt_logits_[sl.prompt].assign(logits, logits + V_);
  });
  stats_.prefill_seconds += t_prefill.seconds();
  Timer t_sample;
  for (int64_t si : starts) {
    Slot& sl = slots_[size_t(si)];
    const int64_t p = sl.prompt;
    std::vector<float> z = prompt_logits_.at(p);
    if (--starts_left_[p] == 0) prompt_logits_.erase(p);
    draw_next(sl, z.data());
  }
  stats_.sample_seconds += t_sample.seconds();
}

// One decode step for every slot with a token to feed, after the blocks for it are granted.
void CpuGeneration::decode_step() {
  std::vector<Scheduler::Need> needs;
  for (size_t si = 0; si < slots_.size(); ++si) {
    const Slot& sl = slots_[si];
    if (!sl.active || sl.in_tool) continue;
    const int64_t pos = sl.prompt_len + int64_t(completion(sl).tokens.size()) - 1;
    needs.push_back({int64_t(si), pos, pos + 1});
  }
  for (int64_t si : sched_.reserve(needs)) park(si);
  std::vector<int32_t> ids, sl_ids, pos, rows;
  for (size_t si = 0; si < slots_.size(); ++si) {
    const Slot& sl = slots_[si];
    if (!sl.active || sl.in_tool) continue;
    const Completion& c = completion(sl);
    ids.push_back(c.tokens.back());
    sl_ids.push_back(int32_t(si));
    pos.push_back(sl.prompt_len + int32_t(c.tokens.size()) - 1);
    rows.push_back(int32_t(rows.size()));
  }
  if (ids.empty()) return;
  sched_.sync();
  Timer t_decode;
  const float* logits = forward(ids, sl_ids, pos, rows);
  stats_.decode_seconds += t_decode.seconds();
  ++stats_.decode_steps;
  stats_.decode_rows += int64_t(ids.size());
  stats_.decode_seqs += int64_t(ids.size());
  if (params_.on_decoded) params_.on_decoded(int64_t(ids.size()));
  Timer t_sample;
  for (size_t r = 0; r < sl_ids.size(); ++r) draw_next(slots_[size_t(sl_ids[r])], logits + int64_t(r) * V_);
  stats_.sample_seconds += t_sample.seconds();
}

std::vector<Completion> CpuGeneration::run() {
  first_ = check_requests(requests_, params_, V_, cfg_.max_seq_len);
  const int64_t total = first_.back();
  out_.assign(size_t(total), {});
  slots_.resize(size_t(cfg_.max_batch));
  for (size_t p = 0; p < requests_.size(); ++p) starts_left_[int64_t(p)] = requests_[p].n;
  sched_.begin(requests_);
  if (hooks_.enabled()) tools_.emplace(hooks_.threads);
  while (done_ < total) {
    // Sequences whose tool calls came back continue (their observations fed below); with nothing
    // else to decode, wait for one. Their rows are granted first: they are older than new samples.
    std::vector<int64_t> resumed;
    if (tools_) {
      const bool idle =
          std::none_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.active && !s.in_tool; });
      const bool calls = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.in_tool; });
      resumed = take_observations(idle && calls);
      std::vector<Scheduler::Need> needs;
      for (size_t si = 0; si < slots_.size(); ++si) {
        const Slot& sl = slots_[si];
        if (!sl.active || sl.in_tool) continue;
        const int64_t end = sl.prompt_len + int64_t(completion(sl).tokens.size());
        const bool feeds = std::find(resumed.begin(), resumed.end(), int64_t(si)) != resumed.end();
        // A decoding slot asks for nothing here but may give way (preempted) to an older one.
        needs.push_back(
            {int64_t(si), feeds ? sl.prompt_len + int64_t(sl.unfed) : end - 1, feeds ? end : end - 1});
      }
      for (int64_t si : sched_.reserve(needs)) {
        park(si);
        resumed.erase(std::remove(resumed.begin(), resumed.end(), si), resumed.end());
      }
    }
    admit_and_prefill();
    std::vector<Feed> feeds;
    for (int64_t si : resumed) {
      const Slot& sl = slots_[size_t(si)];
      feeds.push_back(
          {si, sl.prompt_len + int32_t(sl.unfed), sl.prompt_len + int32_t(completion(sl).tokens.size())});
    }
    Timer t_prefill;
    run_feeds(feeds,
              [&](size_t i, const float* logits) { draw_next(slots_[size_t(feeds[i].slot)], logits); });
    stats_.prefill_seconds += t_prefill.seconds();
    decode_step();
  }
  std::vector<int64_t> prompt_lens;
  for (const Request& r : requests_) prompt_lens.push_back(int64_t(r.prompt.size()));
  routes_.finish(out_, prompt_lens);
  return std::move(out_);
}

}  // namespace

std::vector<Completion> Engine::generate_cpu(const std::vector<Request>& requests,
                                             const GenerateParams& params,
                                             const std::function<void(int64_t, int64_t)>& on_progress) {
  CpuGeneration g(model_, cfg_, *cache_, *sched_, arena_, stats_, requests, params, on_progress);
  return g.run();
}

}  // namespace r1::rollout
