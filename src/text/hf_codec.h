#pragma once
// The trainers' Codec over an HF tokenizer, with the end-of-sequence ids a generation must stop at:
// tokenizer_config.json's eos_token, generation_config.json's eos_token_id (int or list) and, for
// chat models, the template's end-of-turn token when it is a special token (<|im_end|>, <|eot_id|>).
#include <memory>
#include <string>
#include <vector>

#include "text/codec.h"
#include "text/tokenizer.h"

namespace r1::text {

class HfCodec final : public Codec {
 public:
  // `tokenizer_dir` holds tokenizer.json (+ tokenizer_config.json); `model_dir` may add
  // generation_config.json / config.json eos ids (either may be "").
  static std::unique_ptr<HfCodec> load(const std::string& tokenizer_dir, const std::string& model_dir = "");

  std::vector<int32_t> encode(const std::string& text) const override { return tok_->encode(text); }
  std::string decode(const std::vector<int32_t>& ids) const override { return tok_->decode(ids, true); }
  std::string token_text(int32_t id) const override { return tok_->token_bytes(id); }
  std::vector<int32_t> eos_ids() const override { return eos_; }
  int32_t vocab_size() const override { return tok_->vocab_size(); }
  const Tokenizer& tokenizer() const { return *tok_; }

 private:
  std::unique_ptr<Tokenizer> tok_;
  std::vector<int32_t> eos_;
};

}  // namespace r1::text
