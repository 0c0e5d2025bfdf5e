#include "reward/reflection.h"

#include <algorithm>
#include <cctype>

namespace r1::reward {

double reflection_rate(const std::vector<std::string>& completions) {
  static const char* kWords[] = {"wait", "re-check", "recheck", "verify", "double-check", "let me check", "hmm"};
  if (completions.empty()) return 0;
  int hits = 0;
  for (const std::string& c : completions) {
    std::string lower(c.size(), ' ');
    std::transform(c.begin(), c.end(), lower.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
    for (const char* w : kWords)
      if (lower.find(w) != std::string::npos) {
        ++hits;
        break;
      }
  }
  return double(hits) / double(completions.size());
}

}  // namespace r1::reward
