// Bad input: invalid UTF-8, unsupported tokenizer.json parts, bad CLI lines; and the r1 tokenize CLI.
#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "test_text_util.h"
#include "test_util.h"
#include "text/byte_level.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace r1 {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TextBadInput, InvalidUtf8IsAClearError) {
  const text::Tokenizer& tok = test::real_tokenizer("qwen3");
  std::string msg = error_of([&] { tok.encode(std::string("ok \xC3\x28 bad")); });
  EXPECT_NE(msg.find("not valid UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("offset 3"), std::string::npos) << msg;
  // Decoding ids that cut a character gives U+FFFD, as HF's decode does.
  int32_t lead = tok.token_to_id(text::byte_to_unicode()[0xF0]);  // the token of the lone byte 0xF0
  ASSERT_GE(lead, 0);
  EXPECT_EQ(tok.decode(std::vector<int32_t>{lead, tok.token_to_id("a")}),
            "\xEF\xBF\xBD"
            "a");
}

// utf8_next on bytes that are not UTF-8 (a chat template's string, a model's output) stays inside the
// string: the chat_template fuzzer found `'...\xE2'.split()` reading past a truncated sequence
// (ASan; fuzz/regressions/chat_template/split_truncated_utf8). Each invalid subpart is one U+FFFD.
TEST(TextBadInput, Utf8NextStaysInsideInvalidBytes) {
  auto decode = [](std::string_view s) {
    std::vector<char32_t> cps;
    for (size_t i = 0; i < s.size();) {
      cps.push_back(text::utf8_next(s, i));
      EXPECT_LE(i, s.size());
    }
    return cps;
  };
  EXPECT_EQ(decode("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"),
            (std::vector<char32_t>{'a', 0xE9, 0x20AC, 0x1F600}));
  EXPECT_EQ(decode("a\xE2\x82"), (std::vector<char32_t>{'a', 0xFFFD}));  // truncated at the end
  EXPECT_EQ(decode("\xF0\x9F\x98"), (std::vector<char32_t>{0xFFFD}));
  EXPECT_EQ(decode("\xFF\x80x"), (std::vector<char32_t>{0xFFFD, 0xFFFD, 'x'}));      // stray bytes
  EXPECT_EQ(decode("\xE2(x"), (std::vector<char32_t>{0xFFFD, '(', 'x'}));            // a broken sequence
  EXPECT_EQ(decode("\xED\xA0\x80"), (std::vector<char32_t>{0xFFFD, 0xFFFD, 0xFFFD}));  // a surrogate
}

TEST(TextBadInput, UnsupportedModelTypeNamesTypeAndFile) {
  test::TempDir dir;
  std::ofstream(dir.file("tokenizer.json")) << R"({"model": {"type": "WordPiece", "vocab": {}}})";
  std::string msg = error_of([&] { text::Tokenizer::load(dir.path()); });
  EXPECT_NE(msg.find("'WordPiece'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir.file("tokenizer.json")), std::string::npos) << msg;
  std::ofstream(dir.file("tokenizer.json"))
      << R"({"normalizer": {"type": "Lowercase"}, "model": {"type": "BPE", "vocab": {}, "merges": []}})";
  msg = error_of([&] { text::Tokenizer::load(dir.path()); });
  EXPECT_NE(msg.find("normalizer type 'Lowercase'"), std::string::npos) << msg;
}

TEST(TextBadInput, TinyHandMadeBpe) {
  // Merges in both formats; an added token split out before BPE; ignore_merges.
  nlohmann::json j = nlohmann::json::parse(R"({
    "added_tokens": [{"id": 6, "content": "<x>", "special": true, "single_word": false, "lstrip": false,
                      "rstrip": false, "normalized": false}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3, "abc": 4, "Ġ": 5},
              "merges": ["a b", ["ab", "c"]]}})");
  text::Tokenizer tok(j, "inline");
  EXPECT_EQ(tok.encode("abc<x>ab"), (std::vector<int32_t>{4, 6, 2}));
  EXPECT_EQ(tok.decode(tok.encode("abc<x>ab")), "abc<x>ab");
  EXPECT_EQ(tok.decode(tok.encode("abc<x>ab"), true), "abcab");
}

TEST(TokenizeCli, EncodeDecodeChatAndBadLine) {
  std::string dir = test::tokenizer_dir("qwen3");
  auto r = test::run_r1("tokenize --tokenizer " + dir, "{\"text\": \"Hello world\"}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"ids\":[9707,1879]}\n");
  r = test::run_r1("tokenize --tokenizer " + dir + " --decode", "{\"ids\": [9707, 1879, 151645]}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"text\":\"Hello world<|im_end|>\"}\n");
  r = test::run_r1("tokenize --tokenizer " + dir + " --chat",
                   "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}], \"add_generation_prompt\": true}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"text\":\"<|im_start|>user\\nHello!<|im_end|>\\n<|im_start|>assistant\\n\",\"ids\":[151644,872,198,"
            "9707,0,151645,198,151644,77091,198]}\n");
  r = test::run_r1("tokenize --tokenizer " + dir + " --chat --template r1-zero",
                   "{\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}]}\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("User: 2+2?. Assistant:"), std::string::npos) << r.out;
  r = test::run_r1("tokenize --tokenizer " + dir, "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 2"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace r1
