// Chat templates as jinja2 renders them with transformers' settings: the real templates the npm
// tokenizer packages carry and hand-written ones for constructs of other models' templates (x in
// undefined, attributes of a string, {% filter %}, |items on a string), against renderings made by
// tools/chat_templates/make_fixtures.py (tests/fixtures/chat_templates).
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "base/error.h"
#include "test_util.h"
#include "text/chat_template.h"

namespace r1 {
namespace {

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
    if (!templates.count(model)) templates.emplace(model, text::ChatTemplate::load(dir + "/" + model));
    const text::ChatTemplate& t = templates.at(model);
    const bool gen = row["add_generation_prompt"].get<bool>();
    const std::string what = model + " " + row["messages"].dump();
    if (row.contains("error")) {
      // jinja2 raised (a template's raise_exception, a type error): r1 raises too, never renders.
      EXPECT_THROW(t.render(row["messages"], gen, row["kwargs"]), Error) << what << " " << row["error"];
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
  for (const char* m : {"qwen3", "deepseek_v3", "llama3", "llama3_1", "gemma3", "construct_in_undefined",
                        "construct_string_attribute", "construct_filter_block", "construct_items_filter"})
    EXPECT_GE(checked[m], 10) << m;
  EXPECT_GE(errors, 4);
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

TEST(ChatTemplatesJinja2, UnsupportedStringMethodIsStillAnError) {
  // Undefined covers missing attributes; a real str method this interpreter lacks must not vanish.
  text::ChatTemplate t("{{ 'x'.zfill(3) }}", {});
  EXPECT_THROW(t.render(nlohmann::ordered_json::array(), false), Error);
}

}  // namespace
}  // namespace r1
