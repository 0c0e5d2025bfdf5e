// The device-generic model code on the CPU: recomputed activations give the saving path's results
// bit for bit, inference-memory forwards equal training forwards, weights move between models, and
// Buffer/Arena keep their CPU behaviour. Asking for CUDA where it cannot run fails clearly.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "base/bf16.h"
#include "base/error.h"
#include "base/rng.h"
#include "model/transformer.h"
#include "model/kv_cache.h"
#include "model/train_state.h"
#include "tensor/device_memory.h"
#include "test_util.h"
#include "optim/optimizer.h"

using namespace r1;

namespace {

model::Transformer tiny(const std::string& arch, uint64_t seed, bool trainable = true) {
  model::Transformer m(model::preset_config("tiny", arch), Device::CPU, trainable);
  m.init_random(seed, 0.2f);
  return m;
}

model::Batch random_batch(uint64_t seed, int vocab) {
  Rng rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : {17, 5, 30}) {
    seqs.emplace_back();
    for (int i = 0; i < len; ++i) seqs.back().push_back(int32_t(rng.next_u32() % uint32_t(vocab)));
  }
  return model::pack_sequences(seqs);
}

std::vector<float> dlogp_for(const model::Batch& b) {
  std::vector<float> d(b.targets.size());
  for (size_t t = 0; t < d.size(); ++t) d[t] = b.targets[t] >= 0 ? -0.1f - 0.01f * float(t % 7) : 0.0f;
  return d;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class DeviceArch : public ::testing::TestWithParam<std::string> {};

// Recomputing ln1, ln2 and the SwiGLU output in the backward is exact and saves memory.
TEST_P(DeviceArch, RecomputeEqualsSavingPath) {
  model::Transformer a = tiny(GetParam(), 11), b = tiny(GetParam(), 11);
  model::Batch batch = random_batch(4, a.config().vocab_size);
  model::TrainState save, recompute;
  save.recompute = model::Recompute::Off;
  recompute.recompute = model::Recompute::On;
  save.forward(a, batch, 0.9f);
  recompute.forward(b, batch, 0.9f);
  EXPECT_EQ(save.logp_host(), recompute.logp_host());
  EXPECT_EQ(save.entropy_host(), recompute.entropy_host());
  save.backward(a, dlogp_for(batch));
  recompute.backward(b, dlogp_for(batch));
  const Tensor& ga = a.grads().flat;
  EXPECT_EQ(0, std::memcmp(ga.data, b.grads().flat.data, ga.nbytes())) << "gradients differ";
  EXPECT_LT(recompute.activation_bytes(), save.activation_bytes());
}

// A frozen model's forward keeps one layer at a time and gives the training forward's numbers.
TEST_P(DeviceArch, InferenceForwardEqualsTrainingForward) {
  model::Transformer train = tiny(GetParam(), 5), frozen = tiny(GetParam(), 5, /*trainable=*/false);
  EXPECT_TRUE(frozen.grads().flat.empty());
  model::Batch batch = random_batch(9, train.config().vocab_size);
  model::TrainState st, fst;
  st.forward(train, batch);
  fst.forward(frozen, batch);
  EXPECT_EQ(st.logp_host(), fst.logp_host());
  EXPECT_LT(fst.activation_bytes(), st.activation_bytes());
  std::string e = error_of([&] { fst.backward(frozen, dlogp_for(batch)); });
  EXPECT_NE(e.find("trainable = false"), std::string::npos) << e;
}

INSTANTIATE_TEST_SUITE_P(Model, DeviceArch, ::testing::Values("qwen2", "llama", "qwen3"));

TEST(ModelDevice, CpuModelIsF32WithParamsAsMaster) {
  model::Transformer m = tiny("qwen2", 1);
  EXPECT_EQ(m.device(), Device::CPU);
  EXPECT_EQ(m.compute_dtype(), DType::F32);
  EXPECT_FALSE(m.separate_master());
  EXPECT_EQ(m.master().flat.data, m.params().flat.data);
  EXPECT_EQ(m.grads().flat.dtype, DType::F32);
  std::vector<float> w = m.weights_host();
  ASSERT_EQ(int64_t(w.size()), m.params().flat.numel());
  EXPECT_EQ(0, std::memcmp(w.data(), m.params().flat.data, m.params().flat.nbytes()));
}

TEST(ModelDevice, CopyWeightsAndBackwardOrder) {
  model::Transformer a = tiny("llama", 1), b = tiny("llama", 2, /*trainable=*/false);
  model::copy_weights(b, a);
  EXPECT_EQ(0, std::memcmp(a.params().flat.data, b.params().flat.data, a.params().flat.nbytes()));
  model::Transformer other(model::preset_config("10m", "llama"));
  std::string e = error_of([&] { model::copy_weights(other, a); });
  EXPECT_NE(e.find("differ in architecture"), std::string::npos) << e;
  // backward must follow a forward of the same model.
  model::TrainState st;
  model::Batch batch = random_batch(1, a.config().vocab_size);
  st.forward(b, batch);
  e = error_of([&] { st.backward(a, dlogp_for(batch)); });
  EXPECT_NE(e.find("no forward of this model"), std::string::npos) << e;
}

// optimizer_step on a CPU model is AdamW::step on its params (the master weights).
TEST(ModelDevice, OptimizerStepUpdatesTheModel) {
  model::Transformer a = tiny("qwen2", 3), b = tiny("qwen2", 3);
  model::Batch batch = random_batch(2, a.config().vocab_size);
  for (model::Transformer* m : {&a, &b}) {
    model::TrainState st;
    st.forward(*m, batch);
    st.backward(*m, dlogp_for(batch));
  }
  optim::AdamW oa = optim::make_adamw(a, {}), ob(optim::param_slices(b), {});
  optim::optimizer_step(oa, a, 1e-2f, 0.5f);
  ob.step(b.params().flat, b.grads().flat, 1e-2f, 0.5f);
  EXPECT_EQ(0, std::memcmp(a.params().flat.data, b.params().flat.data, a.params().flat.nbytes()));
  EXPECT_EQ(oa.device(), Device::CPU);
}

// A copy-on-write copies one block in every layer, keys and values, and nothing else.
TEST(ModelDevice, KVCacheCopyBlock) {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::KVCache cache(c, model::KVLayout{4, 3, 2, 2});
  EXPECT_EQ(cache.device, Device::CPU);
  EXPECT_EQ(cache.dtype, DType::F32);
  ASSERT_EQ(cache.k_t.size(), size_t(c.num_hidden_layers));
  const int64_t block = 3 * c.num_key_value_heads * c.head_dim;
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (Tensor* t : {&cache.k_t[size_t(l)], &cache.v_t[size_t(l)]})
      for (int64_t i = 0; i < 4 * block; ++i)
        t->f32()[i] = float(1000 * l + i) * (t == &cache.k_t[size_t(l)] ? 1 : -1);
  cache.copy_block(2, 0);
  for (int l = 0; l < c.num_hidden_layers; ++l)
    for (Tensor* t : {&cache.k_t[size_t(l)], &cache.v_t[size_t(l)]}) {
      const float sign = t == &cache.k_t[size_t(l)] ? 1.0f : -1.0f;
      for (int64_t i = 0; i < block; ++i) ASSERT_EQ(t->f32()[i], sign * float(1000 * l + 2 * block + i)) << l;
      for (int64_t i = block; i < 4 * block; ++i) ASSERT_EQ(t->f32()[i], sign * float(1000 * l + i)) << l;
    }
  EXPECT_NE(error_of([&] { cache.copy_block(0, 4); }).find("out of range"), std::string::npos);
}

TEST(TensorDevice, BufferAndArenaOnCpu) {
  Buffer b(100);
  EXPECT_EQ(b.device(), Device::CPU);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
  std::memset(b.data(), 0xff, 100);
  b.zero();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(static_cast<unsigned char*>(b.data())[i], 0);
  Buffer moved = std::move(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(moved.size(), 100u);

  Arena a;
  EXPECT_EQ(a.device(), Device::CPU);
  Tensor z = a.zeros(DType::BF16, {3, 5});
  EXPECT_EQ(z.device, Device::CPU);
  EXPECT_EQ(z.nbytes(), 30u);
  for (int i = 0; i < 15; ++i) ASSERT_EQ(static_cast<uint16_t*>(z.data)[i], 0);
  Tensor big = a.alloc_f32({1 << 19});  // overflows the first block
  EXPECT_GE(a.used(), big.nbytes());
  a.reset();
  EXPECT_EQ(a.used(), 0u);
}

TEST(TensorDevice, HostCopiesConvertBf16) {
  std::vector<float> src = {1.0f, -2.5f, 3.14159f, 1e-3f};
  std::vector<uint16_t> bits(4);
  Tensor t(bits.data(), DType::BF16, {4});
  copy_from_host_f32(t, src.data());
  std::vector<float> back = to_host_f32(t);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(back[i], bf16_to_f32(f32_to_bf16(src[i])));
  std::vector<float> f(4);
  copy_from_host_f32(Tensor::f32(f.data(), {4}), src.data());
  EXPECT_EQ(f, src);
  EXPECT_NE(error_of([&] { copy_tensor(Tensor::f32(f.data(), {4}), t); }).find("does not match"), std::string::npos);
}

TEST(TensorDevice, ParseDevice) {
  EXPECT_EQ(parse_device("cpu", "x"), Device::CPU);
  EXPECT_EQ(parse_device("cuda", "x"), Device::CUDA);
  std::string e = error_of([] { parse_device("gpu", "recipe key 'device'"); });
  EXPECT_NE(e.find("recipe key 'device'"), std::string::npos) << e;
  EXPECT_NE(e.find("'gpu'"), std::string::npos) << e;
  EXPECT_TRUE(device_usable(Device::CPU));
}

// ---- CUDA requested where it cannot run: clear errors, before any compute ----------------------

bool cuda_usable() { return device_usable(Device::CUDA); }

TEST(TensorDevice, CudaMemoryWithoutGpuFailsClearly) {
  if (cuda_usable()) GTEST_SKIP() << "a GPU is usable here";
  std::string e = error_of([] { Buffer b(64, Device::CUDA); });
  EXPECT_NE(e.find("CUDA"), std::string::npos) << e;
  e = error_of([] { model::Transformer m(model::preset_config("tiny", "qwen2"), Device::CUDA); });
  EXPECT_NE(e.find("CUDA"), std::string::npos) << e;
  e = error_of([] { require_device(Device::CUDA, "recipe key 'device'"); });
  EXPECT_NE(e.find("recipe key 'device': device cuda was requested but cannot be used"), std::string::npos) << e;
}

TEST(TensorDevice, GrpoRecipeWithCudaWithoutGpuFailsBeforeCompute) {
  if (cuda_usable()) GTEST_SKIP() << "a GPU is usable here";
  test::TempDir dir;
  auto r = test::run_r1("grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
                        test::source_path("data/gsm8k_train.jsonl") + " run.dir=" + dir.path() + " device=cuda");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("device cuda was requested but cannot be used"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("tiny_byte_gsm8k")));
  r = test::run_r1("grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " devcie=cuda");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("did you mean 'device'"), std::string::npos) << r.err;
}

TEST(TensorDevice, DemoAndGenerateWithCudaWithoutGpuFail) {
  if (cuda_usable()) GTEST_SKIP() << "a GPU is usable here";
  test::TempDir dir;
  auto r = test::run_r1("demo device=cuda out=" + dir.file("demo"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("device cuda was requested"), std::string::npos) << r.err;
  r = test::run_r1("demo device=tpu out=" + dir.file("demo"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown device 'tpu'"), std::string::npos) << r.err;
  r = test::run_r1("generate --model " + dir.path() + " --device cuda", "{\"prompt\": \"hi\"}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--device: device cuda was requested"), std::string::npos) << r.err;
}

}  // namespace
