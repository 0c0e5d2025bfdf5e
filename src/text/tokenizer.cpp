#include "text/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "text/byte_level.h"
#include "text/utf8.h"

namespace r1::text {

namespace {
nlohmann::json read_json(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  R1_CHECK(in, "cannot open {}", file);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{}: invalid JSON: {}", file, e.what());
  }
}

void check_decoder(const JsonAt& d) {
  if (d.is_null()) return;
  std::string type = d.str_or("type", "");
  if (type == "Sequence") {
    d.at("decoders").each([](const JsonAt& x) { check_decoder(x); });
    return;
  }
  R1_CHECK(type == "ByteLevel", "{}: decoder type '{}' is not supported (only ByteLevel)", d.where(), type);
}

// The member `key` of the root, or a null value (with its path) when absent.
JsonAt member_or_null(const JsonAt& root, const char* key) {
  static const nlohmann::json null;
  if (auto m = root.find(key)) return *m;
  return JsonAt(null, root.file(), key);
}

constexpr size_t kCacheMax = 1 << 16;
}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::string file = std::filesystem::is_directory(path) ? path + "/tokenizer.json" : path;
  return std::make_unique<Tokenizer>(read_json(file), file);
}

Tokenizer::Tokenizer(const nlohmann::json& j, const std::string& file)
    : file_(file),
      normalizer_(parse_normalizer(member_or_null(JsonAt(j, file).object(), "normalizer"))),
      pre_tokenizer_(parse_pre_tokenizer(member_or_null(JsonAt(j, file), "pre_tokenizer"))),
      bpe_(JsonAt(j, file).at("model")) {
  const JsonAt root(j, file);
  check_decoder(member_or_null(root, "decoder"));
  int32_t n = bpe_.size();
  if (auto added = root.find("added_tokens")) {
    const int32_t max_id = n + int32_t(std::min<size_t>(added->array().size(), 1 << 20)) + (1 << 16);
    added->each([&](const JsonAt& a) {
      const bool special = a.bool_or("special", false);
      AddedToken t{a.at("id").int32(),          a.at("content").str(),         special,
                   a.bool_or("single_word", false), a.bool_or("lstrip", false), a.bool_or("rstrip", false),
                   a.bool_or("normalized", !special)};
      R1_CHECK(t.id >= 0 && t.id < max_id, "{}: id {} is out of range [0, {})", a.at("id").where(), t.id, max_id);
      added_.add(t);
      n = std::max(n, t.id + 1);
    });
  }
  // Decoded bytes per id, as the ByteLevel decoder produces them: a token whose characters are all in
  // the byte map becomes those bytes, any other token (e.g. "<｜User｜>") its UTF-8 text.
  bytes_.resize(size_t(n));
  special_.assign(size_t(n), 0);
  for (int32_t id = 0; id < n; ++id) {
    const AddedToken* a = added_.by_id(id);
    const std::string& s = a ? a->content : bpe_.id_to_token(id);
    if (!byte_level_decode(s, bytes_[size_t(id)])) bytes_[size_t(id)] = s;
    special_[size_t(id)] = a && a->special;
  }
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* a = added_.by_content(token)) return a->id;
  return bpe_.token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* a = added_.by_id(id)) return a->content;
  return bpe_.id_to_token(id);
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && special_[size_t(id)]; }

const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string none;
  return id >= 0 && id < vocab_size() ? bytes_[size_t(id)] : none;
}

void Tokenizer::encode_word_cached(std::string_view word, bool prefix_space, std::vector<int32_t>& out) const {
  thread_local std::string key;
  key.assign(prefix_space ? " " : "");
  key.append(word);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = out.size();
  bpe_.encode_word(word, prefix_space, out);
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= kCacheMax) cache_.clear();
  cache_.emplace(key, std::vector<int32_t>(out.begin() + long(first), out.end()));
}

void Tokenizer::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  thread_local std::vector<Piece> pieces;
  pre_tokenizer_.split(text, pieces);
  for (const Piece& p : pieces) encode_word_cached(text.substr(p.begin, p.end - p.begin), p.prefix_space, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  size_t valid = utf8_valid_prefix(text);
  R1_CHECK(valid == text.size(), "tokenizer: text is not valid UTF-8 (bad byte 0x{:02x} at offset {})",
           static_cast<unsigned char>(text[valid]), valid);
  std::vector<int32_t> out;
  // HF order: split on added tokens that match the raw text, normalise the rest, then split that on
  // added tokens that match normalised text, then pre-tokenize and run BPE.
  std::vector<Segment> raw_segs, norm_segs;
  added_.split(text, false, raw_segs);
  for (const Segment& s : raw_segs) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    std::string_view piece = text.substr(s.begin, s.end - s.begin);
    std::string normalized;
    if (!normalizer_.identity()) {
      normalized = normalizer_.apply(piece);
      piece = normalized;
    }
    added_.split(piece, true, norm_segs);
    for (const Segment& n : norm_segs) {
      if (n.id >= 0) out.push_back(n.id);
      else encode_text(piece.substr(n.begin, n.end - n.begin), out);
    }
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    bytes += token_bytes(id);
  }
  return utf8_lossy(bytes);
}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return "";
  pending_ += tok_.token_bytes(id);
  // Hold back a trailing sequence that the next token may complete.
  size_t cut = pending_.size() - utf8_incomplete_tail(pending_);
  std::string out = utf8_lossy(std::string_view(pending_).substr(0, cut));
  pending_.erase(0, cut);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace r1::text
