#pragma once
// A Hugging Face tokenizer (tokenizer.json) for byte-level BPE models: Qwen2/2.5/3, Llama 3,
// DeepSeek-V3/R1. encode() gives the ids of tokenizers' encode(text, add_special_tokens=False).
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/added_vocab.h"
#include "text/bpe.h"
#include "text/normalizer.h"
#include "text/pretokenizer.h"

namespace r1::text {

class Tokenizer {
 public:
  // `path` is a tokenizer.json file or a directory holding one.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  Tokenizer(const nlohmann::json& tokenizer_json, const std::string& file);

  // Text must be valid UTF-8 (an error names the byte offset otherwise). Thread-safe.
  std::vector<int32_t> encode(std::string_view text) const;

  // The ByteLevel decoder: bytes of every token, invalid UTF-8 replaced by U+FFFD as HF does.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  // Raw bytes of one token (may be part of a UTF-8 character); "" for unknown or skipped ids.
  const std::string& token_bytes(int32_t id) const;

  int32_t token_to_id(std::string_view token) const;  // added tokens first, then the model; -1 if absent
  std::string id_to_token(int32_t id) const;          // the vocabulary string; "" if absent
  bool is_special(int32_t id) const;
  int32_t vocab_size() const { return int32_t(bytes_.size()); }  // largest id + 1
  const std::string& file() const { return file_; }

 private:
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;  // normalized text, no added tokens
  void encode_word_cached(std::string_view word, bool prefix_space, std::vector<int32_t>& out) const;

  std::string file_;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  Bpe bpe_;
  AddedVocab added_;
  std::vector<std::string> bytes_;  // decoded bytes of every id
  std::vector<uint8_t> special_;    // per id

  // Repeated words (the same numbers, names, whitespace) skip BPE. Bounded; cleared when full.
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

// Incremental decoding for generation: feed ids one at a time, get text that never ends inside a
// UTF-8 character; bytes that can never become valid are emitted as U+FFFD like decode() does.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special_tokens = false)
      : tok_(tok), skip_special_(skip_special_tokens) {}
  std::string push(int32_t id);
  std::string finish();  // whatever is pending, completed with U+FFFD

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace r1::text
