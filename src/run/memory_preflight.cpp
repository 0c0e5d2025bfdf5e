#include "run/memory_preflight.h"

#include <algorithm>

#include "base/error.h"
#include "base/log.h"
#include "dist/world.h"
#include "model/activation_memory.h"
#include "model/kv_cache.h"

namespace r1::run {

Offload optimizer_offload(const Recipe& r) {
  const std::string v = r.get<std::string>("train.optimizer_offload");
  if (v == "auto") return Offload::Auto;
  if (v == "on") return Offload::On;
  if (v == "off") return Offload::Off;
  fail("recipe key 'train.optimizer_offload' must be auto, on or off (got '{}')", v);
}

namespace {

int64_t round_down(int64_t v, int64_t to) { return v / to * to; }

// The tokens of the KV pool the engine will build for `s` (rollout/scheduler.h: plan_kv_layout): a
// fixed size in whole blocks, or kv_memory_fraction of what the device has free once the
// persistent state is allocated; capped at what the rollouts can use.
int64_t kv_pool_tokens(const model::ModelConfig& c, const model::MemorySettings& s, int64_t available) {
  const int64_t BS = std::max<int64_t>(1, s.kv_block_size);
  int64_t tokens = round_down(s.kv_tokens, BS);
  if (s.kv_memory_fraction > 0) {
    if (available < 0) return round_down(std::max(s.sequence_tokens + BS - 1, BS), BS);  // unchecked: one sequence
    model::MemorySettings state = s;
    state.kv_tokens = 0;
    const model::MemoryEstimate e = estimate_memory(c, state);
    const int64_t free = std::max<int64_t>(0, available - e.persistent() - e.overhead);
    const DType dt = s.device == Device::CPU ? DType::F32 : DType::BF16;
    const int64_t block_bytes = model::kv_bytes_per_token(c, dt) * BS;
    tokens = int64_t(s.kv_memory_fraction * double(free) / double(block_bytes)) * BS;
  }
  return s.kv_tokens_max > 0 ? std::min(tokens, s.kv_tokens_max) : tokens;
}

// One sequence of sequence_tokens in whole blocks: the least pool the rollouts can run with.
int64_t one_sequence_tokens(const model::MemorySettings& s) {
  const int64_t BS = std::max<int64_t>(1, s.kv_block_size);
  return (s.sequence_tokens + BS - 1) / BS * BS;
}

// Whether the run has rollouts (a KV pool) at all: SFT has none.
bool has_pool(const model::MemorySettings& s) { return s.kv_tokens > 0 || s.kv_memory_fraction > 0; }

// `s` with its pool resolved against `available`.
model::MemorySettings with_pool(const model::ModelConfig& c, model::MemorySettings s, int64_t available) {
  s.kv_tokens = kv_pool_tokens(c, s, available);
  return s;
}

// Fails when the pool of `s` (resolved) cannot hold one sequence, naming what it needs and has.
void check_pool(const model::ModelConfig& c, const model::MemorySettings& s, int64_t available) {
  const int64_t one = one_sequence_tokens(s);
  if (!has_pool(s) || s.kv_tokens >= one) return;
  const DType dt = s.device == Device::CPU ? DType::F32 : DType::BF16;
  const int64_t per_token = model::kv_bytes_per_token(c, dt);
  if (s.kv_memory_fraction <= 0)
    fail("out of KV cache before starting: recipe key 'rollout.kv_cache_tokens' gives the rollouts {} tokens ({}), "
         "no room for one sequence of {} tokens (prompt + completion), which needs {} ({} bytes per token)",
         s.kv_tokens, model::gib(s.kv_tokens * per_token), s.sequence_tokens, model::gib(one * per_token), per_token);
  model::MemorySettings state = s;
  state.kv_tokens = 0;
  const model::MemoryEstimate e = estimate_memory(c, state);
  fail("out of device memory before starting: recipe key 'rollout.kv_memory_fraction' = {} of the {} the device "
       "has free beside the run's persistent state ({} free, {} held: {}) gives the rollouts' KV cache {}, no room "
       "for one sequence of {} tokens (prompt + completion), which needs {} ({} bytes per token); raise "
       "rollout.kv_memory_fraction, shorten the sequences, or turn train.optimizer_offload on",
       s.kv_memory_fraction, model::gib(std::max<int64_t>(0, available - e.persistent() - e.overhead)),
       model::gib(available), model::gib(e.persistent() + e.overhead), model::describe(e),
       model::gib(s.kv_tokens * per_token), s.sequence_tokens, model::gib(one * per_token), per_token);
}

// When `auto` kept the optimizer on the device and that leaves a share-of-free-memory pool short of
// the batch, the pool offloading would give, if it is at least twice as large (logged as a hint);
// else 0. `resolved`: `s` with its pool.
int64_t offload_hint(const model::ModelConfig& c, const model::MemorySettings& s,
                     const model::MemorySettings& resolved, int64_t available) {
  if (s.kv_memory_fraction <= 0 || resolved.kv_tokens_max <= 0 || resolved.kv_tokens >= resolved.kv_tokens_max)
    return 0;
  model::MemorySettings off = s;
  off.offload = true;
  const int64_t more = with_pool(c, off, available).kv_tokens;
  if (more < 2 * resolved.kv_tokens) return 0;
  const int64_t seq = std::max<int64_t>(1, one_sequence_tokens(s));
  log::info("memory: the rollouts' KV pool holds {} tokens ({} sequences of {} at full length; the batch can "
            "use {}), so long rollouts run partly in turn (preempted and recomputed); "
            "train.optimizer_offload: on would give it {} tokens ({} sequences) and run the update on the CPU",
            resolved.kv_tokens, resolved.kv_tokens / seq, s.sequence_tokens, resolved.kv_tokens_max, more, more / seq);
  return more;
}

}  // namespace

MemoryPlan plan_memory(const model::ModelConfig& c, model::MemorySettings s, Offload mode, int64_t available,
                       const std::string& lighter, int64_t host_available) {
  const bool can_offload = s.trainable && s.lora_params == 0;
  R1_CHECK(mode != Offload::On || can_offload,
           "recipe key 'train.optimizer_offload' is on, but the run trains LoRA adapters: their optimizer state "
           "is small and stays on the device; set it to auto or off");
  // A run fits when its KV pool holds one sequence and its peak is within what the device has.
  auto fits = [&](const model::MemorySettings& x) {
    if (available < 0) return true;
    const model::MemorySettings r = with_pool(c, x, available);
    return (!has_pool(r) || r.kv_tokens >= one_sequence_tokens(r)) && estimate_memory(c, r).peak() <= available;
  };
  // Checkpointing on auto turns on when saving would not fit (the trainer decides per micro-batch);
  // auto offload when the state does not fit even so.
  if (s.checkpoint_auto && !fits(s)) s.checkpoint = true;
  s.offload = mode == Offload::On || (mode == Offload::Auto && can_offload && !fits(s));
  if (s.checkpoint_auto && s.offload) {  // with the state off the device, saving may fit again
    model::MemorySettings saving = s;
    saving.checkpoint = false;
    if (fits(saving)) s.checkpoint = false;
  }
  const model::MemorySettings resolved = with_pool(c, s, available);
  MemoryPlan p{s.offload, estimate_memory(c, resolved), available};
  R1_CHECK(!p.offload || host_available < 0 || p.estimate.host_state <= host_available,
           "out of host memory before starting: the offloaded optimizer (train.optimizer_offload: {}) keeps {} of fp32 "
           "master weights and AdamW moments in pinned host memory per rank, and this rank's share of the host has {} "
           "available; train LoRA adapters (train.lora.rank), spread the optimizer over more ranks "
           "(parallel.shard: optimizer or beyond), or use a machine with more memory",
           mode == Offload::On ? "on" : "auto, which chose it because the run does not fit on the device otherwise",
           model::gib(p.estimate.host_state), model::gib(host_available));
  if (mode == Offload::Auto && !s.offload && can_offload && available >= 0 && fits(s))
    p.offload_pool_tokens = offload_hint(c, s, resolved, available);
  if (fits(s)) return p;
  // Every switch on: the optimizer offloaded, layers checkpointed, a fixed pool and the
  // micro-batches one sequence each (a pool that is a share of free memory stays that share).
  check_pool(c, resolved, available);  // a fixed pool too small, or too small a share with these switches
  model::MemorySettings least = s;
  least.offload = can_offload;
  least.checkpoint = true;
  if (s.sequence_tokens > 0) {
    if (least.kv_memory_fraction <= 0 && has_pool(s)) least.kv_tokens = one_sequence_tokens(s);
    least.prefill_tokens = std::min(s.prefill_tokens, s.sequence_tokens);
    least.train_tokens = std::min(s.train_tokens, s.sequence_tokens);
  }
  least = with_pool(c, least, available);
  check_pool(c, least, available);
  const model::MemoryEstimate floor = estimate_memory(c, least);
  R1_CHECK(floor.peak() <= available,
           "out of device memory before starting: this model needs at least {} on the device with every memory "
           "switch on ({}; model/memory_model.h, docs/MEMORY.md), and the device has {} free",
           model::gib(floor.peak()), model::describe(floor), model::gib(available));
  log::warn("memory: the run is estimated at {} and the device has {} free; it would fit in {}: {}",
            model::describe(p.estimate), model::gib(available), model::gib(floor.peak()), lighter);
  return p;
}

int64_t free_device_memory(Device d) { return d == Device::CPU ? -1 : int64_t(model::free_memory(d)); }

int64_t free_host_memory_share(Device d) {
  if (d == Device::CPU) return -1;
  const int64_t host = int64_t(model::free_memory(Device::CPU));
  return host > 0 ? host / std::max(1, dist::launch().local_size) : -1;  // 0: unknown, not checked
}

}  // namespace r1::run
