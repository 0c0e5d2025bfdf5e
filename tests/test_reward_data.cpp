// The math verifier on real data: every MATH-500 / AIME 2024 / AMC 2023 gold answer must match itself
// inside a typical completion and a programmatically rewritten equivalent form, and reject near-misses
// built from it; every GSM8K test solution's "#### N" must be recovered and matched.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>

#include "reward/latex_normalize.h"
#include "reward/math_answer.h"
#include "reward/math_reward.h"
#include "math_decisions.h"
#include "test_util.h"

using namespace r1::reward;

namespace {

struct Gold {
  std::string source, answer;
};

std::vector<Gold> load_golds() {
  std::vector<Gold> out;
  for (const char* f : {"math500", "aime24", "amc23"}) {
    std::ifstream in(r1::test::source_path(std::string("data/") + f + ".jsonl"));
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      const auto& a = j["answer"];
      out.push_back({f, a.is_string() ? a.get<std::string>() : a.dump()});
    }
  }
  return out;
}

std::string no_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

// Signed top-level terms of a sum: "x^2-3x+1" → {"x^2", "-3x", "+1"}.
std::vector<std::string> terms(const std::string& s) {
  std::vector<std::string> t;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '(' || c == '{' || c == '[') ++depth;
    if (c == ')' || c == '}' || c == ']') --depth;
    bool after_op = i > 0 && std::string("^_(*/{").find(s[i - 1]) != std::string::npos;
    if (depth == 0 && (c == '+' || c == '-') && i > start && !after_op &&
        s.substr(start, i - start).find_first_not_of(' ') != std::string::npos) {
      t.push_back(s.substr(start, i - start));
      start = i;
    }
  }
  t.push_back(s.substr(start));
  return t;
}

// One equivalent spelling of a scalar, by the first rule that applies.
std::string rewrite_scalar(const std::string& s) {
  static const std::regex decimal(R"(^(-?)(\d*)\.(\d+)$)"), integer(R"(^(-?)0*(\d+)$)"),
      frac(R"(\\frac\{([^{}]+)\}\{([^{}]+)\})"), sqrt(R"(\\sqrt\{([^{}]+)\})"), slash(R"(^(-?)(\d+)/(\d+)$)");
  std::smatch m;
  if (std::regex_match(s, m, decimal))  // 0.15 → \frac{15}{100}
    return m[1].str() + "\\frac{" + std::to_string(std::stoll(m[2].str() + m[3].str())) + "}{1" +
           std::string(m[3].length(), '0') + "}";
  if (std::regex_match(s, m, integer)) {
    if (s != m[1].str() + m[2].str()) return m[1].str() + m[2].str();  // AIME "023" → 23
    return m[1].str() + "\\frac{" + std::to_string(2 * std::stoll(m[2].str())) + "}{2}";
  }
  if (std::regex_match(s, m, slash)) return m[1].str() + "\\frac{" + m[2].str() + "}{" + m[3].str() + "}";
  auto t = terms(s);
  if (t.size() > 1) {  // reorder the sum
    std::string out;
    for (auto it = t.rbegin(); it != t.rend(); ++it) {
      std::string term = *it;
      while (!term.empty() && term[0] == ' ') term.erase(0, 1);
      if (term[0] != '+' && term[0] != '-') term = "+" + term;
      out += term;
    }
    return out[0] == '+' ? out.substr(1) : out;
  }
  if (std::regex_search(s, m, frac))  // \frac{a}{b} → (a)/(b)
    return m.prefix().str() + "(" + m[1].str() + ")/(" + m[2].str() + ")" + m.suffix().str();
  if (std::regex_search(s, m, sqrt)) return m.prefix().str() + "(" + m[1].str() + ")^{1/2}" + m.suffix().str();
  if (s == "\\infty") return "+\\infty";
  if (s == "-\\infty") return s;
  static const std::regex base_numeral(R"(^(\d+)_(\d+)$)");  // 204_5: only its spelling can change
  if (std::regex_match(s, m, base_numeral)) return m[1].str() + "_{" + m[2].str() + "}";
  if (s.find("\\cot") == 0) return "\\frac{1}{\\tan" + s.substr(4) + "}";
  return "1 \\cdot (" + s + ")";  // nothing specific applies
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string to_latex(const Answer& a);
std::vector<std::string> items_latex(const Answer& a) {
  std::vector<std::string> v;
  for (const Answer& i : a.items) v.push_back(to_latex(i));
  return v;
}
std::string to_latex(const Answer& a) {
  switch (a.kind) {
    case Answer::Scalar: return a.text;
    case Answer::Text: return "\\text{" + a.text + "}";
    case Answer::Choice: return "(" + a.text + ")";
    case Answer::Sequence: return std::string(1, a.open) + join(items_latex(a), ", ") + a.close;
    case Answer::Set: return "\\{" + join(items_latex(a), ", ") + "\\}";
    case Answer::Union: return join(items_latex(a), " \\cup ");
    case Answer::Equation: return a.items[0].text + " = " + a.items[1].text;
    case Answer::Relation: {
      std::string out = a.items[0].text;
      for (size_t i = 0; i < a.ops.size(); ++i) out += " " + a.ops[i] + " " + a.items[i + 1].text;
      return out;
    }
    case Answer::Ratio:
      return join(items_latex(a), " : ");
    case Answer::Labelled: {
      std::vector<std::string> parts;
      for (const Answer& i : a.items) parts.push_back(i.label + " = " + to_latex(i));
      return join(parts, ", ");
    }
    case Answer::Matrix: {
      std::vector<std::string> rows, cells = items_latex(a);
      for (int r = 0; r < a.rows; ++r)
        rows.push_back(join(std::vector<std::string>(cells.begin() + r * a.cols, cells.begin() + (r + 1) * a.cols),
                            " & "));
      return "\\begin{bmatrix}" + join(rows, " \\\\ ") + "\\end{bmatrix}";
    }
  }
  return "";
}

// An equivalent form of a whole answer: elements rewritten, unordered collections reversed.
Answer rewrite(Answer a) {
  for (Answer& i : a.items)
    if (a.kind != Answer::Equation || &i == &a.items[0] || a.items[0].text.size() > 1) i = rewrite(i);
  if (a.kind == Answer::Scalar) a.text = rewrite_scalar(a.text);
  if (a.kind == Answer::Set || a.kind == Answer::Union) std::reverse(a.items.begin(), a.items.end());
  if (a.kind == Answer::Text && !a.text.empty()) a.text[0] = char(std::toupper(a.text[0]));
  if (a.kind == Answer::Choice) a.kind = Answer::Scalar;  // "(B)" → "B"
  return a;
}

Answer bump(Answer a) {  // off by one in the first scalar
  if (a.kind == Answer::Scalar) a.text = "(" + a.text + ")+1";
  else if (!a.items.empty()) a.items.back() = bump(a.items.back());
  return a;
}

// Answers that must NOT match the gold.
std::vector<std::string> near_misses(const Answer& g) {
  std::vector<std::string> out;
  switch (g.kind) {
    case Answer::Scalar:
      out.push_back("(" + g.text + ")+1");
      out.push_back("(" + g.text + ")-1");
      if (g.text != "0") out.push_back("-(" + g.text + ")"), out.push_back("2(" + g.text + ")");
      break;
    case Answer::Sequence: {
      Answer swapped = g, flipped = g;
      std::swap(swapped.items.front(), swapped.items.back());
      if (no_spaces(to_latex(swapped)) != no_spaces(to_latex(g))) out.push_back(to_latex(swapped));
      flipped.open = g.open == '(' ? '[' : '(';
      out.push_back(to_latex(flipped));
      out.push_back(to_latex(bump(g)));
      break;
    }
    case Answer::Set:
    case Answer::Union: {
      Answer fewer = g;
      fewer.items.pop_back();
      out.push_back(to_latex(fewer));
      out.push_back(to_latex(bump(g)));
      break;
    }
    case Answer::Matrix:
    case Answer::Relation:
    case Answer::Ratio:
    case Answer::Labelled:
    case Answer::Equation: out.push_back(to_latex(bump(g))); break;
    case Answer::Text: out.push_back("\\text{not " + g.text + "}"); break;
    case Answer::Choice: out.push_back(std::string(1, g.text[0] == 'A' ? 'B' : 'A')); break;
  }
  return out;
}

}  // namespace

TEST(RewardData, GoldAnswersMatchThemselvesRewritesAndRejectNearMisses) {
  std::vector<Gold> golds = load_golds();
  ASSERT_EQ(golds.size(), 570u);  // 500 MATH-500 + 30 AIME 2024 + 40 AMC 2023
  MathReward reward(r1::test::math_decisions_only());
  std::vector<Sample> self, rewritten, misses;
  std::vector<size_t> miss_gold;
  int nontrivial = 0;
  for (size_t i = 0; i < golds.size(); ++i) {
    const std::string& g = golds[i].answer;
    self.push_back({"<think>Let me work this out step by step.</think>\n<answer>The final answer is $\\boxed{" + g +
                        "}$.</answer>",
                    g, {}});
    std::string norm = normalize_latex(g);
    Answer parsed = parse_answer(norm);
    std::string rw = to_latex(rewrite(parsed));
    if (parsed.kind == Answer::Text) rw = rewrite(parsed).text;  // "Evelyn" without \text
    nontrivial += no_spaces(normalize_latex(rw)) != no_spaces(norm);
    rewritten.push_back({"So the answer is \\boxed{" + rw + "}", g, {}});
    for (const std::string& m : near_misses(parsed)) {
      misses.push_back({"Thus \\boxed{" + m + "}", g, {}});
      miss_gold.push_back(i);
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  auto rs = score_batch(reward, self, r1::test::kScoreThreads),
       rr = score_batch(reward, rewritten, r1::test::kScoreThreads),
       rm = score_batch(reward, misses, r1::test::kScoreThreads);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int ok_self = 0, ok_rw = 0, rejected = 0;
  std::map<std::string, int> by_check;
  for (size_t i = 0; i < golds.size(); ++i) {
    ok_self += rs[i].reward == 1.0;
    ok_rw += rr[i].reward == 1.0;
    by_check[rr[i].details.value("check", "?")]++;
    EXPECT_EQ(rs[i].reward, 1.0) << golds[i].source << " gold '" << golds[i].answer << "': " << rs[i].details.dump();
    EXPECT_EQ(rr[i].reward, 1.0) << golds[i].source << " gold '" << golds[i].answer << "' rewritten '"
                                 << rewritten[i].completion << "': " << rr[i].details.dump();
  }
  for (size_t i = 0; i < misses.size(); ++i) {
    rejected += rm[i].reward == 0.0;
    EXPECT_EQ(rm[i].reward, 0.0) << "gold '" << golds[miss_gold[i]].answer << "' accepted near-miss '"
                                 << misses[i].completion << "': " << rm[i].details.dump();
  }
  std::printf("[ data ] self %d/%zu, rewritten %d/%zu (%d differ after normalisation), near-misses rejected "
              "%d/%zu, %.2f s on %d threads\n",
              ok_self, golds.size(), ok_rw, golds.size(), nontrivial, rejected, misses.size(), secs,
              r1::test::kScoreThreads);
  std::printf("[ data ] rewritten forms decided by: %s\n", nlohmann::json(by_check).dump().c_str());
}

TEST(RewardData, Gsm8kHashAnswersRecoveredAndMatched) {
  std::ifstream in(r1::test::source_path("data/gsm8k_test.jsonl"));
  MathReward reward(r1::test::math_decisions_only());
  std::vector<Sample> worked, boxed;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    std::string sol = j["answer"], gold = sol.substr(sol.rfind("####") + 4);
    gold.erase(std::remove(gold.begin(), gold.end(), ' '), gold.end());
    worked.push_back({sol, gold, {}});  // the reference solution as a completion
    std::string plain = gold;
    plain.erase(std::remove(plain.begin(), plain.end(), ','), plain.end());
    boxed.push_back({"... so she makes $\\boxed{" + plain + "}$ dollars.", gold, {}});
  }
  ASSERT_EQ(worked.size(), 1319u);
  auto rw = score_batch(reward, worked, r1::test::kScoreThreads),
       rb = score_batch(reward, boxed, r1::test::kScoreThreads);
  int ok_w = 0, ok_b = 0;
  for (size_t i = 0; i < worked.size(); ++i) {
    ok_w += rw[i].reward == 1.0 && rw[i].details["method"] == "hash";
    ok_b += rb[i].reward == 1.0;
    EXPECT_EQ(rw[i].reward, 1.0) << worked[i].answer << ": " << rw[i].details.dump();
    EXPECT_EQ(rb[i].reward, 1.0) << boxed[i].answer << ": " << rb[i].details.dump();
  }
  std::printf("[ data ] GSM8K test: #### recovered and matched %d/%zu; boxed without separators %d/%zu\n", ok_w,
              worked.size(), ok_b, boxed.size());
}
