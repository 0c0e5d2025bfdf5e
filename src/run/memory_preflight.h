#pragma once
// Before any compute: the device memory a training run needs, by the memory model
// (model/memory_model.h), against what the device has free, and the switch that follows from it:
//   train.optimizer_offload: auto | on | off
// auto offloads the optimizer (fp32 master weights and AdamW moments to pinned host memory, the
// update on the CPU) when the run would not fit with them on the device. A model that cannot fit
// even with every memory switch on fails here, saying how many bytes it needs and how many the
// device has. The rollouts' paged KV pool is sized as the engine will size it (a fixed
// rollout.kv_cache_tokens, or rollout.kv_memory_fraction of what the persistent state leaves
// free); a pool with no room for one sequence fails here too, naming the key and the bytes. The
// activation checkpointing mode (train.activation_checkpointing) is part of the settings: on
// auto, checkpointing is assumed wherever saving would not fit.
#include <cstdint>
#include <string>

#include "model/config.h"
#include "model/memory_model.h"
#include "run/recipe.h"
#include "tensor/tensor.h"

namespace r1::run {

enum class Offload : uint8_t { Auto, On, Off };
// train.optimizer_offload; an unknown value is an error naming the key.
Offload optimizer_offload(const Recipe& r);

struct MemoryPlan {
  bool offload = false;
  model::MemoryEstimate estimate;  // with the switches chosen
  int64_t available = -1;          // free device bytes it was checked against (-1: not checked)
  // auto with the optimizer left on the device and a KV pool under what the rollouts can use: the
  // pool offloading would give instead (0: no hint). Logged; the choice stays auto's, since the
  // update on the CPU costs time too (docs/MEMORY.md measures both sides).
  int64_t offload_pool_tokens = 0;
};
// Chooses train.optimizer_offload's setting for `s` and checks the run against `available` free
// bytes (< 0: no check, e.g. the CPU). `lighter` names the recipe keys that shrink the per-phase
// memory (for the warning when the chosen settings may not fit but lighter ones would). With the
// optimizer offloaded, its pinned host state is checked against `host_available` (< 0: no check):
// more than the host has fails here, naming both, instead of minutes later in a pinned allocation.
MemoryPlan plan_memory(const model::ModelConfig& c, model::MemorySettings s, Offload mode, int64_t available,
                       const std::string& lighter, int64_t host_available = -1);
// The bytes `d` has free now (CUDA: as cudaMemGetInfo reports), or -1 for the CPU (not checked).
int64_t free_device_memory(Device d);
// This rank's share of the host's available memory (MemAvailable over the ranks on this node) when
// `d` is a GPU, whose offloaded optimizer lives there; -1 for the CPU (its state is the device's).
int64_t free_host_memory_share(Device d);

}  // namespace r1::run
