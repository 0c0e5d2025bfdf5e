#include "data/sft_data.h"

#include <fmt/format.h>

#include <fstream>

#include "base/error.h"

namespace r1::data {

int64_t SftSequence::loss_tokens() const {
  int64_t n = 0;
  for (uint8_t m : loss_mask) n += m ? 1 : 0;
  return n;
}

SftSequence prompt_completion_sequence(const std::vector<int32_t>& prompt,
                                       const std::vector<int32_t>& completion) {
  SftSequence s;
  s.tokens = prompt;
  s.tokens.insert(s.tokens.end(), completion.begin(), completion.end());
  s.loss_mask.assign(prompt.size(), 0);
  s.loss_mask.resize(s.tokens.size(), 1);
  if (!s.loss_mask.empty()) s.loss_mask[0] = 0;  // an empty prompt: the first token has no predictor
  return s;
}

SftSequence chat_sequence(const nlohmann::ordered_json& messages, const text::ChatTemplate& chat,
                          const text::Codec& codec) {
  // The pieces between assistant turns come from rendering growing prefixes of the conversation, and
  // each piece is tokenised on its own (the usual approach, as in TRL): at a piece boundary this can
  // differ from tokenising the whole text at once, which the chat markers there usually prevent.
  SftSequence s;
  std::string done;                                               // the rendered text so far
  nlohmann::ordered_json head = nlohmann::ordered_json::array();  // the messages rendered so far
  size_t covered = 0;                                             // how many messages `done` renders
  auto append = [&](const std::string& rendered, bool target) {
    if (rendered.compare(0, done.size(), done) != 0) {
      // Some templates rewrite earlier turns once more follow (Qwen3 drops their <think> blocks).
      size_t at = 0;
      while (at < done.size() && at < rendered.size() && done[at] == rendered[at]) ++at;
      fail(
          "the chat template renders the first {} messages differently once more follow (at character {}: "
          "{:?}, then {:?}), so the assistant turns cannot be located by prefixes",
          covered, at, done.substr(at, 24), rendered.substr(at, 24));
    }
    std::vector<int32_t> ids = codec.encode(rendered.substr(done.size()));
    s.tokens.insert(s.tokens.end(), ids.begin(), ids.end());
    s.loss_mask.resize(s.tokens.size(), target ? 1 : 0);
    done = rendered;
    covered = head.size();
  };
  for (const auto& m : messages) {
    if (m.at("role") == "assistant") {
      append(chat.render(head, /*add_generation_prompt=*/true), false);
      head.push_back(m);
      append(chat.render(head, false), true);
    } else {
      head.push_back(m);
    }
  }
  append(chat.render(messages, false), false);  // turns after the last assistant one
  if (!s.loss_mask.empty()) s.loss_mask[0] = 0;
  return s;
}

namespace {

// A row as read and checked, before tokenising.
struct SftRow {
  int line = 0;
  std::string prompt, completion;
  nlohmann::ordered_json messages;  // null for prompt/completion rows
};

void check_messages(const nlohmann::ordered_json& msgs, const std::string& where) {
  R1_CHECK(msgs.is_array() && !msgs.empty(), "{}: \"messages\" must be a non-empty array", where);
  bool assistant = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const auto& m = msgs[i];
    R1_CHECK(m.is_object() && m.contains("role") && m["role"].is_string() && m.contains("content") &&
                 m["content"].is_string(),
             "{}: messages[{}] must be an object with string \"role\" and \"content\"", where, i);
    const std::string role = m["role"].get<std::string>();
    R1_CHECK(role == "system" || role == "user" || role == "assistant",
             "{}: messages[{}] has role '{}' (expected system, user or assistant)", where, i, role);
    assistant = assistant || role == "assistant";
  }
  R1_CHECK(assistant, "{}: \"messages\" has no assistant turn to train on", where);
}

SftRow parse_row(const std::string& line, const std::string& where, const SftFormat& format) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(line);
  } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{}: invalid JSON: {}", where, e.what());
  }
  R1_CHECK(j.is_object(), "{}: expected a JSON object", where);
  SftRow row;
  if (j.contains("messages")) {  // a conversation; any "prompt" field beside it is provenance
    check_messages(j["messages"], where);
    R1_CHECK(format.chat != nullptr, "{}: a \"messages\" row needs a chat template (data.template: chat)",
             where);
    row.messages = j["messages"];
    return row;
  }
  R1_CHECK(j.contains("prompt") && j["prompt"].is_string(),
           "{}: missing string field 'prompt' (rows hold prompt and completion, or messages)", where);
  R1_CHECK(j.contains("completion") && j["completion"].is_string(), "{}: missing string field 'completion'",
           where);
  row.prompt = j["prompt"].get<std::string>();
  row.completion = j["completion"].get<std::string>();
  R1_CHECK(!row.completion.empty(), "{}: empty completion", where);
  return row;
}

SftSequence tokenize_row(const SftRow& row, const text::Codec& codec, const SftFormat& format) {
  if (!row.messages.is_null()) return chat_sequence(row.messages, *format.chat, codec);
  std::vector<int32_t> prompt =
      codec.encode(format.render_prompt ? format.render_prompt(row.prompt) : row.prompt);
  std::vector<int32_t> completion = codec.encode(row.completion);
  if (format.add_eos) completion.push_back(codec.eos_ids().at(0));
  return prompt_completion_sequence(prompt, completion);
}

}  // namespace

SftData load_sft_jsonl(const std::string& path, const text::Codec& codec, const SftFormat& format) {
  R1_CHECK(format.max_tokens > 0, "SFT data {}: max_tokens must be positive", path);
  R1_CHECK(!format.add_eos || !codec.eos_ids().empty(),
           "SFT data {}: add_eos, but the tokenizer has no EOS id", path);
  std::ifstream in(path);
  R1_CHECK(in, "cannot open SFT data {}", path);
  std::vector<SftRow> rows;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    rows.push_back(parse_row(line, fmt::format("{} line {}", path, no), format));
    rows.back().line = no;
  }
  R1_CHECK(!rows.empty(), "SFT data {} has no rows", path);

  SftData out;
  out.rows = int64_t(rows.size());
  for (const SftRow& row : rows) {
    SftSequence s;
    try {
      s = tokenize_row(row, codec, format);
    } catch (const Error& e) {
      fail("{} line {}: {}", path, row.line, e.what());
    }
    const bool overlong = int64_t(s.tokens.size()) > format.max_tokens;
    if (overlong && format.truncate) {
      s.tokens.resize(size_t(format.max_tokens));
      s.loss_mask.resize(size_t(format.max_tokens));
    }
    if ((overlong && !format.truncate) || s.loss_tokens() == 0) {
      ++out.dropped;
      continue;
    }
    out.truncated += overlong ? 1 : 0;
    out.examples.push_back(std::move(s));
  }
  return out;
}

}  // namespace r1::data
