#pragma once
// Byte-level BPE model: vocabulary and ranked merges from tokenizer.json's "model".
#include "base/json_at.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace r1::text {

class Bpe {
 public:
  // `model` is tokenizer.json's "model" object (type BPE); errors name its file and key path.
  explicit Bpe(const JsonAt& model);

  // Appends the ids of one pre-tokenized word given as raw bytes (prefix_space: a ' ' in front).
  void encode_word(std::string_view bytes, bool prefix_space, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent
  const std::string& id_to_token(int32_t id) const;   // "" when absent
  int32_t size() const { return int32_t(id_to_token_.size()); }

 private:
  struct Merge {
    int32_t rank, merged;
  };
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;  // byte-level strings, indexed by id
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_id_;  // id of each single byte's token, -1 if missing
  bool ignore_merges_ = false;
};

}  // namespace r1::text
