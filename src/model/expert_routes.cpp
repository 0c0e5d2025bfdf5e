#include "model/expert_routes.h"

#include <algorithm>

#include "base/error.h"

namespace r1::model {

ExpertRoutes unrecorded_routes(const ModelConfig& c, int64_t tokens) {
  ExpertRoutes r;
  r.k = c.moe.num_experts_per_tok;
  for (int l = 0; l < c.num_hidden_layers; ++l)
    if (c.is_moe_layer(l)) r.layers.push_back(l);
  r.experts.assign(r.layers.size(), std::vector<int32_t>(size_t(tokens * r.k), kUnrouted));
  return r;
}

namespace {

// An empty dst takes src's layers with no rows; otherwise their layers must match.
void adopt_layers(ExpertRoutes& dst, const ExpertRoutes& src) {
  if (dst.empty()) {
    dst.k = src.k;
    dst.layers = src.layers;
    dst.experts.assign(src.layers.size(), {});
    return;
  }
  R1_CHECK(dst.k == src.k && dst.layers == src.layers,
           "expert routes: routes of {} MoE layers with {} experts per token joined with {} layers with {}",
           dst.layers.size(), dst.k, src.layers.size(), src.k);
}

}  // namespace

void pad_routes(ExpertRoutes& dst, int64_t tokens) {
  for (std::vector<int32_t>& e : dst.experts)
    if (int64_t(e.size()) < tokens * dst.k) e.resize(size_t(tokens * dst.k), kUnrouted);
}

void copy_route_row(ExpertRoutes& dst, int64_t row, const ExpertRoutes& src, int64_t t) {
  adopt_layers(dst, src);
  pad_routes(dst, row + 1);
  const int64_t K = src.k;
  for (size_t i = 0; i < src.experts.size(); ++i)
    std::copy(src.experts[i].begin() + t * K, src.experts[i].begin() + (t + 1) * K,
              dst.experts[i].begin() + row * K);
}

bool route_row_recorded(const ExpertRoutes& r, int64_t row) {
  return !r.empty() && row < r.tokens() && r.experts[0][size_t(row * r.k)] != kUnrouted;
}

void append_routes(ExpertRoutes& dst, const ExpertRoutes& src) {
  adopt_layers(dst, src);
  for (size_t i = 0; i < src.experts.size(); ++i)
    dst.experts[i].insert(dst.experts[i].end(), src.experts[i].begin(), src.experts[i].end());
}

}  // namespace r1::model
