#include "text/bpe.h"

#include <queue>

#include "base/error.h"
#include "text/byte_level.h"

namespace r1::text {

Bpe::Bpe(const JsonAt& model) {
  std::string type = model.str_or("type", "");
  R1_CHECK(type == "BPE", "{}: tokenizer model type '{}' is not supported (only byte-level 'BPE')", model.where(),
           type);
  auto empty_or_null = [&](const char* k) {
    auto v = model.find(k);
    return !v || (v->is_string() && v->str_ref().empty());
  };
  R1_CHECK(empty_or_null("continuing_subword_prefix") && empty_or_null("end_of_word_suffix"),
           "{}: BPE continuing_subword_prefix / end_of_word_suffix are not supported", model.where());
  R1_CHECK(!model.bool_or("byte_fallback", false), "{}: BPE byte_fallback is not supported", model.where());
  auto d = model.find("dropout");
  R1_CHECK(!d || d->number() == 0.0, "{}: BPE dropout is not supported", model.where());
  ignore_merges_ = model.bool_or("ignore_merges", false);

  const JsonAt vocab = model.at("vocab");
  vocab.object();
  vocab_.reserve(vocab.size());
  // Ids index dense tables: a few holes are fine, an id far past the vocabulary's size is a bad file
  // (and would allocate gigabytes).
  const int64_t max_id = int64_t(vocab.size()) + (1 << 16);
  // The hot loop of loading (150k entries): the raw value when it is well formed, a JsonAt (which
  // builds the key path) only to report one that is not.
  for (auto it = vocab.raw().begin(); it != vocab.raw().end(); ++it) {
    const std::string& token = it.key();
    int64_t id = it->is_number_integer() ? it->get<int64_t>() : -1;
    if (id < 0 || id >= max_id) {
      const JsonAt v(*it, vocab.file(), vocab.path() + "." + token);
      id = v.int64();
      R1_CHECK(id >= 0 && id < max_id, "{}: vocab id {} is out of range [0, {})", v.where(), id, max_id);
    }
    if (size_t(id) >= id_to_token_.size()) id_to_token_.resize(size_t(id) + 1);
    id_to_token_[size_t(id)] = token;
    vocab_.emplace(token, int32_t(id));
  }
  const auto& table = byte_to_unicode();
  for (int b = 0; b < 256; ++b) byte_id_[size_t(b)] = token_to_id(table[size_t(b)]);

  // Merges come as "a b" strings (older files) or ["a", "b"] pairs (newer ones).
  const JsonAt merges = model.at("merges");
  merges.array();
  merges_.reserve(merges.size());
  int32_t rank = 0;
  std::string a, b;
  for (size_t i = 0; i < merges.size(); ++i) {
    const nlohmann::json& mj = merges.raw()[i];
    auto at = [&] { return JsonAt(mj, merges.file(), merges.path() + "[" + std::to_string(i) + "]"); };
    if (mj.is_string()) {
      const std::string& s = mj.get_ref<const std::string&>();
      size_t sp = s.find(' ', 1);
      R1_CHECK(sp != std::string::npos, "{}: merge '{}' is not 'a b'", at().where(), s);
      a.assign(s, 0, sp);
      b.assign(s, sp + 1);
    } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
      a = mj[0].get<std::string>();
      b = mj[1].get<std::string>();
    } else {  // report what is wrong with it
      const JsonAt m = at();
      if (!m.is_array() || m.size() != 2) m.expected("a merge 'a b' or [a, b]");
      m.at(0).str();
      m.at(1).str();
    }
    int32_t ia = token_to_id(a), ib = token_to_id(b), im = token_to_id(a + b);
    R1_CHECK(ia >= 0 && ib >= 0 && im >= 0, "{}: merge ('{}' '{}') uses a token missing from the vocab",
             at().where(), a, b);
    merges_.emplace(key(ia, ib), Merge{rank, im});  // the first (lowest-rank) copy of a pair wins
    ++rank;
  }
}

int32_t Bpe::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& Bpe::id_to_token(int32_t id) const {
  static const std::string none;
  return id >= 0 && id < size() ? id_to_token_[size_t(id)] : none;
}

void Bpe::encode_word(std::string_view bytes, bool prefix_space, std::vector<int32_t>& out) const {
  thread_local std::string word;
  word.clear();
  if (prefix_space) word += ' ';
  word.append(bytes);

  if (ignore_merges_) {  // Llama 3: a word that is itself in the vocabulary is not merged
    thread_local std::string mapped;
    mapped.clear();
    const auto& table = byte_to_unicode();
    for (unsigned char c : word) mapped += table[c];
    auto it = vocab_.find(mapped);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }

  // Symbols form a doubly linked list over the word's bytes; a min-heap holds candidate merges by
  // (rank, position), so each merge costs O(log n) instead of a rescan of the word.
  struct Symbol {
    int32_t id, prev, next;
  };
  struct Candidate {
    int32_t rank, pos, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Symbol> sym;
  sym.clear();
  for (unsigned char c : word) {
    if (byte_id_[c] < 0) continue;  // no token for this byte and no unk: HF drops it
    int32_t n = int32_t(sym.size());
    sym.push_back({byte_id_[c], n - 1, n + 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    int32_t nx = sym[size_t(pos)].next;
    if (nx < 0) return;
    auto it = merges_.find(key(sym[size_t(pos)].id, sym[size_t(nx)].id));
    if (it != merges_.end()) heap.push({it->second.rank, pos, sym[size_t(pos)].id, sym[size_t(nx)].id});
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) push(i);

  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    Symbol& s = sym[size_t(c.pos)];
    // Stale entries: the left symbol was merged away or changed, or its right neighbour changed.
    if (s.id != c.left || s.next < 0 || sym[size_t(s.next)].id != c.right) continue;
    int32_t right = s.next;
    s.id = merges_.at(key(c.left, c.right)).merged;
    s.next = sym[size_t(right)].next;
    if (s.next >= 0) sym[size_t(s.next)].prev = c.pos;
    sym[size_t(right)].id = -1;  // dead
    if (s.prev >= 0) push(s.prev);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) out.push_back(sym[size_t(i)].id);
}

}  // namespace r1::text
