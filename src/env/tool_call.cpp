#include "env/tool_call.h"

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace r1::env {

namespace {

struct Markers {
  const char* open;
  const char* close;
};

Markers markers(ToolFormat f) {
  switch (f) {
    case ToolFormat::Markdown: return {"```python", "```"};
    case ToolFormat::CodeTag: return {"<code>", "</code>"};
    case ToolFormat::ToolCall: return {"<tool_call>", "</tool_call>"};
  }
  return {"", ""};
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The body of the last open...close pair that closes at the end of `text`.
std::optional<std::string> last_body(ToolFormat f, const std::string& text) {
  const Markers m = markers(f);
  const std::string open = m.open, close = m.close;
  if (!ends_with(text, close)) return std::nullopt;
  const size_t end = text.size() - close.size();
  const size_t at = text.rfind(open, end);
  if (at == std::string::npos || at + open.size() > end) return std::nullopt;
  std::string body = text.substr(at + open.size(), end - at - open.size());
  if (body.find(close) != std::string::npos) return std::nullopt;  // a closed block, then a new fence
  return body;
}

}  // namespace

ToolFormat parse_tool_format(const std::string& name, const std::string& key) {
  if (name == "markdown") return ToolFormat::Markdown;
  if (name == "code_tag") return ToolFormat::CodeTag;
  if (name == "tool_call") return ToolFormat::ToolCall;
  fail("{}: unknown tool-call format '{}' (valid: markdown, code_tag, tool_call)", key, name);
}

const char* tool_format_name(ToolFormat f) {
  switch (f) {
    case ToolFormat::Markdown: return "markdown";
    case ToolFormat::CodeTag: return "code_tag";
    case ToolFormat::ToolCall: return "tool_call";
  }
  return "?";
}

bool ends_tool_call(ToolFormat f, const std::string& turn_text) {
  // The markdown fence closes with the same ``` that opens it: the body must start after the tag.
  return last_body(f, turn_text).has_value();
}

std::optional<std::string> tool_call_code(ToolFormat f, const std::string& turn_text) {
  std::optional<std::string> body = last_body(f, turn_text);
  if (!body) return std::nullopt;
  if (f != ToolFormat::ToolCall) return body;
  const nlohmann::json call = nlohmann::json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (!call.is_object() || !call.contains("arguments")) return std::nullopt;
  nlohmann::json args = call.at("arguments");
  if (args.is_string()) args = nlohmann::json::parse(args.get<std::string>(), nullptr, false);
  if (!args.is_object() || !args.contains("code") || !args.at("code").is_string()) return std::nullopt;
  return args.at("code").get<std::string>();
}

std::string tool_observation(ToolFormat f, const std::string& output) {
  switch (f) {
    case ToolFormat::Markdown: return "\n```output\n" + output + "\n```\n";
    case ToolFormat::CodeTag: return "<output>" + output + "</output>";
    case ToolFormat::ToolCall:
      return "<|im_end|>\n<|im_start|>user\n<tool_response>\n" + output +
             "\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
  }
  return output;
}

}  // namespace r1::env
