#pragma once
// Where a model's tool call ends and what it asks to run, in the formats models write:
//   markdown   R1-Zero style: ```python\nCODE\n```           -> observation ```output\nOUT\n```
//   code_tag   <code>CODE</code>                             -> observation <output>OUT</output>
//   tool_call  the Hermes/Qwen chat templates' format:
//              <tool_call>\n{"name": "python", "arguments": {"code": "CODE"}}\n</tool_call>
//              -> observation: the assistant turn closed and a tool turn, as those templates render a
//              tool message: <|im_end|>\n<|im_start|>user\n<tool_response>\nOUT\n</tool_response><|im_end|>\n<|im_start|>assistant\n
#include <optional>
#include <string>

namespace r1::env {

enum class ToolFormat { Markdown, CodeTag, ToolCall };

// "markdown" | "code_tag" | "tool_call"; errors name `key`.
ToolFormat parse_tool_format(const std::string& name, const std::string& key = "env.tool_format");
const char* tool_format_name(ToolFormat f);

// Whether `turn_text` ends with a complete call (checked after every token).
bool ends_tool_call(ToolFormat f, const std::string& turn_text);

// The code of the last complete call in `turn_text`; nullopt when there is none or it is
// malformed (tool_call: not JSON, or no string "code" argument).
std::optional<std::string> tool_call_code(ToolFormat f, const std::string& turn_text);

// The observation text that follows a call whose output is `output`.
std::string tool_observation(ToolFormat f, const std::string& output);

}  // namespace r1::env
