#pragma once
// Language consistency (R1 stage 2): the share of words in the chain of thought written in the target
// language, decided by Unicode script (Latin, Han, Kana, Hangul, Cyrillic, Arabic, Devanagari, Greek).
#include <string>

#include "reward/format_reward.h"
#include "reward/reward.h"

namespace r1::reward {

struct LanguageShare {
  double share = 0.0;  // target words / all words; 0 when there are no words
  int words = 0, target_words = 0;
};

// target: an ISO 639-1 code (en, fr, de, es, ..., zh, ja, ko, ru, ar, hi, el). Throws for unknown codes.
LanguageShare language_share(const std::string& text, const std::string& target);

struct LanguageOptions {
  std::string target = "en";
  FormatOptions format;  // where the think block is
};

class LanguageReward : public Reward {
 public:
  explicit LanguageReward(LanguageOptions o = {});
  std::string name() const override { return "language"; }
  Result score(const Sample& s) const override;

 private:
  LanguageOptions o_;
};

}  // namespace r1::reward
