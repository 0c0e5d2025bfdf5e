#include "rollout/engine.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <optional>

#include "base/error.h"
#include "base/thread_pool.h"
#include "base/timer.h"
#include "rollout/admission.h"
#include "rollout/gpu_engine.h"
#include "rollout/requests.h"
#include "rollout/route_record.h"
#include "tensor/device_memory.h"
#include "model/kv_cache.h"

namespace r1::rollout {

const char* finish_reason_name(FinishReason r) { return r == FinishReason::Stop ? "stop" : "length"; }

Engine::Engine(const model::Transformer& m, EngineConfig cfg) : model_(m), cfg_(cfg), arena_(0, m.device()) {
  R1_CHECK(cfg.max_batch > 0 && cfg.max_seq_len > 1 && cfg.prefill_tokens > 0 && cfg.sync_every > 0,
           "rollout: max_batch, max_seq_len, prefill_tokens and sync_every must be positive");
  if (m.device() == Device::CUDA)
    gpu_ = std::make_unique<GpuEngine>(m, cfg);
  else
    cache_ = std::make_unique<model::KVCache>(m, cfg.max_batch, cfg.max_seq_len);
}

Engine::~Engine() = default;

namespace {

// One KV-cache slot: which sample it decodes and which prompt its first rows hold.
struct Slot : SlotBase {
  std::string text;       // decoded completion so far, for stop strings
  std::string turn_text;  // multi-turn: the model's current turn, since the last observation
  size_t turn_begin = 0;  // where that turn starts in the completion
  bool in_tool = false;   // its tool call runs on a worker; the slot is not decoded meanwhile
  size_t unfed = 0;       // first completion token whose keys/values are not in the cache yet
  size_t segment = 0;     // where the tokens drawn since the last observation start (their steps count from it)
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

}  // namespace

int64_t model_token_count(const Completion& c) {
  if (c.from_model.empty()) return int64_t(c.tokens.size());
  return int64_t(std::count(c.from_model.begin(), c.from_model.end(), uint8_t(1)));
}

std::vector<Completion> Engine::generate(const std::vector<Request>& requests, const GenerateParams& params,
                                         const std::function<void(int64_t, int64_t)>& on_progress) {
  if (gpu_) {
    R1_CHECK(!params.record_routes || model::unrecorded_routes(model_.config()).empty(),
             "rollout: recording expert routes (routing replay) needs the CPU engine: a mixture-of-experts "
             "model has no CUDA path");
    return gpu_->generate(requests, params, on_progress, stats_);
  }
  const int64_t V = model_.config().vocab_size;
  const std::vector<int64_t> first_flat = check_requests(requests, params, V, cfg_.max_seq_len);
  const int64_t total = first_flat.back();
  std::vector<Completion> out(static_cast<size_t>(total));
  Waiting waiting;
  for (size_t i = 0; i < requests.size(); ++i)
    for (int s = 0; s < requests[i].n; ++s) waiting.emplace_back(int64_t(i), s);

  std::vector<Slot> slots(static_cast<size_t>(cfg_.max_batch));
  RouteRecord routes(params.record_routes);
  // Token t of the last forward, fed at row pos of slot si's completion (rows count from the prompt).
  auto record_completion = [&](int32_t si, int32_t pos, size_t t) {
    routes.completion_token(slots[size_t(si)].flat, pos, int64_t(t));
  };
  std::map<int64_t, std::vector<float>> prompt_logits;  // last-token logits of prompts still admitting
  std::map<int64_t, int> admissions_left;
  std::vector<float> sample_scratch;
  int64_t done = 0;
  const TurnHooks& hooks = params.turns;
  std::optional<ThreadPool> tools;  // destroyed first: its jobs read `hooks`
  if (hooks.enabled()) tools.emplace(hooks.threads);

  // Tokens the completion may still take: its own limit and the context's.
  auto room = [&](const Slot& sl) {
    const int64_t n = int64_t(out[size_t(sl.flat)].tokens.size());
    return std::min<int64_t>(params.max_new_tokens - n, cfg_.max_seq_len - sl.prompt_len - n);
  };
  // Appends a sampled token to a slot's completion and says what the sequence does next.
  auto accept = [&](Slot& sl, const Draw& d) {
    Completion& c = out[size_t(sl.flat)];
    c.tokens.push_back(d.token);
    c.logprobs.push_back(d.logprob);
    c.from_model.push_back(1);
    ++stats_.generated_tokens;
    if (params.on_token) params.on_token(sl.prompt, sl.sample, d.token);
    const bool turns = hooks.enabled() && c.turns < hooks.max_turns;
    bool stop = std::find(params.stop_ids.begin(), params.stop_ids.end(), d.token) != params.stop_ids.end();
    std::string piece;
    if (!stop && (turns || !params.stop_strings.empty())) piece = params.token_text(d.token);
    if (!stop && !params.stop_strings.empty()) {
      const size_t before = sl.text.size();
      sl.text += piece;
      stop = hits_stop_string(sl.text, before, params.stop_strings);
    }
    if (stop) {
      c.finish = FinishReason::Stop;
      return Next::Finished;
    }
    c.finish = FinishReason::Length;
    if (room(sl) <= 0) return Next::Finished;
    if (turns) {
      sl.turn_text += piece;
      if (hooks.ends_turn(sl.prompt, sl.sample, sl.turn_text)) return Next::ToolCall;
    }
    return Next::Decode;
  };
  // The uniform of a slot's next draw: step k of its current segment's stream (requests.h).
  auto next_uniform = [&](const Slot& sl) {
    const Completion& c = out[size_t(sl.flat)];
    return sample_uniform(params.sampling.seed, stream_id(requests, sl.prompt), turn_stream_sample(sl.sample, c.turns),
                          int64_t(c.tokens.size() - sl.segment));
  };
  auto finish = [&](Slot& sl) {
    sl.active = false;
    sl.segment = 0;
    sl.text.clear();
    sl.turn_text.clear();
    sl.turn_begin = 0;
    ++done;
    if (on_progress) on_progress(done, total);
  };
  // The model's turn ended in a tool call: it runs on a worker while the other slots decode.
  auto call_tool = [&](Slot& sl) {
    const Completion& c = out[size_t(sl.flat)];
    Turn t{sl.prompt, sl.sample, {c.tokens.begin() + int64_t(sl.turn_begin), c.tokens.end()}, sl.turn_text};
    sl.in_tool = true;
    sl.unfed = c.tokens.size() - 1;  // the call's last token was drawn, not yet fed
    sl.pending = tools->submit([&hooks, t = std::move(t)] { return hooks.respond(t); });
  };
  auto after = [&](Slot& sl, Next next) {
    if (next == Next::Finished) finish(sl);
    if (next == Next::ToolCall) call_tool(sl);
  };
  auto copy_prefix = [&](int64_t src, int64_t dst, int64_t len) { cache_->copy_prefix(src, dst, len); };
  HostLogits host;

  // Appends the observations of finished tool calls (waiting for one when `block`) and returns the
  // slots that continue: their unfed tokens are prefilled and their next token drawn by the caller.
  auto take_observations = [&](bool block) {
    std::vector<int64_t> resumed;
    for (size_t si = 0; si < slots.size(); ++si) {
      Slot& sl = slots[si];
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
      Completion& c = out[size_t(sl.flat)];
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
        finish(sl);
        continue;
      }
      resumed.push_back(int64_t(si));
    }
    return resumed;
  };
  // Feeds each resumed slot's unfed tokens (the call's last token and the observation) into its
  // cache rows, several slots per forward, and draws its next token from the last row's logits.
  auto resume = [&](const std::vector<int64_t>& resumed) {
    Timer t_prefill;
    for (size_t i = 0; i < resumed.size();) {
      std::vector<int32_t> ids, sl_ids, pos, rows;
      size_t end = i;
      for (; end < resumed.size(); ++end) {
        const Slot& sl = slots[size_t(resumed[end])];
        const Completion& c = out[size_t(sl.flat)];
        const int64_t n = int64_t(c.tokens.size() - sl.unfed);
        if (end > i && int64_t(ids.size()) + n > cfg_.prefill_tokens) break;
        for (size_t t = sl.unfed; t < c.tokens.size(); ++t) {
          ids.push_back(c.tokens[t]);
          sl_ids.push_back(int32_t(resumed[end]));
          pos.push_back(sl.prompt_len + int32_t(t));
        }
        rows.push_back(int32_t(ids.size()) - 1);
      }
      arena_.reset();
      const float* logits = host.read(
          model::forward_cached(model_, *cache_, ids, sl_ids, pos, rows, arena_, {}, routes.forward()));
      for (size_t t = 0; t < ids.size(); ++t) record_completion(sl_ids[t], pos[t], t);
      stats_.prefill_tokens += int64_t(ids.size());
      for (size_t r = 0; r < rows.size(); ++r) {
        Slot& sl = slots[size_t(resumed[i + r])];
        Draw d = sample_token(logits + int64_t(r) * V, V, params.sampling, next_uniform(sl), sample_scratch);
        after(sl, accept(sl, d));
      }
      i = end;
    }
    stats_.prefill_seconds += t_prefill.seconds();
  };

  while (done < total) {
    // Admit waiting samples into free slots: reuse a prompt's cached prefix where one exists,
    // prefill each new prompt once.
    std::vector<int64_t> to_prefill;
    const std::vector<int64_t> admitted = admit_waiting(slots, waiting, requests, first_flat, to_prefill, copy_prefix);
    for (int64_t si : admitted) {
      const Slot& sl = slots[size_t(si)];
      if (!admissions_left.count(sl.prompt)) admissions_left[sl.prompt] = requests[size_t(sl.prompt)].n;
      out[size_t(sl.flat)].prompt_index = sl.prompt;
      out[size_t(sl.flat)].sample_index = sl.sample;
    }
    // Prefill new prompts, several per forward up to the token budget.
    Timer t_prefill;
    for (size_t i = 0; i < to_prefill.size();) {
      const PrefillChunk ch = prefill_chunk(slots, to_prefill, i, requests, cfg_.prefill_tokens);
      arena_.reset();
      const float* logits = host.read(model::forward_cached(model_, *cache_, ch.ids, ch.slots, ch.pos,
                                                            ch.rows, arena_, {}, routes.forward()));
      for (size_t t = 0; t < ch.ids.size(); ++t)
        routes.prompt_token(slots[size_t(ch.slots[t])].prompt, ch.pos[t], int64_t(t));
      for (size_t r = 0; r < ch.rows.size(); ++r) {
        Slot& sl = slots[size_t(to_prefill[i + r])];
        sl.holds_prompt = sl.prompt;
        prompt_logits[sl.prompt].assign(logits + int64_t(r) * V, logits + int64_t(r + 1) * V);
        stats_.prompt_tokens += sl.prompt_len;
      }
      stats_.prefill_tokens += int64_t(ch.ids.size());
      i = ch.end;
    }
    stats_.prefill_seconds += t_prefill.seconds();
    // Each admitted sample gets the prompt's keys/values and draws its first token.
    Timer t_sample;
    for (int64_t si : admitted) {
      take_prefilled_rows(slots, si, copy_prefix);
      Slot& sl = slots[size_t(si)];
      const std::vector<float>& z = prompt_logits.at(sl.prompt);
      Draw d = sample_token(z.data(), V, params.sampling,
                            sample_uniform(params.sampling.seed, stream_id(requests, sl.prompt), sl.sample, 0),
                            sample_scratch);
      if (--admissions_left[sl.prompt] == 0) {
        admissions_left.erase(sl.prompt);
        prompt_logits.erase(sl.prompt);
      }
      after(sl, accept(sl, d));
    }
    stats_.sample_seconds += t_sample.seconds();
    // Sequences whose tool calls came back continue; when no other sequence can decode, wait for one.
    if (tools) {
      const bool idle = std::none_of(slots.begin(), slots.end(), [](const Slot& s) { return s.active && !s.in_tool; });
      const bool calls = std::any_of(slots.begin(), slots.end(), [](const Slot& s) { return s.in_tool; });
      resume(take_observations(idle && calls));
    }
    // One decode step for every active slot not waiting for its tool.
    std::vector<int32_t> ids, sl_ids, pos, rows;
    for (size_t si = 0; si < slots.size(); ++si) {
      const Slot& sl = slots[si];
      if (!sl.active || sl.in_tool) continue;
      const Completion& c = out[size_t(sl.flat)];
      ids.push_back(c.tokens.back());
      sl_ids.push_back(int32_t(si));
      pos.push_back(sl.prompt_len + int32_t(c.tokens.size()) - 1);
      rows.push_back(int32_t(rows.size()));
    }
    if (ids.empty()) continue;
    Timer t_decode;
    arena_.reset();
    const float* logits = host.read(
        model::forward_cached(model_, *cache_, ids, sl_ids, pos, rows, arena_, {}, routes.forward()));
    for (size_t t = 0; t < ids.size(); ++t) record_completion(sl_ids[t], pos[t], t);
    stats_.decode_seconds += t_decode.seconds();
    ++stats_.decode_steps;
    Timer t_sample2;
    for (size_t r = 0; r < sl_ids.size(); ++r) {
      Slot& sl = slots[size_t(sl_ids[r])];
      Draw d = sample_token(logits + int64_t(r) * V, V, params.sampling, next_uniform(sl), sample_scratch);
      after(sl, accept(sl, d));
    }
    stats_.sample_seconds += t_sample2.seconds();
  }
  std::vector<int64_t> prompt_lens;
  for (const Request& r : requests) prompt_lens.push_back(int64_t(r.prompt.size()));
  routes.finish(out, prompt_lens);
  return out;
}

}  // namespace r1::rollout
