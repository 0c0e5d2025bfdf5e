#pragma once
// Philox4x32-10 counter-based RNG: the numbers depend only on (key, counter), so the same
// stream comes out on CPU and GPU and regardless of batching or thread order.
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

// Marks the functions that CUDA code calls too (the GPU sampler draws the CPU's numbers).
#ifdef __CUDACC__
#define R1_HOST_DEVICE __host__ __device__
#else
#define R1_HOST_DEVICE
#endif

namespace r1 {

struct Philox {
  R1_HOST_DEVICE static void round(uint32_t ctr[4], const uint32_t key[2]) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * ctr[0];
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    const uint32_t c0 = hi1 ^ ctr[1] ^ key[0];
    const uint32_t c2 = hi0 ^ ctr[3] ^ key[1];
    ctr[0] = c0; ctr[1] = lo1; ctr[2] = c2; ctr[3] = lo0;
  }
  // Four 32-bit random words for (seed, counter).
  R1_HOST_DEVICE static void generate(uint64_t seed, uint64_t counter_hi, uint64_t counter_lo,
                                      uint32_t out[4]) {
    uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
    uint32_t ctr[4] = {uint32_t(counter_lo), uint32_t(counter_lo >> 32), uint32_t(counter_hi),
                       uint32_t(counter_hi >> 32)};
    for (int i = 0; i < 10; ++i) {
      round(ctr, key);
      key[0] += 0x9E3779B9u;
      key[1] += 0xBB67AE85u;
    }
    for (int i = 0; i < 4; ++i) out[i] = ctr[i];
  }
};

// A double in [0, 1) from four Philox words: 53 random bits, fine enough that no token's
// probability interval is missed. Exact arithmetic, so CPU and GPU get the same value.
R1_HOST_DEVICE inline double uniform53(const uint32_t w[4]) {
  const uint64_t bits = (uint64_t(w[0]) << 21) ^ uint64_t(w[1] >> 11);
  return double(bits & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// The dropout mask of element i under (seed, stream): kept when the top 24 bits of Philox word i % 4
// of counter i / 4, as a uniform in [0, 1), are >= p. Counter-based, so every device and every
// pass (the backward regenerates it) sees the same mask.
R1_HOST_DEVICE inline bool dropout_keep(const uint32_t w[4], uint64_t i, float p) {
  return float(w[i % 4] >> 8) * (1.0f / 16777216.0f) >= p;
}

// A sequential stream over Philox for initialisation and shuffling: (seed, stream) pick the stream.
class Rng {
 public:
  explicit Rng(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}
  uint32_t next_u32() {
    if (idx_ == 4) {
      Philox::generate(seed_, stream_, counter_++, buf_);
      idx_ = 0;
    }
    return buf_[idx_++];
  }
  // Uniform in [0, 1) with 24 random bits.
  float uniform() { return float(next_u32() >> 8) * (1.0f / 16777216.0f); }
  // Standard normal (Box-Muller), from exactly two words (model/random_init.cpp seeks by it).
  float normal() {
    float u1 = (float(next_u32() >> 8) + 1.0f) * (1.0f / 16777217.0f);
    float u2 = uniform();
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.28318530718f * u2);
  }
  uint64_t counter() const { return counter_; }
  // Jumps to word `w` of the stream: the next next_u32() returns what the (w+1)-th call from the
  // start would. Blocks of one stream can then be drawn in parallel with the sequential numbers.
  void seek(uint64_t w) {
    counter_ = w / 4;
    idx_ = 4;
    if (w % 4 == 0) return;
    Philox::generate(seed_, stream_, counter_++, buf_);
    idx_ = int(w % 4);
  }

 private:
  uint64_t seed_, stream_, counter_ = 0;
  uint32_t buf_[4] = {};
  int idx_ = 4;
};

// A uniformly random permutation of 0..n-1 (Fisher-Yates) fixed by (seed, stream): the trainers'
// per-epoch data orders, so any epoch's order is rebuilt on resume without replaying the ones before.
inline std::vector<int64_t> permutation(int64_t n, uint64_t seed, uint64_t stream) {
  std::vector<int64_t> perm(size_t(n > 0 ? n : 0));
  for (int64_t j = 0; j < n; ++j) perm[size_t(j)] = j;
  Rng rng(seed, stream);
  for (int64_t j = n - 1; j > 0; --j) std::swap(perm[size_t(j)], perm[rng.next_u32() % uint32_t(j + 1)]);
  return perm;
}

}  // namespace r1
