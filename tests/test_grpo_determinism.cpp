// Results do not depend on the machine's core count: one GRPO step (rollouts, rewards, reference
// log-probs, the update with clipping) gives bit-identical weights and statistics with 1, 2 and 7
// OpenMP/OpenBLAS threads. The CPU kernels reduce in fixed trees (kernels/cpu/gemm.cpp,
// elementwise.cpp), so a laptop, CI's two cores and a 128-core server train the same model.
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>

#include "grpo_test_util.h"

using namespace r1;

namespace {

struct Outcome {
  std::vector<float> weights;
  double loss = 0, grad_norm = 0, kl = 0, reward = 0, length = 0;
};

Outcome grpo_steps(int threads) {
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);  // the OpenMP build follows OpenMP's count; set it anyway
  text::ByteCodec codec;
  // The demo's shape (96 wide, 3 layers): big enough that every kernel splits its work.
  model::Transformer m = test::byte_model(11, "96", "256", "3");
  train::GrpoConfig gc = test::small_grpo(8, 8, 16);
  gc.loss.kl_coef = 0.05;
  gc.micro_batch_tokens = 400;
  test::EvenByteReward reward;
  train::GrpoTrainer trainer(m, codec, reward, test::letter_problems(32), test::question, gc, 2);
  Outcome o;
  for (int s = 0; s < 2; ++s) {  // the second step samples from the weights the first one trained
    const train::StepStats st = trainer.step(s);
    o.loss = st.loss;
    o.grad_norm = st.grad_norm;
    o.kl = st.kl.value_or(-1);
    o.reward = st.reward_mean;
    o.length = st.response_length_mean;
  }
  o.weights = m.weights_host();
  return o;
}

TEST(CpuDeterminism, GrpoStepsAreBitIdenticalForAnyThreadCount) {
  const int saved = omp_get_max_threads();
  const Outcome one = grpo_steps(1);
  for (int threads : {2, 7}) {
    const Outcome o = grpo_steps(threads);
    EXPECT_EQ(o.loss, one.loss) << threads << " threads";
    EXPECT_EQ(o.grad_norm, one.grad_norm) << threads << " threads";
    EXPECT_EQ(o.kl, one.kl) << threads << " threads";
    EXPECT_EQ(o.reward, one.reward) << threads << " threads";
    EXPECT_EQ(o.length, one.length) << threads << " threads";
    ASSERT_EQ(o.weights.size(), one.weights.size());
    size_t differ = 0;
    for (size_t i = 0; i < o.weights.size(); ++i)
      differ += std::memcmp(&o.weights[i], &one.weights[i], sizeof(float)) != 0;
    EXPECT_EQ(differ, 0u) << "of " << one.weights.size() << " weights differ with " << threads << " threads";
  }
  omp_set_num_threads(saved);
  openblas_set_num_threads(saved);
}

}  // namespace
