#include "rollout/gpu_engine.h"

#include "base/error.h"

#ifdef R1_HAVE_CUDA
#include <algorithm>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <optional>

#include "base/thread_pool.h"
#include "base/timer.h"
#include "device/cuda_device.h"
#include "device/graph.h"
#include "kernels/decode_state.h"
#include "kernels/ops.h"
#include "kernels/sampling.h"
#include "rollout/admission.h"
#include "rollout/requests.h"
#include "tensor/device_memory.h"
#include "model/kv_cache.h"
#endif

namespace r1::rollout {

#ifndef R1_HAVE_CUDA

struct GpuEngine::Impl {};
GpuEngine::GpuEngine(const model::Transformer&, const EngineConfig&) {
  fail("rollout: the model is on CUDA but this build has no CUDA backend");
}
GpuEngine::~GpuEngine() = default;
std::vector<Completion> GpuEngine::generate(const std::vector<Request>&, const GenerateParams&,
                                            const std::function<void(int64_t, int64_t)>&, GenerateStats&) {
  fail("rollout: this build has no CUDA backend");
}

#else

namespace {

constexpr int kMaxStopIds = 64;

// Batch sizes with a captured decode step; a running batch is padded up to the next one.
std::vector<int> bucket_sizes(int max_batch) {
  std::vector<int> b;
  for (int x : {1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048})
    if (x < max_batch) b.push_back(x);
  b.push_back(max_batch);
  return b;
}

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

// The host's view of one KV-cache slot.
struct HostSlot : SlotBase {
  int32_t limit = 0;  // tokens the device segment may generate
  int32_t seen = 0;   // tokens already streamed (on_token) and checked for stop strings
  std::string text;   // decoded completion so far, for stop strings
  // Multi-turn: the completion's token limit, the model's current turn, its tool call.
  int32_t total_limit = 0;
  std::string turn_text;
  size_t turn_begin = 0;
  bool in_tool = false;
  size_t unfed = 0;  // first completion token not yet in the cache
  std::future<Observation> pending;
};

bool same_config(const cuda::SampleConfig& a, const cuda::SampleConfig& b) {
  return a.temperature == b.temperature && a.top_p == b.top_p && a.top_k == b.top_k && a.seed == b.seed;
}

}  // namespace

struct GpuEngine::Impl {
  const model::Transformer& m;
  EngineConfig cfg;
  int S;  // slots; also the index of the spare slot that padding rows compute on
  int64_t V, L;
  model::KVCache cache;
  // Per slot (S + 1).
  Buffer token, pos, count, limit, finish, stream, out_tokens, out_logprobs, stop_ids;
  cuda::DecodeSlots st;
  // Per row of a step (up to S rows): the forward's and the sampler's inputs and outputs.
  Buffer row_slot, ids, slots, rpos, rstream, rstep, active, rtoken, rlogprob;
  Buffer attention_workspace;  // sized for every bucket: the arena must not grow after a capture
  int64_t workspace_floats = 0;
  // Per call: every sample's stream, first token and its log-prob; admissions.
  Buffer all_stream, first_token, first_logprob, zeros, a_slot, a_flat, a_pos, a_limit;
  // Per resumption after an observation: each resumed slot's stream, first draw and admission.
  Buffer r_stream, r_token, r_logprob, r_slot, r_index, r_pos, r_limit;
  Arena step_arena, prefill_arena;
  std::map<int, std::unique_ptr<cuda::Graph>> graphs;
  bool step_arena_sized = false;
  cuda::SampleConfig scfg;
  std::vector<int32_t> stop;
  std::vector<int32_t> rows_on_device;
  std::vector<int> buckets;

  Impl(const model::Transformer& model, const EngineConfig& c)
      : m(model),
        cfg(c),
        S(c.max_batch),
        V(model.config().vocab_size),
        L(c.max_seq_len),
        cache(model.config(), c.max_batch + 1, c.max_seq_len, Device::CUDA, model.compute_dtype()),
        step_arena(0, Device::CUDA),
        prefill_arena(0, Device::CUDA),
        buckets(bucket_sizes(c.max_batch)) {
    const int64_t n = S + 1;
    for (Buffer* b : {&token, &pos, &count, &limit}) reserve<int32_t>(*b, n);
    for (Buffer* b : {&token, &pos, &count, &limit}) b->zero();
    upload(finish, std::vector<int32_t>(size_t(n), cuda::kIdle));
    reserve<uint64_t>(stream, n);
    stream.zero();
    reserve<int32_t>(out_tokens, n * L);
    reserve<float>(out_logprobs, n * L);
    reserve<int32_t>(stop_ids, kMaxStopIds);
    upload(row_slot, std::vector<int32_t>(size_t(S), S));
    for (Buffer* b : {&ids, &slots, &rpos, &rstep, &active, &rtoken}) reserve<int32_t>(*b, S);
    reserve<uint64_t>(rstream, S);
    reserve<float>(rlogprob, S);
    const model::ModelConfig& mc = model.config();
    for (int b : buckets)
      workspace_floats = std::max(workspace_floats,
                                  ops::attention_cached_workspace(b, mc.num_attention_heads, mc.head_dim, L));
    if (workspace_floats > 0) reserve<float>(attention_workspace, workspace_floats);
    st.token = ptr<int32_t>(token);
    st.pos = ptr<int32_t>(pos);
    st.count = ptr<int32_t>(count);
    st.limit = ptr<int32_t>(limit);
    st.finish = ptr<int32_t>(finish);
    st.stream = ptr<uint64_t>(stream);
    st.out_tokens = ptr<int32_t>(out_tokens);
    st.out_logprobs = ptr<float>(out_logprobs);
    st.stride = L;
    st.stop_ids = ptr<int32_t>(stop_ids);
  }

  Tensor rows_tensor(const Buffer& b, int rows) const {
    return Tensor(b.data(), DType::I32, {int64_t(rows)}, Device::CUDA);
  }

  // One decode step over `rows` rows of row_slot: prepare, forward, draw and (commit) append.
  void run_step(int rows, bool commit) {
    step_arena.reset();
    cuda::decode_prepare(st, ptr<int32_t>(row_slot), rows, S, ptr<int32_t>(ids), ptr<int32_t>(slots),
                         ptr<int32_t>(rpos), ptr<uint64_t>(rstream), ptr<int32_t>(rstep), ptr<int32_t>(active));
    model::CachedInputs in;
    in.ids = rows_tensor(ids, rows);
    in.slots = rows_tensor(slots, rows);
    in.pos = rows_tensor(rpos, rows);
    if (workspace_floats > 0)
      in.attention_workspace = Tensor(attention_workspace.data(), DType::F32, {workspace_floats}, Device::CUDA);
    const Tensor logits = model::forward_cached(m, cache, in, step_arena, DType::F32);
    cuda::sample_tokens(ptr<int32_t>(rtoken), ptr<float>(rlogprob), static_cast<const float*>(logits.data), V, rows,
                        V, scfg, ptr<uint64_t>(rstream), ptr<int32_t>(rstep), nullptr, ptr<int32_t>(active));
    if (commit)
      cuda::decode_commit(st, ptr<int32_t>(row_slot), ptr<int32_t>(active), rows, ptr<int32_t>(rtoken),
                          ptr<float>(rlogprob));
  }

  // The captured step for a bucket: captured on first use, replayed after.
  cuda::Graph& graph_for(int bucket, GenerateStats& stats) {
    auto it = graphs.find(bucket);
    if (it != graphs.end()) return *it->second;
    // The largest step sizes the arena once (its needs grow with the rows; the attention workspace
    // is apart), so every later capture allocates inside one block that never moves; an eager run
    // per bucket creates its GEMM plans before the capture.
    if (!step_arena_sized) {
      run_step(S, false);
      step_arena_sized = true;
    }
    run_step(bucket, false);
    auto g = std::make_unique<cuda::Graph>();
    g->begin_capture();
    try {
      run_step(bucket, true);
    } catch (...) {
      g->abort_capture();
      throw;
    }
    g->end_capture();
    ++stats.graph_captures;
    return *graphs.emplace(bucket, std::move(g)).first->second;
  }

  // Sampling parameters and stop ids are baked into the captured steps: new ones drop the graphs.
  void configure(const GenerateParams& params) {
    const SamplingParams& sp = params.sampling;
    check_sampling(sp);
    R1_CHECK(params.stop_ids.size() <= size_t(kMaxStopIds), "rollout: at most {} stop ids on the GPU (got {})",
             kMaxStopIds, params.stop_ids.size());
    cuda::SampleConfig c;
    c.temperature = sp.temperature;
    c.top_p = sp.top_p;
    c.top_k = sp.top_k;
    c.seed = sp.seed;
    if (!graphs.empty() && same_config(c, scfg) && params.stop_ids == stop) return;
    graphs.clear();
    scfg = c;
    stop = params.stop_ids;
    if (!stop.empty()) devmem::copy(stop_ids.data(), Device::CUDA, stop.data(), Device::CPU, stop.size() * 4);
    st.n_stop = int32_t(stop.size());
  }

  std::vector<Completion> generate(const std::vector<Request>& requests, const GenerateParams& params,
                                   const std::function<void(int64_t, int64_t)>& on_progress, GenerateStats& stats);
  void admit(const std::vector<Request>& requests, const std::vector<int64_t>& first, const GenerateParams& params,
             Waiting& waiting, std::vector<HostSlot>& hs,
             std::vector<Completion>& out, GenerateStats& stats);
  // Multi-turn: appends the observations of finished tool calls (waiting for one when `block`);
  // returns the slots that go on and marks the others finished (finished_now).
  std::vector<int64_t> take_observations(std::vector<HostSlot>& hs, std::vector<Completion>& out, bool block,
                                         std::vector<int64_t>& finished_now, GenerateStats& stats);
  // Prefills each resumed slot's unfed tokens on its cache rows, draws its next token (step 0 of its
  // new segment's stream) and starts it on the device again.
  void resume(const std::vector<Request>& requests, std::vector<HostSlot>& hs, std::vector<Completion>& out,
              const std::vector<int64_t>& resumed, GenerateStats& stats);
};

std::vector<int64_t> GpuEngine::Impl::take_observations(std::vector<HostSlot>& hs, std::vector<Completion>& out,
                                                        bool block, std::vector<int64_t>& finished_now,
                                                        GenerateStats& stats) {
  std::vector<int64_t> resumed;
  for (size_t si = 0; si < hs.size(); ++si) {
    HostSlot& sl = hs[si];
    if (!sl.in_tool) continue;
    if (!block && sl.pending.wait_for(std::chrono::seconds(0)) != std::future_status::ready) continue;
    block = false;
    Observation ob = sl.pending.get();
    sl.in_tool = false;
    Completion& c = out[size_t(sl.flat)];
    const int64_t fits = std::max<int64_t>(0, sl.total_limit - int64_t(c.tokens.size()) - 1);
    const bool cut = int64_t(ob.tokens.size()) > fits;
    if (cut) ob.tokens.resize(size_t(fits));
    c.tokens.insert(c.tokens.end(), ob.tokens.begin(), ob.tokens.end());
    c.logprobs.insert(c.logprobs.end(), ob.tokens.size(), 0.0f);
    c.from_model.insert(c.from_model.end(), ob.tokens.size(), uint8_t(0));
    ++c.turns;
    ++stats.turns;
    stats.observation_tokens += int64_t(ob.tokens.size());
    sl.turn_text.clear();
    sl.turn_begin = c.tokens.size();
    if (ob.end || cut) {
      c.finish = ob.end && !cut ? FinishReason::Stop : FinishReason::Length;
      sl.active = false;
      finished_now.push_back(int64_t(si));
      continue;
    }
    resumed.push_back(int64_t(si));
  }
  return resumed;
}

void GpuEngine::Impl::resume(const std::vector<Request>& requests, std::vector<HostSlot>& hs,
                             std::vector<Completion>& out, const std::vector<int64_t>& resumed, GenerateStats& stats) {
  if (resumed.empty()) return;
  Timer t_prefill;
  const int64_t n = int64_t(resumed.size());
  std::vector<uint64_t> streams;
  std::vector<int32_t> slot_ids, index, poss, limits;
  for (int64_t k = 0; k < n; ++k) {
    const HostSlot& sl = hs[size_t(resumed[size_t(k)])];
    const Completion& c = out[size_t(sl.flat)];
    const uint64_t sample = uint64_t(uint32_t(turn_stream_sample(sl.sample, c.turns)));
    streams.push_back((uint64_t(uint32_t(stream_id(requests, sl.prompt))) << 32) | sample);
    slot_ids.push_back(int32_t(resumed[size_t(k)]));
    index.push_back(int32_t(k));
    poss.push_back(sl.prompt_len + int32_t(c.tokens.size()) - 1);
    limits.push_back(sl.total_limit - int32_t(c.tokens.size()));
  }
  upload(r_stream, streams);
  reserve<int32_t>(r_token, n);
  reserve<float>(r_logprob, n);
  if (zeros.size() < size_t(n) * sizeof(int32_t)) upload(zeros, std::vector<int32_t>(size_t(n), 0));
  for (int64_t k = 0; k < n;) {
    std::vector<int32_t> ids, sl_ids, pos, rows;
    int64_t end = k;
    for (; end < n; ++end) {
      const HostSlot& sl = hs[size_t(resumed[size_t(end)])];
      const Completion& c = out[size_t(sl.flat)];
      if (end > k && int64_t(ids.size() + c.tokens.size() - sl.unfed) > cfg.prefill_tokens) break;
      for (size_t t = sl.unfed; t < c.tokens.size(); ++t) {
        ids.push_back(c.tokens[t]);
        sl_ids.push_back(int32_t(resumed[size_t(end)]));
        pos.push_back(sl.prompt_len + int32_t(t));
      }
      rows.push_back(int32_t(ids.size()) - 1);
    }
    prefill_arena.reset();
    const Tensor logits = model::forward_cached(m, cache, ids, sl_ids, pos, rows, prefill_arena, DType::F32);
    for (size_t r = 0; r < rows.size(); ++r)
      cuda::sample_tokens(ptr<int32_t>(r_token) + k + int64_t(r), ptr<float>(r_logprob) + k + int64_t(r),
                          static_cast<const float*>(logits.data) + int64_t(r) * V, /*ld=*/0, 1, V, scfg,
                          ptr<uint64_t>(r_stream) + k + int64_t(r), ptr<int32_t>(zeros), nullptr, nullptr);
    stats.prefill_tokens += int64_t(ids.size());
    k = end;
  }
  upload(r_slot, slot_ids);
  upload(r_index, index);
  upload(r_pos, poss);
  upload(r_limit, limits);
  cuda::decode_admit(st, ptr<int32_t>(r_slot), ptr<int32_t>(r_index), ptr<int32_t>(r_pos), ptr<int32_t>(r_limit),
                     ptr<uint64_t>(r_stream), ptr<int32_t>(r_token), ptr<float>(r_logprob), n);
  cuda::synchronize();
  for (int64_t k = 0; k < n; ++k) {
    HostSlot& sl = hs[size_t(resumed[size_t(k)])];
    sl.limit = limits[size_t(k)];
    sl.seen = 0;
  }
  stats.prefill_seconds += t_prefill.seconds();
}

// Fills free slots from the waiting samples: prompts new to the cache are prefilled (several per
// forward) and the first tokens of all their samples drawn at once; the others copy a holder's rows.
void GpuEngine::Impl::admit(const std::vector<Request>& requests, const std::vector<int64_t>& first,
                            const GenerateParams& params, Waiting& waiting,
                            std::vector<HostSlot>& hs, std::vector<Completion>& out, GenerateStats& stats) {
  auto copy_prefix = [&](int64_t src, int64_t dst, int64_t rows) { cache.copy_prefix(src, dst, rows); };
  std::vector<int64_t> to_prefill;
  const std::vector<int64_t> admitted = admit_waiting(hs, waiting, requests, first, to_prefill, copy_prefix);
  for (int64_t si : admitted) {
    HostSlot& sl = hs[size_t(si)];
    sl.limit = int32_t(std::min<int64_t>(params.max_new_tokens, L - sl.prompt_len));
    sl.total_limit = sl.limit;
    sl.seen = 0;
    sl.text.clear();
    sl.turn_text.clear();
    sl.turn_begin = 0;
    sl.in_tool = false;
    out[size_t(sl.flat)].prompt_index = sl.prompt;
    out[size_t(sl.flat)].sample_index = sl.sample;
  }
  if (admitted.empty()) return;
  Timer t_prefill;
  for (size_t i = 0; i < to_prefill.size();) {
    const PrefillChunk ch = prefill_chunk(hs, to_prefill, i, requests, cfg.prefill_tokens);
    prefill_arena.reset();
    const Tensor logits =
        model::forward_cached(m, cache, ch.ids, ch.slots, ch.pos, ch.rows, prefill_arena, DType::F32);
    for (size_t r = 0; r < ch.rows.size(); ++r) {
      HostSlot& sl = hs[size_t(to_prefill[i + r])];
      sl.holds_prompt = sl.prompt;
      const int64_t f0 = first[size_t(sl.prompt)];
      // Every sample's first token comes from these logits (step 0 of its own stream).
      cuda::sample_tokens(ptr<int32_t>(first_token) + f0, ptr<float>(first_logprob) + f0,
                          static_cast<const float*>(logits.data) + int64_t(r) * V, /*ld=*/0,
                          requests[size_t(sl.prompt)].n, V, scfg, ptr<uint64_t>(all_stream) + f0,
                          ptr<int32_t>(zeros), nullptr, nullptr);
      stats.prompt_tokens += sl.prompt_len;
    }
    stats.prefill_tokens += int64_t(ch.ids.size());
    i = ch.end;
  }
  std::vector<int32_t> a_slots, a_flats, a_poss, a_limits;
  for (int64_t si : admitted) {
    take_prefilled_rows(hs, si, copy_prefix);
    const HostSlot& sl = hs[size_t(si)];
    a_slots.push_back(int32_t(si));
    a_flats.push_back(int32_t(sl.flat));
    a_poss.push_back(sl.prompt_len - 1);
    a_limits.push_back(sl.limit);
  }
  upload(a_slot, a_slots);
  upload(a_flat, a_flats);
  upload(a_pos, a_poss);
  upload(a_limit, a_limits);
  cuda::decode_admit(st, ptr<int32_t>(a_slot), ptr<int32_t>(a_flat), ptr<int32_t>(a_pos), ptr<int32_t>(a_limit),
                     ptr<uint64_t>(all_stream), ptr<int32_t>(first_token), ptr<float>(first_logprob),
                     int64_t(admitted.size()));
  cuda::synchronize();
  stats.prefill_seconds += t_prefill.seconds();
}

std::vector<Completion> GpuEngine::Impl::generate(const std::vector<Request>& requests, const GenerateParams& params,
                                                  const std::function<void(int64_t, int64_t)>& on_progress,
                                                  GenerateStats& stats) {
  const std::vector<int64_t> first = check_requests(requests, params, V, L);
  const int64_t total = first.back();
  configure(params);
  std::vector<Completion> out(static_cast<size_t>(total));
  Waiting waiting;
  std::vector<uint64_t> streams(static_cast<size_t>(total));
  int max_n = 1;
  for (size_t i = 0; i < requests.size(); ++i) {
    max_n = std::max(max_n, requests[i].n);
    for (int s = 0; s < requests[i].n; ++s) {
      waiting.emplace_back(int64_t(i), s);
      streams[size_t(first[i] + s)] = (uint64_t(uint32_t(stream_id(requests, int64_t(i)))) << 32) | uint32_t(s);
    }
  }
  upload(all_stream, streams);
  upload(zeros, std::vector<int32_t>(size_t(max_n), 0));
  reserve<int32_t>(first_token, total);
  reserve<float>(first_logprob, total);

  std::vector<HostSlot> hs(static_cast<size_t>(S));
  std::vector<int32_t> fin, cnt, ended_on_host, new_tokens;
  std::vector<float> new_logprobs;
  const TurnHooks& hooks = params.turns;
  std::optional<ThreadPool> tools;  // destroyed first: its jobs read `hooks`
  if (hooks.enabled()) tools.emplace(hooks.threads);
  const bool stream_tokens = params.on_token || !params.stop_strings.empty() || tools;
  int64_t done = 0;
  auto finished = [&] {
    ++done;
    if (on_progress) on_progress(done, total);
  };
  while (done < total) {
    if (!waiting.empty()) admit(requests, first, params, waiting, hs, out, stats);
    if (tools) {
      // Sequences whose tool calls came back continue; with nothing else to decode, wait for one.
      const bool idle = std::none_of(hs.begin(), hs.end(), [](const HostSlot& s) { return s.active && !s.in_tool; });
      const bool calls = std::any_of(hs.begin(), hs.end(), [](const HostSlot& s) { return s.in_tool; });
      std::vector<int64_t> ended;
      Timer t_wait;
      const std::vector<int64_t> resumed = take_observations(hs, out, idle && calls, ended, stats);
      if (idle && calls) stats.tool_wait_seconds += t_wait.seconds();
      for (size_t k = 0; k < ended.size(); ++k) finished();
      resume(requests, hs, out, resumed, stats);
    }
    download(fin, ptr<int32_t>(finish), S);
    download(cnt, ptr<int32_t>(count), S);
    ++stats.host_syncs;
    // Hand out new tokens, apply stop strings and turn ends, collect finished sequences.
    ended_on_host.clear();
    for (size_t si = 0; si < hs.size(); ++si) {
      HostSlot& sl = hs[si];
      if (!sl.active || sl.in_tool) continue;
      Completion& c = out[size_t(sl.flat)];
      int32_t n = cnt[si];
      bool ended = fin[si] == cuda::kStopToken || fin[si] == cuda::kLength, by_string = false, call = false;
      const bool turns = tools && c.turns < hooks.max_turns;
      if (stream_tokens && n > sl.seen) {
        download(new_tokens, ptr<int32_t>(out_tokens) + int64_t(si) * L + sl.seen, n - sl.seen);
        for (size_t j = 0; j < new_tokens.size(); ++j) {
          if (params.on_token) params.on_token(sl.prompt, sl.sample, new_tokens[j]);
          if (params.stop_strings.empty() && !turns) continue;
          const std::string piece = params.token_text(new_tokens[j]);
          if (!params.stop_strings.empty()) {
            const size_t before = sl.text.size();
            sl.text += piece;
            by_string = hits_stop_string(sl.text, before, params.stop_strings);
          }
          // A stop token ends the sequence (the device stopped there) rather than a turn, as on the CPU.
          const bool stop_id = std::find(stop.begin(), stop.end(), new_tokens[j]) != stop.end();
          if (!by_string && turns && !stop_id) {
            sl.turn_text += piece;
            call = hooks.ends_turn(sl.prompt, sl.sample, sl.turn_text);
          }
          if (by_string || call) {
            n = sl.seen + int32_t(j) + 1;  // tokens after it were decoded before the host looked: dropped
            break;
          }
        }
        sl.seen = n;
      }
      // A call on the completion's last allowed token ends it at the limit instead.
      if (call && int64_t(c.tokens.size()) + n >= sl.total_limit) {
        call = false;
        ended = true;
        fin[si] = cuda::kLength;
      }
      if (!ended && !by_string && !call) continue;
      // The device segment joins the completion (after earlier turns and observations).
      download(new_tokens, ptr<int32_t>(out_tokens) + int64_t(si) * L, n);
      download(new_logprobs, ptr<float>(out_logprobs) + int64_t(si) * L, n);
      c.tokens.insert(c.tokens.end(), new_tokens.begin(), new_tokens.end());
      c.logprobs.insert(c.logprobs.end(), new_logprobs.begin(), new_logprobs.end());
      c.from_model.insert(c.from_model.end(), size_t(n), uint8_t(1));
      stats.generated_tokens += n;
      ended_on_host.push_back(int32_t(si));  // idle on the device until resumed or refilled
      if (call) {
        Turn t{sl.prompt, sl.sample, {c.tokens.begin() + int64_t(sl.turn_begin), c.tokens.end()}, sl.turn_text};
        sl.in_tool = true;
        sl.unfed = c.tokens.size() - 1;
        sl.pending = tools->submit([&hooks, t = std::move(t)] { return hooks.respond(t); });
        continue;
      }
      c.finish = by_string || fin[si] == cuda::kStopToken ? FinishReason::Stop : FinishReason::Length;
      // A stop string on the limit's last token still counts as a stop, as on the CPU.
      sl.active = false;
      finished();
    }
    if (!ended_on_host.empty()) {
      upload(a_slot, ended_on_host);
      cuda::decode_set_finish(st, ptr<int32_t>(a_slot), int64_t(ended_on_host.size()), cuda::kIdle);
    }
    if (done == total) break;
    // Decode the running slots: up to sync_every steps, fewer when one reaches its limit sooner.
    std::vector<int32_t> rows;
    int steps = cfg.sync_every;
    for (size_t si = 0; si < hs.size(); ++si)
      if (hs[si].active && !hs[si].in_tool) {
        rows.push_back(int32_t(si));
        steps = std::min(steps, hs[si].limit - cnt[si]);
      }
    if (rows.empty()) continue;
    steps = std::max(steps, 1);
    const int bucket = *std::lower_bound(buckets.begin(), buckets.end(), int(rows.size()));
    rows.resize(size_t(bucket), S);
    if (rows != rows_on_device) {
      upload(row_slot, rows);
      rows_on_device = rows;
    }
    Timer t_decode;
    cuda::Graph& g = graph_for(bucket, stats);
    for (int k = 0; k < steps; ++k) g.replay();
    cuda::synchronize();
    stats.decode_seconds += t_decode.seconds();
    stats.decode_steps += steps;
    stats.decode_rows += int64_t(steps) * bucket;
  }
  return out;
}

GpuEngine::GpuEngine(const model::Transformer& m, const EngineConfig& cfg)
    : impl_(std::make_unique<Impl>(m, cfg)) {}
GpuEngine::~GpuEngine() = default;
std::vector<Completion> GpuEngine::generate(const std::vector<Request>& requests, const GenerateParams& params,
                                            const std::function<void(int64_t, int64_t)>& on_progress,
                                            GenerateStats& stats) {
  return impl_->generate(requests, params, on_progress, stats);
}

#endif

}  // namespace r1::rollout
