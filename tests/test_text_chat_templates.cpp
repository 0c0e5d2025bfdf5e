// Chat templates as jinja2 renders them with transformers' settings: the real templates the npm
// tokenizer packages carry, Hugging Face templates kept verbatim in tools/chat_templates/templates
// (Qwen3, QwQ, Qwen3-Coder, DeepSeek, Llama 3.x, Mistral, Gemma, Phi, Granite, Command-R,
// function-calling models, gpt-oss, GLM) and hand-written ones for constructs of other models'
// templates, against renderings made by tools/chat_templates/make_fixtures.py
// (tests/fixtures/chat_templates).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "base/error.h"
#include "test_util.h"
#include "text/chat_template.h"

namespace r1 {
namespace {

// make_fixtures.py's strftime_now reads 2024-07-26 12:00; noon UTC is that day in every time zone
// from UTC-12 to UTC+11.
constexpr std::time_t kFixtureNow = 1721995200;

TEST(ChatTemplatesJinja2, RenderingsMatchJinja2) {
  const std::string dir = test::source_path("tests/fixtures/chat_templates");
  std::ifstream in(dir + "/renders.jsonl");
  ASSERT_TRUE(in) << dir;
  std::map<std::string, text::ChatTemplate> templates;
  std::map<std::string, int> checked;
  int errors = 0;
  std::string line;
  while (std::getline(in, line)) {
    const auto row = nlohmann::ordered_json::parse(line);
    const std::string model = row["model"].get<std::string>();
    if (!templates.count(model)) {
      templates.emplace(model, text::ChatTemplate::load(dir + "/" + model));
      templates.at(model).pin_clock(kFixtureNow);
    }
    const text::ChatTemplate& t = templates.at(model);
    const bool gen = row["add_generation_prompt"].get<bool>();
    const std::string what = model + " " + row["messages"].dump();
    if (row.contains("error")) {
      // jinja2 raised (a template's raise_exception, a type error): r1 raises too, never renders, and
      // a template's own raise_exception message comes through word for word.
      const std::string want = row["error"].get<std::string>();
      try {
        t.render(row["messages"], gen, row["kwargs"]);
        ADD_FAILURE() << what << ": rendered, but jinja2 raised " << want;
      } catch (const Error& e) {
        const std::string kRaised = "TemplateError: ";
        if (want.starts_with(kRaised))
          EXPECT_NE(std::string(e.what()).find(want.substr(kRaised.size())), std::string::npos)
              << what << ": " << e.what();
      }
      ++errors;
    } else {
      try {
        EXPECT_EQ(t.render(row["messages"], gen, row["kwargs"]), row["text"].get<std::string>()) << what;
      } catch (const Error& e) {
        ADD_FAILURE() << what << ": " << e.what();
      }
    }
    ++checked[model];
  }
  // Every template folder is replayed (npm, llama.cpp's Hugging Face copies, hand-written constructs).
  int folders = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_directory()) continue;
    ++folders;
    EXPECT_GE(checked[entry.path().filename().string()], 10) << entry.path();
  }
  EXPECT_GE(folders, 33);
  EXPECT_GE(errors, 80);
}

TEST(ChatTemplatesJinja2, ItemsOnAStringRaisesNamingTheFilter) {
  text::ChatTemplate t("{% for k, v in messages[0].content|items %}{{ k }}{% endfor %}", {});
  auto msgs = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "{\"city\": \"Paris\"}"}])");
  try {
    t.render(msgs, false);
    FAIL() << "rendered";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("filter 'items'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 1"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplatesJinja2, FilterBlockChainsAndNests) {
  text::ChatTemplate t("{% filter upper|replace('A', '4') %}a{% filter lower %}XB{% endfilter %}{% endfilter %}", {});
  EXPECT_EQ(t.render(nlohmann::ordered_json::array(), false), "4XB");
  EXPECT_THROW(text::ChatTemplate("{% filter upper %}x", {}), Error);  // no endfilter
}

// {% raw %} as jinja2 lexes it (expected texts rendered with jinja2 3.1, trim_blocks and lstrip_blocks).
// The fuzzer found `{%raw filter upper %}...{% endfendrawle` reading past the end of the template
// (fuzz/regressions/chat_template/raw_without_endraw): the end tag is now matched whole.
TEST(ChatTemplatesJinja2, RawBlocksAsJinja2) {
  auto render = [](const std::string& source) {
    return text::ChatTemplate(source, {}).render(nlohmann::ordered_json::array(), false);
  };
  EXPECT_EQ(render("a{% raw %}{{ x }}{% if %}{% endraw %}b"), "a{{ x }}{% if %}b");
  EXPECT_EQ(render("{% raw -%}\n  x {%- endraw %}|"), "x|");
  EXPECT_EQ(render("a  {%- raw %}x{% endraw -%}  \n b"), "axb");
  EXPECT_EQ(render("{% raw %}x\n  {% endraw %}\ny"), "x\ny");
  EXPECT_EQ(render("{% raw %}x\n  {%+ endraw %}\ny"), "x\n  y");
  EXPECT_EQ(render("{% raw %}x{% endraw +%}\ny"), "x\ny");
  EXPECT_EQ(render("{% raw %}a{% endraw x %}b{% endraw %}c"), "a{% endraw x %}bc");
  EXPECT_EQ(render("{%raw%}{%endraw%}"), "");
  EXPECT_EQ(render("{% raw %}  {% endraw %}|"), "  |");
  EXPECT_THROW(render("{% raw x %}{% endraw %}"), Error);  // jinja2: unknown tag 'raw'
  for (const char* unclosed : {"{% raw %}x{% endfendrawle", "{% raw %}{% endraw", "{%raw filter upper %}x{% endraw"})
    EXPECT_THROW(render(unclosed), Error) << unclosed;
}

TEST(ChatTemplatesJinja2, UnsupportedStringMethodIsStillAnError) {
  // Undefined covers missing attributes; a real str method this interpreter lacks must not vanish.
  text::ChatTemplate t("{{ 'x'.zfill(3) }}", {});
  EXPECT_THROW(t.render(nlohmann::ordered_json::array(), false), Error);
}

}  // namespace
}  // namespace r1

namespace r1 {
namespace {

// What the chat_template fuzz target found: each ends in an r1::Error naming the limit, not in a
// stack overflow, a hang, an exhausted memory or a stray std::out_of_range.
TEST(ChatTemplatesLimits, RunawayTemplatesEndInClearErrors) {
  auto error_of = [](const std::string& source) -> std::string {
    try {
      text::ChatTemplate(source, {}).render(nlohmann::ordered_json::array(), false);
    } catch (const Error& e) {
      return e.what();
    }
    return "(rendered)";
  };
  auto contains = [](const std::string& s, const char* part) { return s.find(part) != std::string::npos; };
  EXPECT_PRED2(contains, error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"),
               "nested more than 100 levels");
  std::string ifs;
  for (int i = 0; i < 3000; ++i) ifs += "{% if 1 %}";
  EXPECT_PRED2(contains, error_of(ifs), "nested more than 100 levels");
  EXPECT_PRED2(contains, error_of("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}"), "nested more than 300");
  EXPECT_PRED2(contains, error_of("{{ 'a' * 100000000000 }}"), "a string of more than");
  // An empty string repeated 10^11 times is empty at once (the fuzzer found it spinning 10^11 loops:
  // fuzz/regressions/chat_template/empty_string_times_huge), as is a repeat count <= 0.
  auto render = [](const std::string& source) {
    return text::ChatTemplate(source, {}).render(nlohmann::ordered_json::array(), false);
  };
  // An empty subscript is a syntax error (the fuzzer found it dereferencing a missing index:
  // fuzz/regressions/chat_template/empty_subscript), and so are two indices in one.
  EXPECT_PRED2(contains, error_of("{% if not x[] %}{% endif %}"), "an empty subscript");
  EXPECT_PRED2(contains, error_of("{{ x[1 2] }}"), "expected ']'");
  EXPECT_EQ(render("{{ '' * 100000000000 }}x{{ 'ab' * -3 }}{{ 'ab' * 0 }}{{ 'ab' * 2 }}"), "xabab");
  EXPECT_EQ(render("{{ 'abc' * 5 }}|{{ 'é' * 3 }}"), "abcabcabcabcabc|ééé");
  EXPECT_PRED2(contains, error_of("{% for i in range(100000000000) %}{% endfor %}"), "more than the sandbox's 100000");
  EXPECT_PRED2(contains, error_of("{% for i in range(100000) %}{% for j in range(100) %}{% endfor %}{% endfor %}"),
               "more than 1000000 steps");
  EXPECT_PRED2(contains, error_of("{{ 4444444444444444444404444444 }}"), "does not fit in 64 bits");
  EXPECT_PRED2(contains, error_of("{{ 9223372036854775807 + 1 }}"), "integer overflow");
  // String methods on bytes that are not UTF-8 stay inside the string (the fuzzer found split()
  // reading past a truncated sequence: fuzz/regressions/chat_template/split_truncated_utf8).
  EXPECT_EQ(render("{{ 'a \xE2'.split()|length }}{{ ' \xE2\x82 '.strip()|length }}{{ '\xE2\x82'|length }}"), "211");
  // Each step is cheap, so the step limit bounds the time. The fuzzer found 1.5M loop iterations
  // that built the loop object each time: 28 s under ASan, now only for bodies that read `loop`
  // (fuzz/regressions/chat_template/loop_object_every_iteration). By hand: a 60 MB string assigned
  // 100,000 times was copied each time, about 6 TB of copying; a string's text is now shared
  // (string_copied_every_step). Both end, the first at the step limit.
  EXPECT_PRED2(contains, error_of("{% for i in range(499) %}{% for j in range(2926) %}{% endfor %}{% endfor %}"),
               "more than 1000000 steps");
  EXPECT_EQ(render("{% set s = 'a' * 60000000 %}{% for i in range(100000) %}{% set t = s %}{% endfor %}"
                   "{{ (s * 1)|length }}{{ s[59999999] }}"),
            "60000000a");
  // A step that builds a new large string each time (a concatenation, a dict's key turned into a
  // loop item) runs into the budget of bytes one render may build, not for hours.
  EXPECT_PRED2(contains, error_of("{% set s = 'a' * 60000000 %}{% for i in range(100000) %}{% set t = s ~ '' %}{% endfor %}"),
               "more than 1073741824 bytes of strings");
  EXPECT_PRED2(contains, error_of("{% set d = {'a' * 60000000: 1} %}{% for i in range(100000) %}{% for k in d %}{% endfor %}{% endfor %}"),
               "more than 1073741824 bytes of strings");
  EXPECT_EQ(render("{% for x in 'ab' %}{% for y in 'cd' %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}"),
            "121122");
  // Real-sized work is far below the limits.
  EXPECT_EQ(text::ChatTemplate("{% for i in range(1000) %}{{ i % 10 }}{% endfor %}", {})
                .render(nlohmann::ordered_json::array(), false)
                .size(),
            1000u);
}

}  // namespace
}  // namespace r1
