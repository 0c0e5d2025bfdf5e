// Math reward units: extraction, normalisation, the equivalence chain, structured answers, deadlines.
#include <gtest/gtest.h>

#include "reward/latex_normalize.h"
#include "reward/latex_to_ginac.h"
#include "reward/math_answer.h"
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
           {"\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}",
            "\\begin{pmatrix}1 & 3 \\\\ 2 & 4\\end{pmatrix}"},
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

TEST(MathExtract, BoxesInARowAndValuesInSentences) {
  EXPECT_EQ(last_boxed_row("so $\\boxed{2}$ and $\\boxed{-3}$."), (std::vector<std::string>{"2", "-3"}));
  EXPECT_EQ(last_boxed_row("\\boxed{1}, \\boxed{2} \\text{ or } \\boxed{3}"),
            (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(last_boxed_row("got \\boxed{2}. Checking again, it is \\boxed{3}"),
            (std::vector<std::string>{"3"}));
  EXPECT_EQ(last_boxed_row("\\boxed{5} and \\boxed{5}"), (std::vector<std::string>{"5"}));
  EXPECT_EQ(extract_answer("$\\boxed{2}$ and $\\boxed{-3}$")->text, "2, -3");
  EXPECT_EQ(value_in_sentence("The volume of $ABCD$ is 120"), "120");
  EXPECT_EQ(value_in_sentence("therefore 120 cubic units"), "120");
  EXPECT_EQ(value_in_sentence("3 pi"), "3 pi");    // math words are not units
  EXPECT_EQ(value_in_sentence("x = 5"), "x = 5");  // no prose: kept as written
  EXPECT_EQ(value_in_sentence("\\text{Evelyn}"), "\\text{Evelyn}");
  EXPECT_EQ(extract_answer("Final Answer: The volume is 120. I hope it is correct.")->text, "120");
  EXPECT_EQ(extract_answer("<answer>There are 12 ways</answer>")->text, "12");
}

TEST(MathNormalize, SeparatorsRelationsAndSpellings) {
  EXPECT_EQ(normalize_latex("14{,}916"), "14916");
  EXPECT_EQ(normalize_latex("1{,}000{,}000"), "1000000");
  EXPECT_EQ(normalize_latex("\\cfrac{1}{3}"), "\\frac{1}{3}");
  EXPECT_EQ(normalize_latex("\\textnormal{Evelyn}"), "\\text{Evelyn}");
  EXPECT_EQ(normalize_latex("28 percent"), "28");
  EXPECT_EQ(normalize_latex("x \\geq 5"), "x \\ge 5");
  EXPECT_EQ(normalize_latex("x >= 5"), "x \\ge 5");
  EXPECT_EQ(normalize_latex("x \\neq 3"), "x \\ne 3");
  EXPECT_EQ(normalize_latex("\\leqslant"), "\\le");
  // A row break stays a row break (it was once read as "\\" + "\ ", merging a matrix's rows).
  EXPECT_EQ(normalize_latex("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}");
}

TEST(MathAnswer, NewKinds) {
  Answer iv = parse_answer(normalize_latex("-2 \\le x \\le 7"));
  EXPECT_EQ(iv.kind, Answer::Sequence);
  EXPECT_EQ(iv.open, '[');
  EXPECT_EQ(iv.close, ']');
  EXPECT_EQ(iv.label, "x");
  Answer ray = parse_answer(normalize_latex("x > 5"));
  EXPECT_EQ(ray.open, '(');
  EXPECT_EQ(ray.items[1].text, "\\infty");
  EXPECT_EQ(parse_answer(normalize_latex("x \\ne 3")).kind, Answer::Union);
  EXPECT_EQ(parse_answer("f(2) < f(1) < f(4)").kind, Answer::Relation);
  EXPECT_EQ(parse_answer("11:21").kind, Answer::Ratio);
  Answer named = parse_answer("p = 3, q = 2");
  EXPECT_EQ(named.kind, Answer::Labelled);
  EXPECT_EQ(named.items[1].label, "q");
  Answer pair = parse_answer("(p,q) = (3,2)");
  EXPECT_EQ(pair.kind, Answer::Labelled);
  EXPECT_TRUE(pair.ordered_labels);
  EXPECT_EQ(parse_answer("x = 1, x = 2").kind, Answer::Set);  // one name: a solution set
  Answer m = parse_answer("2\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}");
  EXPECT_EQ(m.kind, Answer::Matrix);
  EXPECT_EQ(m.rows, 2);
  Answer approx = parse_answer("2\\sqrt{2} \\approx 2.83");
  EXPECT_EQ(approx.text, "2\\sqrt{2}");
  EXPECT_EQ(approx.approx, "2.83");
  EXPECT_EQ(label_order_in("Enter the ordered pair $(m,b).$"), (std::vector<std::string>{"m", "b"}));
  EXPECT_TRUE(label_order_in("Find f(x).").empty());
}

TEST(MathEquivalence, NewFormsAndTheirNearMisses) {
  for (auto [g, p, equal] : std::vector<std::tuple<std::string, std::string, bool>>{
           {"[5,\\infty)", "x \\geq 5", true},
           {"[5,\\infty)", "x > 5", false},
           {"(-\\infty, 2) \\cup (3, \\infty)", "x < 2 \\text{ or } x > 3", true},
           {"(-\\infty, 2) \\cup (3, \\infty)", "x \\le 2 \\text{ or } x > 3", false},
           {"(3,2)", "(p,q) = (3,2)", true},
           {"(3,2)", "(p,q) = (2,3)", false},
           {"(3,2)", "p = 3, q = 2", false},  // no question: the order is unknown
           {"11:21", "\\frac{11}{21}", true},
           {"11:21", "21:11", false},
           {"\\tan^2 y + 1", "\\sec^2 y", true},
           {"\\sec^2 y", "\\tan^2 y - 1", false},
           {"\\sin(x + \\frac{\\pi}{2})", "\\cos x", true},
           {"55", "\\sum_{k=1}^{10} k", true},
           {"15", "\\sum_{i=0}^{3} 2^i", true},  // i bound by the sum, not the imaginary unit
           {"56", "\\sum_{k=1}^{10} k", false},
           {"\\begin{pmatrix}19 & 22 \\\\ 43 & 50\\end{pmatrix}",
            "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}",
            true},
           {"\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}",
            "\\begin{pmatrix}1 & 3 \\\\ 2 & 4\\end{pmatrix}", false},
           {"\\begin{pmatrix} -2 \\\\ -14 \\end{pmatrix}", "(-2, -14)", true},
           {"2.83", "2\\sqrt{2} \\approx 2.83", true},
           {"2.83", "2.8 \\approx 2.83", false},
           {"2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", true},
       })
    EXPECT_EQ(equivalent(g, p).equal, equal) << g << " vs " << p << ": " << equivalent(g, p).reason;
  EquivalenceOptions with_question;
  with_question.label_order = {"p", "q"};
  EXPECT_TRUE(equivalent("(3,2)", "q = 2, p = 3", with_question).equal);
  EXPECT_FALSE(equivalent("(3,2)", "q = 3, p = 2", with_question).equal);
}

TEST(MathReward, SeveralBoxesAndTheQuestionsOrder) {
  MathReward m;
  EXPECT_EQ(m.score({"$\\boxed{-2}$ and $\\boxed{1}$", "1,-2", {}}).reward, 1.0);
  EXPECT_EQ(m.score({"$\\boxed{2}$ or $\\boxed{3}$", "2", {}}).reward, 0.0);  // hedging is not an answer
  Result twice = m.score({"$\\boxed{7\\frac{1}{2}},$ or $\\boxed{\\frac{15}{2}}$", "7.5", {}});
  EXPECT_EQ(twice.reward, 1.0);
  EXPECT_EQ(twice.details["check"], "boxes");
  EXPECT_EQ(m.score({"\\boxed{m = \\frac{3}{2}, b = -13}",
                     "\\left( \\frac{3}{2}, -13 \\right)",
                     {},
                     "Enter the ordered pair $(m,b).$"})
                .reward,
            1.0);
  EXPECT_EQ(m.score({"\\boxed{b = \\frac{3}{2}, m = -13}",
                     "\\left( \\frac{3}{2}, -13 \\right)",
                     {},
                     "Enter the ordered pair $(m,b).$"})
                .reward,
            0.0);
}
