#include "text/added_vocab.h"

#include <cctype>

#include "text/utf8.h"

namespace r1::text {

namespace {
// HF's word characters for single_word: alphanumerics and '_' (ASCII and Unicode letters/digits
// are approximated by "not ASCII punctuation or whitespace").
bool is_word_char(char32_t c) {
  if (c < 0x80) return std::isalnum(int(c)) || c == '_';
  return c != 0x00A0 && c != 0x3000 && !(c >= 0x2000 && c <= 0x200A);
}
bool is_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
char32_t last_char(std::string_view s) {
  size_t i = s.size();
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i > 0) --i;
  size_t j = i;
  return utf8_next(s, j);
}
}  // namespace

void AddedVocab::add(const AddedToken& t) {
  if (t.content.empty()) return;
  size_t idx = tokens_.size();
  tokens_.push_back(t);
  by_id_[t.id] = idx;
  by_content_[t.content] = idx;
  Trie& trie = tries_[t.normalized ? 1 : 0];
  int32_t n = 0;
  for (unsigned char c : t.content) {
    auto it = trie.nodes[size_t(n)].next.find(c);
    if (it == trie.nodes[size_t(n)].next.end()) {
      trie.nodes.push_back(Node{});
      int32_t m = int32_t(trie.nodes.size() - 1);
      trie.nodes[size_t(n)].next[c] = m;
      n = m;
    } else {
      n = it->second;
    }
  }
  trie.nodes[size_t(n)].token = int32_t(idx);
  trie.first_byte[static_cast<unsigned char>(t.content[0])] = true;
}

int32_t AddedVocab::longest_at(const Trie& t, std::string_view s, size_t i, size_t* len) {
  int32_t best = -1;
  int32_t n = 0;
  for (size_t k = i; k < s.size(); ++k) {
    auto it = t.nodes[size_t(n)].next.find(static_cast<unsigned char>(s[k]));
    if (it == t.nodes[size_t(n)].next.end()) break;
    n = it->second;
    if (t.nodes[size_t(n)].token >= 0) {
      best = t.nodes[size_t(n)].token;
      *len = k + 1 - i;
    }
  }
  return best;
}

void AddedVocab::split(std::string_view s, bool normalized, std::vector<Segment>& out) const {
  out.clear();
  const Trie& trie = tries_[normalized ? 1 : 0];
  size_t start = 0;  // end of the last segment emitted
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    int32_t t = trie.first_byte[static_cast<unsigned char>(s[i])] ? longest_at(trie, s, i, &len) : -1;
    if (t < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = tokens_[size_t(t)];
    size_t b = i, e = i + len;
    if (tok.single_word) {
      bool left_ok = b == 0 || !is_word_char(last_char(s.substr(0, b)));
      size_t j = e;
      bool right_ok = e == s.size() || !is_word_char(utf8_next(s, j));
      if (!left_ok || !right_ok) {  // HF's match iterator resumes after the rejected match
        i += len;
        continue;
      }
    }
    if (tok.lstrip) {
      while (b > start) {
        size_t k = b - 1;
        while (k > start && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        size_t j = k;
        if (!is_space(utf8_next(s, j))) break;
        b = k;
      }
    }
    if (tok.rstrip) {
      while (e < s.size()) {
        size_t j = e;
        if (!is_space(utf8_next(s, j))) break;
        e = j;
      }
    }
    if (start < b) out.push_back({start, b, -1});
    out.push_back({b, e, tok.id});
    start = i = e;
  }
  if (start < s.size()) out.push_back({start, s.size(), -1});
}

const AddedToken* AddedVocab::by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocab::by_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

}  // namespace r1::text
