#pragma once
// What the CPU and GPU engines share about requests: their checks, the stop-string test, and the
// feeds of prompt and recompute forwards.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rollout/engine.h"

namespace r1::rollout {

// Checks the requests and parameters (vocabulary, context, sample counts) with messages naming the
// request; returns first[i], the flat index of request i's first sample (size + 1; first.back() is
// the number of samples).
std::vector<int64_t> check_requests(const std::vector<Request>& requests, const GenerateParams& params,
                                    int64_t vocab_size, int64_t max_seq_len);

// The Philox stream of a request's samples: its id, or its position in the call when it has none.
inline int64_t stream_id(const std::vector<Request>& requests, int64_t p) {
  return requests[size_t(p)].id >= 0 ? requests[size_t(p)].id : p;
}

// The sample field of the random stream of a sequence's segment after `turn` observations: each
// segment draws steps 0, 1, ... of its own stream (the GPU restarts a resumed slot's count), so no
// two draws of a sequence share a number. Multi-turn rollouts need n < 2^24 and turns < 256.
inline int64_t turn_stream_sample(int64_t sample, int turn) { return sample | (int64_t(turn) << 24); }

// Positions [from, to) of the sequence in `slot` (its prompt, then its completion) fed into its
// cache rows: a fresh prompt (from 0), a preempted sequence's recompute (from 0), or what follows a
// tool call (the call's last token and the observation). The last row's logits draw what comes next.
struct Feed {
  int64_t slot;
  int32_t from, to;
};
// The tokens of one forward over feeds [begin, end): as many as fit `budget` tokens (at least one).
// rows: each feed's last token (its logits row). token(feed, i): position i of the feed's sequence.
struct FeedBatch {
  std::vector<int32_t> ids, slots, pos, rows;
  size_t end = 0;
};
FeedBatch feed_batch(const std::vector<Feed>& feeds, size_t begin, int64_t budget,
                     const std::function<int32_t(const Feed&, int32_t)>& token);

// Whether `text`, whose first `before` bytes were already checked, now contains a stop string.
bool hits_stop_string(const std::string& text, size_t before, const std::vector<std::string>& stop_strings);

}  // namespace r1::rollout
