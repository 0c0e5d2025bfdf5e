// src/base: Philox RNG, bf16/f16 conversion, atomic file writes, progress lines.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "base/bf16.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/progress.h"
#include "base/rng.h"

namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Random123 kat_vectors: ctr[4] key[2] -> out[4], driven through Philox::generate's mapping
// key = {seed lo, seed hi}, ctr = {counter_lo lo, counter_lo hi, counter_hi lo, counter_hi hi}.
void expect_kat(const uint32_t ctr[4], const uint32_t key[2], const uint32_t want[4]) {
  const uint64_t seed = uint64_t(key[0]) | uint64_t(key[1]) << 32;
  const uint64_t lo = uint64_t(ctr[0]) | uint64_t(ctr[1]) << 32;
  const uint64_t hi = uint64_t(ctr[2]) | uint64_t(ctr[3]) << 32;
  uint32_t out[4];
  r1::Philox::generate(seed, hi, lo, out);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], want[i]) << "word " << i << std::hex << " got 0x" << out[i];
}

}  // namespace

TEST(BasePhilox, KnownAnswerZero) {
  const uint32_t ctr[4] = {0, 0, 0, 0}, key[2] = {0, 0};
  const uint32_t want[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
  expect_kat(ctr, key, want);
}

TEST(BasePhilox, KnownAnswerOnes) {
  const uint32_t ctr[4] = {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, key[2] = {0xffffffff, 0xffffffff};
  const uint32_t want[4] = {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd};
  expect_kat(ctr, key, want);
}

TEST(BasePhilox, KnownAnswerPi) {
  // Distinct words catch any swap of counter or key halves.
  const uint32_t ctr[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, key[2] = {0xa4093822, 0x299f31d0};
  const uint32_t want[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
  expect_kat(ctr, key, want);
}

TEST(BaseRng, UniformInUnitInterval) {
  r1::Rng rng(1234);
  double sum = 0.0;
  float lo = 1.0f, hi = 0.0f;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    float u = rng.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    lo = std::min(lo, u);
    hi = std::max(hi, u);
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_LT(lo, 1e-3f);
  EXPECT_GT(hi, 1.0f - 1e-3f);
}

TEST(BaseRng, NormalMoments) {
  r1::Rng rng(42, 7);
  double s = 0.0, s2 = 0.0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    float x = rng.normal();
    ASSERT_TRUE(std::isfinite(x));
    s += x;
    s2 += double(x) * x;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(var, 1.0, 0.03);
}

TEST(BaseRng, SameSeedSameStream) {
  r1::Rng a(99, 3), b(99, 3), other_seed(100, 3), other_stream(99, 4);
  int differ_seed = 0, differ_stream = 0;
  for (int i = 0; i < 1000; ++i) {
    uint32_t x = a.next_u32();
    ASSERT_EQ(x, b.next_u32()) << i;
    differ_seed += x != other_seed.next_u32();
    differ_stream += x != other_stream.next_u32();
  }
  EXPECT_GT(differ_seed, 990);
  EXPECT_GT(differ_stream, 990);
  EXPECT_EQ(a.counter(), 250u);  // four words per Philox block

  // The stream is Philox blocks (seed, stream, 0), (seed, stream, 1), ... in order.
  r1::Rng c(5, 6);
  uint32_t block[4];
  r1::Philox::generate(5, 6, 1, block);
  for (int i = 0; i < 4; ++i) c.next_u32();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.next_u32(), block[i]);
}

TEST(BaseBf16, RoundToNearestEven) {
  EXPECT_EQ(r1::f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(r1::f32_to_bf16(-1.5f), 0xbfc0);
  EXPECT_EQ(r1::f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(r1::f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);  // below half: down
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // tie, even: stays
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // tie, odd: up to even
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);  // above half: up
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0xbf818000u)), 0xbf82);  // negative tie
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0x3fffffffu)), 0x4000);  // carry into the exponent
  EXPECT_EQ(r1::f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // overflows to inf
  EXPECT_EQ(r1::f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(r1::f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0x00000001u)), 0x0000);  // tiniest subnormal rounds to 0
  EXPECT_EQ(r1::f32_to_bf16(from_bits(0x00018000u)), 0x0002);  // subnormal tie to even
  EXPECT_FLOAT_EQ(r1::bf16_to_f32(0x4049), 3.140625f);
}

TEST(BaseBf16, NaNStaysNaN) {
  for (uint32_t u : {0x7fc00000u, 0x7f800001u, 0x7f800100u, 0xffc00000u, 0xff800001u, 0x7fffffffu}) {
    uint16_t h = r1::f32_to_bf16(from_bits(u));
    EXPECT_TRUE(std::isnan(r1::bf16_to_f32(h))) << std::hex << u << " -> " << h;
    EXPECT_EQ(h >> 15, u >> 31) << "sign kept for " << std::hex << u;
  }
}

TEST(BaseBf16, RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    float f = r1::bf16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(r1::f32_to_bf16(f), h) << std::hex << h;
    ASSERT_EQ(bits(f), h << 16);
  }
}

TEST(BaseF16, ToF32) {
  EXPECT_EQ(r1::f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(r1::f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(r1::f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(r1::f16_to_f32(0x7bff), 65504.0f);                  // largest normal
  EXPECT_EQ(r1::f16_to_f32(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(r1::f16_to_f32(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(r1::f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(r1::f16_to_f32(0x8200), -std::ldexp(1.0f, -15));    // negative subnormal
  EXPECT_EQ(r1::f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(r1::f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(r1::f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(r1::f16_to_f32(0x7c01)));
  float nz = r1::f16_to_f32(0x8000);
  EXPECT_EQ(nz, 0.0f);
  EXPECT_TRUE(std::signbit(nz));
}

TEST(BaseF16, EveryFiniteValueMatchesFormula) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31) continue;
    double want = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, int(e) - 15);
    if (h & 0x8000) want = -want;
    ASSERT_EQ(double(r1::f16_to_f32(uint16_t(h))), want) << std::hex << h;
  }
}

namespace {
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() / ("r1_test_base_" + std::to_string(getpid()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};
}  // namespace

TEST(BaseFs, WriteFileAtomicWritesAndReplaces) {
  TempDir dir;
  const std::string p = r1::fs::join(dir.path.string(), "out.bin");
  std::string bytes("hello\0world", 11);
  r1::fs::write_file_atomic(p, bytes);
  ASSERT_TRUE(r1::fs::exists(p));
  EXPECT_EQ(r1::fs::read_file(p), bytes);
  r1::fs::write_file_atomic(p, "second");
  EXPECT_EQ(r1::fs::read_file(p), "second");
  r1::fs::write_file_atomic(p, "");
  EXPECT_EQ(r1::fs::read_file(p), "");
  // Only the target remains: no temporary files left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) {
    ++files;
    EXPECT_EQ(e.path().filename(), "out.bin");
  }
  EXPECT_EQ(files, 1);
}

TEST(BaseFs, WriteIntoMissingDirectoryThrowsAndLeavesNothing) {
  TempDir dir;
  const std::string missing = r1::fs::join(dir.path.string(), "no/such/dir");
  const std::string p = r1::fs::join(missing, "out.bin");
  try {
    r1::fs::write_file_atomic(p, "data");
    FAIL() << "expected r1::Error";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no/such/dir"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(r1::fs::exists(p));
  EXPECT_FALSE(r1::fs::exists(missing));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path));
}

TEST(BaseFs, ReadMissingAndJoin) {
  EXPECT_THROW(r1::fs::read_file("/nonexistent/r1/file.txt"), r1::Error);
  EXPECT_FALSE(r1::fs::exists("/nonexistent/r1/file.txt"));
  EXPECT_EQ(r1::fs::join("a", "b"), "a/b");
  EXPECT_EQ(r1::fs::join("a/", "b"), "a/b");
  EXPECT_EQ(r1::fs::join("", "b"), "b");
}

// A phase that is usually short (a rollout) stays silent until quiet_for's time has passed, even at
// its end; without it the first update draws.
TEST(BaseProgress, QuietPhaseDrawsNothingBeforeItsTime) {
  testing::internal::CaptureStderr();
  {
    r1::Progress quiet("rollout", 100, "tok");
    quiet.quiet_for(10.0);
    quiet.update(60);
    quiet.update(40);
    quiet.finish();
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  testing::internal::CaptureStderr();
  {
    r1::Progress loud("rollout", 100, "tok");
    loud.update(60);
    loud.finish();
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("rollout ["), std::string::npos) << err;
}

TEST(BaseProgress, ConstructsAndUpdates) {
  r1::Progress p("test", 10, "tok");
  for (int i = 0; i < 10; ++i) p.update(1, i % 2 ? "loss 1.23" : "");
  p.update(5);  // past the total
  p.finish();
  r1::Progress unknown("unknown", 0);
  unknown.update(3, "x");
  unknown.finish();
}
