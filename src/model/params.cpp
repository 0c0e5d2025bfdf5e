#include "model/params.h"

#include <algorithm>

#include "base/error.h"

namespace r1::model {

int64_t ParamSpec::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

namespace {
int64_t aligned(int64_t n) { return (n + 15) / 16 * 16; }  // elements: 64-byte aligned starts
}  // namespace

std::vector<ParamSpec> param_specs(const ModelConfig& c) {
  std::vector<ParamSpec> specs;
  int64_t off = 0;
  Params declared;
  visit_params(declared, c, [&](Tensor&, const std::string& name, ParamShape shape) {
    specs.push_back({name, std::vector<int64_t>(shape), off});
    off += aligned(specs.back().numel());
  });
  return specs;
}

int64_t total_params(const std::vector<ParamSpec>& specs) {
  if (specs.empty()) return 0;
  const auto& last = specs.back();
  return last.offset + aligned(last.numel());
}

WeightSource weight_source(std::vector<ParamSpec> specs, TensorPart part) {
  return [specs = std::move(specs), part = std::move(part)](int64_t begin, int64_t count, float* dst) {
    std::fill(dst, dst + count, 0.0f);  // the padding between tensors
    const int64_t end = begin + count;
    for (size_t k = 0; k < specs.size(); ++k) {
      const ParamSpec& s = specs[k];
      const int64_t a = std::max(s.offset, begin), b = std::min(s.offset + s.numel(), end);
      if (b > a) part(s, k, a - s.offset, b - a, dst + (a - begin));
    }
  };
}

std::vector<int64_t> shard_counts(int64_t n, int ranks) {
  const int64_t per = (n / ranks) / 64 * 64;
  std::vector<int64_t> c(size_t(ranks), per);
  c.back() = n - per * (ranks - 1);
  return c;
}

Params bind_params(const ModelConfig& c, const std::vector<ParamSpec>& specs, void* base, DType dtype,
                   Device device) {
  Params p;
  size_t i = 0;
  visit_params(p, c, [&](Tensor& t, const std::string& name, ParamShape shape) {
    R1_CHECK(i < specs.size() && specs[i].name == name && specs[i].shape == std::vector<int64_t>(shape),
             "parameter '{}' is missing from the layout or has another shape", name);
    const ParamSpec& s = specs[i++];
    t = Tensor(base ? static_cast<char*>(base) + size_t(s.offset) * dtype_size(dtype) : nullptr, dtype, {}, device);
    t.ndim = int(s.shape.size());
    for (size_t d = 0; d < s.shape.size(); ++d) t.shape[d] = s.shape[d];
  });
  R1_CHECK(i == specs.size(), "the layout has {} parameters, the architecture {}", specs.size(), i);
  if (!c.has_score_head() && c.tie_word_embeddings) p.lm_head = p.embed;
  p.flat = Tensor(base, dtype, {total_params(specs)}, device);
  return p;
}

}  // namespace r1::model
