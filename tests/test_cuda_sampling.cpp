// GPU token sampling (kernels/sampling.h) against the CPU sampler (rollout::sample_token): for
// every row and every uniform the same token, and the same log-prob, on random logits and on rows
// built to break ties (bf16-rounded and coarse logits, -inf entries, underflowing tails).
// Untruncated and greedy draws run the same float and double operations on both sides
// (base/sampling_math.h), so their weights and sums are the same bits. Truncated draws take the same
// kept set by the same inverse CDF in id order; their sums differ only in summation order (~1e-16
// relative), and CUDA's exp may round a float probability differently from libm's (~1 token in 1e8),
// so a different token needs a uniform within ~1e-16 of a boundary. No mismatch is allowed. Skips
// without a usable GPU.
#include <gtest/gtest.h>

#ifdef R1_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "require_gpu.h"
#include "base/bf16.h"
#include "base/rng.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_context.h"
#include "device/cuda_device.h"
#include "kernels/sampling.h"
#include "rollout/sampler.h"
#include "tensor/tensor.h"

namespace {

using r1::cuda::CudaBuffer;

constexpr float kInf = std::numeric_limits<float>::infinity();

// A device copy of a vector of 4- or 8-byte values (moved as int32 words).
template <typename T>
struct Dev {
  CudaBuffer buf;
  r1::Tensor t;
  explicit Dev(std::vector<T>& v) {
    static_assert(sizeof(T) % 4 == 0);
    t = r1::cuda::to_device(r1::Tensor(v.data(), r1::DType::I32, {int64_t(v.size() * sizeof(T) / 4)}), buf);
  }
  T* ptr() const { return static_cast<T*>(t.data); }
  std::vector<T> host() const {
    std::vector<T> v(size_t(t.numel()) * 4 / sizeof(T));
    r1::cuda::to_host(t, r1::Tensor(v.data(), r1::DType::I32, {t.numel()}));
    return v;
  }
};

// Rows of logits: what real logits look like, and rows whose ties land on the top-k / top-p boundaries.
enum class Kind { Normal, Bf16, Coarse, Flat, NegInf, MostlyNegInf, Wide };
constexpr Kind kKinds[] = {Kind::Normal, Kind::Bf16,         Kind::Coarse, Kind::Flat,
                           Kind::NegInf, Kind::MostlyNegInf, Kind::Wide};
const char* kind_name(Kind k) {
  static const char* names[] = {"normal", "bf16", "coarse", "flat", "-inf", "mostly -inf", "wide"};
  return names[int(k)];
}

std::vector<float> make_row(Kind kind, int64_t V, r1::Rng& rng) {
  std::vector<float> z(static_cast<size_t>(V));
  for (auto& x : z) x = 3.0f * rng.normal();
  for (auto& x : z) {
    if (kind == Kind::Bf16) x = r1::bf16_to_f32(r1::f32_to_bf16(x));  // many exact ties at large V
    if (kind == Kind::Coarse) x = std::round(x * 2.0f) / 2.0f;        // every threshold inside a tie
    if (kind == Kind::Flat && rng.uniform() < 0.98f) x = 1.5f;        // one huge tie at the top
    if (kind == Kind::NegInf && rng.uniform() < 0.3f) x = -kInf;
    if (kind == Kind::MostlyNegInf) x = -kInf;  // fewer finite logits than top_k: 5 set below
    if (kind == Kind::Wide) x *= 15.0f;         // most probabilities underflow
  }
  if (kind == Kind::MostlyNegInf)
    for (int j = 0; j < 5; ++j) z[size_t(rng.next_u32() % uint32_t(V))] = 3.0f * rng.normal();
  return z;
}

struct Config {
  float temperature, top_p;
  int top_k;
  bool sampled = false;  // log-probs of the truncated, renormalised distribution
};
std::string config_name(const Config& c) {
  char s[96];
  std::snprintf(s, sizeof(s), "T=%g top_p=%g top_k=%d%s", c.temperature, c.top_p, c.top_k,
                c.sampled ? " sampled" : "");
  return s;
}

// GPU draws for every (logit row, draw) pair in one launch through logit_row, checked against the
// CPU sampler one by one. Returns the number of token mismatches (each printed).
int64_t compare_with_cpu(int64_t V, int rows_per_kind, int draws, const Config& cfg, uint64_t seed) {
  r1::Rng rng(seed);
  std::vector<Kind> kinds;
  std::vector<float> logits;
  for (Kind k : kKinds)
    for (int c = 0; c < rows_per_kind; ++c) {
      const auto z = make_row(k, V, rng);
      logits.insert(logits.end(), z.begin(), z.end());
      kinds.push_back(k);
    }
  const int64_t rows = int64_t(kinds.size()), R = rows * draws;
  std::vector<uint64_t> stream(static_cast<size_t>(R));
  std::vector<int32_t> step(static_cast<size_t>(R)), logit_row(step), token(step.size(), -1);
  std::vector<float> logprob(token.size(), 0.0f);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t prompt = int64_t(rng.next_u32() % 1000), sample = int64_t(rng.next_u32() % 64);
    stream[size_t(r)] = (uint64_t(uint32_t(prompt)) << 32) | uint32_t(sample);
    step[size_t(r)] = int32_t(rng.next_u32() % 4096);
    logit_row[size_t(r)] = int32_t(r % rows);
  }
  Dev<float> dz(logits);
  Dev<uint64_t> ds(stream);
  Dev<int32_t> dst(step), dlr(logit_row), dt(token);
  Dev<float> dlp(logprob);
  const r1::cuda::SampleConfig sc{cfg.temperature, cfg.top_p, cfg.top_k, seed * 7919, cfg.sampled};
  r1::cuda::sample_tokens(dt.ptr(), dlp.ptr(), dz.ptr(), V, R, V, sc, ds.ptr(), dst.ptr(), dlr.ptr(),
                          nullptr);
  const auto gt = dt.host();
  const auto glp = dlp.host();

  const r1::rollout::SamplingParams sp{cfg.temperature, cfg.top_p, cfg.top_k, sc.seed, cfg.sampled};
  std::vector<float> scratch;
  int64_t mismatches = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t row = r % rows, prompt = int64_t(stream[size_t(r)] >> 32),
                  sample = int64_t(stream[size_t(r)] & 0xffffffffu);
    const double u = r1::rollout::sample_uniform(sc.seed, prompt, sample, step[size_t(r)]);
    const auto d = r1::rollout::sample_token(logits.data() + row * V, V, sp, u, scratch);
    if (gt[size_t(r)] != d.token) {
      if (++mismatches <= 5)
        ADD_FAILURE() << "V=" << V << " " << config_name(cfg) << " row " << row << " ("
                      << kind_name(kinds[size_t(row)]) << ") u=" << u << ": GPU token " << gt[size_t(r)]
                      << ", CPU " << d.token;
      continue;
    }
    EXPECT_NEAR(glp[size_t(r)], d.logprob, 1e-5)
        << "V=" << V << " " << config_name(cfg) << " row " << row << " (" << kind_name(kinds[size_t(row)])
        << ") token " << d.token;
  }
  std::printf("[ SAMPLE  ] V=%-6lld %-32s %6lld draws, %lld mismatches\n", (long long)V,
              config_name(cfg).c_str(), (long long)R, (long long)mismatches);
  return mismatches;
}

const Config kConfigs[] = {
    {0.0f, 1.0f, 0},    // greedy
    {0.0f, 0.9f, 20},   // greedy ignores truncation
    {0.7f, 1.0f, 0},    // full distribution
    {1.0f, 1.0f, 0},    //
    {1.0f, 1.0f, 1},    // top-k
    {0.7f, 1.0f, 20},   //
    {1.0f, 0.9f, 0},    // top-p
    {0.7f, 0.95f, 0},   //
    {1.0f, 0.9f, 20},   // both
    {0.8f, 0.95f, 50},  //
    {1.3f, 0.5f, 0},    // top_p a power of 2: tie runs can meet the threshold exactly
};

TEST(CudaSampling, SmallVocabularyMatchesCpu) {
  REQUIRE_GPU();
  uint64_t seed = 100;
  for (const Config& c : kConfigs) EXPECT_EQ(compare_with_cpu(1000, 2, 300, c, ++seed), 0) << config_name(c);
}

TEST(CudaSampling, TinyVocabularyMatchesCpu) {
  REQUIRE_GPU();
  uint64_t seed = 200;
  for (const Config& c : kConfigs) EXPECT_EQ(compare_with_cpu(37, 2, 300, c, ++seed), 0) << config_name(c);
  // top_k >= V: no truncation by top-k.
  for (const Config& c : {Config{1.0f, 1.0f, 37}, Config{1.0f, 1.0f, 50}, Config{1.0f, 0.9f, 37}})
    EXPECT_EQ(compare_with_cpu(37, 2, 300, c, ++seed), 0) << config_name(c);
}

// grpo.sampler_logprobs: sampled, the log-prob of the distribution drawn from (tempered, renormalised over
// the kept tokens), as the CPU reports it; without truncation it is the tempered one.
TEST(CudaSampling, SampledDistributionLogprobsMatchCpu) {
  REQUIRE_GPU();
  uint64_t seed = 400;
  for (const Config& c : {Config{1.0f, 1.0f, 0, true}, Config{1.0f, 1.0f, 1, true}, Config{0.7f, 1.0f, 20, true},
                          Config{1.0f, 0.9f, 0, true}, Config{0.8f, 0.95f, 50, true}, Config{1.3f, 0.5f, 0, true}}) {
    EXPECT_EQ(compare_with_cpu(1000, 2, 300, c, ++seed), 0) << config_name(c);
    EXPECT_EQ(compare_with_cpu(151936, 1, 10, c, ++seed), 0) << config_name(c);
  }
}

// The vocabulary of Qwen2.5 (151936): the CPU reference sorts the whole row for top-p, so fewer draws.
TEST(CudaSampling, QwenVocabularyMatchesCpu) {
  REQUIRE_GPU();
  uint64_t seed = 300;
  for (const Config& c : kConfigs) EXPECT_EQ(compare_with_cpu(151936, 1, 30, c, ++seed), 0) << config_name(c);
}

// Inactive rows keep their outputs; active ones read the row logit_row names, ld floats apart (ld 0:
// all the same row; ld 1003: rows off 16-byte alignment, padded with +inf that must never be read);
// the draws repeat bit for bit. Truncated, untruncated and greedy configs (both kernels).
TEST(CudaSampling, SkippedRowsStridesAndIndirection) {
  REQUIRE_GPU();
  const int64_t V = 1000, ld = 1003, rows = 5, R = 40;
  r1::Rng rng(7);
  std::vector<float> logits(size_t(rows * ld), kInf);  // the padding must never be read
  for (int64_t i = 0; i < rows; ++i) {
    const auto z = make_row(i % 2 ? Kind::Bf16 : Kind::Normal, V, rng);
    std::copy(z.begin(), z.end(), logits.begin() + i * ld);
  }
  std::vector<uint64_t> stream(static_cast<size_t>(R));
  std::vector<int32_t> step(static_cast<size_t>(R)), logit_row(step), active(step);
  for (int64_t r = 0; r < R; ++r) {
    stream[size_t(r)] = (uint64_t(r / 4) << 32) | uint64_t(r % 4);
    step[size_t(r)] = int32_t(r * 3);
    logit_row[size_t(r)] = int32_t((r * 3) % rows);
    active[size_t(r)] = r % 3 != 1;
  }
  std::vector<float> scratch;
  // Both kernels: truncated (top-k, top-p), untruncated, greedy.
  for (const r1::cuda::SampleConfig& sc :
       {r1::cuda::SampleConfig{0.9f, 0.95f, 40, 11}, r1::cuda::SampleConfig{0.9f, 1.0f, 0, 11},
        r1::cuda::SampleConfig{0.0f, 1.0f, 0, 11}}) {
    for (int64_t stride : {ld, int64_t(0)}) {
      const r1::rollout::SamplingParams sp{sc.temperature, sc.top_p, sc.top_k, sc.seed};
      std::vector<int32_t> token(size_t(R), -7);
      std::vector<float> logprob(size_t(R), 42.0f);
      Dev<float> dz(logits), dlp(logprob);
      Dev<uint64_t> ds(stream);
      Dev<int32_t> dst(step), dlr(logit_row), dact(active), dt(token);
      const int32_t* lr = stride ? dlr.ptr() : nullptr;
      r1::cuda::sample_tokens(dt.ptr(), dlp.ptr(), dz.ptr(), stride, R, V, sc, ds.ptr(), dst.ptr(), lr,
                              dact.ptr());
      const auto gt = dt.host();
      const auto glp = dlp.host();
      for (int64_t r = 0; r < R; ++r) {
        if (!active[size_t(r)]) {
          EXPECT_EQ(gt[size_t(r)], -7) << "skipped row " << r;
          EXPECT_EQ(glp[size_t(r)], 42.0f) << "skipped row " << r;
          continue;
        }
        const int64_t row = stride ? logit_row[size_t(r)] : 0;
        const double u = r1::rollout::sample_uniform(sc.seed, r / 4, r % 4, step[size_t(r)]);
        const auto d = r1::rollout::sample_token(logits.data() + row * ld, V, sp, u, scratch);
        EXPECT_EQ(gt[size_t(r)], d.token)
            << "T " << sc.temperature << " top_p " << sc.top_p << " row " << r << " ld " << stride;
        EXPECT_NEAR(glp[size_t(r)], d.logprob, 1e-5)
            << "T " << sc.temperature << " row " << r << " ld " << stride;
      }
      // Again: the same bits.
      r1::cuda::sample_tokens(dt.ptr(), dlp.ptr(), dz.ptr(), stride, R, V, sc, ds.ptr(), dst.ptr(), lr,
                              dact.ptr());
      const auto gt2 = dt.host();
      const auto glp2 = dlp.host();
      EXPECT_EQ(gt2, gt);
      EXPECT_EQ(std::memcmp(glp2.data(), glp.data(), glp.size() * sizeof(float)), 0);
    }
  }
}

// The largest vocabulary the sampler takes (2^23 - 1 ids: 16,384 chunks, whose per-chunk state
// fills most of a block's shared memory), untruncated and greedy, against the CPU.
TEST(CudaSampling, LargestVocabularyMatchesCpu) {
  REQUIRE_GPU();
  uint64_t seed = 700;
  for (const Config& c : {Config{0.0f, 1.0f, 0}, Config{1.0f, 1.0f, 0}, Config{0.7f, 1.0f, 0, true}})
    EXPECT_EQ(compare_with_cpu((int64_t(1) << 23) - 1, 1, 2, c, ++seed), 0) << config_name(c);
}

// Clusters of 2 or 4 blocks a row (the default for untruncated and greedy draws of few rows): the
// same draws as the CPU, and bit for bit the one-block kernel's tokens and log-probs, over rows
// built to break ties, -inf entries, skipped rows and indirection. Truncated configs take one block.
TEST(CudaSampling, ClustersOfBlocksDrawTheSameBits) {
  REQUIRE_GPU();
  const int64_t sms = r1::cuda::context().sm_count;
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(8, {1.0f, 1.0f, 0}), 4) << "8 rows: a cluster of four each";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(8, {0.0f, 0.9f, 20}), 4) << "greedy ignores truncation";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(sms / 4, {1.0f, 1.0f, 0}), 4) << "a block an SM: four";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(sms / 4 + 1, {1.0f, 1.0f, 0}), 2) << "past a block an SM: two";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(sms, {1.0f, 1.0f, 0}), 2) << "as many rows as SMs: two";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(2 * sms, {1.0f, 1.0f, 0}), 1) << "two rows an SM: one";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(8, {1.0f, 0.9f, 0}), 1) << "top-p: one block";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(8, {1.0f, 1.0f, 20}), 1) << "top-k: one block";
  r1::cuda::set_sampling_blocks_per_row(1);
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(8, {1.0f, 1.0f, 0}), 1) << "forced to one block";
  r1::cuda::set_sampling_blocks_per_row(4);
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(1000, {1.0f, 1.0f, 0}), 4) << "forced to four blocks";
  EXPECT_EQ(r1::cuda::sampling_blocks_per_row(1000, {1.0f, 0.9f, 0}), 1) << "forced, but top-p: one block";
  uint64_t seed = 500;  // still forced to four blocks
  for (const Config& c : kConfigs) {
    EXPECT_EQ(compare_with_cpu(1000, 2, 100, c, ++seed), 0) << config_name(c);
    EXPECT_EQ(compare_with_cpu(37, 2, 50, c, ++seed), 0) << config_name(c);
  }
  for (const Config& c : {Config{0.0f, 1.0f, 0}, Config{1.0f, 1.0f, 0}, Config{0.7f, 1.0f, 0, true}})
    EXPECT_EQ(compare_with_cpu(151936, 1, 10, c, ++seed), 0) << config_name(c);

  for (int64_t V : {int64_t(37), int64_t(1000), int64_t(151936)}) {
    r1::Rng rng{uint64_t(V)};
    const int64_t rows = 7, R = 40;
    std::vector<float> logits;
    for (int64_t i = 0; i < rows; ++i) {
      const auto z = make_row(kKinds[i], V, rng);
      logits.insert(logits.end(), z.begin(), z.end());
    }
    std::vector<uint64_t> stream(static_cast<size_t>(R));
    std::vector<int32_t> step(static_cast<size_t>(R)), logit_row(step), active(step);
    for (int64_t r = 0; r < R; ++r) {
      stream[size_t(r)] = (uint64_t(rng.next_u32() % 1000) << 32) | uint64_t(r % 8);
      step[size_t(r)] = int32_t(rng.next_u32() % 4096);
      logit_row[size_t(r)] = int32_t(r % rows);
      active[size_t(r)] = r % 9 != 4;
    }
    for (const Config& c : {Config{0.0f, 1.0f, 0}, Config{0.7f, 1.0f, 0}, Config{1.0f, 1.0f, 0},
                            Config{1.3f, 1.0f, 0}, Config{1.0f, 1.0f, 0, true}}) {
      const r1::cuda::SampleConfig sc{c.temperature, c.top_p, c.top_k, 99, c.sampled};
      std::vector<std::vector<int32_t>> tokens;
      std::vector<std::vector<float>> logprobs;
      for (int n : {1, 2, 4}) {
        r1::cuda::set_sampling_blocks_per_row(n);
        std::vector<int32_t> token(size_t(R), -7);
        std::vector<float> logprob(size_t(R), 42.0f);
        Dev<float> dz(logits), dlp(logprob);
        Dev<uint64_t> ds(stream);
        Dev<int32_t> dst(step), dlr(logit_row), dact(active), dt(token);
        r1::cuda::sample_tokens(dt.ptr(), dlp.ptr(), dz.ptr(), V, R, V, sc, ds.ptr(), dst.ptr(), dlr.ptr(),
                                dact.ptr());
        tokens.push_back(dt.host());
        logprobs.push_back(dlp.host());
      }
      const std::string what = "V=" + std::to_string(V) + " " + config_name(c);
      for (size_t n = 1; n < tokens.size(); ++n) {
        EXPECT_EQ(tokens[0], tokens[n]) << what << ", cluster " << (1 << n);
        EXPECT_EQ(std::memcmp(logprobs[0].data(), logprobs[n].data(), size_t(R) * sizeof(float)), 0) << what;
        EXPECT_EQ(tokens[n][4], -7) << what << ": a skipped row keeps its outputs";
      }
    }
  }
  r1::cuda::set_sampling_blocks_per_row(0);
}

}  // namespace

#endif  // R1_HAVE_CUDA
