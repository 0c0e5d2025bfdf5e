#pragma once
// Codec: what the trainers need from a tokenizer (text <-> ids, EOS). The HF BPE tokenizer and the
// built-in byte-level codec both provide it, so GRPO and SFT run unchanged on either.
#include <cstdint>
#include <string>
#include <vector>

namespace r1::text {

class Codec {
 public:
  virtual ~Codec() = default;
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  // Bytes of one token (may be part of a UTF-8 character), for stop strings while decoding.
  virtual std::string token_text(int32_t id) const = 0;
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual int32_t vocab_size() const = 0;
};

// The built-in byte-level codec for demos and tests: ids 0..255 are bytes, 256 is end-of-sequence.
class ByteCodec final : public Codec {
 public:
  static constexpr int32_t kEos = 256;
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (unsigned char ch : text) ids.push_back(ch);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id >= 0 && id < 256) s += char(id);
    return s;
  }
  std::string token_text(int32_t id) const override { return id >= 0 && id < 256 ? std::string(1, char(id)) : ""; }
  std::vector<int32_t> eos_ids() const override { return {kEos}; }
  int32_t vocab_size() const override { return 257; }
};

}  // namespace r1::text
