#include "rollout/requests.h"

#include "base/error.h"

namespace r1::rollout {

std::vector<int64_t> check_requests(const std::vector<Request>& requests, const GenerateParams& params,
                                    int64_t vocab_size, int64_t max_seq_len) {
  R1_CHECK(params.max_new_tokens > 0, "rollout: max_new_tokens must be positive");
  R1_CHECK(params.stop_strings.empty() || params.token_text, "rollout: stop strings need a token_text decoder");
  R1_CHECK(!params.turns.enabled() || params.token_text, "rollout: multi-turn rollouts need a token_text decoder");
  R1_CHECK(!params.turns.enabled() || (params.turns.max_turns >= 0 && params.turns.max_turns < 256 && params.turns.threads >= 1),
           "rollout: turns.max_turns must be in [0, 256) and turns.threads >= 1 (got {} and {})", params.turns.max_turns,
           params.turns.threads);
  std::vector<int64_t> first(requests.size() + 1, 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    const Request& r = requests[i];
    R1_CHECK(!r.prompt.empty(), "request {}: empty prompt", i);
    R1_CHECK(int64_t(r.prompt.size()) < max_seq_len,
             "request {}: prompt of {} tokens does not fit the context of {} tokens (max_seq_len)", i,
             r.prompt.size(), max_seq_len);
    R1_CHECK(r.n >= 1, "request {}: n must be at least 1 (got {})", i, r.n);
    R1_CHECK(r.max_new_tokens >= 0, "request {}: max_new_tokens must be >= 0 (0: the call's), got {}", i,
             r.max_new_tokens);
    R1_CHECK(!params.turns.enabled() || r.n < (1 << 24), "request {}: multi-turn rollouts take n < 2^24 (got {})", i, r.n);
    for (size_t t = 0; t < r.prompt.size(); ++t)
      R1_CHECK(r.prompt[t] >= 0 && r.prompt[t] < vocab_size,
               "request {}: token {} = {} is outside the vocabulary [0, {})", i, t, r.prompt[t], vocab_size);
    first[i + 1] = first[i] + r.n;
  }
  return first;
}

FeedBatch feed_batch(const std::vector<Feed>& feeds, size_t begin, int64_t budget,
                     const std::function<int32_t(const Feed&, int32_t)>& token) {
  FeedBatch b;
  b.end = begin;
  while (b.end < feeds.size()) {
    const Feed& f = feeds[b.end];
    if (b.end > begin && int64_t(b.ids.size()) + (f.to - f.from) > budget) break;
    for (int32_t i = f.from; i < f.to; ++i) {
      b.ids.push_back(token(f, i));
      b.slots.push_back(int32_t(f.slot));
      b.pos.push_back(i);
    }
    b.rows.push_back(int32_t(b.ids.size()) - 1);
    ++b.end;
  }
  return b;
}

bool hits_stop_string(const std::string& text, size_t before, const std::vector<std::string>& stop_strings) {
  for (const std::string& s : stop_strings)
    if (!s.empty() && text.find(s, before >= s.size() ? before - s.size() + 1 : 0) != std::string::npos) return true;
  return false;
}

}  // namespace r1::rollout
