#include "run/memory_preflight.h"

#include <algorithm>

#include "base/error.h"
#include "base/log.h"
#include "device/cuda_device.h"

namespace r1::run {

Offload optimizer_offload(const Recipe& r) {
  const std::string v = r.get<std::string>("train.optimizer_offload");
  if (v == "auto") return Offload::Auto;
  if (v == "on") return Offload::On;
  if (v == "off") return Offload::Off;
  fail("recipe key 'train.optimizer_offload' must be auto, on or off (got '{}')", v);
}

MemoryPlan plan_memory(const model::ModelConfig& c, model::MemorySettings s, Offload mode, int64_t available,
                       const std::string& lighter) {
  const bool can_offload = s.trainable && s.lora_params == 0;
  R1_CHECK(mode != Offload::On || can_offload,
           "recipe key 'train.optimizer_offload' is on, but the run trains LoRA adapters: their optimizer state "
           "is small and stays on the device; set it to auto or off");
  s.offload = mode == Offload::On;
  if (mode == Offload::Auto && can_offload && available >= 0) s.offload = estimate_memory(c, s).peak() > available;
  MemoryPlan p{s.offload, estimate_memory(c, s), available};
  if (available < 0 || p.estimate.peak() <= available) return p;
  // Every switch on: the optimizer offloaded, the rollouts and the micro-batches one sequence each.
  model::MemorySettings least = s;
  least.offload = can_offload;
  if (s.sequence_tokens > 0) {
    least.kv_tokens = std::min(s.kv_tokens, s.sequence_tokens);
    least.prefill_tokens = std::min(s.prefill_tokens, s.sequence_tokens);
    least.train_tokens = std::min(s.train_tokens, s.sequence_tokens);
  }
  const model::MemoryEstimate floor = estimate_memory(c, least);
  R1_CHECK(floor.peak() <= available,
           "out of device memory before starting: this model needs at least {} on the device with every memory "
           "switch on ({}; model/memory_model.h, docs/MEMORY.md), and the device has {} free",
           model::gib(floor.peak()), model::describe(floor), model::gib(available));
  log::warn("memory: the run is estimated at {} and the device has {} free; it would fit in {}: {}",
            model::describe(p.estimate), model::gib(available), model::gib(floor.peak()), lighter);
  return p;
}

int64_t free_device_memory(Device d) {
  if (d == Device::CPU) return -1;
  return int64_t(cuda::memory_info().free);
}

}  // namespace r1::run
