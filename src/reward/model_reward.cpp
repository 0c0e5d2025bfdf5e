#include "reward/model_reward.h"

#include <chrono>
#include <cmath>
#include <mutex>

#include "base/error.h"
#include "base/fs.h"
#include "model/checkpoint.h"
#include "tensor/device_memory.h"
#include "text/codec.h"
#include "text/hf_codec.h"
#include "model/train_state.h"

namespace r1::reward {

struct ModelReward::State {
  std::unique_ptr<model::Transformer> model;
  std::unique_ptr<text::Codec> codec;
  int32_t eos = -1;
  std::mutex mu;  // guards state: one forward at a time
  model::TrainState state;
};

ModelReward::ModelReward(const ModelRewardOptions& o) : st_(std::make_shared<State>()), opt_(o) {
  R1_CHECK(!o.path.empty(), "reward 'model': no reward model path given");
  const std::string config = fs::join(o.path, "config.json");
  R1_CHECK(fs::exists(config), "reward 'model': {} is not a model directory (no config.json)", o.path);
  R1_CHECK(o.transform == "sigmoid" || o.transform == "raw",
           "reward 'model': transform must be sigmoid or raw (got '{}')", o.transform);
  R1_CHECK(o.batch > 0, "reward 'model': batch must be > 0 (got {})", o.batch);
  const model::ModelConfig cfg = model::load_config(config);
  R1_CHECK(
      cfg.num_labels == 1,
      "reward 'model': {} is not a reward model (it needs a *ForSequenceClassification architecture with "
      "one label; train one with r1 rm)",
      config);
  const Device device = parse_device(o.device, "reward 'model' device");
  require_device(device, "reward 'model' device");
  const std::string tok = o.tokenizer.empty() ? o.path : o.tokenizer;
  if (tok == "byte")
    st_->codec = std::make_unique<text::ByteCodec>();
  else
    st_->codec = text::HfCodec::load(tok, o.path);
  const std::vector<int32_t> eos = st_->codec->eos_ids();
  R1_CHECK(!eos.empty(), "reward 'model': the tokenizer {} has no end-of-sequence token", tok);
  st_->eos = eos[0];
  R1_CHECK(st_->eos < cfg.vocab_size,
           "reward 'model': EOS id {} of tokenizer {} is outside the model's vocabulary of {}", st_->eos, tok,
           cfg.vocab_size);
  st_->model = std::make_unique<model::Transformer>(model::load_model(o.path, device, /*trainable=*/false));
}

std::vector<int32_t> ModelReward::token_ids(const Sample& s) const {
  std::vector<int32_t> ids = st_->codec->encode(s.prompt);
  const std::vector<int32_t> body = st_->codec->encode(s.completion);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.push_back(st_->eos);
  return ids;
}

Result ModelReward::score(const Sample& s) const { return score_all({s}, 1).at(0); }

std::vector<Result> ModelReward::score_all(const std::vector<Sample>& samples, int /*threads*/) const {
  const model::ModelConfig& c = st_->model->config();
  std::vector<Result> out(samples.size());
  // Sequences the model can read; the others score 0 with the reason.
  std::vector<std::vector<int32_t>> seqs;
  std::vector<size_t> owner;
  for (size_t i = 0; i < samples.size(); ++i) {
    std::vector<int32_t> ids = token_ids(samples[i]);
    bool in_vocab = true;
    for (int32_t id : ids) in_vocab &= id >= 0 && id < c.vocab_size;
    if (!in_vocab) {
      out[i] = {0.0, {{"reason", "a token id is outside the reward model's vocabulary"}}};
    } else if (c.max_position_embeddings > 0 && int64_t(ids.size()) > c.max_position_embeddings) {
      out[i] = {0.0,
                {{"reason", fmt::format("{} tokens exceed the reward model's context of {}", ids.size(),
                                        c.max_position_embeddings)}}};
    } else {
      seqs.push_back(std::move(ids));
      owner.push_back(i);
    }
  }
  std::lock_guard<std::mutex> lock(st_->mu);
  for (size_t first = 0; first < seqs.size(); first += size_t(opt_.batch)) {
    const auto t0 = std::chrono::steady_clock::now();
    const size_t last = std::min(seqs.size(), first + size_t(opt_.batch));
    const model::Batch b = model::pack_sequences({seqs.begin() + long(first), seqs.begin() + long(last)});
    const std::vector<float> scores = st_->state.score_forward(*st_->model, b);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
        double(last - first);
    for (size_t k = first; k < last; ++k) {
      const double raw = scores[size_t(b.cu_seqlens[k - first + 1] - 1)];  // the last token (EOS)
      const double reward = opt_.transform == "sigmoid" ? 1.0 / (1.0 + std::exp(-raw)) : raw;
      out[owner[k]] = {reward, {{"score", raw}, {"tokens", seqs[k].size()}, {"ms", ms}}};
    }
  }
  return out;
}

}  // namespace r1::reward
