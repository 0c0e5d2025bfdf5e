#include "reward/math_reward.h"

#include "base/error.h"

namespace r1::reward {

MathReward::MathReward(MathOptions o) : o_(std::move(o)) {
  for (const std::string& m : o_.extract.methods)
    R1_CHECK(m == "boxed" || m == "answer_tag" || m == "answer_is" || m == "hash",
             "math reward: unknown extraction method '{}' (boxed, answer_tag, answer_is, hash)", m);
  R1_CHECK(o_.equivalence.rel_tol >= 0, "math reward: rel_tol must be >= 0");
  o_.extract.answer_open = o_.format.answer_open;
  o_.extract.answer_close = o_.format.answer_close;
}

Result MathReward::score(const Sample& s) const {
  Result r;
  auto finish = [&](double reward) {
    r.reward = reward;
    return r;
  };
  if (o_.require_format) {
    FormatCheck f = check_format(s.completion, o_.format);
    r.details["format_ok"] = f.ok;
    if (!f.ok) {
      r.details["reason"] = "format: " + f.reason;
      return finish(0.0);
    }
  }
  auto a = extract_answer(s.completion, o_.extract);
  if (!a) {
    counters().no_answer++;
    r.details["reason"] = "no final answer found";
    return finish(0.0);
  }
  r.details["extracted"] = a->text;
  r.details["method"] = a->method;
  EquivalenceOptions eq = o_.equivalence;
  eq.label_order = label_order_in(s.prompt);
  Decision d = equivalent(s.answer, a->text, eq);
  if (!d.equal &&
      a->boxes.size() > 1) {  // one answer boxed in two spellings: "\boxed{7.5} or \boxed{\frac{15}{2}}"
    bool each = true;
    for (const std::string& b : a->boxes) each = each && equivalent(s.answer, b, eq).equal;
    if (each) d = Decision{true, "boxes", ""};
  }
  r.details["check"] = d.check;
  if (!d.equal) r.details["reason"] = d.reason;
  return finish(d.equal ? 1.0 : 0.0);
}

}  // namespace r1::reward
