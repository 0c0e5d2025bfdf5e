// Random initial weights: the parallel, blockwise draw gives the numbers of one sequential pass
// (the order r1 always used), and `r1 init` streams them to disk with the bytes save_model writes.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/rng.h"
#include "model/checkpoint.h"
#include "model/random_init.h"
#include "test_util.h"

using r1::model::ModelConfig;
using r1::model::ParamSpec;

namespace {

// The initialisation as one sequential pass over each tensor's stream, the streams numbered in the
// parameter order r1 always used (layout version 1), the values placed by name in today's layout:
// a seed draws the same model whatever the layout.
std::vector<float> serial_init(const ModelConfig& cfg, uint64_t seed, float std) {
  const std::vector<ParamSpec> now = r1::model::param_specs(cfg), first = r1::model::param_specs(cfg, 1);
  std::vector<float> host(size_t(r1::model::total_params(now)), 0.0f);
  for (size_t i = 0; i < first.size(); ++i) {
    const ParamSpec& s = first[i];
    const bool is_norm = s.name.find("norm") != std::string::npos;
    const bool is_bias = s.name.ends_with(".bias");
    int64_t at = -1;
    for (const ParamSpec& n : now)
      if (n.name == s.name) at = n.offset;
    EXPECT_GE(at, 0) << s.name;
    r1::Rng rng(seed, i);
    for (int64_t j = 0; at >= 0 && j < s.numel(); ++j)
      host[size_t(at + j)] = is_norm ? 1.0f : is_bias ? 0.0f : std * rng.normal();
  }
  return host;
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

}  // namespace

TEST(RandomInit, SeekMatchesTheSequentialStream) {
  r1::Rng seq(42, 3);
  std::vector<uint32_t> words;
  for (int i = 0; i < 40; ++i) words.push_back(seq.next_u32());
  for (uint64_t w = 0; w < 30; ++w) {
    r1::Rng r(42, 3);
    r.seek(w);
    for (uint64_t k = 0; k < 10; ++k) ASSERT_EQ(r.next_u32(), words[w + k]) << "seek " << w << " + " << k;
  }
}

TEST(RandomInit, ParallelBlocksGiveTheSerialNumbers) {
  for (const char* arch : {"qwen2", "llama", "qwen3"}) {
    SCOPED_TRACE(arch);
    const ModelConfig cfg = r1::model::preset_config("tiny", arch);
    r1::model::Transformer m(cfg);
    m.init_random(5, 0.03f);
    const std::vector<float> want = serial_init(cfg, 5, 0.03f);
    ASSERT_TRUE(same_bits(m.params().flat.f32(), want.data(), want.size()));
    // Blocks of odd sizes, from odd starting elements, across the word groups of the stream.
    for (int64_t block : {1, 5, 7, 64}) {
      std::vector<float> got(want.size(), -1.0f);
      for (size_t i = 0; i < m.specs().size(); ++i) {
        const ParamSpec& s = m.specs()[i];
        for (int64_t begin = 0; begin < s.numel(); begin += 37) {
          const int64_t n = std::min<int64_t>(37, s.numel() - begin);
          r1::model::draw_init_values(s, 5, 0.03f, begin, n, got.data() + s.offset + begin, block);
        }
      }
      EXPECT_TRUE(same_bits(got.data(), want.data(), want.size())) << "block " << block;
    }
  }
  // A seed or a std changes the numbers.
  const ModelConfig cfg = r1::model::preset_config("tiny");
  r1::model::Transformer a(cfg), b(cfg);
  a.init_random(5, 0.03f);
  b.init_random(6, 0.03f);
  EXPECT_FALSE(same_bits(a.params().flat.f32(), b.params().flat.f32(), size_t(a.params().flat.numel())));
}

TEST(RandomInit, StreamedModelHasTheBytesSaveModelWrites) {
  r1::test::TempDir dir;
  ModelConfig cfg = r1::model::preset_config("tiny", "llama");
  cfg.num_labels = 0;
  r1::model::Transformer m(cfg);
  m.init_random(9, 0.02f);
  for (r1::DType dtype : {r1::DType::F32, r1::DType::BF16}) {
    const std::string tag = dtype == r1::DType::F32 ? "f32" : "bf16";
    r1::model::save_model(m, dir.file("saved_" + tag), dtype);
    r1::model::write_random_model(cfg, dir.file("streamed_" + tag), dtype, 9, 0.02f);
    for (const char* f : {"model.safetensors", "config.json"})
      EXPECT_EQ(r1::fs::read_file(dir.file("streamed_" + tag + "/" + f)),
                r1::fs::read_file(dir.file("saved_" + tag + "/" + f)))
          << tag << " " << f;
  }
  const r1::model::Transformer back = r1::model::load_model(dir.file("streamed_f32"));
  EXPECT_TRUE(same_bits(back.params().flat.f32(), m.params().flat.f32(), size_t(m.params().flat.numel())));
}

// `r1 init` applies every --set before checking, shows progress with an ETA, and prints the key
// reference with --list-keys.
TEST(RandomInit, InitCommand) {
  r1::test::TempDir dir;
  // 60 / 4 heads of the preset = 15 (odd): valid only once num_attention_heads=6 is applied too.
  auto r = r1::test::run_r1(
      "init --preset tiny --set hidden_size=60 --set num_attention_heads=6 --dtype bf16 --out " +
      dir.file("m"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("100%"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("eta"), std::string::npos) << r.err;
  const ModelConfig c = r1::model::load_config(dir.file("m/config.json"));
  EXPECT_EQ(c.head_dim, 10);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  r = r1::test::run_r1("init --preset tiny --set hidden_size=60 --set num_attention_heads=7 --out " +
                       dir.file("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--set hidden_size=60 num_attention_heads=7: "), std::string::npos) << r.err;
  EXPECT_FALSE(r1::fs::exists(dir.file("x")));
  r = r1::test::run_r1("init --preset tiny");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--out is required"), std::string::npos) << r.err;
  r = r1::test::run_r1("init --list-keys");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, r1::model::config_reference_markdown());
}

// A large model's draw (r1 grpo on a 7B preset) shows a progress line; a small one stays quiet.
TEST(RandomInit, LargeDrawsShowProgress) {
  const std::vector<ParamSpec> specs = r1::model::param_specs(r1::model::preset_config("tiny"));
  std::vector<float> flat(size_t(r1::model::total_params(specs)));
  testing::internal::CaptureStderr();
  r1::model::draw_init_weights(specs, 1, 0.02f, flat.data());
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  testing::internal::CaptureStderr();
  r1::model::draw_init_weights(specs, 1, 0.02f, flat.data(), /*progress_min=*/0);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("drawing random weights"), std::string::npos) << err;
  EXPECT_NE(err.find("100% 1/1"), std::string::npos) << err;
  EXPECT_NE(err.find("eta"), std::string::npos) << err;
}
