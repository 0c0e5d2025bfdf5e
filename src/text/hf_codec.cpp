#include "text/hf_codec.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"

namespace r1::text {

namespace {

void add_id(std::vector<int32_t>& ids, int64_t id, int32_t vocab) {
  if (id >= 0 && id < vocab && std::find(ids.begin(), ids.end(), int32_t(id)) == ids.end()) ids.push_back(int32_t(id));
}

void add_ids_from(std::vector<int32_t>& ids, const nlohmann::json& v, int32_t vocab) {
  if (v.is_number_integer()) add_id(ids, v.get<int64_t>(), vocab);
  if (v.is_array())
    for (const auto& x : v)
      if (x.is_number_integer()) add_id(ids, x.get<int64_t>(), vocab);
}

nlohmann::json read_json_if_present(const std::string& path) {
  if (!fs::exists(path)) return nullptr;
  try {
    return nlohmann::json::parse(fs::read_file(path));
  } catch (const nlohmann::json::parse_error& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

}  // namespace

std::unique_ptr<HfCodec> HfCodec::load(const std::string& tokenizer_dir, const std::string& model_dir) {
  auto c = std::unique_ptr<HfCodec>(new HfCodec());
  c->tok_ = Tokenizer::load(tokenizer_dir);
  const int32_t V = c->tok_->vocab_size();
  nlohmann::json tc = read_json_if_present(fs::join(tokenizer_dir, "tokenizer_config.json"));
  if (tc.is_object() && tc.contains("eos_token")) {
    const auto& e = tc["eos_token"];
    std::string s = e.is_string() ? e.get<std::string>() : e.is_object() ? e.value("content", "") : "";
    if (!s.empty()) add_id(c->eos_, c->tok_->token_to_id(s), V);
  }
  for (const std::string& dir : {model_dir, tokenizer_dir}) {
    if (dir.empty()) continue;
    for (const char* f : {"generation_config.json", "config.json"}) {
      nlohmann::json j = read_json_if_present(fs::join(dir, f));
      if (j.is_object() && j.contains("eos_token_id")) add_ids_from(c->eos_, j["eos_token_id"], V);
    }
  }
  // Chat models end a turn with a special token that is not always listed as EOS.
  for (const char* t : {"<|im_end|>", "<|eot_id|>", "<|end▁of▁sentence|>"}) {
    int32_t id = c->tok_->token_to_id(t);
    if (id >= 0 && c->tok_->is_special(id)) add_id(c->eos_, id, V);
  }
  R1_CHECK(!c->eos_.empty(), "{}: no end-of-sequence token found (tokenizer_config.json eos_token, "
           "generation_config.json eos_token_id)", tokenizer_dir);
  return c;
}

}  // namespace r1::text
