// Fuzz target: an arbitrary chat template rendered on a few conversations; when the input holds
// "\n---\n", the part after it is the messages JSON instead.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "text/chat_template.h"

namespace {
const char* kConversation = R"([
  {"role": "system", "content": "Be brief."},
  {"role": "user", "content": "What is 2+2? \u00e9"},
  {"role": "assistant", "content": "<think>\n2+2=4\n</think>\n4",
   "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1, "y": [1, "a"]}}}]},
  {"role": "tool", "content": "{\"r\": 1}"},
  {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "and this?"}]}])";
const char* kExtra = R"({"tools": [{"type": "function", "function": {"name": "f", "description": "d",
  "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}], "enable_thinking": true})";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = r1::fuzz::split_once(r1::fuzz::as_text(data, size));
  const std::string source(parts.first);
  const std::string_view messages = parts.second;
  static const nlohmann::ordered_json conversation = nlohmann::ordered_json::parse(kConversation);
  static const nlohmann::ordered_json extra = nlohmann::ordered_json::parse(kExtra);
  nlohmann::ordered_json msgs = nlohmann::ordered_json::parse(messages, nullptr, false);
  if (messages.empty() || msgs.is_discarded()) msgs = conversation;
  r1::fuzz::expect_only_r1_errors([&] {
    r1::text::ChatTemplate t(source, {{"bos_token", "<s>"}, {"eos_token", "</s>"}});
    r1::fuzz::expect_only_r1_errors([&] { t.render(msgs, true, extra); });
    r1::fuzz::expect_only_r1_errors([&] { t.render(msgs, false); });
  });
  return 0;
}
