// The GPU engine's host side around the decode loop (rollout/gpu_engine_impl.h): admissions and the
// prefill of new prompts (the first tokens of all of a prompt's samples drawn from its logits at
// once), recomputes of preempted sequences, tool turns, and the starts of device segments. CUDA
// builds only.
#ifdef R1_HAVE_CUDA
#include <algorithm>
#include <chrono>

#include "base/error.h"
#include "base/timer.h"
#include "device/cuda_device.h"
#include "rollout/gpu_engine_impl.h"
#include "tensor/device_memory.h"

namespace r1::rollout {

uint64_t GpuGeneration::stream_of(const HostSlot& sl) const {
  const Completion& c = out_[size_t(sl.flat)];
  const uint64_t sample = uint64_t(uint32_t(turn_stream_sample(sl.sample, c.turns)));
  return (uint64_t(uint32_t(stream_id(requests_, sl.prompt))) << 32) | sample;
}

int32_t GpuGeneration::token_at(const HostSlot& sl, int32_t pos) const {
  return pos < sl.prompt_len ? requests_[size_t(sl.prompt)].prompt[size_t(pos)]
                             : out_[size_t(sl.flat)].tokens[size_t(pos - sl.prompt_len)];
}

GpuGeneration::Next GpuGeneration::accept(HostSlot& sl, int32_t token, float logprob) {
  Completion& c = out_[size_t(sl.flat)];
  c.tokens.push_back(token);
  c.logprobs.push_back(logprob);
  c.from_model.push_back(1);
  ++stats_.generated_tokens;
  if (params_.on_token) params_.on_token(sl.prompt, sl.sample, token);
  const bool turns = tools_ && c.turns < hooks_.max_turns;
  bool stop = std::find(params_.stop_ids.begin(), params_.stop_ids.end(), token) != params_.stop_ids.end();
  std::string piece;
  if (!stop && (turns || !params_.stop_strings.empty())) piece = params_.token_text(token);
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
  if (int64_t(c.tokens.size()) >= sl.total_limit) return Next::Finished;
  if (turns) {
    sl.turn_text += piece;
    if (hooks_.ends_turn(sl.prompt, sl.sample, sl.turn_text)) return Next::ToolCall;
  }
  return Next::Decode;
}

void GpuGeneration::after(int64_t si, Next next, std::vector<int64_t>& starts) {
  if (next == Next::Finished) finish(si);
  if (next == Next::ToolCall) call_tool(hs_[size_t(si)]);
  if (next == Next::Decode) starts.push_back(si);
}

void GpuGeneration::take_routes(int64_t si) {
  const HostSlot& sl = hs_[size_t(si)];
  Completion& c = out_[size_t(sl.flat)];
  const int64_t rows = sl.prompt_len + int64_t(c.tokens.size()), BS = e_.cache.layout.block_size;
  const std::vector<int32_t>& blocks = e_.sched.blocks().blocks(si);
  std::vector<int32_t> cache_rows;
  for (int64_t r = 0; r + 1 < rows; ++r) cache_rows.push_back(int32_t(blocks[size_t(r / BS)] * BS + r % BS));
  e_.route_arena.reset();
  c.routes = model::read_routes(e_.cache, cache_rows, e_.route_arena);
  model::pad_routes(c.routes, rows);
}

void GpuGeneration::finish(int64_t si) {
  if (params_.record_routes) take_routes(si);
  hs_[size_t(si)] = HostSlot{};
  e_.sched.finish(si);
  ++done_;
  if (on_progress_) on_progress_(done_, int64_t(out_.size()));
}

void GpuGeneration::call_tool(HostSlot& sl) {
  const Completion& c = out_[size_t(sl.flat)];
  Turn t{sl.prompt, sl.sample, {c.tokens.begin() + int64_t(sl.turn_begin), c.tokens.end()}, sl.turn_text};
  sl.in_tool = true;
  sl.unfed = c.tokens.size() - 1;  // the call's last token was drawn, not yet fed
  const TurnHooks& hooks = hooks_;
  sl.pending = tools_->submit([&hooks, t = std::move(t)] { return hooks.respond(t); });
}

// A preempted sequence: its device segment (already looked at) joins the completion, the slot goes
// idle on the device, and the sequence's state waits for its recompute.
void GpuGeneration::park(int64_t si) {
  HostSlot& sl = hs_[size_t(si)];
  if (sl.on_device) {
    take_segment(si, cnt_[size_t(si)]);
    upload(e_.a_slot, std::vector<int32_t>{int32_t(si)});
    cuda::decode_set_finish(e_.st, ptr<int32_t>(e_.a_slot), 1, cuda::kIdle);
  }
  parked_[sl.flat] = std::move(sl);
  sl = HostSlot{};
}

void GpuGeneration::start(const std::vector<int64_t>& slots) {
  if (slots.empty()) return;
  std::vector<int32_t> slot, token, pos, limit, step0;
  std::vector<uint64_t> stream;
  for (int64_t si : slots) {
    HostSlot& sl = hs_[size_t(si)];
    const Completion& c = out_[size_t(sl.flat)];
    slot.push_back(int32_t(si));
    token.push_back(c.tokens.back());
    pos.push_back(sl.prompt_len + int32_t(c.tokens.size()) - 1);
    sl.limit = sl.total_limit - int32_t(c.tokens.size());
    limit.push_back(sl.limit);
    step0.push_back(int32_t(c.tokens.size() - sl.turn_begin));  // draws so far in this turn's stream
    stream.push_back(stream_of(sl));
    sl.on_device = true;
    sl.seen = 0;
    cnt_[size_t(si)] = 0;
  }
  upload(e_.a_slot, slot);
  upload(e_.a_token, token);
  upload(e_.a_pos, pos);
  upload(e_.a_limit, limit);
  upload(e_.a_step0, step0);
  upload(e_.a_stream, stream);
  cuda::decode_start(e_.st, ptr<int32_t>(e_.a_slot), ptr<int32_t>(e_.a_token), ptr<int32_t>(e_.a_pos),
                     ptr<int32_t>(e_.a_limit), ptr<int32_t>(e_.a_step0), ptr<uint64_t>(e_.a_stream),
                     int64_t(slots.size()));
}

std::vector<std::pair<int32_t, float>> GpuGeneration::feed_and_draw(const std::vector<Feed>& feeds) {
  const int64_t n = int64_t(feeds.size());
  if (n == 0) return {};
  std::vector<uint64_t> streams;
  std::vector<int32_t> steps;
  for (const Feed& f : feeds) {
    const HostSlot& sl = hs_[size_t(f.slot)];
    streams.push_back(stream_of(sl));
    steps.push_back(int32_t(out_[size_t(sl.flat)].tokens.size() - sl.turn_begin));
  }
  upload(e_.d_stream, streams);
  upload(e_.d_step, steps);
  reserve<int32_t>(e_.d_token, n);
  reserve<float>(e_.d_logprob, n);
  for (int64_t k = 0; k < n;) {
    const FeedBatch b = feed_batch(feeds, size_t(k), e_.cfg.prefill_tokens, [&](const Feed& f, int32_t pos) {
      return token_at(hs_[size_t(f.slot)], pos);
    });
    e_.sched.sync();
    e_.prefill_arena.reset();
    const Tensor logits = model::forward_cached(e_.m, e_.cache, b.ids, b.slots, b.pos, b.rows, e_.prefill_arena,
                                                DType::F32, nullptr, e_.trainer_temperature);
    cuda::sample_tokens(ptr<int32_t>(e_.d_token) + k, ptr<float>(e_.d_logprob) + k,
                        static_cast<const float*>(logits.data), e_.V, int64_t(b.rows.size()), e_.V, e_.scfg,
                        ptr<uint64_t>(e_.d_stream) + k, ptr<int32_t>(e_.d_step) + k, nullptr, nullptr);
    if (e_.trainer_temperature > 0.0f)
      e_.exact_logprobs(ptr<float>(e_.d_logprob) + k, static_cast<const float*>(logits.data), e_.V,
                        ptr<int32_t>(e_.d_token) + k, int64_t(b.rows.size()));
    stats_.prefill_tokens += int64_t(b.ids.size());
    k = int64_t(b.end);
  }
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  download(tokens, ptr<int32_t>(e_.d_token), n);
  download(logprobs, ptr<float>(e_.d_logprob), n);
  std::vector<std::pair<int32_t, float>> out;
  for (int64_t k = 0; k < n; ++k) out.push_back({tokens[size_t(k)], logprobs[size_t(k)]});
  return out;
}

// Fills free slots from the waiting sequences. New prompts are prefilled (several per forward) and
// the first tokens of all their samples drawn from the last row's logits (step 0 of each sample's
// stream); a sample sharing a prompt held from earlier takes its first token from then; a
// preempted sequence recomputes its prefix and draws its next token. Those that go on start on the
// device.
void GpuGeneration::admit() {
  if (!e_.sched.waiting()) return;
  const std::vector<Scheduler::Admitted> admitted = e_.sched.admit([&](int64_t p, int64_t s) {
    return int64_t(requests_[size_t(p)].prompt.size() + out_[size_t(first_[size_t(p)] + s)].tokens.size());
  });
  if (admitted.empty()) return;
  Timer t_prefill;
  std::vector<Feed> prefills, recomputes;
  std::vector<int64_t> firsts;
  for (const Scheduler::Admitted& a : admitted) {
    HostSlot& sl = hs_[size_t(a.slot)];
    const int64_t f = first_[size_t(a.prompt)] + a.sample;
    if (a.kind == Scheduler::Kind::Recompute) {
      sl = std::move(parked_.at(f));
      parked_.erase(f);
      recomputes.push_back({a.slot, 0, sl.prompt_len + int32_t(out_[size_t(f)].tokens.size())});
      continue;
    }
    sl = HostSlot{};
    sl.active = true;
    sl.prompt = a.prompt;
    sl.sample = a.sample;
    sl.flat = f;
    sl.prompt_len = int32_t(requests_[size_t(a.prompt)].prompt.size());
    sl.total_limit = int32_t(
        std::min<int64_t>(new_token_limit(requests_[size_t(a.prompt)], params_), e_.L - sl.prompt_len));
    out_[size_t(f)].prompt_index = a.prompt;
    out_[size_t(f)].sample_index = a.sample;
    if (a.kind == Scheduler::Kind::Prefill) prefills.push_back({a.slot, 0, sl.prompt_len});
    firsts.push_back(a.slot);
  }
  // Prefills: every sample's first token from its prompt's logits, at once. A prompt prefilled again
  // (its blocks were let go under memory pressure) keeps the first tokens drawn the first time.
  bool drew = false;
  for (size_t k = 0; k < prefills.size();) {
    const FeedBatch b = feed_batch(prefills, k, e_.cfg.prefill_tokens, [&](const Feed& f, int32_t pos) {
      return token_at(hs_[size_t(f.slot)], pos);
    });
    e_.sched.sync();
    e_.prefill_arena.reset();
    const Tensor logits = model::forward_cached(e_.m, e_.cache, b.ids, b.slots, b.pos, b.rows, e_.prefill_arena,
                                                DType::F32, nullptr, e_.trainer_temperature);
    for (size_t r = 0; r < b.rows.size(); ++r) {
      const HostSlot& sl = hs_[size_t(prefills[k + r].slot)];
      stats_.prompt_tokens += sl.prompt_len;
      if (drawn_[size_t(sl.prompt)]) continue;
      drawn_[size_t(sl.prompt)] = true;
      const int64_t f0 = first_[size_t(sl.prompt)];
      cuda::sample_tokens(ptr<int32_t>(e_.first_tok) + f0, ptr<float>(e_.first_lp) + f0,
                          static_cast<const float*>(logits.data) + int64_t(r) * e_.V, /*ld=*/0,
                          requests_[size_t(sl.prompt)].n, e_.V, e_.scfg, ptr<uint64_t>(e_.all_stream) + f0,
                          ptr<int32_t>(e_.zeros), nullptr, nullptr);
      if (e_.trainer_temperature > 0.0f)
        e_.exact_logprobs(ptr<float>(e_.first_lp) + f0, static_cast<const float*>(logits.data) + int64_t(r) * e_.V,
                          0, ptr<int32_t>(e_.first_tok) + f0, requests_[size_t(sl.prompt)].n);
      drew = true;
    }
    stats_.prefill_tokens += int64_t(b.ids.size());
    k = b.end;
  }
  if (drew) {  // one copy of every sample's first token (the host checks each before its device segment)
    download(first_token_, ptr<int32_t>(e_.first_tok), first_.back());
    download(first_logprob_, ptr<float>(e_.first_lp), first_.back());
  }
  std::vector<int64_t> starts;
  for (int64_t si : firsts) {
    HostSlot& sl = hs_[size_t(si)];
    after(si, accept(sl, first_token_[size_t(sl.flat)], first_logprob_[size_t(sl.flat)]), starts);
  }
  const std::vector<std::pair<int32_t, float>> draws = feed_and_draw(recomputes);
  for (size_t k = 0; k < recomputes.size(); ++k) {
    HostSlot& sl = hs_[size_t(recomputes[k].slot)];
    after(recomputes[k].slot, accept(sl, draws[k].first, draws[k].second), starts);
  }
  start(starts);
  stats_.prefill_seconds += t_prefill.seconds();
}

// Appends the observations of finished tool calls (waiting for one when `block`); returns the slots
// that go on and finishes the others.
std::vector<int64_t> GpuGeneration::take_observations(bool block) {
  std::vector<int64_t> resumed;
  for (size_t si = 0; si < hs_.size(); ++si) {
    HostSlot& sl = hs_[si];
    if (!sl.in_tool) continue;
    if (!block && sl.pending.wait_for(std::chrono::seconds(0)) != std::future_status::ready) continue;
    block = false;
    Observation ob = sl.pending.get();
    sl.in_tool = false;
    Completion& c = out_[size_t(sl.flat)];
    const int64_t fits = std::max<int64_t>(0, sl.total_limit - int64_t(c.tokens.size()) - 1);
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
    if (ob.end || cut) {
      c.finish = ob.end && !cut ? FinishReason::Stop : FinishReason::Length;
      finish(int64_t(si));
      continue;
    }
    resumed.push_back(int64_t(si));
  }
  return resumed;
}

// The rows the resumed sequences' observations go to, granted before new samples take blocks; a
// running sequence younger than one of them may give way (preempted), as may a resumed one itself.
void GpuGeneration::reserve_for(const std::vector<int64_t>& back, std::vector<int64_t>& resumed) {
  std::vector<Scheduler::Need> needs;
  for (size_t si = 0; si < hs_.size(); ++si) {
    const HostSlot& sl = hs_[si];
    if (!sl.active || sl.in_tool) continue;
    if (std::find(back.begin(), back.end(), int64_t(si)) != back.end()) {
      needs.push_back({int64_t(si), sl.prompt_len + int64_t(sl.unfed),
                       sl.prompt_len + int64_t(out_[size_t(sl.flat)].tokens.size())});
    } else if (sl.on_device) {
      needs.push_back({int64_t(si), 0, 0});  // asks for nothing, may give way
    }
  }
  const std::vector<int64_t> preempted = e_.sched.reserve(needs);
  for (int64_t si : preempted) park(si);
  for (int64_t si : back)
    if (std::find(preempted.begin(), preempted.end(), si) == preempted.end()) resumed.push_back(si);
}

}  // namespace r1::rollout
#endif
