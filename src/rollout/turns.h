#pragma once
// Multi-turn rollouts (tool-integrated reasoning): a sequence's model turn ends where its text
// completes a tool call; the call runs on a worker thread while the engine keeps decoding the other
// sequences; its observation tokens are appended to the trajectory and the sequence resumes on the
// same KV cache, only the new tokens prefilled. The trajectory stays token ids throughout: the
// observation is tokenized once by whoever answers the call and never re-tokenized from text.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace r1::rollout {

// What comes back from a finished model turn.
struct Observation {
  std::vector<int32_t> tokens;  // appended to the trajectory as observation tokens (masked out of the loss)
  bool end = false;             // the episode is over: the sequence finishes (FinishReason::Stop) after them
};

// A model turn: its tokens and their text since the last observation (or the prompt).
struct Turn {
  int64_t prompt = 0, sample = 0;
  std::vector<int32_t> tokens;
  std::string text;
};

struct TurnHooks {
  // Called on the decoding thread after each model token: whether `turn_text` ends a turn (a tool
  // call is complete). Should look only at the end of the text: it runs once per token.
  std::function<bool(int64_t prompt, int64_t sample, const std::string& turn_text)> ends_turn;
  // Called on a worker thread for a finished turn; must be safe to run for different sequences at
  // once. An exception fails the generate call.
  std::function<Observation(const Turn& turn)> respond;
  int max_turns = 4;  // observations per sequence; after that the model's text no longer ends turns
  int threads = 4;    // workers running respond() while the engine decodes the other sequences
  bool enabled() const { return bool(ends_turn) && bool(respond); }
};

}  // namespace r1::rollout
