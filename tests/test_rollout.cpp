// The rollout engine on CPU: cached greedy decoding equals recomputation, sampled log-probs equal
// the trainer's, results do not depend on batching, and the sampler draws from the right law.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "base/error.h"
#include "base/rng.h"
#include "base/sampling_math.h"
#include "model/transformer.h"
#include "model/kv_cache.h"
#include "model/train_state.h"
#include "rollout/engine.h"

using namespace r1;

namespace {

model::Transformer make_model(uint64_t seed = 11) {
  model::Transformer m(model::preset_config("tiny", "qwen2"));
  m.init_random(seed, 0.15f);
  return m;
}

std::vector<rollout::Request> make_requests(int count, int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<rollout::Request> reqs;
  for (int i = 0; i < count; ++i) {
    rollout::Request r;
    r.n = n;
    int len = 1 + int(rng.next_u32() % 12);
    for (int t = 0; t < len; ++t) r.prompt.push_back(int32_t(rng.next_u32() % 256));
    reqs.push_back(r);
  }
  return reqs;
}

// Greedy argmax of the next token after `seq`, recomputing the whole sequence from scratch.
int32_t greedy_recompute(const model::Transformer& m, const std::vector<int32_t>& seq) {
  model::KVCache cache(m, 1, int64_t(seq.size()));
  Arena arena;
  std::vector<int32_t> slots(seq.size(), 0), pos(seq.size());
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  Tensor z = model::forward_cached(m, cache, seq, slots, pos, {int32_t(seq.size()) - 1}, arena);
  return int32_t(std::max_element(z.f32(), z.f32() + z.size(1)) - z.f32());
}

TEST(Rollout, GreedyWithCacheEqualsRecompute) {
  model::Transformer m = make_model();
  auto reqs = make_requests(3, 1, 5);
  rollout::GenerateParams gp;
  gp.sampling.temperature = 0;
  gp.max_new_tokens = 40;
  rollout::Engine engine(m, {4, 128, 4096});
  auto outs = engine.generate(reqs, gp);
  ASSERT_EQ(outs.size(), 3u);
  for (const auto& c : outs) {
    std::vector<int32_t> seq = reqs[size_t(c.prompt_index)].prompt;
    ASSERT_EQ(c.tokens.size(), 40u);
    for (int32_t tok : c.tokens) {
      EXPECT_EQ(tok, greedy_recompute(m, seq));
      seq.push_back(tok);
    }
  }
}

TEST(Rollout, SampledLogprobsEqualTrainingLogprobs) {
  model::Transformer m = make_model();
  for (float temp : {1.0f, 0.7f}) {
    auto reqs = make_requests(4, 3, 6);
    rollout::GenerateParams gp;
    gp.sampling.temperature = temp;
    gp.sampling.seed = 42;
    gp.max_new_tokens = 24;
    rollout::Engine engine(m, {5, 64, 4096});
    auto outs = engine.generate(reqs, gp);
    std::vector<std::vector<int32_t>> seqs;
    for (const auto& c : outs) {
      seqs.push_back(reqs[size_t(c.prompt_index)].prompt);
      seqs.back().insert(seqs.back().end(), c.tokens.begin(), c.tokens.end());
    }
    model::Batch batch = model::pack_sequences(seqs);
    model::TrainState state;
    Tensor logp = state.forward(m, batch, temp);
    double max_err = 0;
    for (size_t b = 0; b < outs.size(); ++b) {
      const int32_t start = batch.cu_seqlens[b] + int32_t(reqs[size_t(outs[b].prompt_index)].prompt.size()) - 1;
      for (size_t i = 0; i < outs[b].logprobs.size(); ++i)
        max_err = std::max(max_err, double(std::abs(outs[b].logprobs[i] - logp.f32()[start + int32_t(i)])));
    }
    EXPECT_LT(max_err, 1e-5) << "temperature " << temp;
  }
}

// The same seed gives the same completions whether prompts are generated one by one or 64
// sequences at a time: the random numbers follow (seed, prompt id, sample, step) only.
TEST(Rollout, BatchInvariance) {
  model::Transformer m = make_model();
  auto reqs = make_requests(16, 4, 7);  // 64 sequences
  for (size_t i = 0; i < reqs.size(); ++i) reqs[i].id = int64_t(i);
  rollout::GenerateParams gp;
  gp.sampling.temperature = 1.0f;
  gp.sampling.top_p = 0.9f;
  gp.sampling.seed = 3;
  gp.max_new_tokens = 16;
  rollout::Engine wide(m, {64, 64, 4096});
  auto all = wide.generate(reqs, gp);
  rollout::Engine narrow(m, {1, 64, 4096});
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto one = narrow.generate({reqs[i]}, gp);
    for (int s = 0; s < reqs[i].n; ++s) {
      const auto& a = one[size_t(s)];
      const auto& b = all[i * 4 + size_t(s)];
      EXPECT_EQ(a.tokens, b.tokens) << "prompt " << i << " sample " << s;
      ASSERT_EQ(a.logprobs.size(), b.logprobs.size());
      for (size_t t = 0; t < a.logprobs.size(); ++t) EXPECT_NEAR(a.logprobs[t], b.logprobs[t], 1e-5);
    }
  }
}

// A prompt requested n times is prefilled once; the samples differ.
TEST(Rollout, GroupSharesOnePrefill) {
  model::Transformer m = make_model();
  auto reqs = make_requests(3, 8, 9);
  int64_t prompt_tokens = 0;
  for (const auto& r : reqs) prompt_tokens += int64_t(r.prompt.size());
  rollout::GenerateParams gp;
  gp.sampling.seed = 1;
  gp.max_new_tokens = 12;
  rollout::Engine engine(m, {6, 64, 4096});  // fewer slots than sequences: slots are refilled
  auto outs = engine.generate(reqs, gp);
  ASSERT_EQ(outs.size(), 24u);
  EXPECT_EQ(engine.stats().prefill_tokens, prompt_tokens);
  std::set<std::vector<int32_t>> distinct;
  for (size_t s = 0; s < 8; ++s) distinct.insert(outs[s].tokens);
  EXPECT_GT(distinct.size(), 4u);
  for (size_t k = 0; k < outs.size(); ++k) {
    EXPECT_EQ(outs[k].prompt_index, int64_t(k / 8));
    EXPECT_EQ(outs[k].sample_index, int64_t(k % 8));
  }
}

// The progress of a long generation: on_decoded reports each decode step's tokens, one per
// sequence in flight, so it sums to every generated token but each sequence's first (drawn from
// its prefill).
TEST(Rollout, DecodeProgressCountsTheDecodedTokens) {
  model::Transformer m = make_model();
  auto reqs = make_requests(3, 4, 9);
  rollout::GenerateParams gp;
  gp.sampling.seed = 2;
  gp.max_new_tokens = 12;
  int64_t reported = 0, calls = 0;
  gp.on_decoded = [&](int64_t n) {
    reported += n;
    ++calls;
  };
  rollout::Engine engine(m, {5, 64, 4096});  // fewer slots than sequences
  const auto outs = engine.generate(reqs, gp);
  int64_t tokens = 0;
  for (const auto& o : outs) tokens += int64_t(o.tokens.size());
  EXPECT_GE(calls, 11);
  EXPECT_EQ(reported, tokens - int64_t(outs.size()));
  EXPECT_EQ(reported, engine.stats().decode_seqs);
}

TEST(Rollout, StopTokensStringsAndLength) {
  model::Transformer m = make_model();
  auto reqs = make_requests(6, 2, 10);
  rollout::GenerateParams gp;
  gp.sampling.seed = 5;
  gp.max_new_tokens = 30;
  rollout::Engine engine(m, {4, 64, 4096});
  auto free_run = engine.generate(reqs, gp);
  // Use a token that the free run produced mid-way as the stop id: those sequences end there.
  const int32_t stop_tok = free_run[0].tokens[3];
  gp.stop_ids = {stop_tok};
  auto stopped = engine.generate(reqs, gp);
  for (size_t k = 0; k < free_run.size(); ++k) {
    auto it = std::find(free_run[k].tokens.begin(), free_run[k].tokens.end(), stop_tok);
    if (it == free_run[k].tokens.end()) {
      EXPECT_EQ(stopped[k].finish, rollout::FinishReason::Length);
      EXPECT_EQ(stopped[k].tokens.size(), 30u);
    } else {
      EXPECT_EQ(stopped[k].finish, rollout::FinishReason::Stop);
      EXPECT_EQ(stopped[k].tokens, std::vector<int32_t>(free_run[k].tokens.begin(), it + 1));
    }
  }
  // Stop strings over decoded text: each token decodes to two characters here, so a string that
  // spans a token boundary must still stop the sequence.
  gp.stop_ids.clear();
  gp.token_text = [](int32_t t) { return std::string(1, char('a' + t % 26)) + char('A' + t / 26 % 26); };
  const auto& toks = free_run[1].tokens;
  std::string spanning = gp.token_text(toks[5]).substr(1) + gp.token_text(toks[6]);
  gp.stop_strings = {spanning};
  auto by_string = engine.generate(reqs, gp);
  EXPECT_EQ(by_string[1].finish, rollout::FinishReason::Stop);
  EXPECT_LE(by_string[1].tokens.size(), 7u);
}

// A sequence ends at the model's last position: the tiny model has 512, so a 10-token prompt asked
// for 1,000 new tokens gets 502 and finishes on length (the trainer's forward would refuse more).
TEST(Rollout, SequencesEndAtTheModelsLastPosition) {
  model::Transformer m = make_model();
  ASSERT_EQ(m.config().max_position_embeddings, 512);
  std::vector<rollout::Request> reqs(1);
  for (int t = 0; t < 10; ++t) reqs[0].prompt.push_back(int32_t(t + 3));
  rollout::GenerateParams gp;
  gp.sampling.seed = 4;
  gp.max_new_tokens = 1000;
  rollout::Engine engine(m, {1, 2000, 4096});
  const auto outs = engine.generate(reqs, gp);
  ASSERT_EQ(outs.size(), 1u);
  EXPECT_EQ(outs[0].tokens.size(), 502u);
  EXPECT_EQ(outs[0].finish, rollout::FinishReason::Length);
  // A prompt that fills the context has no room: a clear error, as for any prompt past max_seq_len.
  reqs[0].prompt.assign(512, 7);
  EXPECT_THROW(engine.generate(reqs, gp), Error);
}

TEST(Rollout, BadRequestsAreClearErrors) {
  model::Transformer m = make_model();
  rollout::Engine engine(m, {2, 16, 4096});
  rollout::GenerateParams gp;
  auto msg = [&](std::vector<rollout::Request> r) {
    try {
      engine.generate(r, gp);
    } catch (const r1::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg({{{}, 1}}).find("request 0: empty prompt"), std::string::npos);
  EXPECT_NE(msg({{{1, 2}, 1}, {std::vector<int32_t>(16, 1), 1}}).find("request 1: prompt of 16 tokens"),
            std::string::npos);
  EXPECT_NE(msg({{{1, 999}, 1}}).find("outside the vocabulary"), std::string::npos);
}

// Empirical frequencies of many draws match the tempered, truncated softmax.
TEST(Sampler, FrequenciesMatchTheDistribution) {
  const std::vector<float> logits = {2.0f, 1.5f, 1.0f, 0.5f, 0.0f, -0.5f, -1.0f, -3.0f};
  const int64_t V = int64_t(logits.size());
  struct Case {
    float temperature, top_p;
    int top_k;
  };
  for (Case cs : {Case{1.0f, 1.0f, 0}, Case{0.5f, 1.0f, 0}, Case{1.7f, 1.0f, 3}, Case{1.0f, 0.8f, 0},
                  Case{1.3f, 0.6f, 5}}) {
    // Expected law: softmax(z / T), keep top-k, then the smallest prefix reaching top_p, renormalise.
    std::vector<double> p(static_cast<size_t>(V));
    double z = 0;
    for (int64_t i = 0; i < V; ++i) z += p[size_t(i)] = std::exp(logits[size_t(i)] / cs.temperature);
    for (auto& x : p) x /= z;
    int64_t keep = cs.top_k ? cs.top_k : V;
    double acc = 0, kept = 0;
    for (int64_t i = 0; i < keep; ++i) kept += p[size_t(i)];
    for (int64_t i = 0; i < keep; ++i) {
      acc += p[size_t(i)];
      if (acc >= cs.top_p * kept) {
        keep = i + 1;
        break;
      }
    }
    double mass = 0;
    for (int64_t i = 0; i < keep; ++i) mass += p[size_t(i)];
    rollout::SamplingParams sp{cs.temperature, cs.top_p, cs.top_k, 9};
    std::vector<float> scratch;
    std::vector<double> freq(static_cast<size_t>(V), 0.0);
    const int draws = 200000;
    for (int d = 0; d < draws; ++d) {
      auto dr = rollout::sample_token(logits.data(), V, sp, rollout::sample_uniform(9, 0, d, 0), scratch);
      freq[size_t(dr.token)] += 1.0 / draws;
      ASSERT_NEAR(dr.logprob, std::log(p[size_t(dr.token)]), 1e-5);
    }
    for (int64_t i = 0; i < V; ++i) {
      const double want = i < keep ? p[size_t(i)] / mass : 0.0;
      EXPECT_NEAR(freq[size_t(i)], want, 4.5 * std::sqrt(want * (1 - want) / draws) + 1e-9)
          << "T " << cs.temperature << " top_p " << cs.top_p << " top_k " << cs.top_k << " token " << i;
    }
  }
}

// Within the kept set the draw is an inverse CDF in token-id order (what the GPU sampler's prefix
// sum over ids reproduces), not in probability order: kept {1, 2, 4} weigh 1, e^-1, e^-0.5, so u
// splits at 0.506 and 0.693 (in probability order, 1, 4, 2, token 4 would come before token 2).
TEST(Sampler, TruncatedDrawIsInverseCdfInIdOrder) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, -5.0f, 2.5f};
  std::vector<float> scratch;
  using SP = rollout::SamplingParams;
  for (SP sp : {SP{1.0f, 1.0f, 3, 0}, SP{1.0f, 0.9f, 0, 0}})
    for (auto [u, want] : {std::pair{0.0, 1}, {0.5, 1}, {0.6, 2}, {0.9, 4}, {0.999999, 4}})
      EXPECT_EQ(rollout::sample_token(logits.data(), 5, sp, u, scratch).token, want)
          << "u " << u << " top_k " << sp.top_k << " top_p " << sp.top_p;
}

// grpo.sampler_logprobs: sampled reports the log-prob of the distribution the token was drawn from:
// softmax(logits / T) renormalised over the kept tokens, so the kept tokens' probabilities sum to 1;
// tempered (the default) reports softmax(logits / T) over the whole vocabulary.
TEST(Sampler, SampledLogprobsAreOfTheRenormalisedKeptSet) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, -5.0f, 2.5f};
  std::vector<float> scratch;
  const double T = 0.7;
  auto w = [&](int i) { return std::exp(double(logits[size_t(i)]) / T); };
  double all = 0;
  for (int i = 0; i < 5; ++i) all += w(i);
  const double kept = w(1) + w(2) + w(4);  // top_k 3 keeps {1, 2, 4}
  for (const bool sampled : {false, true}) {
    const rollout::SamplingParams sp{float(T), 1.0f, 3, 0, sampled};
    double total = 0;
    for (auto [u, want] : {std::pair{0.1, 1}, {0.65, 2}, {0.95, 4}}) {  // cdf in id order: 0.58, 0.72, 1
      const rollout::Draw d = rollout::sample_token(logits.data(), 5, sp, u, scratch);
      ASSERT_EQ(d.token, want) << "u " << u;
      EXPECT_NEAR(d.logprob, std::log(w(want) / (sampled ? kept : all)), 1e-6) << "token " << want;
      total += std::exp(double(d.logprob));
    }
    if (sampled) {
      EXPECT_NEAR(total, 1.0, 1e-6);  // the kept set is the whole support
    } else {
      EXPECT_LT(total, 0.99);
    }
  }
  // Without truncation the two are the same numbers.
  const rollout::Draw a = rollout::sample_token(logits.data(), 5, {float(T), 1.0f, 0, 0, false}, 0.5, scratch);
  const rollout::Draw b = rollout::sample_token(logits.data(), 5, {float(T), 1.0f, 0, 0, true}, 0.5, scratch);
  EXPECT_EQ(a.token, b.token);
  EXPECT_EQ(a.logprob, b.logprob);
}

// base/sampling_math.h's float exp, which both samplers weigh tokens with: within 2 ulp of the true
// value over the range that weighs anything, exact at 0, and 0 / NaN where stated.
TEST(Sampler, FloatExpIsWithinTwoUlp) {
  Rng rng(5);
  int64_t worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = -87.0f * rng.uniform();
    const float got = sampling::exp_f(x);
    const double want = std::exp(double(x));
    const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
    worst = std::max<int64_t>(worst, int64_t(std::ceil(std::abs(double(got) - want) / ulp)));
  }
  EXPECT_LE(worst, 2);
  EXPECT_EQ(sampling::exp_f(0.0f), 1.0f);
  EXPECT_EQ(sampling::exp_f(-0.0f), 1.0f);
  EXPECT_EQ(sampling::exp_f(-87.0f), 0.0f);
  EXPECT_EQ(sampling::exp_f(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_TRUE(std::isnan(sampling::exp_f(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_GT(sampling::exp_f(-86.9f), 0.0f);
  EXPECT_TRUE(std::isfinite(sampling::exp_f(1000.0f)));
}

// The untruncated draw over chunks and row lanes (V past 32 chunks, so a row lane holds several;
// not a multiple of the chunk) is an inverse CDF in id order: token t's interval of the cumulative
// mass, summed exactly here, holds u to within the weights' float rounding (2e-7), for uniforms
// across [0, 1) and at its ends. Also: greedy is the lowest id of the largest logit.
TEST(Sampler, UntruncatedDrawIsInverseCdfAcrossChunks) {
  for (const int64_t V : {int64_t(37), int64_t(512), int64_t(5000), int64_t(40000)}) {
    Rng rng(static_cast<uint64_t>(V));
    std::vector<float> z(static_cast<size_t>(V));
    for (auto& x : z) x = 4.0f * rng.normal();
    z[size_t(V / 3)] = 20.0f;  // two equal maxima: greedy takes the lower id
    z[size_t(V / 2)] = 20.0f;
    for (const float T : {1.0f, 0.6f}) {
      std::vector<long double> cum(static_cast<size_t>(V) + 1, 0.0L);
      for (int64_t i = 0; i < V; ++i)
        cum[size_t(i) + 1] = cum[size_t(i)] + std::exp((long double)(z[size_t(i)] - 20.0f) / T);
      const long double total = cum[size_t(V)];
      std::vector<float> scratch;
      for (int k = 0; k <= 2000; ++k) {
        const double u = k == 2000 ? 1.0 - 0x1p-53 : k / 2000.0 + (k % 3) * 1e-5;
        const auto d = rollout::sample_token(z.data(), V, {T, 1.0f, 0, 0}, u, scratch);
        ASSERT_GE(d.token, 0);
        ASSERT_LT(d.token, V);
        const long double lo = cum[size_t(d.token)] / total, hi = cum[size_t(d.token) + 1] / total;
        EXPECT_LE(lo, (long double)u + 2e-7L) << "V " << V << " T " << T << " u " << u;
        EXPECT_GE(hi, (long double)u - 2e-7L) << "V " << V << " T " << T << " u " << u;
        const double want = double((z[size_t(d.token)] - 20.0L) / T - std::log(total));
        EXPECT_NEAR(d.logprob, want, 1e-5) << "V " << V << " T " << T << " token " << d.token;
      }
      EXPECT_EQ(rollout::sample_token(z.data(), V, {0.0f, 1.0f, 0, 0}, 0.5, scratch).token, V / 3);
    }
  }
}

// Rows no weight can be drawn from still give an id in range: all -inf (the first id), all NaN
// (id 0), one +inf among finite logits (the +inf).
TEST(Sampler, DegenerateRowsGiveAnIdInRange) {
  std::vector<float> scratch;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const int64_t V : {int64_t(7), int64_t(3000)}) {
    std::vector<float> all_neg(size_t(V), -inf), all_nan(size_t(V), nan), one_inf(size_t(V), 1.0f);
    one_inf[size_t(V - 2)] = inf;
    for (const double u : {0.0, 0.5, 0.999}) {
      EXPECT_EQ(rollout::sample_token(all_neg.data(), V, {1.0f, 1.0f, 0, 0}, u, scratch).token, 0);
      EXPECT_EQ(rollout::sample_token(all_nan.data(), V, {1.0f, 1.0f, 0, 0}, u, scratch).token, 0);
      EXPECT_EQ(rollout::sample_token(one_inf.data(), V, {1.0f, 1.0f, 0, 0}, u, scratch).token, V - 2);
    }
  }
}

TEST(Sampler, GreedyTakesTheArgmax) {
  const std::vector<float> logits = {0.1f, 3.0f, 2.9f};
  std::vector<float> scratch;
  auto d = rollout::sample_token(logits.data(), 3, {0.0f, 1.0f, 0, 0}, 0.99, scratch);
  EXPECT_EQ(d.token, 1);
}

}  // namespace
