// rollout.exact_logprobs on the CPU (kernels/invariance.h): with the batch-invariant forward, a
// token's logits and log-probs are the same bits whether the sampler decoded it alone, among 63
// other sequences, or the trainer scored it, packed with others or alone; a GRPO step's first ratios
// are then exactly 1 (sampler/trainer gap 0.0, no token clipped). Without the mode the same
// comparisons differ (OpenBLAS picks its code path from the product's shape), which is what shows
// these tests see the mode.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "exact_util.h"
#include "grpo_test_util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/invariance.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "model/train_state.h"
#include "moe_util.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "test_util.h"

using namespace r1;

namespace {

std::vector<float> randn(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.normal();
  return v;
}

bool same_bits(const float* a, const float* b, int64_t n) { return std::memcmp(a, b, size_t(n) * sizeof(float)) == 0; }

// Elements of row r of a (M, N) product that differ from the same row computed alone (M = 1).
template <class Gemm>
int64_t row_differences(Gemm gemm, const std::vector<float>& A, const std::vector<float>& W, int64_t M, int64_t N,
                        int64_t K, int64_t r) {
  std::vector<float> all(static_cast<size_t>(M * N)), alone(static_cast<size_t>(N));
  gemm(false, true, M, N, K, 1.0f, A.data(), K, W.data(), K, 0.0f, all.data(), N);
  gemm(false, true, 1, N, K, 1.0f, A.data() + r * K, K, W.data(), K, 0.0f, alone.data(), N);
  int64_t d = 0;
  for (int64_t j = 0; j < N; ++j) d += std::memcmp(&all[size_t(r * N + j)], &alone[size_t(j)], sizeof(float)) != 0;
  return d;
}

}  // namespace

// sgemm_rows: every element of a row is the same bits for any number of rows (1 to 300), wherever
// the row sits, and for the columns computed in chunks (the vocabulary chunks of the lm head) or
// at once. The shapes are ones where plain sgemm's rows change with M (measured below).
TEST(ExactLogprobs, SgemmRowsGivesARowTheSameBitsInAnyProduct) {
  struct Shape {
    int64_t N, K;
  };
  int64_t plain_differs = 0;
  for (const Shape s : {Shape{896, 896}, Shape{128, 896}, Shape{1000, 902}, Shape{300, 64}}) {
    const std::vector<float> A = randn(300 * s.K, 1), W = randn(s.N * s.K, 2);
    for (int64_t M : {2, 3, 17, 33, 64, 100, 257, 300}) {
      for (int64_t r : {int64_t(0), M / 2, M - 1}) {
        EXPECT_EQ(row_differences(cpu::sgemm_rows, A, W, M, s.N, s.K, r), 0)
            << "N " << s.N << " K " << s.K << " M " << M << " row " << r;
        plain_differs += row_differences(cpu::sgemm, A, W, M, s.N, s.K, r);
      }
    }
    // Columns in chunks of 100 (a partial last chunk) against all at once, 5 rows.
    std::vector<float> whole(static_cast<size_t>(5 * s.N)), chunked(static_cast<size_t>(5 * s.N));
    cpu::sgemm_rows(false, true, 5, s.N, s.K, 0.7f, A.data(), s.K, W.data(), s.K, 0.0f, whole.data(), s.N);
    for (int64_t j0 = 0; j0 < s.N; j0 += 100)
      cpu::sgemm_rows(false, true, 5, std::min<int64_t>(100, s.N - j0), s.K, 0.7f, A.data(), s.K, W.data() + j0 * s.K,
                      s.K, 0.0f, chunked.data() + j0, s.N);
    EXPECT_TRUE(same_bits(whole.data(), chunked.data(), 5 * s.N)) << "N " << s.N << " K " << s.K;
  }
  // beta = 1 accumulates into C as sgemm does.
  const std::vector<float> A = randn(7 * 33, 3), W = randn(19 * 33, 4), C0 = randn(7 * 19, 5);
  std::vector<float> a = C0, b = C0;
  cpu::sgemm_rows(false, true, 7, 19, 33, 1.0f, A.data(), 33, W.data(), 33, 1.0f, a.data(), 19);
  cpu::sgemm(false, true, 7, 19, 33, 1.0f, A.data(), 33, W.data(), 33, 1.0f, b.data(), 19);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4f * (1.0f + std::abs(b[i])));
  std::printf("[ EXACT ] plain sgemm: %lld elements of the tested rows differ from the row alone\n",
              static_cast<long long>(plain_differs));
}

// The sampler's side of the head: lm_head_logits then logprobs_of_logits give each token exactly
// token_logprobs_forward's log-prob, at any temperature, for a row alone or among 64.
TEST(ExactLogprobs, SamplerHeadIsTheTrainersHeadBitForBit) {
  ops::BatchInvariantScope on(true);
  const int64_t R = 64, C = 96, V = 9001;  // V: two full 4096-row chunks and a partial one
  std::vector<float> h = randn(R * C, 7), w = randn(V * C, 8);
  for (float& x : w) x *= 0.1f;
  std::vector<int32_t> tg(static_cast<size_t>(R));
  Rng rng(9);
  for (int32_t& t : tg) t = int32_t(rng.next_u32() % uint32_t(V));
  for (float tau : {1.0f, 0.7f}) {
    std::vector<float> want(static_cast<size_t>(R)), lse(static_cast<size_t>(R)), ent(static_cast<size_t>(R));
    ops::token_logprobs_forward(Tensor::f32(want.data(), {R}), Tensor::f32(lse.data(), {R}),
                                Tensor::f32(ent.data(), {R}), Tensor::f32(h.data(), {R, C}),
                                Tensor::f32(w.data(), {V, C}), Tensor::i32(tg.data(), {R}), tau, model::kVocabChunk);
    std::vector<float> z(static_cast<size_t>(R * V)), got(static_cast<size_t>(R)), got_lse(static_cast<size_t>(R));
    ops::lm_head_logits(Tensor::f32(z.data(), {R, V}), Tensor::f32(h.data(), {R, C}), Tensor::f32(w.data(), {V, C}),
                        tau, model::kVocabChunk);
    ops::logprobs_of_logits(Tensor::f32(got.data(), {R}), Tensor::f32(got_lse.data(), {R}),
                            Tensor::f32(z.data(), {R, V}), Tensor::i32(tg.data(), {R}), model::kVocabChunk);
    EXPECT_TRUE(same_bits(got.data(), want.data(), R)) << "temperature " << tau;
    EXPECT_TRUE(same_bits(got_lse.data(), lse.data(), R)) << "temperature " << tau;
    for (int64_t r : {0, 31, 63}) {  // one row alone
      std::vector<float> z1(static_cast<size_t>(V));
      float lp = 0, ls = 0;
      ops::lm_head_logits(Tensor::f32(z1.data(), {1, V}), Tensor::f32(h.data() + r * C, {1, C}),
                          Tensor::f32(w.data(), {V, C}), tau, model::kVocabChunk);
      EXPECT_TRUE(same_bits(z1.data(), z.data() + r * V, V)) << "row " << r;
      ops::logprobs_of_logits(Tensor::f32(&lp, {1}), Tensor::f32(&ls, {1}), Tensor::f32(z1.data(), {1, V}),
                              Tensor::i32(&tg[size_t(r)], {1}), model::kVocabChunk);
      EXPECT_EQ(std::memcmp(&lp, &want[size_t(r)], sizeof(float)), 0) << "row " << r << ": " << lp << " vs " << want[size_t(r)];
    }
  }
  int32_t bad = int32_t(V);
  float lp = 0, ls = 0;
  std::vector<float> z1(static_cast<size_t>(V));
  EXPECT_THROW(ops::logprobs_of_logits(Tensor::f32(&lp, {1}), Tensor::f32(&ls, {1}), Tensor::f32(z1.data(), {1, V}),
                                       Tensor::i32(&bad, {1}), model::kVocabChunk),
               Error);
}

namespace {

test::ExactGap compare(const model::Transformer& m, float temperature, bool exact) {
  ops::BatchInvariantScope mode(exact);
  rollout::GenerateParams gp;
  gp.sampling.temperature = temperature;
  gp.sampling.seed = 42;
  gp.max_new_tokens = 20;
  gp.exact_logprobs = exact;
  return test::sampler_vs_trainer(m, test::exact_requests(16, 4, 12, m.config().vocab_size, 5), gp, 64, true);
}

}  // namespace

// The test on the CPU: a sequence decoded alone, in a batch of 63 others, and scored by the
// training forward (packed with the others, and alone) gives the same log-prob bits, dense and
// mixture-of-experts (whose experts' products take each expert's rows: another M per call).
TEST(ExactLogprobs, ASequenceAloneInABatchAndInTrainingIsTheSameBits) {
  struct Case {
    const char* name;
    model::Transformer m;
  };
  std::vector<Case> cases;
  cases.push_back({"qwen2", test::byte_model(3, "128", "352", "2")});
  cases.push_back({"qwen3_moe", test::tiny_moe("tiny-qwen3-moe", 11, 1.0f)});
  for (Case& c : cases) {
    for (float tau : {1.0f, 0.7f}) {
      const test::ExactGap on = compare(c.m, tau, true);
      EXPECT_EQ(on.batch, 0) << c.name << " temperature " << tau;
      EXPECT_EQ(on.packed, 0) << c.name << " temperature " << tau;
      EXPECT_EQ(on.alone, 0) << c.name << " temperature " << tau;
      EXPECT_EQ(on.max_gap, 0.0) << c.name << " temperature " << tau;
      EXPECT_GT(on.tokens, 64 * 5) << c.name;
      const test::ExactGap off = compare(c.m, tau, false);
      std::printf("[ EXACT ] %s tau %.1f: off: %lld/64 sequences differ alone vs in the batch, %lld/64 sampler vs "
                  "packed trainer, max |gap| %.3g over %lld tokens; on: 0, 0, %.3g\n",
                  c.name, tau, static_cast<long long>(off.batch), static_cast<long long>(off.packed), off.max_gap,
                  static_cast<long long>(off.tokens), on.max_gap);
      EXPECT_GT(off.packed + off.batch, 0) << c.name << ": the plain forward matched too; the test would not see the mode";
    }
  }
}

// The engine refuses exact log-probs it cannot give, naming why.
TEST(ExactLogprobs, EngineRefusesWhatItCannotMakeExact) {
  const model::Transformer m = test::byte_model(3);
  rollout::Engine engine(m, {4, 64, 4096});
  const std::vector<rollout::Request> reqs = test::exact_requests(1, 1, 1, 257, 1);
  rollout::GenerateParams gp;
  gp.exact_logprobs = true;
  auto refused = [&](const std::string& part) {
    try {
      engine.generate(reqs, gp);
      ADD_FAILURE() << "accepted; expected: " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  refused("batch-invariant forward");  // the mode is off
  ops::BatchInvariantScope on(true);
  gp.sampling.temperature = 0.0f;
  refused("temperature > 0");
  gp.sampling.temperature = 1.0f;
  gp.sampling.sampled_logprobs = true;
  refused("sampled_logprobs");
}

// A GRPO step on the CPU with rollout.exact_logprobs and pi_old from the sampler: the first
// update's ratios are exactly 1, so its sampler/trainer gap is 0.0 and no token is clipped; the
// mode is the trainer's for its life only. Without it the gap is the kernels' rounding.
TEST(ExactLogprobs, GrpoFirstUpdateRatiosAreExactlyOne) {
  const std::vector<data::Problem> probs = test::letter_problems(8);
  test::EvenByteReward reward;
  text::ByteCodec codec;
  double gap[2] = {-1, -1};
  for (const bool exact : {false, true}) {
    model::Transformer m = test::byte_model(5, "128", "352", "2");
    train::GrpoConfig gc = test::small_grpo(4, 4, 16);
    gc.exact_logprobs = exact;
    gc.loss.clip_low = gc.loss.clip_high = 1e-7;  // any ratio but exactly 1 is clipped
    {
      train::GrpoTrainer trainer(m, codec, reward, probs, test::question, gc, 2);
      EXPECT_EQ(ops::batch_invariant(), exact);
      for (int step = 0; step < 2; ++step) {
        const train::StepStats st = trainer.step(step);
        ASSERT_TRUE(st.logp_gap_max.has_value());
        gap[exact] = std::max(gap[exact], *st.logp_gap_max);
        if (exact) {
          EXPECT_EQ(st.clip_fraction_first, 0.0) << "step " << step;
        } else {
          EXPECT_GT(st.clip_fraction_first, 0.0) << "step " << step;
        }
      }
    }
    EXPECT_FALSE(ops::batch_invariant());
  }
  std::printf("[ EXACT ] GRPO first-update gap: off %.3g, on %.3g\n", gap[0], gap[1]);
  EXPECT_EQ(gap[1], 0.0);
  EXPECT_GT(gap[0], 0.0);
}

// The same with LoRA adapters (their products are forward products too): after the first update
// moves the adapters, the next step's sampler still matches its trainer exactly.
TEST(ExactLogprobs, GrpoWithLoraAdaptersIsExactToo) {
  const std::vector<data::Problem> probs = test::letter_problems(8);
  test::EvenByteReward reward;
  text::ByteCodec codec;
  model::Transformer m = test::byte_model(5, "128", "352", "2");
  model::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8.0;
  lora.targets = {"all-linear"};
  m.add_lora(lora, 17);
  train::GrpoConfig gc = test::small_grpo(4, 4, 16);
  gc.exact_logprobs = true;
  gc.lr = 1e-2;
  gc.loss.clip_low = gc.loss.clip_high = 1e-7;
  train::GrpoTrainer trainer(m, codec, reward, probs, test::question, gc, 3);
  for (int step = 0; step < 3; ++step) {
    const train::StepStats st = trainer.step(step);
    ASSERT_TRUE(st.logp_gap_max.has_value());
    EXPECT_EQ(*st.logp_gap_max, 0.0) << "step " << step;
    EXPECT_EQ(st.clip_fraction_first, 0.0) << "step " << step;
    EXPECT_GT(st.updates, 0) << "step " << step;
  }
}

// The recipe key reaches the trainer, and what it cannot make exact fails by key before any compute.
TEST(ExactLogprobs, RecipeKeyIsCheckedAndReachesTheMetrics) {
  const std::string base = "grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
                           test::source_path("data/gsm8k_train.jsonl") + " run.name=x train.steps=1";
  {
    test::TempDir dir;
    auto r = test::run_r1(base + " run.dir=" + dir.path() + " rollout.exact_logprobs=true");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::vector<std::string> lines = test::read_lines(dir.file("x/metrics.jsonl"));
    ASSERT_EQ(lines.size(), 1u);
    const nlohmann::json j = nlohmann::json::parse(lines[0]);
    ASSERT_TRUE(j.contains("logp_gap/max")) << lines[0];
    EXPECT_EQ(j["logp_gap/max"].get<double>(), 0.0) << lines[0];
    EXPECT_EQ(j["clip_fraction_first"].get<double>(), 0.0) << lines[0];
  }
  struct Bad {
    std::string args, message;
  };
  for (const Bad& b : {Bad{"grpo.old_logprobs=trainer grpo.sampler_logprobs=sampled", "grpo.sampler_logprobs: sampled"},
                       Bad{"train.lora.rank=4 train.lora.dropout=0.1", "train.lora.dropout: 0"},
                       Bad{"model.init_preset=tiny-deepseek-v3", "does not support MLA models (deepseek_v3)"}}) {
    test::TempDir dir;
    auto r = test::run_r1(base + " run.dir=" + dir.path() + " rollout.exact_logprobs=true " + b.args);
    EXPECT_NE(r.exit_code, 0) << b.args;
    EXPECT_NE(r.err.find(b.message), std::string::npos) << b.args << ": " << r.err;
  }
}
