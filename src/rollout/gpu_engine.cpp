#include "rollout/gpu_engine.h"

#include "base/error.h"

#ifdef R1_HAVE_CUDA
#include <algorithm>

#include "base/timer.h"
#include "device/cuda_device.h"
#include "kernels/ops.h"
#include "rollout/gpu_engine_impl.h"
#include "tensor/device_memory.h"
#endif

namespace r1::rollout {

#ifndef R1_HAVE_CUDA

struct GpuEngine::Impl {};
GpuEngine::GpuEngine(const model::Transformer&, const EngineConfig&, model::KVCache&, Scheduler&) {
  fail("rollout: the model is on CUDA but this build has no CUDA backend");
}
GpuEngine::~GpuEngine() = default;
std::vector<Completion> GpuEngine::generate(const std::vector<Request>&, const GenerateParams&,
                                            const std::function<void(int64_t, int64_t)>&, GenerateStats&) {
  fail("rollout: this build has no CUDA backend");
}
void GpuEngine::release_scratch() {}

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

bool same_config(const cuda::SampleConfig& a, const cuda::SampleConfig& b) {
  return a.temperature == b.temperature && a.top_p == b.top_p && a.top_k == b.top_k && a.seed == b.seed &&
         a.sampled_logprobs == b.sampled_logprobs;
}

}  // namespace

GpuEngine::Impl::Impl(const model::Transformer& model, const EngineConfig& c, model::KVCache& kv,
                      Scheduler& sc)
    : m(model),
      cfg(c),
      cache(kv),
      sched(sc),
      S(c.max_batch),
      V(model.config().vocab_size),
      L(c.max_seq_len),
      step_arena(0, Device::CUDA),
      prefill_arena(0, Device::CUDA),
      route_arena(0, Device::CUDA),
      buckets(bucket_sizes(c.max_batch)) {
  R1_CHECK(cache.device == Device::CUDA && cache.layout.seqs == S + 1,
           "rollout: the GPU engine needs a CUDA cache with a block-table row per slot and a spare");
  const int64_t n = S + 1;
  for (Buffer* b : {&token, &pos, &count, &step0, &limit}) reserve<int32_t>(*b, n);
  for (Buffer* b : {&token, &pos, &count, &step0, &limit}) b->zero();
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
  reserve<float>(exact_state, 6 * n);
  reserve<float>(exact_lse, n);
  for (int b : buckets)
    workspace_floats =
        std::max(workspace_floats, ops::attention_cached_workspace(b, model.config().num_attention_heads,
                                                                   cache.heads.HDv, cache.max_len()));
  if (workspace_floats > 0) reserve<float>(attention_workspace, workspace_floats);
  st.token = ptr<int32_t>(token);
  st.pos = ptr<int32_t>(pos);
  st.count = ptr<int32_t>(count);
  st.step0 = ptr<int32_t>(step0);
  st.limit = ptr<int32_t>(limit);
  st.finish = ptr<int32_t>(finish);
  st.stream = ptr<uint64_t>(stream);
  st.out_tokens = ptr<int32_t>(out_tokens);
  st.out_logprobs = ptr<float>(out_logprobs);
  st.stride = L;
  st.stop_ids = ptr<int32_t>(stop_ids);
}

void GpuEngine::Impl::run_step(int rows, bool commit) {
  step_arena.reset();
  cuda::decode_prepare(st, ptr<int32_t>(row_slot), rows, S, ptr<int32_t>(ids), ptr<int32_t>(slots),
                       ptr<int32_t>(rpos), ptr<uint64_t>(rstream), ptr<int32_t>(rstep), ptr<int32_t>(active));
  model::CachedInputs in;
  in.ids = rows_tensor(ids, rows);
  in.slots = rows_tensor(slots, rows);
  in.pos = rows_tensor(rpos, rows);
  if (workspace_floats > 0)
    in.attention_workspace = Tensor(attention_workspace.data(), DType::F32, {workspace_floats}, Device::CUDA);
  in.trainer_temperature = trainer_temperature;
  in.one_token_per_slot = true;  // one row per running sequence (padding rows share the spare slot)
  const Tensor logits = model::forward_cached(m, cache, in, step_arena, DType::F32);
  cuda::sample_tokens(ptr<int32_t>(rtoken), ptr<float>(rlogprob), static_cast<const float*>(logits.data), V,
                      rows, V, scfg, ptr<uint64_t>(rstream), ptr<int32_t>(rstep), nullptr,
                      ptr<int32_t>(active));
  if (trainer_temperature > 0.0f)
    exact_logprobs(ptr<float>(rlogprob), static_cast<const float*>(logits.data), V, ptr<int32_t>(rtoken), rows);
  if (commit)
    cuda::decode_commit(st, ptr<int32_t>(row_slot), ptr<int32_t>(active), rows, ptr<int32_t>(rtoken),
                        ptr<float>(rlogprob));
}

void GpuEngine::Impl::exact_logprobs(float* logp, const float* logits, int64_t ld, const int32_t* tokens, int64_t R) {
  const Tensor state(exact_state.data(), DType::F32, {6 * (S + 1)}, Device::CUDA);
  auto fold = [&](int64_t r0, int64_t n, const float* z) {
    ops::logprobs_of_logits(Tensor(logp + r0, DType::F32, {n}, Device::CUDA),
                            Tensor(ptr<float>(exact_lse), DType::F32, {n}, Device::CUDA),
                            Tensor(const_cast<float*>(z), DType::F32, {n, V}, Device::CUDA),
                            Tensor(const_cast<int32_t*>(tokens) + r0, DType::I32, {n}, Device::CUDA),
                            model::kVocabChunk, state);
  };
  if (ld != 0) {
    fold(0, R, logits);
  } else {  // one row for every draw
    for (int64_t r = 0; r < R; ++r) fold(r, 1, logits);
  }
}

cuda::Graph& GpuEngine::Impl::graph_for(int bucket, GenerateStats& stats) {
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

void GpuEngine::Impl::configure(const GenerateParams& params) {
  const SamplingParams& sp = params.sampling;
  check_sampling(sp);
  R1_CHECK(params.stop_ids.size() <= size_t(kMaxStopIds), "rollout: at most {} stop ids on the GPU (got {})",
           kMaxStopIds, params.stop_ids.size());
  cuda::SampleConfig c;
  const float tt = params.exact_logprobs ? sp.temperature : 0.0f;  // the logits come tempered
  c.temperature = params.exact_logprobs ? 1.0f : sp.temperature;
  c.top_p = sp.top_p;
  c.top_k = sp.top_k;
  c.seed = sp.seed;
  c.sampled_logprobs = sp.sampled_logprobs;
  if (params.record_routes && cache.route_t.empty()) {
    // Routing replay's record: from now on every forward writes its experts beside its rows; the
    // graphs captured before do not.
    cache.keep_routes(m.config());
    graphs.clear();
  }
  // The steps also bake in the weights' addresses, which move when a sharded model (parallel.shard:
  // full) gathers its whole weights into a new buffer for the rollouts.
  const void* weights = m.params().flat.data;
  if (!graphs.empty() && same_config(c, scfg) && tt == trainer_temperature && params.stop_ids == stop &&
      weights == captured_weights)
    return;
  graphs.clear();
  trainer_temperature = tt;
  captured_weights = weights;
  scfg = c;
  stop = params.stop_ids;
  if (!stop.empty()) devmem::copy(stop_ids.data(), Device::CUDA, stop.data(), Device::CPU, stop.size() * 4);
  st.n_stop = int32_t(stop.size());
}

GpuGeneration::GpuGeneration(GpuEngine::Impl& e, const std::vector<Request>& requests,
                             const GenerateParams& params,
                             const std::function<void(int64_t, int64_t)>& on_progress, GenerateStats& stats)
    : e_(e),
      requests_(requests),
      params_(params),
      on_progress_(on_progress),
      stats_(stats),
      hooks_(params.turns) {}

void GpuGeneration::take_segment(int64_t si, int32_t n) {
  HostSlot& sl = hs_[size_t(si)];
  Completion& c = out_[size_t(sl.flat)];
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  download(tokens, ptr<int32_t>(e_.out_tokens) + si * e_.L, n);
  download(logprobs, ptr<float>(e_.out_logprobs) + si * e_.L, n);
  c.tokens.insert(c.tokens.end(), tokens.begin(), tokens.end());
  c.logprobs.insert(c.logprobs.end(), logprobs.begin(), logprobs.end());
  c.from_model.insert(c.from_model.end(), size_t(n), uint8_t(1));
  stats_.generated_tokens += n;
  sl.on_device = false;
}

// The host's look at the device segments: new tokens are streamed (on_token) and checked for stop
// strings and turn ends; segments that ended join their completions, their slots go idle on the
// device, and their sequences finish or call their tools.
void GpuGeneration::look() {
  std::vector<int32_t> fin, new_tokens, ended_on_host;
  download(fin, ptr<int32_t>(e_.finish), e_.S);
  download(cnt_, ptr<int32_t>(e_.count), e_.S);
  ++stats_.host_syncs;
  for (size_t si = 0; si < hs_.size(); ++si) {
    HostSlot& sl = hs_[si];
    if (!sl.active || !sl.on_device) continue;
    Completion& c = out_[size_t(sl.flat)];
    int32_t n = cnt_[si];
    bool ended = fin[si] == cuda::kStopToken || fin[si] == cuda::kLength, by_string = false, call = false;
    const bool turns = tools_ && c.turns < hooks_.max_turns;
    if (stream_tokens_ && n > sl.seen) {
      download(new_tokens, ptr<int32_t>(e_.out_tokens) + int64_t(si) * e_.L + sl.seen, n - sl.seen);
      for (size_t j = 0; j < new_tokens.size(); ++j) {
        if (params_.on_token) params_.on_token(sl.prompt, sl.sample, new_tokens[j]);
        if (params_.stop_strings.empty() && !turns) continue;
        const std::string piece = params_.token_text(new_tokens[j]);
        if (!params_.stop_strings.empty()) {
          const size_t before = sl.text.size();
          sl.text += piece;
          by_string = hits_stop_string(sl.text, before, params_.stop_strings);
        }
        // A stop token ends the sequence (the device stopped there) rather than a turn, as on the CPU.
        const bool stop_id = std::find(e_.stop.begin(), e_.stop.end(), new_tokens[j]) != e_.stop.end();
        if (!by_string && turns && !stop_id) {
          sl.turn_text += piece;
          call = hooks_.ends_turn(sl.prompt, sl.sample, sl.turn_text);
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
    take_segment(int64_t(si), n);
    ended_on_host.push_back(int32_t(si));  // idle on the device until started again
    if (call) {
      call_tool(sl);
      continue;
    }
    // A stop string on the limit's last token still counts as a stop, as on the CPU.
    c.finish = by_string || fin[si] == cuda::kStopToken ? FinishReason::Stop : FinishReason::Length;
    finish(int64_t(si));
  }
  if (!ended_on_host.empty()) {
    upload(e_.a_slot, ended_on_host);
    cuda::decode_set_finish(e_.st, ptr<int32_t>(e_.a_slot), int64_t(ended_on_host.size()), cuda::kIdle);
  }
}

// Up to sync_every decode steps of the running segments (fewer when one reaches its limit sooner),
// after their blocks for those steps are granted (preempting the youngest when the pool is short).
void GpuGeneration::decode() {
  std::vector<int32_t> rows;
  std::vector<Scheduler::Need> needs;
  int steps = e_.cfg.sync_every;
  for (size_t si = 0; si < hs_.size(); ++si)
    if (hs_[si].active && hs_[si].on_device) steps = std::min(steps, hs_[si].limit - cnt_[si]);
  steps = std::max(steps, 1);
  for (size_t si = 0; si < hs_.size(); ++si) {
    const HostSlot& sl = hs_[si];
    if (!sl.active || !sl.on_device) continue;
    const int64_t pos = sl.prompt_len + int64_t(out_[size_t(sl.flat)].tokens.size()) + cnt_[si] - 1;
    needs.push_back({int64_t(si), pos, std::min<int64_t>(pos + steps, e_.L)});
  }
  for (int64_t si : e_.sched.reserve(needs)) park(si);
  for (size_t si = 0; si < hs_.size(); ++si)
    if (hs_[si].active && hs_[si].on_device) rows.push_back(int32_t(si));
  if (rows.empty()) return;
  e_.sched.sync();
  const int64_t running = int64_t(rows.size());
  const int bucket = *std::lower_bound(e_.buckets.begin(), e_.buckets.end(), int(rows.size()));
  rows.resize(size_t(bucket), e_.S);
  if (rows != e_.rows_on_device) {
    upload(e_.row_slot, rows);
    e_.rows_on_device = rows;
  }
  Timer t_decode;
  cuda::Graph& g = e_.graph_for(bucket, stats_);
  for (int k = 0; k < steps; ++k) g.replay();
  cuda::synchronize();
  stats_.decode_seconds += t_decode.seconds();
  stats_.decode_steps += steps;
  stats_.decode_rows += int64_t(steps) * bucket;
  stats_.decode_seqs += int64_t(steps) * running;
  if (params_.on_decoded) params_.on_decoded(int64_t(steps) * running);
}

std::vector<Completion> GpuGeneration::run() {
  first_ = check_requests(requests_, params_, e_.V, e_.L);
  const int64_t total = first_.back();
  e_.configure(params_);
  out_.assign(size_t(total), {});
  hs_.resize(size_t(e_.S));
  cnt_.assign(size_t(e_.S), 0);
  drawn_.assign(requests_.size(), false);
  first_token_.assign(size_t(total), 0);
  first_logprob_.assign(size_t(total), 0.0f);
  if (hooks_.enabled()) tools_.emplace(hooks_.threads);
  stream_tokens_ = params_.on_token || !params_.stop_strings.empty() || tools_;
  std::vector<uint64_t> streams(static_cast<size_t>(total));
  int max_n = 1;
  for (size_t p = 0; p < requests_.size(); ++p) {
    max_n = std::max(max_n, requests_[p].n);
    for (int s = 0; s < requests_[p].n; ++s)
      streams[size_t(first_[p] + s)] =
          (uint64_t(uint32_t(stream_id(requests_, int64_t(p)))) << 32) | uint32_t(s);
  }
  upload(e_.all_stream, streams);
  upload(e_.zeros, std::vector<int32_t>(size_t(max_n), 0));
  reserve<int32_t>(e_.first_tok, total);
  reserve<float>(e_.first_lp, total);
  e_.sched.begin(requests_);
  while (done_ < total) {
    look();
    if (done_ == total) break;
    if (tools_) {
      // Sequences whose tool calls came back continue; with nothing else to decode, wait for one.
      const bool idle =
          std::none_of(hs_.begin(), hs_.end(), [](const HostSlot& s) { return s.active && !s.in_tool; });
      const bool calls = std::any_of(hs_.begin(), hs_.end(), [](const HostSlot& s) { return s.in_tool; });
      Timer t_wait;
      const std::vector<int64_t> back = take_observations(idle && calls);
      if (idle && calls) stats_.tool_wait_seconds += t_wait.seconds();
      std::vector<int64_t> resumed;
      reserve_for(back, resumed);
      std::vector<Feed> feeds;
      for (int64_t si : resumed) {
        const HostSlot& sl = hs_[size_t(si)];
        feeds.push_back({si, sl.prompt_len + int32_t(sl.unfed),
                         sl.prompt_len + int32_t(out_[size_t(sl.flat)].tokens.size())});
      }
      Timer t_prefill;
      const std::vector<std::pair<int32_t, float> > draws = feed_and_draw(feeds);
      std::vector<int64_t> starts;
      for (size_t k = 0; k < feeds.size(); ++k) {
        HostSlot& sl = hs_[size_t(feeds[k].slot)];
        after(feeds[k].slot, accept(sl, draws[k].first, draws[k].second), starts);
      }
      start(starts);
      stats_.prefill_seconds += t_prefill.seconds();
    }
    admit();
    decode();
  }
  return std::move(out_);
}

GpuEngine::GpuEngine(const model::Transformer& m, const EngineConfig& cfg, model::KVCache& cache,
                     Scheduler& sched)
    : impl_(std::make_unique<Impl>(m, cfg, cache, sched)) {}
GpuEngine::~GpuEngine() = default;
std::vector<Completion> GpuEngine::generate(const std::vector<Request>& requests, const GenerateParams& params,
                                            const std::function<void(int64_t, int64_t)>& on_progress,
                                            GenerateStats& stats) {
  GpuGeneration g(*impl_, requests, params, on_progress, stats);
  return g.run();
}

void GpuEngine::release_scratch() { impl_->prefill_arena = Arena(0, Device::CUDA); }

#endif

}  // namespace r1::rollout
