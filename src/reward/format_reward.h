#pragma once
// The R1 output format: <think>…</think> then <answer>…</answer>.
#include <string>

#include "reward/reward.h"

namespace r1::reward {

struct FormatOptions {
  std::string think_open = "<think>", think_close = "</think>";
  std::string answer_open = "<answer>", answer_close = "</answer>";
  // strict: each tag exactly once, in order, nothing but whitespace outside them.
  // lenient: a think block followed somewhere later by an answer block.
  bool strict = true;
  // R1 templates end the prompt with "<think>", so the completion starts inside the block.
  bool prompt_opens_think = false;
};

struct FormatCheck {
  bool ok = false;
  std::string reason;
};

FormatCheck check_format(const std::string& completion, const FormatOptions& o);

// The text between think_open and think_close (the whole completion when there is no think block).
std::string think_text(const std::string& completion, const FormatOptions& o);

class FormatReward : public Reward {
 public:
  explicit FormatReward(FormatOptions o = {}) : o_(std::move(o)) {}
  std::string name() const override { return "format"; }
  Result score(const Sample& s) const override;

 private:
  FormatOptions o_;
};

}  // namespace r1::reward
