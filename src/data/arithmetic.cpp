#include "data/arithmetic.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <utility>

#include "base/error.h"
#include "base/rng.h"

namespace r1::data {

namespace {

struct Operands {
  std::string a, b;
};

Operands parse(const Problem& p) {
  auto plus = p.question.find('+');
  R1_CHECK(plus != std::string::npos, "addition problem {} has no '+': '{}'", p.id, p.question);
  return {p.question.substr(0, plus), p.question.substr(plus + 1)};
}

// Column-by-column sum, least significant first; `skip_carry` drops the carry into that column.
std::string solve(const Operands& o, int skip_carry) {
  std::string steps, digits;
  const int n = int(std::max(o.a.size(), o.b.size()));
  int carry = 0;
  for (int i = 0; i < n; ++i) {
    const int x = i < int(o.a.size()) ? o.a[o.a.size() - 1 - size_t(i)] - '0' : 0;
    const int y = i < int(o.b.size()) ? o.b[o.b.size() - 1 - size_t(i)] - '0' : 0;
    if (i == skip_carry) carry = 0;
    const int s = x + y + carry;
    if (i) steps += ' ';
    steps += carry ? fmt::format("{}+{}+{}={}", x, y, carry, s) : fmt::format("{}+{}={}", x, y, s);
    digits += char('0' + s % 10);  // least significant first; reversed below
    carry = s / 10;
  }
  if (carry) digits += '1';
  std::reverse(digits.begin(), digits.end());
  return "<think>" + steps + "</think><answer>" + digits + "</answer>";
}

}  // namespace

std::vector<Problem> addition_problems(int64_t count, int digits, uint64_t seed, int64_t first_id) {
  R1_CHECK(digits >= 1 && digits <= 9, "addition_problems: digits must be in [1, 9], got {}", digits);
  Rng rng(seed, 17);
  int64_t lo = 1, hi;
  for (int i = 1; i < digits; ++i) lo *= 10;
  hi = lo * 10;
  std::vector<Problem> out;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t a = lo + int64_t(rng.next_u32() % uint32_t(hi - lo));
    const int64_t b = lo + int64_t(rng.next_u32() % uint32_t(hi - lo));
    out.push_back({first_id + i, fmt::format("{}+{}", a, b), std::to_string(a + b)});
  }
  return out;
}

std::vector<Problem> without_held_out(std::vector<Problem> from, const std::vector<Problem>& held_out) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const Problem& p : held_out) {
    const Operands o = parse(p);
    seen.insert({o.a, o.b});
    seen.insert({o.b, o.a});
  }
  std::erase_if(from, [&](const Problem& p) {
    const Operands o = parse(p);
    return seen.count({o.a, o.b}) > 0;
  });
  return from;
}

std::string addition_solution(const Problem& p) { return solve(parse(p), -1); }

std::string addition_solution_with_slip(const Problem& p, uint64_t seed) {
  const Operands o = parse(p);
  // Forget a carry in a column that has one; without any carry the slip is a wrong final digit.
  std::vector<int> with_carry;
  int carry = 0;
  const int n = int(std::max(o.a.size(), o.b.size()));
  for (int i = 0; i < n; ++i) {
    if (carry) with_carry.push_back(i);
    const int x = i < int(o.a.size()) ? o.a[o.a.size() - 1 - size_t(i)] - '0' : 0;
    const int y = i < int(o.b.size()) ? o.b[o.b.size() - 1 - size_t(i)] - '0' : 0;
    carry = (x + y + carry) / 10;
  }
  Rng rng(seed, uint64_t(p.id));
  if (!with_carry.empty()) return solve(o, with_carry[rng.next_u32() % with_carry.size()]);
  std::string s = solve(o, -1);
  const size_t at = s.find("</answer>") - 1;
  s[at] = char('0' + (s[at] - '0' + 1 + int(rng.next_u32() % 8)) % 10);
  return s;
}

}  // namespace r1::data
