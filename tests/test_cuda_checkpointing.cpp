// Per-layer activation checkpointing on the GPU (bf16, recomputed norms and SwiGLU as CUDA's
// default): the checkpointed backward against the saving one on the same model, and the activation
// arenas against the memory model (model/activation_memory.h) to the byte. Each comparison prints a
// "[ CUDAERR ]" line. Without a usable GPU the tests skip.
//
// Tolerance: the recomputed layer runs the forward's kernels on the forward's inputs, so its
// activations are the saved ones unless a kernel's result depends on where its buffers lie (GEMM
// plans) or on atomics; those differences are bf16 rounding noise, bounded here as the saving and
// recomputing paths are in test_cuda_model.cpp (gradient rel L2 < 1e-2). The test reports whether
// the gradients came out bitwise equal, and the saving backward's own run-to-run difference.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>

#include "base/rng.h"
#include "compare_util.h"
#include "lora_util.h"
#include "model/activation_memory.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "require_gpu.h"
#include "tensor/device_memory.h"

using namespace r1;

namespace {

using test::rel_l2;

void report(const std::string& what, double err) { fmt::print("[ CUDAERR ] {} {:.3e}\n", what, err); }

model::Batch random_batch(uint64_t seed, int vocab, std::vector<int> lens) {
  Rng rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : lens) {
    seqs.emplace_back();
    for (int i = 0; i < len; ++i) seqs.back().push_back(int32_t(rng.next_u32() % uint32_t(vocab)));
  }
  return model::pack_sequences(seqs);
}

std::vector<float> mean_loss_dlogp(const model::Batch& b) {
  std::vector<float> d(b.targets.size(), 0.0f);
  for (size_t t = 0; t < d.size(); ++t)
    if (b.targets[t] >= 0) d[t] = -1.0f / float(d.size());
  return d;
}

struct Grads {
  std::vector<float> logp, grads;
};

Grads train_pass(model::Transformer& m, model::TrainState& st, const model::Batch& batch) {
  m.zero_grads();
  st.forward(m, batch);
  st.backward(m, mean_loss_dlogp(batch));
  return {st.logp_host(), to_host_f32(m.grads().flat)};
}

// Saving twice (the run-to-run noise) and checkpointing once, on one model.
void compare(model::Transformer& m, const model::Batch& batch, const std::string& what) {
  model::TrainState save, again, ckpt;
  save.checkpointing = again.checkpointing = model::Checkpointing::Off;
  ckpt.checkpointing = model::Checkpointing::On;
  for (model::TrainState* st : {&save, &again, &ckpt}) st->dropout_seed = 5, st->dropout_step = 2;
  const Grads a = train_pass(m, save, batch), b = train_pass(m, again, batch), c = train_pass(m, ckpt, batch);
  EXPECT_TRUE(ckpt.checkpointed());
  const bool bitwise = a.grads == c.grads && a.logp == c.logp;
  fmt::print("[ CUDAERR ] {} checkpointed gradients {} the saving ones\n", what,
             bitwise ? "bitwise equal to" : "differ from");
  report(what + " saving vs saving gradient rel L2", rel_l2(b.grads, a.grads));
  report(what + " checkpointed vs saving log-prob rel L2", rel_l2(c.logp, a.logp));
  const double e = rel_l2(c.grads, a.grads);
  report(what + " checkpointed vs saving gradient rel L2", e);
  EXPECT_LT(rel_l2(c.logp, a.logp), 2e-3);
  EXPECT_LT(e, 1e-2);
  double norm = 0;
  for (float g : a.grads) norm += double(g) * g;
  EXPECT_GT(norm, 0.0);
  EXPECT_LT(ckpt.activation_bytes() + ckpt.recomputed_layer_bytes(), save.activation_bytes());
}

class CudaCheckpointingArch : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaCheckpointingArch, GradientsMatchTheSavingBackward) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", GetParam());
  model::override_config(c, "num_hidden_layers", "4");
  model::Transformer m(c, Device::CUDA);
  m.init_random(8, 0.2f);
  compare(m, random_batch(5, c.vocab_size, {33, 12, 70}), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaCheckpointingArch, ::testing::Values("qwen2", "llama", "qwen3"));

TEST(CudaCheckpointing, LoraWithDropoutMatchesTheSavingBackward) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen3");
  model::Transformer m(c, Device::CUDA);
  m.init_random(3, 0.2f);
  test::add_random_lora(m, 0.3);
  compare(m, random_batch(9, c.vocab_size, {40, 25}), "qwen3 LoRA r=4 dropout 0.3");
}

// The arenas hold what the memory model predicts, in bf16 with recomputed norms and SwiGLU.
TEST(CudaCheckpointing, ArenasMatchTheMemoryModel) {
  REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "num_hidden_layers", "3");
  model::Transformer m(c, Device::CUDA);
  m.init_random(1, 0.2f);
  const model::Batch batch = random_batch(2, c.vocab_size, {300, 212});
  model::TrainState save, ckpt, automatic;
  save.checkpointing = model::Checkpointing::Off;
  ckpt.checkpointing = model::Checkpointing::On;
  train_pass(m, save, batch);
  train_pass(m, ckpt, batch);
  train_pass(m, automatic, batch);
  const model::ActivationEstimate e =
      model::estimate_activations(m, batch.tokens(), batch.sequences(), true, true);
  EXPECT_EQ(save.activation_bytes(), e.saving);
  EXPECT_EQ(ckpt.activation_bytes(), e.checkpointed);
  EXPECT_EQ(ckpt.recomputed_layer_bytes(), e.layer);
  EXPECT_FALSE(automatic.checkpointed());  // a tiny model fits the GPU's free memory
  fmt::print("[ CUDAERR ] activation bytes/token: saving {:.0f}, checkpointed {:.0f} + one layer {:.0f}\n",
             double(e.saving) / double(batch.tokens()), double(e.checkpointed) / double(batch.tokens()),
             double(e.layer) / double(batch.tokens()));
}

}  // namespace
