#include "model/random_init.h"

#include <algorithm>
#include <optional>

#include "base/progress.h"
#include "base/rng.h"
#include "model/checkpoint.h"

namespace r1::model {

namespace {
constexpr int64_t kChunk = int64_t(1) << 24;  // elements between progress updates
}  // namespace

void draw_init_values(const ParamSpec& spec, uint64_t seed, float std, int64_t begin, int64_t count, float* dst,
                      int64_t block) {
  const bool is_norm = spec.name.find("norm") != std::string::npos;
  const bool is_bias = spec.name.ends_with(".bias") || spec.name.ends_with("e_score_correction_bias");
  if (is_norm || is_bias) {
    std::fill(dst, dst + count, is_norm ? 1.0f : 0.0f);
    return;
  }
  const int64_t blocks = (count + block - 1) / block;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * block, hi = std::min(count, lo + block);
    Rng rng(seed, spec.stream);          // one stream per tensor: adding a tensor does not shift the others
    rng.seek(2 * uint64_t(begin + lo));  // element j is drawn from words 2j and 2j+1
    for (int64_t j = lo; j < hi; ++j) dst[j] = std * rng.normal();
  }
}

WeightSource random_weights(const ModelConfig& c, uint64_t seed, float std) {
  return weight_source(param_specs(c), [seed, std](const ParamSpec& s, size_t, int64_t from, int64_t n, float* dst) {
    draw_init_values(s, seed, std, from, n, dst);
  });
}

void draw_init_weights(const std::vector<ParamSpec>& specs, uint64_t seed, float std, float* flat,
                       int64_t progress_min) {
  const int64_t total = total_params(specs);
  const int64_t total_m = (total + 999'999) / 1'000'000;  // the progress line counts millions
  std::optional<Progress> bar;
  if (total >= progress_min) bar.emplace("drawing random weights", total_m, "Mparam");
  int64_t done = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const ParamSpec& s = specs[i];
    for (int64_t begin = 0; begin < s.numel(); begin += kChunk) {
      const int64_t n = std::min(kChunk, s.numel() - begin);
      draw_init_values(s, seed, std, begin, n, flat + s.offset + begin);
      if (bar) bar->update((done + n) / 1'000'000 - done / 1'000'000);
      done += n;
    }
  }
  if (bar) bar->update(total_m - done / 1'000'000);  // the rounded-up rest: the line ends at 100%
}

void write_random_model(const ModelConfig& cfg, const std::string& dir, DType dtype, uint64_t seed,
                        float std) {
  const std::vector<ParamSpec> specs = param_specs(cfg);
  auto draw = [&](size_t k, int64_t begin, int64_t n, float* dst) {
    draw_init_values(specs[k], seed, std, begin, n, dst);
  };
  save_model_streamed(cfg, specs, dir, dtype, draw, /*progress=*/true);
}

}  // namespace r1::model
