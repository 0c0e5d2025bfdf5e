#pragma once
// The seam for fully sharded training (ZeRO-3 / FSDP, optim/sharded_weights.h): the training
// passes ask for each unit of weights (the embedding, one layer, the head) just before they use
// it and hand it back right after, so a rank that holds only a shard of every weight can gather a
// unit into one buffer, point the model's views (Transformer::params()) of that unit at it, and
// reuse the buffer for the next unit. A TrainState without WeightUnits reads the model's weights
// directly, as always.
//
// The passes' order of units, which every rank must follow with the same collectives:
//   forward:  Embed, Layer 0 .. Layer L-1, Head
//   backward: Head, Layer L-1 .. Layer 0 (the embedding's gradient needs no weights)
// A checkpointing backward recomputes layer l inside the same acquire of Layer l, so the order does
// not depend on checkpointing. TrainState::idle_pass runs the same order without computing, for a
// rank that has fewer micro-batches than another.
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/layer_plan.h"

namespace r1::model {

enum class UnitKind : uint8_t { Embed, Layer, Head };

struct WeightUnit {
  UnitKind kind = UnitKind::Embed;
  int layer = -1;  // UnitKind::Layer only
  bool operator==(const WeightUnit& o) const { return kind == o.kind && layer == o.layer; }
};

class WeightUnits {
 public:
  virtual ~WeightUnits() = default;
  // The model's views of u hold its weights from now until release(u).
  virtual void acquire(WeightUnit u) = 0;
  virtual void release(WeightUnit u) = 0;
  // Called right after acquire(current) with the unit the pass acquires next: an implementation
  // with a second buffer and asynchronous collectives may start gathering it while the current unit
  // computes (FSDP's forward/backward prefetch). The CPU implementation ignores it.
  virtual void prefetch(WeightUnit next) { (void)next; }
  // Gradients by unit (FSDP's per-layer reduce-scatter): a backward writes unit u's gradients
  // between begin_grads(u) and end_grads(u), which may bind the model's gradient views of u to a
  // zeroed buffer and hand the result on (reduce-scatter it into this rank's shard), so no rank
  // ever holds the whole gradients. Units in the backward's order: Head, Layer L-1 .. Layer 0,
  // Embed (the tied head's gradient goes to the embedding inside Head's). Default: the model's own
  // gradient buffer, nothing to do.
  virtual void begin_grads(WeightUnit u) { (void)u; }
  virtual void end_grads(WeightUnit u) { (void)u; }
};

// The units one pass acquires, in order (see above): a forward, and with `backward` its backward.
std::vector<WeightUnit> pass_units(int num_layers, bool backward);

// The flat ranges of a unit's weights: one, or for the head of a tied model (no score head) also
// the embedding, which is the lm_head's memory.
std::vector<FlatRange> unit_ranges(const ModelPlan& plan, const ModelConfig& c, WeightUnit u);
// Elements of the largest unit (what a gather buffer must hold): a layer, the embedding, or the
// head (with a tied embedding, both).
int64_t largest_unit(const ModelPlan& plan, const ModelConfig& c);

}  // namespace r1::model
