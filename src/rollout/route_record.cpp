#include "rollout/route_record.h"

#include <algorithm>

#include "rollout/engine.h"

namespace r1::rollout {

namespace {

// Row `row` of dst becomes row t of src unless dst has it already: a row is recorded by the
// forward that first fed its token, whose logits drew the next token.
void record_once(model::ExpertRoutes& dst, int64_t row, const model::ExpertRoutes& src, int64_t t) {
  if (!model::route_row_recorded(dst, row)) model::copy_route_row(dst, row, src, t);
}

}  // namespace

void RouteRecord::prompt_token(int64_t prompt, int64_t row, int64_t t) {
  if (on_) record_once(prompts_[prompt], row, fwd_, t);
}

void RouteRecord::completion_token(int64_t flat, int64_t row, int64_t t) {
  if (on_) record_once(completions_[flat], row, fwd_, t);
}

void RouteRecord::finish(std::vector<Completion>& out, const std::vector<int64_t>& prompt_lens) {
  if (!on_) return;
  for (size_t f = 0; f < out.size(); ++f) {
    Completion& c = out[f];
    const int64_t P = prompt_lens[size_t(c.prompt_index)], N = P + int64_t(c.tokens.size());
    model::ExpertRoutes r = std::move(completions_[int64_t(f)]);
    const model::ExpertRoutes& prompt = prompts_[c.prompt_index];
    for (int64_t row = 0; row < P && row < prompt.tokens(); ++row) model::copy_route_row(r, row, prompt, row);
    model::pad_routes(r, N);
    c.routes = std::move(r);
  }
}

}  // namespace r1::rollout
