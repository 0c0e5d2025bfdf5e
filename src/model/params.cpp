#include "model/params.h"

#include <algorithm>
#include <unordered_map>

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

namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Version 1's order: each of q, k and v's biases right after its weight.
void to_version_1(std::vector<ParamSpec>& specs) {
  static const char* const kProj[] = {"q_proj", "k_proj", "v_proj"};
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!ends_with(specs[i].name, "self_attn.q_proj.weight")) continue;
    const std::string prefix = specs[i].name.substr(0, specs[i].name.size() - std::string("q_proj.weight").size());
    if (i + 6 > specs.size() || specs[i + 3].name != prefix + "q_proj.bias") continue;  // no biases: the same
    std::vector<ParamSpec> order;
    for (int j = 0; j < 3; ++j) {
      R1_CHECK(specs[i + size_t(j)].name == prefix + kProj[j] + ".weight" &&
                   specs[i + 3 + size_t(j)].name == prefix + kProj[j] + ".bias",
               "param_specs: {} is not in q, k, v weights then biases order", prefix);
      order.push_back(specs[i + size_t(j)]);
      order.push_back(specs[i + 3 + size_t(j)]);
    }
    std::copy(order.begin(), order.end(), specs.begin() + std::ptrdiff_t(i));
    i += 5;
  }
}

}  // namespace

std::vector<ParamSpec> param_specs(const ModelConfig& c, int version) {
  R1_CHECK(version == 1 || version == kParamLayoutVersion,
           "parameter layout version {} is unknown (this build reads 1 and {})", version, kParamLayoutVersion);
  std::vector<ParamSpec> specs;
  Params declared;
  visit_params(declared, c, [&](Tensor&, const std::string& name, ParamShape shape) {
    specs.push_back({name, std::vector<int64_t>(shape), 0});
  });
  std::vector<ParamSpec> first = specs;  // version 1's order numbers the init streams
  to_version_1(first);
  std::unordered_map<std::string, uint64_t> stream;
  for (size_t i = 0; i < first.size(); ++i) stream[first[i].name] = i;
  if (version == 1) specs = std::move(first);
  int64_t off = 0;
  for (ParamSpec& s : specs) {
    s.offset = off;
    s.stream = stream.at(s.name);
    off += aligned(s.numel());
  }
  return specs;
}

std::vector<FlatMove> layout_moves(const ModelConfig& c, int version) {
  const std::vector<ParamSpec> ours = param_specs(c), theirs = param_specs(c, version);
  bool same = true;
  for (size_t i = 0; i < ours.size(); ++i) same = same && ours[i].name == theirs[i].name;
  if (same) return {};
  std::unordered_map<std::string, const ParamSpec*> by_name;
  for (const ParamSpec& t : theirs) by_name[t.name] = &t;
  std::vector<FlatMove> moves;
  for (const ParamSpec& s : ours) {
    const auto it = by_name.find(s.name);
    R1_CHECK(it != by_name.end() && it->second->numel() == s.numel(), "layout_moves: {} differs in version {}",
             s.name, version);
    moves.push_back({s.offset, it->second->offset, s.numel()});
  }
  return moves;
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
