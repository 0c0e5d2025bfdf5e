// Chat templates: the real templates of Qwen3, Llama 3 and DeepSeek-V3 against transformers'
// apply_chat_template goldens (text and ids), the R1-Zero prompt, and Jinja errors.
#include <gtest/gtest.h>

#include "base/error.h"
#include "test_text_util.h"
#include "text/chat_template.h"

namespace r1 {
namespace {

class ChatGolden : public ::testing::TestWithParam<const char*> {};

TEST_P(ChatGolden, TextAndIdsMatchTransformers) {
  text::ChatTemplate tmpl = text::ChatTemplate::load(test::tokenizer_dir(GetParam()));
  const text::Tokenizer& tok = test::real_tokenizer(GetParam());
  auto lines = test::golden_lines(std::string(GetParam()) + ".chat.jsonl");
  ASSERT_GE(lines.size(), 20u);
  for (const auto& l : lines) {
    std::string text = tmpl.render(l["messages"], l["add_generation_prompt"].get<bool>(), l["kwargs"]);
    EXPECT_EQ(text, l["text"].get<std::string>()) << l["messages"].dump();
    EXPECT_EQ(tok.encode(text), l["ids"].get<std::vector<int32_t>>()) << l["messages"].dump();
  }
}

INSTANTIATE_TEST_SUITE_P(Real, ChatGolden, ::testing::ValuesIn(test::kTokenizerNames));

TEST(ChatTemplate, R1ZeroPrompt) {
  auto t = text::ChatTemplate::builtin("r1-zero");
  nlohmann::ordered_json msgs = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "What is 1+1?"}])");
  std::string s = t.render(msgs, true);
  EXPECT_EQ(s,
            "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
            "assistant first thinks about the reasoning process in the mind and then provides the user with the "
            "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
            "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: "
            "What is 1+1?. Assistant:");
  msgs.push_back({{"role", "assistant"}, {"content", "<think> 1+1=2 </think> <answer> 2 </answer>"}});
  EXPECT_TRUE(t.render(msgs, false).ends_with("Assistant: <think> 1+1=2 </think> <answer> 2 </answer>"));
}

std::string render(const std::string& src, const std::string& ctx_json = "{}") {
  text::ChatTemplate t(src, nlohmann::ordered_json::object());
  auto ctx = nlohmann::ordered_json::parse(ctx_json);
  return t.render(nlohmann::ordered_json::array(), false, ctx);
}

TEST(Jinja, ExpressionsAndWhitespace) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ 2 ** 10 }}|{{ 1 / 2 }}"), "7|3|-4|1|1024|0.5");
  EXPECT_EQ(render("{{ 'abc'[::-1] }}{{ [1,2,3][-1] }}{{ 'héllo'[1:3] }}"), "cba3él");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }}{{ ' x '.strip() }}{{ 'xxhixx'.strip('x') }}"), "['a', 'b', '', 'c']xhi");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [true, none, 1.5, 'é\"']} | tojson }}"), R"({"a": 1, "b": [true, null, 1.5, "é\""]})");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.index0 }}{{ x }}{% if loop.last %}!{% endif %}{% endfor %}"), "011223!");
  EXPECT_EQ(render("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for x in range(5) %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}"), "10");
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(render("  {% if true %}\n  yes\n  {% endif %}\nno"), "  yes\nno");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("{{ x is defined }}{{ y is not none }}{{ x.a is defined }}", R"({"x": {"b": 1}, "y": null})"),
            "TrueFalseFalse");
  EXPECT_EQ(render("{% macro f(a, b='!') %}{{ a }}{{ b }}{% endmacro %}{{ f('hi') }}{{ f('yo', b='?') }}"), "hi!yo?");
  EXPECT_EQ(render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", R"({"d": {"z": 1, "a": 2}})"), "z=1;a=2;");
  EXPECT_EQ(render("{% for x in [1,2,3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}"), "13");
  EXPECT_EQ(render("{{ 'yes' if 1 > 2 else 'no' }}{{ [3,1] | length }}{{ 'a' ~ 1 }}"), "no2a1");
}

TEST(Jinja, UnsupportedConstructNamesItAndTheLine) {
  try {
    render("line one\n{% include 'other.jinja' %}");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'include'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  try {
    render("a\nb\n{{ x | frobnicate }}");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("filter 'frobnicate'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  try {
    render("{{ raise_exception('Only user and assistant roles are supported!') }}");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Only user and assistant"), std::string::npos) << e.what();
  }
  EXPECT_THROW(render("{% if x %}unclosed"), Error);
}

// Each case below is a construct where r1 once rendered differently from jinja2 (values from jinja2 3.1).
TEST(Jinja, IndentAsJinja2) {
  // Blank lines stay empty, first=true indents the first line, blank=true indents blank lines too,
  // a string width is the indent text (Command-R's tool-call JSON).
  EXPECT_EQ(render("{{ 'a\n\nb\n' | indent(2) }}|"), "a\n\n  b\n|");
  EXPECT_EQ(render("{{ '{\n' | indent(4, first=true) }}|"), "    {\n|");
  EXPECT_EQ(render("{{ 'a\n\nb' | indent(2, true, true) }}"), "  a\n  \n  b");
  EXPECT_EQ(render("{{ 'a\nb' | indent('> ') }}"), "a\n> b");
  EXPECT_EQ(render("{{ 'a\r\nb' | indent(1) }}"), "a\n b");  // splitlines: \r\n becomes \n
}

TEST(Jinja, SplitlinesAsPython) {
  EXPECT_EQ(render("{{ 'a\r\nb\rc\vd\u2028e\n'.splitlines() }}"), "['a', 'b', 'c', 'd', 'e']");
}

TEST(Jinja, TestsOnUndefinedAndBool) {
  // jinja2's Undefined has a length and iterates as empty (Hermes' json_to_python_type reads `x is
  // iterable` of a missing key); Python's bool is a number.
  EXPECT_EQ(render("{{ x is iterable }}{{ x is sequence }}{{ x is callable }}{{ x is mapping }}"),
            "TrueTrueTrueFalse");
  EXPECT_EQ(render("{{ true is number }}{{ true is integer }}{{ 1.5 is number }}"), "TrueFalseTrue");
  EXPECT_EQ(render("{{ 'a' is in x }}{{ 'a' is in 'cat' }}{{ 2 is in [1, 2] }}"), "FalseTrueTrue");
  EXPECT_THROW(render("{{ 'a' is in none }}"), Error);  // TypeError in jinja2
  EXPECT_THROW(render("{{ 1 is in 'abc' }}"), Error);
}

TEST(Jinja, CallingAMissingMethodNamesIt) {
  auto error_of = [](const std::string& src, const char* ctx) -> std::string {
    try {
      render(src, ctx);
    } catch (const Error& e) {
      return e.what();
    }
    return "(rendered)";
  };
  // jinja2: UndefinedError: 'str object' has no attribute 'items' (GLM-4.6 on JSON-string arguments).
  EXPECT_NE(error_of("{{ x.items() }}", R"({"x": "{}"})").find("'string' object has no attribute 'items'"),
            std::string::npos);
  EXPECT_NE(error_of("\n{{ nothing(1) }}", "{}").find("line 2: 'nothing' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ x() }}", R"({"x": 3})").find("int is not callable"), std::string::npos);
}

TEST(ChatTemplate, PinnedClockFeedsStrftimeNow) {
  text::ChatTemplate t("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d') }}", {});
  t.pin_clock(1721995200);  // 2024-07-26 12:00 UTC
  EXPECT_EQ(t.render(nlohmann::ordered_json::array(), false), "26 Jul 2024|2024-07-26");
  text::ChatTemplate unpinned("{{ strftime_now('%Y') }}", {});
  EXPECT_EQ(unpinned.render(nlohmann::ordered_json::array(), false).size(), 4u);  // today's year
  EXPECT_THROW(text::ChatTemplate("{{ strftime_now(3) }}", {}).render(nlohmann::ordered_json::array(), false),
               Error);
}

}  // namespace
}  // namespace r1
