#include "kernels/invariance.h"

#include <atomic>

namespace r1::ops {

namespace {
std::atomic<bool> g_batch_invariant{false};
}

bool batch_invariant() { return g_batch_invariant.load(std::memory_order_relaxed); }
void set_batch_invariant(bool on) { g_batch_invariant.store(on, std::memory_order_relaxed); }

}  // namespace r1::ops
