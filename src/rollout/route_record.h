#pragma once
// Routing replay's record during generation (GenerateParams::record_routes): the experts each token
// fed to the model was sent to, kept per prompt (its prefill, which its samples share) and per
// completion (decode steps and multi-turn prefills), and joined into Completion::routes at the end.
#include <cstdint>
#include <map>
#include <vector>

#include "model/expert_routes.h"

namespace r1::rollout {

struct Completion;

class RouteRecord {
 public:
  explicit RouteRecord(bool on) : on_(on) {}
  // Where forward_cached writes the routes of the forward about to run; null when not recording.
  model::ExpertRoutes* forward() { return on_ ? &fwd_ : nullptr; }
  // Token t of the last forward was row `row` of prompt `prompt`, or of completion `flat` (rows
  // count from the prompt's first token). A row already recorded keeps its experts: a preempted
  // sequence's recomputed prefix, or a prompt prefilled again after its blocks were let go, feeds
  // rows whose next tokens were drawn with the first forward's experts (the recomputation rounds
  // differently and could, at a near tie, choose others).
  void prompt_token(int64_t prompt, int64_t row, int64_t t);
  void completion_token(int64_t flat, int64_t row, int64_t t);
  // Sets each completion's routes: its prompt's rows, then its own, one row per token of prompt +
  // completion (rows never fed are unrecorded). Nothing when not recording.
  void finish(std::vector<Completion>& out, const std::vector<int64_t>& prompt_lens);

 private:
  bool on_;
  model::ExpertRoutes fwd_;
  std::map<int64_t, model::ExpertRoutes> prompts_, completions_;
};

}  // namespace r1::rollout
