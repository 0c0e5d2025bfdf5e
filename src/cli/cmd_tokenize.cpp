// r1 tokenize: text <-> ids with a Hugging Face tokenizer, and chat-template rendering.
// stdin JSON lines: {"text"} -> {"ids"} (no BOS/EOS added); --chat: {"messages", "add_generation_prompt",
// other keys become template variables} -> {"text", "ids"}; --decode: {"ids"} -> {"text"}.
#include <iostream>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace r1::cli {

namespace {
// Lines parsed with key order kept (tool schemas given to templates keep their order in tojson).
std::vector<std::pair<int, nlohmann::ordered_json>> read_lines(std::istream& in) {
  std::vector<std::pair<int, nlohmann::ordered_json>> out;
  std::string line;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    R1_CHECK(line.find_first_not_of(" \t") != std::string::npos, "stdin line {}: empty line", no);
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
      fail("stdin line {}: invalid JSON: {}", no, e.what());
    }
    R1_CHECK(j.is_object(), "stdin line {}: expected a JSON object", no);
    out.emplace_back(no, std::move(j));
  }
  return out;
}
}  // namespace

void add_tokenize(CLI::App& app) {
  struct Opts {
    std::string tokenizer, template_name;
    bool chat = false, decode = false, skip_special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("tokenize", "text <-> token ids with an HF tokenizer (JSONL stdin -> stdout)");
  cmd->add_option("--tokenizer,-t", o->tokenizer, "directory with tokenizer.json (+ tokenizer_config.json)")->required();
  cmd->add_flag("--chat", o->chat, "render {\"messages\"} with the chat template, then encode");
  cmd->add_flag("--decode", o->decode, "ids -> text");
  cmd->add_flag("--skip-special", o->skip_special, "with --decode: drop special tokens");
  cmd->add_option("--template", o->template_name, "chat template: a name in tokenizer_config.json or r1-zero");
  cmd->callback([o] {
    R1_CHECK(!(o->chat && o->decode), "--chat and --decode cannot be combined");
    auto tok = text::Tokenizer::load(o->tokenizer);
    std::unique_ptr<text::ChatTemplate> tmpl;
    if (o->chat) tmpl = std::make_unique<text::ChatTemplate>(text::ChatTemplate::load(o->tokenizer, o->template_name));
    std::string out;
    for (auto& [no, j] : read_lines(std::cin)) {
      try {
        if (o->decode) {
          auto it = j.find("ids");
          R1_CHECK(it != j.end() && it->is_array(), "missing array 'ids'");
          std::vector<int32_t> ids;
          for (const auto& v : *it) {
            R1_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < tok->vocab_size(),
                     "'ids' holds {} which is not an id below {}", v.dump(), tok->vocab_size());
            ids.push_back(v.get<int32_t>());
          }
          out += nlohmann::ordered_json{{"text", tok->decode(ids, o->skip_special)}}.dump(
                     -1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        } else if (o->chat) {
          auto it = j.find("messages");
          R1_CHECK(it != j.end() && it->is_array(), "missing array 'messages'");
          nlohmann::ordered_json extra = nlohmann::ordered_json::object();
          for (auto kv = j.begin(); kv != j.end(); ++kv)
            if (kv.key() != "messages" && kv.key() != "add_generation_prompt") extra[kv.key()] = kv.value();
          std::string text = tmpl->render(*it, j.value("add_generation_prompt", false), extra);
          out += nlohmann::ordered_json{{"text", text}, {"ids", tok->encode(text)}}.dump() + "\n";
        } else {
          auto it = j.find("text");
          R1_CHECK(it != j.end() && it->is_string(), "missing string 'text'");
          out += nlohmann::ordered_json{{"ids", tok->encode(it->get<std::string>())}}.dump() + "\n";
        }
      } catch (const Error& e) {
        fail("stdin line {}: {}", no, e.what());
      }
    }
    std::cout << out << std::flush;
  });
}

}  // namespace r1::cli
