#include "rollout/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "base/error.h"
#include "base/rng.h"
#include "base/sampling_math.h"

namespace r1::rollout {

double sample_uniform(uint64_t seed, int64_t prompt, int64_t sample, int64_t step) {
  uint32_t r[4];
  const uint64_t hi = (uint64_t(uint32_t(prompt)) << 32) | uint32_t(sample);
  Philox::generate(seed, hi, uint64_t(step), r);
  return uniform53(r);
}

void check_sampling(const SamplingParams& p) {
  R1_CHECK(p.temperature >= 0 && p.top_p > 0 && p.top_p <= 1 && p.top_k >= 0,
           "sampling: temperature must be >= 0, top_p in (0, 1], top_k >= 0 (got {}, {}, {})", p.temperature,
           p.top_p, p.top_k);
}

namespace {

using sampling::kChunk;
using sampling::kLanes;
using sampling::kPerLane;

// One chunk of the row as the untruncated draw weighs it (base/sampling_math.h): its largest
// logit m, each id's weight e = e^((z - m) / T) (0 past V), each lane's float sum of its kPerLane
// weights in id order, and those sums' lane scan.
struct Chunk {
  float m;
  float e[kChunk];
  double incl[kLanes];
};

void weigh_chunk(const float* z, int64_t V, int64_t c, float inv_t, Chunk& ch) {
  const int64_t base = c * kChunk, n = std::min<int64_t>(kChunk, V - base);
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::fmax(m, z[base + i]);
  ch.m = m;
  for (int i = 0; i < kChunk; ++i) ch.e[i] = i < n ? sampling::weight_f(z[base + i], m, inv_t) : 0.0f;
  for (int l = 0; l < kLanes; ++l) {
    float a = 0.0f;
    for (int j = 0; j < kPerLane; ++j) a = a + ch.e[l * kPerLane + j];
    ch.incl[l] = double(a);
  }
  sampling::lane_scan(ch.incl);
}

// The last id of chunk c with a positive weight, or -1.
int64_t last_positive(const Chunk& ch, int64_t c) {
  for (int i = kChunk - 1; i >= 0; --i)
    if (ch.e[i] > 0.0f) return c * kChunk + i;
  return -1;
}

// The draw inside chunk c, whose mass starts at `lower` of the row's running mass (scale: the
// chunk's weights times scale are the row's): the first lane whose running mass passes target, then
// that lane's first id that does; where rounding leaves the target unpassed, that unit's last id
// of positive weight. -1 when there is none.
int64_t walk_chunk(const Chunk& ch, int64_t c, double lower, double scale, double target) {
  int k = 0;
  while (k < kLanes && !(sampling::add_d(lower, sampling::mul_d(ch.incl[k], scale)) > target)) ++k;
  if (k == kLanes) return last_positive(ch, c);
  const double excl = k == 0 ? 0.0 : ch.incl[k - 1];
  float f = 0.0f;
  int64_t last = -1;
  for (int j = 0; j < kPerLane; ++j) {
    const float e = ch.e[k * kPerLane + j];
    f = f + e;
    if (!(e > 0.0f)) continue;
    last = c * kChunk + k * kPerLane + j;
    const double upper = sampling::add_d(lower, sampling::mul_d(sampling::add_d(excl, double(f)), scale));
    if (upper > target) return last;
  }
  return last;
}

// The untruncated draw (and the greedy one), as cuda::sample_tokens computes it. The row is cut
// into chunks of kChunk ids; chunk c weighs its ids against its own largest logit m_c, then
// scales by s_c = e^((m_c - M) / T) (M the row's largest), so one read of the row suffices on the
// GPU. The chunks' masses w_c = (its lane scan's total) * s_c are added sequentially within each
// of 32 row lanes (lane L holds chunks [qL, qL + q), q = ceil(chunks / 32)) and the lanes' sums
// scanned: the mass is the scan's total. The draw takes the first row lane whose scanned mass
// passes u * mass, the first of its chunks whose running mass does, then walk_chunk; where
// rounding leaves the target unpassed at a level, that level's last unit of positive mass. The
// greedy token, and the fallback when nothing weighs anything, is the lowest id of the largest
// logit (0 if every logit is NaN).
Draw sample_untruncated(const float* z, int64_t V, float temperature, double u, std::vector<float>& scratch) {
  const float inv_t = sampling::inv_temperature_f(temperature);
  const double inv_t_d = temperature == 0.0f ? 1.0 : 1.0 / double(temperature);
  const int64_t chunks = (V + kChunk - 1) / kChunk, q = (chunks + kLanes - 1) / kLanes;
  Chunk ch;
  scratch.resize(static_cast<size_t>(chunks));  // each chunk's largest logit
  // and its lane scan's total: kept per thread, so that a draw (one a token) allocates nothing
  thread_local std::vector<double> total;
  total.resize(static_cast<size_t>(chunks));
  float M = -std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < chunks; ++c) {
    weigh_chunk(z, V, c, inv_t, ch);
    scratch[size_t(c)] = ch.m;
    total[size_t(c)] = ch.incl[kLanes - 1];
    M = std::fmax(M, ch.m);
  }
  int64_t argmax = 0;
  for (int64_t i = 0; i < V; ++i)
    if (z[i] == M) {
      argmax = i;
      break;
    }
  // Chunk c's mass on the row's scale, and that scale (recomputed where needed, as the GPU does).
  auto mass_of = [&](int64_t c, double& scale) {
    scale = double(sampling::weight_f(scratch[size_t(c)], M, inv_t));
    return total[size_t(c)] * scale;
  };
  double B[kLanes];
  for (int64_t L = 0; L < kLanes; ++L) {
    double b = 0.0, scale;
    for (int64_t c = L * q; c < std::min(chunks, (L + 1) * q); ++c) b = b + mass_of(c, scale);
    B[L] = b;
  }
  sampling::lane_scan(B);
  const double mass = B[kLanes - 1];
  const double log_z = double(M) * inv_t_d + std::log(mass);
  auto drawn = [&](int64_t t) -> Draw { return {int32_t(t), float(double(z[t]) * inv_t_d - log_z)}; };
  if (temperature == 0.0f) return drawn(argmax);

  const double target = u * mass;
  auto last_of = [&](int64_t c0, int64_t c1) {  // the last id of positive weight in chunks [c0, c1)
    double scale;
    for (int64_t c = c1 - 1; c >= c0; --c) {
      if (!(mass_of(c, scale) > 0.0)) continue;
      weigh_chunk(z, V, c, inv_t, ch);
      const int64_t t = last_positive(ch, c);
      if (t >= 0) return t;
    }
    return argmax;
  };
  int64_t L = 0;
  while (L < kLanes && !(B[L] > target)) ++L;
  if (L == kLanes) return drawn(last_of(0, chunks));
  const int64_t c0 = std::min(chunks, L * q), c1 = std::min(chunks, (L + 1) * q);
  double acc = L == 0 ? 0.0 : B[L - 1];
  for (int64_t c = c0; c < c1; ++c) {
    double scale;
    const double next = acc + mass_of(c, scale);
    if (next > target) {
      weigh_chunk(z, V, c, inv_t, ch);
      const int64_t t = walk_chunk(ch, c, acc, scale, target);
      return drawn(t >= 0 ? t : argmax);
    }
    acc = next;
  }
  return drawn(last_of(c0, c1));
}

}  // namespace

Draw sample_token(const float* logits, int64_t V, const SamplingParams& p, double u,
                  std::vector<float>& scratch) {
  R1_CHECK(V > 0, "sample_token: empty vocabulary");
  check_sampling(p);
  const bool truncated = p.temperature != 0.0f && ((p.top_k > 0 && p.top_k < V) || p.top_p < 1.0f);
  if (!truncated) return sample_untruncated(logits, V, p.temperature, u, scratch);
  // Truncated: e = e^((z - max) / T) rounded to float, summed in double; the kept set, then an
  // inverse CDF over it in id order (cuda::sample_tokens' truncated kernel computes the same).
  const double inv_t = 1.0 / double(p.temperature);
  // Log-sum-exp of the tempered logits, for the reported log-prob.
  float mx = logits[0];
  int64_t argmax = 0;
  for (int64_t i = 1; i < V; ++i)
    if (logits[i] > mx) mx = logits[argmax = i];
  double sum = 0;
  scratch.resize(size_t(V));
  for (int64_t i = 0; i < V; ++i) {
    const float e = float(std::exp((double(logits[i]) - mx) * inv_t));
    scratch[size_t(i)] = e;
    sum += e;
  }
  const double log_z = double(mx) * inv_t + std::log(sum);
  auto logprob_of = [&](int64_t t) { return float(double(logits[t]) * inv_t - log_z); };

  double mass = sum;
  {
    // The kept set, in probability order (ties by id, so it is deterministic): the top-k, then
    // within it the smallest prefix whose probability reaches top_p of its mass (as HF applies them).
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    auto by_prob = [&](int32_t a, int32_t b) {
      return scratch[size_t(a)] != scratch[size_t(b)] ? scratch[size_t(a)] > scratch[size_t(b)] : a < b;
    };
    int64_t keep = V;
    if (p.top_k > 0 && p.top_k < V) {
      keep = p.top_k;
      std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_prob);
    } else {
      std::sort(order.begin(), order.end(), by_prob);
    }
    if (p.top_p < 1.0f) {
      double kept = 0;
      for (int64_t i = 0; i < keep; ++i) kept += scratch[size_t(order[size_t(i)])];
      double acc = 0;
      for (int64_t i = 0; i < keep; ++i) {
        acc += scratch[size_t(order[size_t(i)])];
        if (acc >= double(p.top_p) * kept) {
          keep = i + 1;
          break;
        }
      }
    }
    for (int64_t i = keep; i < V; ++i) scratch[size_t(order[size_t(i)])] = 0.0f;
    mass = 0;
    for (int64_t i = 0; i < V; ++i) mass += scratch[size_t(i)];
  }
  // The distribution sampled from: the kept tokens' share of the tempered mass taken out.
  const double log_kept = p.sampled_logprobs && mass != sum ? std::log(mass / sum) : 0.0;
  auto drawn = [&](int64_t t) -> Draw { return {int32_t(t), float(double(logprob_of(t)) - log_kept)}; };

  // Inverse CDF in id order (not probability order): the same law, and a parallel prefix sum over
  // ids (the GPU sampler) reproduces it.
  const double target = u * mass;
  double acc = 0;
  int64_t last_nonzero = argmax;  // always kept
  for (int64_t i = 0; i < V; ++i) {
    if (scratch[size_t(i)] <= 0) continue;
    acc += scratch[size_t(i)];
    last_nonzero = i;
    if (acc > target) return drawn(i);
  }
  return drawn(last_nonzero);  // rounding at the very top
}

}  // namespace r1::rollout
