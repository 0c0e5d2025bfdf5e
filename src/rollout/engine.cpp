#include "rollout/engine.h"

#include <algorithm>
#include <deque>
#include <map>

#include "base/error.h"
#include "base/timer.h"
#include "rollout/admission.h"
#include "rollout/gpu_engine.h"
#include "rollout/requests.h"
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
  std::string text;  // decoded completion so far, for stop strings
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

}  // namespace

std::vector<Completion> Engine::generate(const std::vector<Request>& requests, const GenerateParams& params,
                                         const std::function<void(int64_t, int64_t)>& on_progress) {
  if (gpu_) return gpu_->generate(requests, params, on_progress, stats_);
  const int64_t V = model_.config().vocab_size;
  const std::vector<int64_t> first_flat = check_requests(requests, params, V, cfg_.max_seq_len);
  const int64_t total = first_flat.back();
  std::vector<Completion> out(static_cast<size_t>(total));
  Waiting waiting;
  for (size_t i = 0; i < requests.size(); ++i)
    for (int s = 0; s < requests[i].n; ++s) waiting.emplace_back(int64_t(i), s);

  std::vector<Slot> slots(static_cast<size_t>(cfg_.max_batch));
  std::map<int64_t, std::vector<float>> prompt_logits;  // last-token logits of prompts still admitting
  std::map<int64_t, int> admissions_left;
  std::vector<float> sample_scratch;
  int64_t done = 0;

  // Appends a sampled token to a slot's completion; returns true when the sequence is finished.
  auto accept = [&](Slot& sl, const Draw& d) {
    Completion& c = out[size_t(sl.flat)];
    c.tokens.push_back(d.token);
    c.logprobs.push_back(d.logprob);
    ++stats_.generated_tokens;
    if (params.on_token) params.on_token(sl.prompt, sl.sample, d.token);
    bool stop = std::find(params.stop_ids.begin(), params.stop_ids.end(), d.token) != params.stop_ids.end();
    if (!stop && !params.stop_strings.empty()) {
      const size_t before = sl.text.size();
      sl.text += params.token_text(d.token);
      stop = hits_stop_string(sl.text, before, params.stop_strings);
    }
    if (stop) {
      c.finish = FinishReason::Stop;
      return true;
    }
    c.finish = FinishReason::Length;
    return int64_t(c.tokens.size()) >= params.max_new_tokens ||
           sl.prompt_len + int64_t(c.tokens.size()) >= cfg_.max_seq_len;
  };
  auto finish = [&](Slot& sl) {
    sl.active = false;
    sl.text.clear();
    ++done;
    if (on_progress) on_progress(done, total);
  };
  auto copy_prefix = [&](int64_t src, int64_t dst, int64_t len) { cache_->copy_prefix(src, dst, len); };
  HostLogits host;

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
      const float* logits =
          host.read(model::forward_cached(model_, *cache_, ch.ids, ch.slots, ch.pos, ch.rows, arena_));
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
      if (accept(sl, d)) finish(sl);
    }
    stats_.sample_seconds += t_sample.seconds();
    // One decode step for every active slot.
    std::vector<int32_t> ids, sl_ids, pos, rows;
    for (size_t si = 0; si < slots.size(); ++si) {
      const Slot& sl = slots[si];
      if (!sl.active) continue;
      const Completion& c = out[size_t(sl.flat)];
      ids.push_back(c.tokens.back());
      sl_ids.push_back(int32_t(si));
      pos.push_back(sl.prompt_len + int32_t(c.tokens.size()) - 1);
      rows.push_back(int32_t(rows.size()));
    }
    if (ids.empty()) continue;
    Timer t_decode;
    arena_.reset();
    const float* logits = host.read(model::forward_cached(model_, *cache_, ids, sl_ids, pos, rows, arena_));
    stats_.decode_seconds += t_decode.seconds();
    ++stats_.decode_steps;
    Timer t_sample2;
    for (size_t r = 0; r < sl_ids.size(); ++r) {
      Slot& sl = slots[size_t(sl_ids[r])];
      const int64_t step = int64_t(out[size_t(sl.flat)].tokens.size());
      Draw d = sample_token(logits + int64_t(r) * V, V, params.sampling,
                            sample_uniform(params.sampling.seed, stream_id(requests, sl.prompt), sl.sample, step),
                            sample_scratch);
      if (accept(sl, d)) finish(sl);
    }
    stats_.sample_seconds += t_sample2.seconds();
  }
  return out;
}

}  // namespace r1::rollout
