#include "reward/format_reward.h"

namespace r1::reward {
namespace {

size_t count(const std::string& s, const std::string& tag) {
  size_t n = 0;
  for (size_t p = 0; (p = s.find(tag, p)) != std::string::npos; p += tag.size()) ++n;
  return n;
}

bool blank(const std::string& s, size_t from, size_t to) {
  for (size_t i = from; i < to && i < s.size(); ++i)
    if (s[i] != ' ' && s[i] != '\n' && s[i] != '\t' && s[i] != '\r') return false;
  return true;
}

}  // namespace

FormatCheck check_format(const std::string& completion, const FormatOptions& o) {
  std::string s = o.prompt_opens_think ? o.think_open + completion : completion;
  if (o.strict) {
    for (const std::string* tag : {&o.think_open, &o.think_close, &o.answer_open, &o.answer_close})
      if (count(s, *tag) != 1) return {false, "'" + *tag + "' must appear exactly once"};
    size_t to = s.find(o.think_open), tc = s.find(o.think_close), ao = s.find(o.answer_open),
           ac = s.find(o.answer_close);
    if (!(to < tc && tc < ao && ao < ac)) return {false, "tags out of order"};
    if (!blank(s, 0, to)) return {false, "text before " + o.think_open};
    if (!blank(s, tc + o.think_close.size(), ao)) return {false, "text between the blocks"};
    if (!blank(s, ac + o.answer_close.size(), s.size())) return {false, "text after " + o.answer_close};
    if (blank(s, ao + o.answer_open.size(), ac)) return {false, "empty answer"};
    return {true, ""};
  }
  size_t to = s.find(o.think_open);
  if (to == std::string::npos) return {false, "no " + o.think_open};
  size_t tc = s.find(o.think_close, to);
  if (tc == std::string::npos) return {false, "no " + o.think_close};
  size_t ao = s.find(o.answer_open, tc);
  if (ao == std::string::npos) return {false, "no " + o.answer_open + " after the think block"};
  if (s.find(o.answer_close, ao) == std::string::npos) return {false, "no " + o.answer_close};
  return {true, ""};
}

std::string think_text(const std::string& completion, const FormatOptions& o) {
  std::string s = o.prompt_opens_think ? o.think_open + completion : completion;
  size_t to = s.find(o.think_open);
  if (to == std::string::npos) return completion;
  size_t from = to + o.think_open.size(), tc = s.find(o.think_close, from);
  return s.substr(from, tc == std::string::npos ? std::string::npos : tc - from);
}

Result FormatReward::score(const Sample& s) const {
  FormatCheck c = check_format(s.completion, o_);
  Result r{c.ok ? 1.0 : 0.0, {{"format_ok", c.ok}}};
  if (!c.ok) r.details["reason"] = c.reason;
  return r;
}

}  // namespace r1::reward
