#include "text/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/json_at.h"

namespace r1::text {

const char* kR1ZeroTemplate =
    "{%- set ns = namespace(prompt='') -%}"
    "{%- for m in messages if m.role == 'user' %}{% set ns.prompt = m.content %}{% endfor -%}"
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
    "User: {{ ns.prompt }}. Assistant:"
    "{%- if messages and messages[-1].role == 'assistant' %} {{ messages[-1].content }}{% endif %}";

namespace {
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  R1_CHECK(in, "cannot open {}", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tokenizer_config.json writes a special token as a string or as {"content": ..., ...}.
nlohmann::ordered_json special_tokens_of(const OrderedJsonAt& cfg) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const char* k : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    auto t = cfg.find(k);
    if (!t) continue;
    if (t->is_string()) out[k] = t->raw();
    else if (t->is_object()) out[k] = t->at("content").str();
    else t->expected("a token string or {\"content\": ...}");
  }
  if (auto extra = cfg.find("additional_special_tokens")) out["additional_special_tokens"] = extra->raw();
  return out;
}
}  // namespace

ChatTemplate::ChatTemplate(const std::string& source, nlohmann::ordered_json special_tokens)
    : tmpl_(source), special_tokens_(std::move(special_tokens)) {}

ChatTemplate ChatTemplate::builtin(const std::string& name) {
  if (name == "r1-zero") return ChatTemplate(kR1ZeroTemplate, nlohmann::ordered_json::object());
  fail("unknown built-in chat template '{}' (built-ins: r1-zero)", name);
}

ChatTemplate ChatTemplate::load(const std::string& dir, const std::string& name) {
  std::string cfg_path = dir + "/tokenizer_config.json";
  nlohmann::ordered_json cfg = nlohmann::ordered_json::object();
  if (std::filesystem::exists(cfg_path)) {
    try {
      cfg = nlohmann::ordered_json::parse(slurp(cfg_path));
    } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
      fail("{}: invalid JSON: {}", cfg_path, e.what());
    }
  }
  const OrderedJsonAt root(cfg, cfg_path);
  root.object();
  nlohmann::ordered_json specials = special_tokens_of(root);
  if (name == "r1-zero") return ChatTemplate(kR1ZeroTemplate, specials);
  std::string want = name.empty() ? "default" : name;
  auto tmpl = root.find("chat_template");
  if (tmpl && tmpl->is_string()) {
    R1_CHECK(name.empty() || name == "default", "{}: has one unnamed chat_template; there is no '{}'", cfg_path, name);
    return ChatTemplate(tmpl->str(), specials);
  }
  if (tmpl) {
    if (!tmpl->is_array()) tmpl->expected("a template string or a list of {name, template}");
    std::string names;
    for (size_t i = 0; i < tmpl->size(); ++i) {
      const OrderedJsonAt t = tmpl->at(i);
      if (t.str_or("name", "") == want) return ChatTemplate(t.at("template").str(), specials);
      names += ' ';
      names += t.str_or("name", "?");
    }
    fail("{}: no chat template named '{}' (has:{}; built-ins: r1-zero)", cfg_path, want, names);
  }
  std::string jinja_path = dir + "/chat_template.jinja";
  if (std::filesystem::exists(jinja_path) && (name.empty() || name == "default"))
    return ChatTemplate(slurp(jinja_path), specials);
  fail("{}: no chat_template (and no {}); use a built-in such as --template r1-zero", cfg_path, jinja_path);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
  R1_CHECK(messages.is_array(), "chat template: 'messages' must be an array");
  jinja::Value ctx = jinja::Value::make_dict();
  // What transformers passes: messages, tools and documents (None unless given), add_generation_prompt,
  // the special tokens, then the caller's extra variables.
  ctx.set("messages", jinja::from_json(messages));
  ctx.set("tools", jinja::Value::none());
  ctx.set("documents", jinja::Value::none());
  ctx.set("add_generation_prompt", jinja::Value(add_generation_prompt));
  for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it)
    ctx.set(it.key(), jinja::from_json(it.value()));
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) ctx.set(it.key(), jinja::from_json(it.value()));
  return tmpl_.render(ctx);
}

}  // namespace r1::text
