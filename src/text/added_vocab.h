#pragma once
// Added tokens (special and not): found in the text before the pre-tokenizer and BPE see it, as HF's
// AddedVocabulary does: leftmost-longest match, with the single_word / lstrip / rstrip rules.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace r1::text {

struct AddedToken {
  int32_t id;
  std::string content;
  bool special, single_word, lstrip, rstrip, normalized;
};

// A stretch of the text: an added token (id >= 0) or plain text for the model (id == -1).
struct Segment {
  size_t begin, end;
  int32_t id;
};

class AddedVocab {
 public:
  void add(const AddedToken& t);
  // Splits s into segments using the tokens whose `normalized` flag equals `normalized`.
  void split(std::string_view s, bool normalized, std::vector<Segment>& out) const;

  const AddedToken* by_id(int32_t id) const;
  const AddedToken* by_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  struct Node {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;  // index into tokens_ of the token ending here
  };
  struct Trie {
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
  };
  // Index into tokens_ of the longest token starting at s[i], or -1.
  static int32_t longest_at(const Trie& t, std::string_view s, size_t i, size_t* len);

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  Trie tries_[2];  // [normalized]
};

}  // namespace r1::text
