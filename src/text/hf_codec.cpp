#include "text/hf_codec.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"
#include "base/json_at.h"

namespace r1::text {

namespace {

void add_id(std::vector<int32_t>& ids, int64_t id, int32_t vocab) {
  if (id >= 0 && id < vocab && std::find(ids.begin(), ids.end(), int32_t(id)) == ids.end()) ids.push_back(int32_t(id));
}

// eos_token_id is one id or a list of ids.
void add_ids_from(std::vector<int32_t>& ids, const JsonAt& v, int32_t vocab) {
  if (v.is_array()) v.each([&](const JsonAt& x) { add_id(ids, x.int64(), vocab); });
  else add_id(ids, v.int64(), vocab);
}

nlohmann::json read_json_if_present(const std::string& path) {
  if (!fs::exists(path)) return nullptr;
  try {
    return nlohmann::json::parse(fs::read_file(path));
  } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

}  // namespace

std::unique_ptr<HfCodec> HfCodec::load(const std::string& tokenizer_dir, const std::string& model_dir) {
  auto c = std::unique_ptr<HfCodec>(new HfCodec());
  c->tok_ = Tokenizer::load(tokenizer_dir);
  const int32_t V = c->tok_->vocab_size();
  const std::string tc_path = fs::join(tokenizer_dir, "tokenizer_config.json");
  nlohmann::json tc = read_json_if_present(tc_path);
  if (!tc.is_null()) {
    if (auto e = JsonAt(tc, tc_path).find("eos_token")) {
      std::string s = e->is_object() ? e->str_or("content", "") : e->str();
      if (!s.empty()) add_id(c->eos_, c->tok_->token_to_id(s), V);
    }
  }
  for (const std::string& dir : {model_dir, tokenizer_dir}) {
    if (dir.empty()) continue;
    for (const char* f : {"generation_config.json", "config.json"}) {
      const std::string path = fs::join(dir, f);
      nlohmann::json j = read_json_if_present(path);
      if (j.is_null()) continue;
      if (auto ids = JsonAt(j, path).find("eos_token_id")) add_ids_from(c->eos_, *ids, V);
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
