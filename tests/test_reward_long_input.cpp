// Model output can be long and hostile. What reads a whole completion (the extractor) or prompt (the
// label order) must neither crash (std::regex recursed once per character and overflowed the stack on
// a 100 kB line) nor take quadratic time or memory on a megabyte; the normaliser and parser see only
// the extracted answer (ExtractOptions::max_chars).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "base/error.h"
#include "reward/math_equivalence.h"
#include "reward/math_extract.h"
#include "reward/pattern.h"

using namespace r1::reward;

namespace {

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// Seconds f takes.
template <typename F>
double seconds(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST(RewardPattern, MatchFindReplace) {
  Pattern p(R"(([-+]?[0-9]+)\s+([a-z]+))");
  auto m = p.match_whole("12 apples");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->group(1), "12");
  EXPECT_EQ(m->group(2), "apples");
  EXPECT_FALSE(p.match_whole("12 apples!"));
  EXPECT_FALSE(Pattern("a$").match_whole("a\n")) << "$ matches only at the very end";
  auto f = p.find("x 1 a, 2 b", 3);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->group(0), "2 b");
  EXPECT_EQ(f->begin(), 7u);
  EXPECT_EQ(Pattern("(-?)x").match_whole("x")->group(1), "") << "an empty group";
  EXPECT_EQ(Pattern(R"((\d),(\d))").replace_all("1,2 and 3,4", "$2$1"), "21 and 43");
  EXPECT_EQ(Pattern("b*").replace_all("abc", "-"), "-a--c-") << "empty matches step on by one (as Python's re.sub)";
  EXPECT_THROW(Pattern("(unclosed"), r1::Error);
}

TEST(RewardPattern, LongSubjectsNeitherOverflowNorHang) {
  Pattern words(R"(([0-9]+)\s+([A-Za-z][A-Za-z ]*))");
  EXPECT_TRUE(words.match_whole("1 " + std::string(2'000'000, 'a')));
  // Catastrophic backtracking gives up at the match limit: no match, not a hang.
  Pattern nested(R"((a|aa)+\d)");
  EXPECT_LT(seconds([&] { EXPECT_FALSE(nested.match_whole(std::string(5000, 'a') + "!")); }), 10.0);
}

TEST(MathLongInput, SentenceAnswerOfAMegabyte) {
  // Crashed with SIGSEGV (stack overflow in std::regex) before the patterns moved to PCRE2.
  // "1 aaaa…" is a number and a unit word: the number.
  EXPECT_EQ(extract_answer("The answer is 1 " + std::string(1'000'000, 'a'))->text, "1");
  EXPECT_EQ(extract_answer("The answer is 12 apples.")->text, "12");
  EXPECT_FALSE(extract_answer("The answer is " + std::string(1'000'000, '7')).has_value())
      << "longer than max_chars: refused";
}

TEST(MathLongInput, AdversarialCompletionsTakeLinearTime) {
  // Each took minutes (quadratic) at this size, or gigabytes (each nested box copied); now about a
  // second on a loaded machine, so the bound catches a regression without flaking.
  const size_t n = 200'000;
  const std::string inputs[] = {
      repeat("\\boxed{", n),                                 // unclosed boxes: each scanned to the end
      repeat("\\boxed{", n) + repeat("}", n),                // nested boxes: each copied
      repeat("\\boxed{1} ", n),                              // a row of boxes: each checked against the rest
      "The answer is that it is " + repeat("so ", n) + "5",  // fillers: the rest lowered once per filler
      "<answer>Thus it is " + repeat("so ", n) + "5</answer>",
      "#### " + repeat("1,000,", n),                         // a long hash answer
      "(" + repeat("a, ", n) + "b)",                         // a long label tuple in a prompt
  };
  for (const std::string& s : inputs) {
    double t = seconds([&] {
      extract_answer(s);
      label_order_in(s);
    });
    EXPECT_LT(t, 30.0) << s.substr(0, 40) << "... (" << s.size() << " bytes)";
  }
}

TEST(MathLongInput, SetsOfAlikeItemsMatchInPolynomialTime) {
  // Sets compare unordered. Backtracking over the pairings took factorial time when many items are
  // alike and one is not (fuzz/regressions/math_answer/set_of_alike_items_hangs ran for minutes).
  EquivalenceOptions o;
  o.symbolic = false;
  const std::string ones = repeat("1, ", 40);
  double t = seconds([&] {
    EXPECT_FALSE(equivalent("\\{" + ones + "2\\}", "\\{" + ones + "3\\}", o).equal);
    EXPECT_TRUE(equivalent("\\{" + ones + "2\\}", "\\{2, " + ones.substr(0, ones.size() - 2) + "\\}", o).equal);
    EXPECT_FALSE(equivalent("\\{" + ones + "2, 3\\}", "\\{" + ones + "2, 2\\}", o).equal);
  });
  EXPECT_LT(t, 10.0);
}
