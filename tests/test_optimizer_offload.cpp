// The offloaded optimizer (optim/offload.h, AdamW with OffloadConfig): its chunked, double-buffered
// path gives the bits of the ordinary AdamW, on bare buffers and on a model with clipping and weight
// decay, and its state saves and resumes like the ordinary one's. On the CPU the same chunks and
// staging buffers are used as on a GPU (the copies are memory copies); the GPU comparison is in
// test_cuda_offload.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/ops.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "optim/data_parallel.h"
#include "optim/offload.h"
#include "optim/optimizer.h"
#include "tensor/device_memory.h"
#include "test_util.h"

using namespace r1;
using optim::AdamW;
using optim::AdamWConfig;
using optim::OffloadConfig;
using optim::ParamSlice;

namespace {

// Slices of mixed decay with a gap (an uncovered parameter) and one slice longer than a chunk.
const std::vector<ParamSlice> kSlices = {{"w1", 0, 300, true}, {"b1", 300, 7, false},
                                         {"w2", 308, 401, true}, {"n", 709, 64, false}};
constexpr int64_t kN = 773;

std::vector<float> randn(int64_t n, uint64_t seed, float scale) {
  Rng rng(seed, 0);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = scale * rng.normal();
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<uint16_t> bits16(const Buffer& b, int64_t n) {
  std::vector<uint16_t> v(static_cast<size_t>(n));
  std::memcpy(v.data(), b.data(), size_t(n) * 2);
  return v;
}

}  // namespace

// Five steps of a varying LR and gradient scale (as clipping gives), weight decay on: parameters,
// moments and the bf16 compute copy equal the ordinary AdamW's to the bit, with chunks of 64
// elements (13 chunks, the last one short, a slice crossing several).
TEST(OptimizerOffload, ChunkedUpdateEqualsAdamWBitForBit) {
  const AdamWConfig cfg{0.9f, 0.95f, 1e-8f, 0.1f};
  AdamW plain(kSlices, cfg);
  AdamW off(kSlices, cfg, Device::CPU, OffloadConfig{true, 64});
  ASSERT_TRUE(off.offloaded());
  ASSERT_FALSE(plain.offloaded());
  std::vector<float> p1 = randn(kN, 1, 0.5f), p2 = p1;
  Buffer c1(size_t(kN) * 2), c2(size_t(kN) * 2);
  const Tensor t1 = Tensor::f32(p1.data(), {kN}), t2 = Tensor::f32(p2.data(), {kN});
  const Tensor cc1(c1.data(), DType::BF16, {kN}), cc2(c2.data(), DType::BF16, {kN});
  ops::convert(cc1, t1);  // compute copies of the parameters, as a model's are
  ops::convert(cc2, t2);
  for (int step = 0; step < 5; ++step) {
    std::vector<float> g = randn(kN, 100 + uint64_t(step), 1.0f + float(step));
    const float lr = 1e-2f / float(step + 1), scale = step % 2 ? 0.37f : 1.0f;
    plain.step(t1, Tensor::f32(g.data(), {kN}), lr, scale, cc1);
    off.step(t2, Tensor::f32(g.data(), {kN}), lr, scale, cc2);
    EXPECT_EQ(off.offload_stream()->chunks_run(), (kN + 63) / 64);
    ASSERT_TRUE(same_bits(p1, p2)) << "step " << step;
    ASSERT_EQ(bits16(c1, kN), bits16(c2, kN)) << "step " << step;
  }
  std::vector<float> m1(kN), v1(kN), m2(kN), v2(kN);
  plain.moments_host(m1.data(), v1.data());
  off.moments_host(m2.data(), v2.data());
  EXPECT_TRUE(same_bits(m1, m2));
  EXPECT_TRUE(same_bits(v1, v2));
  EXPECT_EQ(off.steps_taken(), 5);
  EXPECT_FALSE(same_bits(p1, randn(kN, 1, 0.5f)));  // the weights did move
}

// What one chunk's update sees: the staged gradients and compute buffer of its elements only, in
// order, every element once.
TEST(OptimizerOffload, StreamVisitsEveryChunkOnce) {
  optim::OffloadStream stream(64);
  std::vector<float> g(200);
  for (size_t i = 0; i < g.size(); ++i) g[i] = float(i);
  std::vector<float> out(200, -1.0f);
  std::vector<int64_t> begins;
  stream.run(Tensor::f32(g.data(), {200}), Tensor::f32(out.data(), {200}), [&](int64_t begin, const Tensor& gc, Tensor cc) {
    begins.push_back(begin);
    ASSERT_NE(gc.data, g.data() + begin);  // a staging copy, not the source
    for (int64_t i = 0; i < gc.numel(); ++i) {
      ASSERT_EQ(gc.f32()[i], float(begin + i));
      cc.f32()[i] = 2.0f * gc.f32()[i];
    }
  });
  EXPECT_EQ(begins, (std::vector<int64_t>{0, 64, 128, 192}));
  for (size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], 2.0f * float(i)) << i;
  EXPECT_THROW(optim::OffloadStream(8), Error);  // a chunk below 64 elements is refused
}

// An offloaded state saved and loaded into an ordinary AdamW (and the other way round) continues
// with the same bits: checkpoints do not depend on where the optimizer ran.
TEST(OptimizerOffload, StateSavesAndResumesEitherWay) {
  test::TempDir dir;
  const AdamWConfig cfg{0.9f, 0.999f, 1e-8f, 0.01f};
  AdamW off(kSlices, cfg, Device::CPU, OffloadConfig{true, 128});
  std::vector<float> p = randn(kN, 7, 1.0f);
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g = randn(kN, 50 + uint64_t(step), 1.0f);
    off.step(Tensor::f32(p.data(), {kN}), Tensor::f32(g.data(), {kN}), 1e-3f);
  }
  off.save(dir.file("off.safetensors"));
  AdamW plain(kSlices, cfg);
  plain.load(dir.file("off.safetensors"));
  AdamW again(kSlices, cfg, Device::CPU, OffloadConfig{true, 100});
  plain.save(dir.file("plain.safetensors"));
  again.load(dir.file("plain.safetensors"));
  EXPECT_EQ(plain.steps_taken(), 3);
  EXPECT_EQ(again.steps_taken(), 3);
  std::vector<float> pa = p, pb = p, g = randn(kN, 99, 1.0f);
  plain.step(Tensor::f32(pa.data(), {kN}), Tensor::f32(g.data(), {kN}), 1e-3f);
  again.step(Tensor::f32(pb.data(), {kN}), Tensor::f32(g.data(), {kN}), 1e-3f);
  EXPECT_TRUE(same_bits(pa, pb));
}

// A model trained through DataParallel with the optimizer offloaded (small chunks) ends with the
// weights of the ordinary one, to the bit, over steps with gradient clipping (the global norm is
// still the whole gradient's) and weight decay; the AdamW state lives in host memory.
TEST(OptimizerOffload, ModelTrainingEqualsOnDeviceAdamW) {
  model::ModelConfig cfg = model::preset_config("tiny");
  cfg.vocab_size = 64;
  model::Transformer a(cfg), b(cfg);
  a.init_random(3);
  b.init_random(3);
  const AdamWConfig adamw{0.9f, 0.95f, 1e-8f, 0.1f};
  optim::DataParallelConfig off_cfg;
  off_cfg.offload = {true, 1000};
  optim::DataParallel plain(a, adamw), off(b, adamw, off_cfg);
  ASSERT_TRUE(off.adamw().offloaded());
  model::TrainState sa, sb;
  const model::Batch batch = model::pack_sequences({{1, 5, 9, 12, 3, 7, 7, 2}, {4, 4, 8, 1, 60}});
  for (int step = 0; step < 4; ++step) {
    for (auto [m, s] : {std::pair{&a, &sa}, std::pair{&b, &sb}}) {
      s->forward(*m, batch);
      std::vector<float> dlogp(size_t(batch.tokens()), -1.0f / float(batch.tokens()));
      s->backward(*m, dlogp);
    }
    const optim::UpdateResult ra = plain.step(1e-2, 0.05), rb = off.step(1e-2, 0.05);
    EXPECT_EQ(ra.grad_norm, rb.grad_norm);
    EXPECT_GT(ra.grad_norm, 0.05) << "the test wants clipping to act";
    ASSERT_TRUE(same_bits(a.weights_host(), b.weights_host())) << "step " << step;
  }
  EXPECT_GT(off.adamw().offload_stream()->chunks_run(), 10);
}
