// The rollout engine's paged KV cache on the CPU: paged decoding equals decoding with one contiguous
// block per sequence (token for token, log-prob for log-prob); a prompt's blocks are stored once per
// group; a pool too small for the batch preempts sequences and recomputes them later without
// changing what they sample (single- and multi-turn); a pool that cannot hold one sequence fails
// before any compute, saying how many bytes were needed and available.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>

#include "base/error.h"
#include "base/rng.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "rollout/engine.h"
#include "rollout/kv_blocks.h"

using namespace r1;

namespace {

model::Transformer make_model(uint64_t seed = 11) {
  model::Transformer m(model::preset_config("tiny", "qwen2"));
  m.init_random(seed, 0.15f);
  return m;
}

// `count` prompts of `n` samples with lengths in [min_len, min_len + spread).
std::vector<rollout::Request> make_requests(int count, int n, uint64_t seed, int min_len = 1,
                                            int spread = 40) {
  Rng rng(seed);
  std::vector<rollout::Request> reqs;
  for (int i = 0; i < count; ++i) {
    rollout::Request r;
    r.n = n;
    r.id = 50 + i;
    const int len = min_len + int(rng.next_u32() % uint32_t(spread));
    for (int t = 0; t < len; ++t) r.prompt.push_back(int32_t(rng.next_u32() % 256));
    reqs.push_back(r);
  }
  return reqs;
}

rollout::GenerateParams sampling(int max_new, uint64_t seed = 5) {
  rollout::GenerateParams gp;
  gp.sampling.temperature = 1.0f;
  gp.sampling.top_p = 0.95f;
  gp.sampling.seed = seed;
  gp.max_new_tokens = max_new;
  return gp;
}

rollout::EngineConfig engine_config(int max_batch, int max_seq_len, int block_size, int64_t kv_tokens = 0) {
  rollout::EngineConfig c;
  c.max_batch = max_batch;
  c.max_seq_len = max_seq_len;
  c.prefill_tokens = 4096;
  c.kv_block_size = block_size;
  c.kv_cache_tokens = kv_tokens;
  return c;
}

void expect_same_tokens(const std::vector<rollout::Completion>& want,
                        const std::vector<rollout::Completion>& got, double logprob_tol) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(want[i].prompt_index, got[i].prompt_index);
    EXPECT_EQ(want[i].sample_index, got[i].sample_index);
    ASSERT_EQ(want[i].tokens, got[i].tokens) << "completion " << i;
    EXPECT_EQ(want[i].finish, got[i].finish) << "completion " << i;
    EXPECT_EQ(want[i].from_model, got[i].from_model) << "completion " << i;
    ASSERT_EQ(want[i].logprobs.size(), got[i].logprobs.size());
    for (size_t t = 0; t < want[i].logprobs.size(); ++t) {
      if (logprob_tol == 0)
        ASSERT_EQ(want[i].logprobs[t], got[i].logprobs[t]) << "completion " << i << " token " << t;
      else
        ASSERT_NEAR(want[i].logprobs[t], got[i].logprobs[t], logprob_tol)
            << "completion " << i << " token " << t;
    }
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Blocks of 4 rows (prompts shared by their samples, copy-on-write of the partial last block) give
// the same tokens and the same log-prob bits as one contiguous block per sequence (the unpaged
// layout: the prompt's rows copied to every sample).
TEST(RolloutPaged, PagedEqualsContiguous) {
  model::Transformer m = make_model();
  const auto reqs = make_requests(5, 4, 3);
  const rollout::GenerateParams gp = sampling(24);
  rollout::Engine paged(m, engine_config(8, 80, 4)), contiguous(m, engine_config(8, 80, 80));
  EXPECT_EQ(contiguous.stats().kv_block_size, 80);
  const auto a = paged.generate(reqs, gp);
  const auto b = contiguous.generate(reqs, gp);
  expect_same_tokens(b, a, 0.0);
  EXPECT_EQ(paged.stats().preemptions, 0);
  EXPECT_EQ(paged.stats().prefill_tokens, contiguous.stats().prefill_tokens);
}

// A group's prompt is prefilled once and its blocks are stored once: 3 groups of 8 samples decoding
// 3 tokens hold, at the peak, each prompt's blocks once and, per sample, one block of its own for
// the rows it writes (a copy of the prompt's partial last block, or a new one after a full one).
TEST(RolloutPaged, PromptBlocksAreSharedByTheGroup) {
  model::Transformer m = make_model();
  std::vector<rollout::Request> reqs = make_requests(3, 8, 9);
  for (size_t i = 0; i < reqs.size(); ++i) reqs[i].prompt.resize(size_t(37 - 5 * int(i)), 3);  // 37, 32, 27
  rollout::Engine e(m, engine_config(24, 64, 16));
  const auto outs = e.generate(reqs, sampling(3));
  ASSERT_EQ(outs.size(), 24u);
  for (const auto& o : outs) ASSERT_EQ(o.tokens.size(), 3u);  // no stop ids: every sample runs 3 tokens
  // Prompt blocks: 3, 2, 2. Each sample writes rows P, P + 1 (its first two tokens): one block of
  // its own; the prompt's partial block is copied for all but the last writer, which keeps it.
  //   37 rows: 2 full + the partial (kept by one sample) + 7 copies  = 10
  //   32 rows: 2 full + 8 new blocks                                  = 10
  //   27 rows: 1 full + the partial + 7 copies                        = 9
  EXPECT_EQ(e.stats().kv_blocks_peak, 29);
  EXPECT_EQ(e.stats().prefill_tokens, 37 + 32 + 27);  // each prompt prefilled once
  // Without sharing the prompts would take 8 * (3 + 2 + 2) blocks on their own.
  EXPECT_LT(e.stats().kv_blocks_peak, 8 * (3 + 2 + 2));
}

// The pool holds one sequence of max_seq_len tokens: 12 sequences in 6 slots keep preempting each
// other, and every one is resumed by recomputing its prompt and tokens. Their tokens are those of
// a pool that fits them all (their draws follow (prompt, sample, step)); log-probs agree to float
// rounding (a recomputed prefix is one prefill instead of many decode steps).
TEST(RolloutPaged, PreemptionRecomputesTheSameSequences) {
  model::Transformer m = make_model();
  const auto reqs = make_requests(4, 3, 21, 5, 20);
  const rollout::GenerateParams gp = sampling(40);
  rollout::Engine big(m, engine_config(6, 64, 4));
  rollout::Engine tiny(m, engine_config(6, 64, 4, /*kv_tokens=*/64));
  EXPECT_EQ(tiny.stats().kv_blocks, 16);
  const auto want = big.generate(reqs, gp);
  const auto got = tiny.generate(reqs, gp);
  EXPECT_EQ(big.stats().preemptions, 0);
  EXPECT_GT(tiny.stats().preemptions, 3);
  EXPECT_LE(tiny.stats().kv_blocks_peak, 16);
  EXPECT_GT(tiny.stats().prefill_tokens, big.stats().prefill_tokens);  // the recomputes
  expect_same_tokens(want, got, 1e-5);
}

// Multi-turn rollouts under the same pressure: a sequence preempted between turns (or resumed from
// its tool call into a full pool) is recomputed with its observations and goes on as it would have.
TEST(RolloutPaged, PreemptionKeepsMultiTurnSequences) {
  model::Transformer m = make_model();
  const auto reqs = make_requests(3, 2, 8, 3, 10);
  rollout::GenerateParams gp = sampling(48);
  gp.token_text = [](int32_t id) { return std::string(1, char('a' + id % 26)); };
  gp.turns.max_turns = 2;
  gp.turns.threads = 2;
  gp.turns.ends_turn = [](int64_t, int64_t, const std::string& text) { return text.size() >= 9; };
  gp.turns.respond = [](const rollout::Turn& t) {
    rollout::Observation o;
    o.tokens = {int32_t(200 + t.tokens.size() % 7), 201, 202};
    return o;
  };
  rollout::Engine big(m, engine_config(4, 64, 4));
  rollout::Engine tiny(m, engine_config(4, 64, 4, /*kv_tokens=*/64));
  const auto want = big.generate(reqs, gp);
  const auto got = tiny.generate(reqs, gp);
  EXPECT_GT(tiny.stats().preemptions, 0);
  EXPECT_GT(tiny.stats().turns, 0);
  expect_same_tokens(want, got, 1e-5);
}

// The engine lives on between calls: the same pool serves the next generate, the peak is per window.
TEST(RolloutPaged, PoolServesManyCallsAndEveryBlockComesBack) {
  model::Transformer m = make_model();
  rollout::Engine e(m, engine_config(4, 48, 8));
  const auto reqs = make_requests(3, 2, 4, 2, 10);
  const auto first = e.generate(reqs, sampling(12));
  e.reset_kv_peak();
  EXPECT_EQ(e.stats().kv_blocks_peak, 0);  // every block came back when the call ended
  const auto again = e.generate(reqs, sampling(12));
  expect_same_tokens(first, again, 0.0);
  EXPECT_GT(e.stats().kv_blocks_peak, 0);
}

// A pool that cannot hold one sequence of prompt + completion is an error before any compute,
// with the bytes needed and available.
TEST(RolloutPaged, PoolTooSmallForOneSequenceFails) {
  model::Transformer m = make_model();
  const int64_t per_token = model::kv_bytes_per_token(m.config(), DType::F32);
  rollout::EngineConfig c = engine_config(4, 100, 16);
  c.kv_memory_fraction = 1e-12;
  std::string err = error_of([&] { rollout::Engine e(m, c); });
  EXPECT_NE(err.find("kv_memory_fraction"), std::string::npos) << err;
  EXPECT_NE(err.find(std::to_string(7 * 16 * per_token) + " bytes"), std::string::npos) << err;  // needed
  EXPECT_NE(err.find("free on the host"), std::string::npos) << err;
  c = engine_config(4, 100, 16, /*kv_tokens=*/99);
  err = error_of([&] { rollout::Engine e(m, c); });
  EXPECT_NE(err.find("kv_cache_tokens = 99"), std::string::npos) << err;
  EXPECT_NE(err.find(std::to_string(7 * 16 * per_token) + " bytes needed"), std::string::npos) << err;
  EXPECT_NE(err.find(std::to_string(6 * 16 * per_token) + " bytes available"), std::string::npos) << err;
  c = engine_config(4, 100, 16);
  c.kv_memory_fraction = 1.5;
  EXPECT_NE(error_of([&] { rollout::Engine e(m, c); }).find("kv_memory_fraction must be in (0, 1]"),
            std::string::npos);
}

// The block pool: shared blocks count their holders, a write into a shared block copies it first
// (its contents in every layer), and released blocks are handed out again.
TEST(RolloutPaged, BlocksShareCopyOnWriteAndRelease) {
  model::ModelConfig cfg = model::preset_config("tiny", "qwen2");
  model::KVCache cache(cfg, model::KVLayout{6, 4, 3, 3});
  rollout::KvBlocks pool(cache);
  EXPECT_EQ(pool.capacity(), 5);
  ASSERT_TRUE(pool.reserve(0, 0, 10));  // rows [0, 10): 3 blocks
  const std::vector<int32_t> prompt = pool.blocks(0);
  ASSERT_EQ(prompt.size(), 3u);
  for (int32_t b : prompt) EXPECT_NE(b, 0);  // block 0 is never handed out
  const int64_t row = cfg.num_key_value_heads * cfg.head_dim;
  for (size_t l = 0; l < cache.k_t.size(); ++l)  // mark the partial block's rows in every layer
    for (int64_t i = 0; i < 4 * row; ++i) cache.k_t[l].f32()[prompt[2] * 4 * row + i] = float(l * 100 + i);
  pool.share(1, prompt, 10);
  EXPECT_EQ(pool.holders(prompt[0]), 2);
  EXPECT_EQ(pool.needed(1, 10, 11), 1);  // row 10 is in the shared partial block: a copy
  EXPECT_EQ(pool.needed(1, 12, 13), 1);  // row 12 needs a new block
  ASSERT_TRUE(pool.reserve(1, 10, 11));
  const int32_t own = pool.blocks(1)[2];
  EXPECT_NE(own, prompt[2]);
  EXPECT_EQ(pool.blocks(1)[0], prompt[0]);  // full blocks stay shared
  EXPECT_EQ(pool.holders(prompt[2]), 1);
  for (size_t l = 0; l < cache.k_t.size(); ++l)
    for (int64_t i = 0; i < 4 * row; ++i)
      ASSERT_EQ(cache.k_t[l].f32()[own * 4 * row + i], float(l * 100 + i));
  EXPECT_EQ(pool.used(), 4);
  EXPECT_EQ(pool.free_blocks(), 1);
  EXPECT_FALSE(pool.reserve(2, 0, 12));  // 3 blocks wanted, 1 free: nothing taken
  EXPECT_TRUE(pool.blocks(2).empty());
  pool.release(0);
  EXPECT_EQ(pool.holders(prompt[0]), 1);  // still sequence 1's
  EXPECT_EQ(pool.used(), 3);
  pool.release(1);
  EXPECT_EQ(pool.used(), 0);
  EXPECT_EQ(pool.peak(), 4);
  pool.sync();
  EXPECT_EQ(cache.table.i32()[3], 0);  // released rows of the table name block 0 again
}
