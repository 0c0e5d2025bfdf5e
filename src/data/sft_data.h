#pragma once
// SFT data: JSON-lines rows of {"prompt", "completion"} or {"messages": [{"role", "content"}, ...]}
// (other fields, such as provenance, are ignored), tokenised into sequences with a per-token loss
// mask: the completion, or every assistant turn. Every row is checked before any is tokenised, so
// a bad row fails the whole load, naming the file and line.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "text/chat_template.h"
#include "text/codec.h"

namespace r1::data {

// One training sequence. Token t is a loss target (predicted from the tokens before it) where
// loss_mask[t] is 1; token 0 never is, as nothing precedes it.
struct SftSequence {
  std::vector<int32_t> tokens;     // (T)
  std::vector<uint8_t> loss_mask;  // (T)
  int64_t loss_tokens() const;
};

// prompt ++ completion, the loss on the completion.
SftSequence prompt_completion_sequence(const std::vector<int32_t>& prompt,
                                       const std::vector<int32_t>& completion);

// A conversation under a chat template, the loss on each assistant turn (its content and the
// template's end-of-turn text), nothing else.
SftSequence chat_sequence(const nlohmann::ordered_json& messages, const text::ChatTemplate& chat,
                          const text::Codec& codec);

// How rows become sequences.
struct SftFormat {
  std::function<std::string(const std::string&)> render_prompt;  // prompt -> the text before the completion
  const text::ChatTemplate* chat = nullptr;                      // "messages" rows are an error without one
  bool add_eos = true;        // end each completion with the codec's first EOS id
  int64_t max_tokens = 2048;  // longer sequences are dropped, or cut when truncate is set
  bool truncate = false;
};

struct SftData {
  std::vector<SftSequence> examples;
  int64_t rows = 0;       // rows in the file
  int64_t dropped = 0;    // over max_tokens (not truncating), or without a loss token
  int64_t truncated = 0;  // cut to max_tokens and kept
};

SftData load_sft_jsonl(const std::string& path, const text::Codec& codec, const SftFormat& format);

}  // namespace r1::data
