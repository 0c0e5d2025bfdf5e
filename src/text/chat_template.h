#pragma once
// Chat templates: tokenizer_config.json's Jinja chat_template rendered as transformers'
// apply_chat_template(tokenize=False) does, and built-in prompt templates (the R1-Zero one).
#include <ctime>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "text/jinja.h"

namespace r1::text {

class ChatTemplate {
 public:
  // From a model/tokenizer directory: tokenizer_config.json's chat_template (a string, or a list of
  // {name, template} where `name` picks one; "" means "default"), else chat_template.jinja.
  // `name` may also be a built-in ("r1-zero"). Special tokens come from tokenizer_config.json.
  static ChatTemplate load(const std::string& dir, const std::string& name = "");
  static ChatTemplate builtin(const std::string& name);  // errors list the built-ins
  ChatTemplate(const std::string& source, nlohmann::ordered_json special_tokens);

  // messages: [{"role", "content", ...}]; `extra` holds more template variables (tools, enable_thinking).
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  // Renders with strftime_now reading this time instead of the clock ("Today Date: ..." in Llama 3.2,
  // Granite, Mistral Small, gpt-oss), for reproducible prompts and tests.
  void pin_clock(std::time_t when) { pinned_now_ = when; }

 private:
  jinja::Template tmpl_;
  nlohmann::ordered_json special_tokens_;  // bos_token, eos_token, ... as strings
  std::optional<std::time_t> pinned_now_;
};

// The DeepSeek-R1-Zero training prompt (paper, Table 1), with {prompt} the last user message.
extern const char* kR1ZeroTemplate;

}  // namespace r1::text
