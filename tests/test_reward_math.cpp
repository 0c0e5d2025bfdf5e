// Math reward units: extraction, normalisation, the equivalence chain, structured answers, deadlines.
#include <gtest/gtest.h>

#include "reward/latex_normalize.h"
#include "reward/latex_to_ginac.h"
#include "reward/math_equivalence.h"
#include "reward/math_expr.h"
#include "reward/math_extract.h"
#include "reward/math_reward.h"

using namespace r1::reward;

TEST(MathExtract, LastBoxedWithNestedBraces) {
  EXPECT_EQ(*last_boxed("first \\boxed{1} then \\boxed{\\frac{1}{2}} end"), "\\frac{1}{2}");
  EXPECT_EQ(*last_boxed("\\fbox{\\{1, 2\\}}"), "\\{1, 2\\}");
  EXPECT_EQ(*last_boxed("so \\boxed 5$"), "5");
  EXPECT_FALSE(last_boxed("\\boxed{unclosed").has_value());
  EXPECT_FALSE(last_boxed("nothing here").has_value());
}

TEST(MathExtract, EachFormAndItsPriority) {
  EXPECT_EQ(extract_answer("<think>hm</think><answer>42</answer>")->text, "42");
  EXPECT_EQ(extract_answer("<answer>It is \\boxed{7}</answer>")->method, "boxed");
  EXPECT_EQ(extract_answer("So the final answer is $\\frac{3}{4}$. Done")->text, "\\frac{3}{4}");
  EXPECT_EQ(extract_answer("The answer is 3.5.")->text, "3.5");
  EXPECT_EQ(extract_answer("work\n#### 1,600\n")->text, "1,600");
  ExtractOptions only_boxed;
  only_boxed.methods = {"boxed"};
  EXPECT_FALSE(extract_answer("The answer is 5", only_boxed).has_value());
  EXPECT_FALSE(extract_answer("no answer at all").has_value());
}

TEST(MathNormalize, TheListFromTheIssue) {
  EXPECT_EQ(normalize_latex("\\left( 3, \\dfrac{\\pi}{2} \\right)"), "( 3, \\frac{\\pi}{2} )");
  EXPECT_EQ(normalize_latex("\\tfrac12"), "\\frac{1}{2}");
  EXPECT_EQ(normalize_latex("\\frac 34"), "\\frac{3}{4}");
  EXPECT_EQ(normalize_latex("\\frac9{19}"), "\\frac{9}{19}");
  EXPECT_EQ(normalize_latex("\\sqrt2"), "\\sqrt{2}");
  EXPECT_EQ(normalize_latex("10,\\!080"), "10080");
  EXPECT_EQ(normalize_latex("11,\\! 111,\\! 111,\\! 100"), "11111111100");
  EXPECT_EQ(normalize_latex("1,600"), "1600");
  EXPECT_EQ(normalize_latex("(2,12) \\cup (12,102)"), "(2,12) \\cup (12,102)");
  EXPECT_EQ(normalize_latex("90^\\circ"), "90");
  EXPECT_EQ(normalize_latex("50\\%"), "50");
  EXPECT_EQ(normalize_latex("\\$32,\\!348"), "32348");
  EXPECT_EQ(normalize_latex("15\\mbox{ cm}^2"), "15");
  EXPECT_EQ(normalize_latex("5.4 \\text{ cents}"), "5.4");
  EXPECT_EQ(normalize_latex("\\text{Evelyn}"), "\\text{Evelyn}");
  EXPECT_EQ(normalize_latex("4210_{5}"), "4210_5");
  EXPECT_EQ(normalize_latex("$x^2$."), "x^2");
}

TEST(MathParse, ImplicitMultiplicationAndFunctions) {
  auto v = [](const std::string& s) { return evaluate(*parse_latex(normalize_latex(s)), {})->real(); };
  EXPECT_NEAR(v("3\\pi"), 3 * M_PI, 1e-12);
  EXPECT_NEAR(v("2\\sqrt{3}"), 2 * std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(v("\\sqrt[3]{-8}"), -2, 1e-12);
  EXPECT_NEAR(v("\\frac{1}{2} \\cdot 4 \\div 2"), 1, 1e-12);
  EXPECT_NEAR(v("2^{10}"), 1024, 1e-9);
  EXPECT_NEAR(v("\\log_2 8"), 3, 1e-12);
  EXPECT_NEAR(v("\\sin^2 \\frac{\\pi}{4}"), 0.5, 1e-12);
  EXPECT_NEAR(v("5!"), 120, 1e-9);
  EXPECT_NEAR(v("|-3|"), 3, 1e-12);
  EXPECT_NEAR(v("\\binom{5}{2}"), 10, 1e-9);
  EXPECT_FALSE(parse_latex("1, 2").has_value());
  EXPECT_FALSE(parse_latex("204_5").has_value());
  EXPECT_FALSE(parse_latex(std::string(50, '(') + "1" + std::string(50, ')')).has_value());  // depth bound
}

TEST(MathEquivalence, ChainDecides) {
  auto check = [](const std::string& g, const std::string& p) { return equivalent(g, p).check; };
  EXPECT_EQ(check("\\frac{1}{2}", "\\dfrac12"), "exact");
  EXPECT_EQ(check("\\frac{1}{2}", "0.5"), "numeric");
  EXPECT_EQ(check("x^2+2x+1", "(x+1)^2"), "symbolic");
  EXPECT_EQ(check("(1,2)", "(1, \\frac{4}{2})"), "structure");
  EXPECT_EQ(check("\\text{Evelyn}", "evelyn"), "text");
  EXPECT_EQ(check("\\text{(B)}", "B"), "choice");
}

TEST(MathEquivalence, Equivalent) {
  for (auto [g, p] : std::vector<std::pair<std::string, std::string>>{
           {"\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"},
           {"-2 + 7i", "7i - 2"},
           {"1 \\pm \\sqrt{19}", "1-\\sqrt{19}, 1+\\sqrt{19}"},
           {"\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5, 1-\\sqrt5"},
           {"-2,1", "x = 1 \\text{ or } x = -2"},
           {"(-\\infty, 0]", "(-\\infty,0]"},
           {"(0,9) \\cup (9,36)", "(9,36)\\cup(0,9)"},
           {"\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", "\\begin{bmatrix} 0.2 \\\\ -3.6 \\end{bmatrix}"},
           {"y = 2x + 3", "3 + 2x"},
           {"5x - 7y + 11z + 4 = 0", "-10x + 14y - 22z - 8 = 0"},
           {"\\cot x", "\\frac{\\cos x}{\\sin x}"},
           {"137 \\frac{1}{2}", "137.5"},
           {"023", "23"},
           {"x \\in [-2,7]", "[-2, 7]"},
           {"10\\%", "10"},
           {"\\$18.90", "18.9"},
       })
    EXPECT_TRUE(equivalent(g, p).equal) << g << " vs " << p << ": " << equivalent(g, p).reason;
}

TEST(MathEquivalence, NearMissesRejected) {
  for (auto [g, p] : std::vector<std::pair<std::string, std::string>>{
           {"\\frac{1}{2}", "\\frac{2}{1}"},
           {"3.14", "\\pi"},
           {".0000672", ".0000673"},
           {"(-\\infty, 0]", "(-\\infty, 0)"},
           {"(3,4]", "[3,4]"},
           {"(1,2)", "(2,1)"},
           {"\\{1,2\\}", "\\{1,2,3\\}"},
           {"x^2+2x+1", "(x-1)^2"},
           {"\\text{east}", "west"},
           {"\\text{(B)}", "C"},
           {"-5", "5"},
           {"204_5", "54"},
           {"2k", "2k+1"},
       })
    EXPECT_FALSE(equivalent(g, p).equal) << g << " vs " << p;
}

TEST(MathEquivalence, SymbolicDeadlineScoresZeroAndIsCounted) {
  // Expanding a huge power is slow in GiNaC; the deadline turns it into a counted 0, not a hang.
  auto before = counters().symbolic_timeouts.load();
  EquivalenceOptions o;
  o.symbolic_timeout_ms = 200;
  auto t0 = std::chrono::steady_clock::now();
  Decision d = equivalent("(x+y+z+1)^{80}(x-y)", "(x+y+z+1)^{80}x-(1+x+y+z)^{80}y", o);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_FALSE(d.equal);
  EXPECT_LT(s, 2.0);
  EXPECT_EQ(counters().symbolic_timeouts.load(), before + 1);
}

TEST(MathReward, FormatGateAndDetails) {
  MathOptions o;
  o.require_format = true;
  MathReward m(o);
  Result good = m.score({"<think>2+2</think>\n<answer>\\boxed{4}</answer>", "4", {}});
  EXPECT_EQ(good.reward, 1.0);
  EXPECT_EQ(good.details["extracted"], "4");
  Result unformatted = m.score({"\\boxed{4}", "4", {}});
  EXPECT_EQ(unformatted.reward, 0.0);
  EXPECT_NE(unformatted.details["reason"].get<std::string>().find("format"), std::string::npos);
  MathReward plain;
  EXPECT_EQ(plain.score({"\\boxed{4}", "4", {}}).reward, 1.0);
  EXPECT_EQ(plain.score({"I don't know", "4", {}}).details["reason"], "no final answer found");
}
