// Reward models: the score head's gradients against finite differences through the Bradley–Terry
// loss, HF sequence-classification checkpoints (round trip, a causal LM as backbone), `r1 rm`
// learning a synthetic preference and resuming bit for bit, and the `model` reward alone, in a
// composite and routed by prompt type. RmCuda compares the GPU reward model with the CPU one.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/bf16.h"
#include "base/fs.h"
#include "base/rng.h"
#include "export_util.h"
#include "model/checkpoint.h"
#include "require_gpu.h"
#include "reward/composite.h"
#include "reward/model_reward.h"
#include "tensor/device_memory.h"
#include "test_util.h"
#include "text/codec.h"
#include "run/recipe.h"
#include "train/rm.h"
#include "run/run_inputs.h"
#include "model/train_state.h"

using namespace r1;

namespace {

model::ModelConfig rm_config(const std::string& arch, int vocab = 257) {
  model::ModelConfig c = model::preset_config("tiny", arch);
  model::override_config(c, "vocab_size", std::to_string(vocab));
  c.num_labels = 1;
  return c;
}

std::vector<int32_t> random_ids(Rng& rng, int n, int vocab) {
  std::vector<int32_t> ids(size_t(n), 0);
  for (auto& x : ids) x = int32_t(rng.next_u32() % uint32_t(vocab));
  return ids;
}

std::vector<train::PreferencePair> random_pairs(uint64_t seed, int n, int vocab) {
  Rng rng(seed);
  std::vector<train::PreferencePair> pairs;
  for (int i = 0; i < n; ++i)
    pairs.push_back({random_ids(rng, 5 + i * 3, vocab), random_ids(rng, 9 + i, vocab)});
  return pairs;
}

std::vector<float> scores_of(const model::Transformer& m, const std::vector<std::vector<int32_t>>& seqs) {
  model::TrainState st;
  return st.score_forward(m, model::pack_sequences(seqs));
}

double loss_of(model::Transformer& m, const std::vector<train::PreferencePair>& pairs) {
  model::TrainState st;
  return train::rm_loss(m, st, pairs, 48, /*backward=*/false).loss;
}

class RmArch : public ::testing::TestWithParam<std::string> {};

// d loss / d weight from score_backward against central differences, for the score head and for
// weights far below it (the first layer's q projection and the embedding), through micro-batches.
TEST_P(RmArch, GradientsMatchFiniteDifferences) {
  model::Transformer m(rm_config(GetParam()));
  m.init_random(3, 0.2f);
  const auto pairs = random_pairs(5, 3, 257);
  m.zero_grads();
  model::TrainState st;
  train::rm_loss(m, st, pairs, 48, /*backward=*/true);  // 48 tokens: one pair per micro-batch
  const std::vector<float> grads = to_host_f32(m.grads().flat);
  for (const std::string name :
       {"score.weight", "model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight"}) {
    const auto spec =
        std::find_if(m.specs().begin(), m.specs().end(), [&](const auto& s) { return s.name == name; });
    ASSERT_NE(spec, m.specs().end()) << name;
    // The elements with the largest gradients: finite differences resolve them well in f32.
    std::vector<int64_t> idx(size_t(spec->numel()));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = spec->offset + int64_t(i);
    std::partial_sort(idx.begin(), idx.begin() + 4, idx.end(), [&](int64_t a, int64_t b) {
      return std::abs(grads[size_t(a)]) > std::abs(grads[size_t(b)]);
    });
    for (int k = 0; k < 4; ++k) {
      float* w = m.params().flat.f32() + idx[size_t(k)];
      const float saved = *w, h = 1e-2f;
      *w = saved + h;
      const double up = loss_of(m, pairs);
      *w = saved - h;
      const double down = loss_of(m, pairs);
      *w = saved;
      const double fd = (up - down) / (2.0 * double(h)), an = grads[size_t(idx[size_t(k)])];
      EXPECT_NEAR(an, fd, 1e-2 * std::abs(fd) + 1e-4) << name << " element " << idx[size_t(k)] - spec->offset;
    }
  }
}

// An r1-saved reward model is an HF sequence classifier that loads back with the same scores.
TEST_P(RmArch, SaveLoadKeepsScores) {
  test::TempDir dir;
  model::Transformer m(rm_config(GetParam()));
  m.init_random(11, 0.2f);
  model::save_model(m, dir.path());
  const auto j = nlohmann::json::parse(fs::read_file(dir.file("config.json")));
  const std::string arch = GetParam() == "qwen2" ? "Qwen2" : GetParam() == "llama" ? "Llama" : "Qwen3";
  EXPECT_EQ(j["architectures"][0], arch + "ForSequenceClassification");
  EXPECT_EQ(j["id2label"], (nlohmann::json{{"0", "LABEL_0"}}));
  EXPECT_EQ(j["label2id"], (nlohmann::json{{"LABEL_0", 0}}));
  EXPECT_TRUE(j.contains("pad_token_id"));
  model::Transformer back = model::load_model(dir.path());
  EXPECT_EQ(back.config().num_labels, 1);
  EXPECT_TRUE(back.params().lm_head.empty());
  Rng rng(2);
  const std::vector<std::vector<int32_t>> seqs = {random_ids(rng, 17, 257), random_ids(rng, 4, 257)};
  EXPECT_EQ(scores_of(m, seqs), scores_of(back, seqs));
  model::TrainState st;
  EXPECT_THROW(st.forward(back, model::pack_sequences(seqs)), Error);  // no lm_head to give log-probs
}

INSTANTIATE_TEST_SUITE_P(Rm, RmArch, ::testing::Values("qwen2", "llama", "qwen3"));

// A causal LM becomes a reward model's backbone: its weights kept, lm_head dropped, a fresh seeded
// score head; a directory that already is a reward model loads as it is.
TEST(RmCheckpoint, CausalLmBecomesTheBackbone) {
  test::TempDir dir;
  model::ModelConfig lm_cfg = model::preset_config("tiny", "llama");
  model::override_config(lm_cfg, "tie_word_embeddings", "false");  // an lm_head tensor to drop
  lm_cfg.eos_token_ids = {255};
  model::Transformer lm(lm_cfg);
  lm.init_random(4, 0.2f);
  model::save_model(lm, dir.file("lm"));
  model::Transformer rm = model::load_classifier(dir.file("lm"), 1, 9);
  EXPECT_EQ(rm.config().num_labels, 1);
  EXPECT_EQ(rm.config().pad_or_eos(), 255);
  const std::vector<float> a = lm.weights_host(), b = rm.weights_host();
  for (const model::ParamSpec& s : rm.specs()) {
    if (s.name == "score.weight") continue;
    const auto src =
        std::find_if(lm.specs().begin(), lm.specs().end(), [&](const auto& x) { return x.name == s.name; });
    ASSERT_NE(src, lm.specs().end()) << s.name;
    EXPECT_TRUE(std::equal(b.begin() + s.offset, b.begin() + s.offset + s.numel(), a.begin() + src->offset))
        << s.name;
  }
  const std::vector<float> again = model::load_classifier(dir.file("lm"), 1, 9).weights_host();
  EXPECT_EQ(b, again);  // the fresh head is seeded
  EXPECT_NE(b, model::load_classifier(dir.file("lm"), 1, 10).weights_host());
  model::save_model(rm, dir.file("rm"));
  EXPECT_EQ(model::load_classifier(dir.file("rm"), 1, 123).weights_host(), b);  // not re-drawn
  EXPECT_THROW(model::load_classifier(dir.file("rm"), 2, 0), Error);
  // The causal LM itself still loads and computes log-probs as before.
  model::TrainState st;
  Rng rng(1);
  EXPECT_NO_THROW(
      st.forward(model::load_model(dir.file("lm")), model::pack_sequences({random_ids(rng, 6, 256)})));
}

// ---- r1 rm ----------------------------------------------------------------------------------

// Chosen answers end in "yes", rejected ones in "no", after the same random letters: a preference a
// tiny model learns in a few dozen steps.
void write_pairs(const std::string& path, int n, uint64_t seed) {
  Rng rng(seed);
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    std::string prompt = "q", body;
    for (int k = 0; k < 3 + int(rng.next_u32() % 4); ++k) prompt += char('a' + rng.next_u32() % 6);
    for (int k = 0; k < 2 + int(rng.next_u32() % 4); ++k) body += char('a' + rng.next_u32() % 6);
    out << nlohmann::json{{"prompt", prompt}, {"chosen", body + " yes"}, {"rejected", body + " no"}}.dump()
        << "\n";
  }
}

std::string rm_args(const test::TempDir& dir, const std::string& name) {
  return fmt::format(
      "rm model.tokenizer=byte data.template=none data.path={0} data.eval_path={1} train.batch_size=8 "
      "train.lr=2e-3 train.lr_schedule=constant train.steps=40 train.eval_every=20 run.dir={2} run.name={3}",
      dir.file("train.jsonl"), dir.file("eval.jsonl"), dir.path(), name);
}

TEST(RmRun, LearnsASyntheticPreference) {
  test::TempDir dir;
  write_pairs(dir.file("train.jsonl"), 64, 1);
  write_pairs(dir.file("eval.jsonl"), 32, 2);
  auto r = test::run_r1(rm_args(dir, "learn"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json summary = nlohmann::json::parse(fs::read_file(dir.file("learn/summary.json")));
  EXPECT_GE(summary["eval/accuracy"].get<double>(), 0.9) << summary.dump();
  EXPECT_LT(summary["eval/loss"].get<double>(), 0.3) << summary.dump();
  const auto first = nlohmann::json::parse(test::read_lines(dir.file("learn/metrics.jsonl")).front());
  for (const char* k : {"loss", "accuracy", "margin", "lr", "grad_norm"}) EXPECT_TRUE(first.contains(k)) << k;
  EXPECT_LT(first["accuracy"].get<double>(), 0.8);  // step 0 is scored before any update: near chance
  EXPECT_TRUE(fs::exists(dir.file("learn/report.html")));
  // RUN/model is a reward model whose reward agrees with `r1 rm --score`.
  const auto cfg = nlohmann::json::parse(fs::read_file(dir.file("learn/model/config.json")));
  EXPECT_EQ(cfg["architectures"][0], "Qwen2ForSequenceClassification");
  auto scored = test::run_r1("rm --score " + dir.file("learn/model"),
                             "{\"ids\": [113, 97, 98, 32, 121, 101, 115, 256]}\n");
  ASSERT_EQ(scored.exit_code, 0) << scored.err;
  const auto line = nlohmann::json::parse(scored.out);
  EXPECT_EQ(line["scores"].size(), 8u);
  EXPECT_EQ(line["reward"], line["scores"].back());
}

TEST(RmRun, KilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  write_pairs(dir.file("train.jsonl"), 24, 3);
  write_pairs(dir.file("eval.jsonl"), 8, 4);
  const std::string extra = " train.steps=6 run.save_every=2";
  // The uninterrupted run also exports in bf16 (run.export_dtype changes the export alone, not the
  // checkpoints the comparison reads): its model is the last checkpoint's weights rounded.
  auto full = test::run_r1(rm_args(dir, "full") + extra + " run.export_dtype=bfloat16");
  ASSERT_EQ(full.exit_code, 0) << full.err;
  test::expect_bf16_export(dir.file("full/model"), dir.file("full/checkpoints/step_000005/model"));
  auto killed = test::run_r1(rm_args(dir, "cut") + extra + " --stop-after 2");
  ASSERT_NE(killed.exit_code, 0);  // ended after step 2; the last checkpoint is step 1
  auto resumed = test::run_r1(rm_args(dir, "cut") + extra + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos);
  const std::string a = fs::read_file(dir.file("full/checkpoints/step_000005/model/model.safetensors"));
  EXPECT_TRUE(a == fs::read_file(dir.file("cut/checkpoints/step_000005/model/model.safetensors")))
      << "resumed weights differ from the uninterrupted run";
  EXPECT_NE(a, fs::read_file(dir.file("full/checkpoints/step_000003/model/model.safetensors")));
  EXPECT_EQ(fs::read_file(dir.file("full/checkpoints/step_000005/optimizer.safetensors")),
            fs::read_file(dir.file("cut/checkpoints/step_000005/optimizer.safetensors")));
  EXPECT_EQ(test::read_lines(dir.file("cut/metrics.jsonl")).size(), 6u);
  EXPECT_EQ(model::load_config(dir.file("cut/model/config.json")).torch_dtype, "float32");  // the default
}

TEST(RmRun, EmptySideNamesFileAndLineBeforeWriting) {
  test::TempDir dir;
  std::ofstream(dir.file("train.jsonl")) << "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
                                         << "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"\"}\n";
  write_pairs(dir.file("eval.jsonl"), 2, 1);
  auto r = test::run_r1(rm_args(dir, "x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(dir.file("train.jsonl") + " line 2: 'rejected' is missing or empty"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
  std::ofstream(dir.file("train.jsonl")) << "{\"prompt\": \"p\", \"rejected\": \"b\"}\n";
  r = test::run_r1(rm_args(dir, "x"));
  EXPECT_NE(r.err.find("line 1: 'chosen' is missing or empty"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

// ---- the model reward -------------------------------------------------------------------------

// A random reward model over the byte codec, saved in `dir`.
std::string save_byte_rm(const test::TempDir& dir, uint64_t seed = 8) {
  model::Transformer m(rm_config("qwen2"));
  m.init_random(seed, 0.2f);
  model::save_model(m, dir.file("rm"));
  return dir.file("rm");
}

reward::ModelRewardOptions byte_rm_options(const std::string& path,
                                           const std::string& transform = "sigmoid") {
  reward::ModelRewardOptions o;
  o.path = path;
  o.tokenizer = "byte";
  o.transform = transform;
  o.batch = 3;
  return o;
}

std::vector<reward::Sample> chat_samples() {
  std::vector<reward::Sample> s;
  for (int i = 0; i < 7; ++i)
    s.push_back({fmt::format("answer {}", i * 37), "", nullptr, fmt::format("prompt {}: ", i),
                 i % 2 ? "chat" : "math"});
  return s;
}

TEST(ModelReward, ScoresEqualTheDirectForwardAndBatchEqualsOneByOne) {
  test::TempDir dir;
  const std::string path = save_byte_rm(dir);
  reward::ModelReward raw(byte_rm_options(path, "raw")), sig(byte_rm_options(path));
  const model::Transformer m = model::load_model(path);
  const text::ByteCodec codec;
  const auto samples = chat_samples();
  const std::vector<reward::Result> batch = reward::score_batch(raw, samples, 2);
  const std::vector<reward::Result> squashed = reward::score_batch(sig, samples, 2);
  for (size_t i = 0; i < samples.size(); ++i) {
    std::vector<int32_t> ids = codec.encode(samples[i].prompt + samples[i].completion);
    ids.push_back(text::ByteCodec::kEos);
    EXPECT_EQ(raw.token_ids(samples[i]), ids);
    const double direct = scores_of(m, {ids}).back();
    EXPECT_NEAR(batch[i].reward, direct, 1e-5) << i;
    EXPECT_NEAR(raw.score(samples[i]).reward, batch[i].reward, 1e-5) << i;
    // The sigmoid's slope is at most 1/4: the logit's 1e-5 (a batched forward rounds differently
    // from a single one) is 2.5e-6 here.
    EXPECT_NEAR(squashed[i].reward, 1.0 / (1.0 + std::exp(-direct)), 2.5e-6) << i;
    EXPECT_EQ(batch[i].details["tokens"], ids.size());
  }
  EXPECT_THROW(reward::ModelReward(byte_rm_options(path, "tanh")), Error);
  EXPECT_THROW(reward::ModelReward(byte_rm_options(dir.file("nowhere"))), Error);
}

TEST(ModelReward, MixesWithRuleRewardsInAComposite) {
  test::TempDir dir;
  reward::RewardConfig cfg;
  cfg.model = byte_rm_options(save_byte_rm(dir));
  auto mixed = reward::make_reward("math+model:0.5", cfg);
  auto alone = reward::make_reward("model", cfg);
  std::vector<reward::Sample> samples = chat_samples();
  samples[0].completion = "\\boxed{4}";
  samples[0].answer = "4";
  const auto a = reward::score_batch(*mixed, samples, 2), b = reward::score_batch(*alone, samples, 2);
  for (size_t i = 0; i < samples.size(); ++i) {
    const double math = i == 0 ? 1.0 : 0.0;
    EXPECT_NEAR(a[i].reward, math + 0.5 * b[i].reward, 1e-9) << i;
    EXPECT_EQ(a[i].details["model"]["weight"], 0.5);
    EXPECT_NEAR(a[i].details["model"]["reward"].get<double>(), b[i].reward, 1e-9);
    EXPECT_EQ(a[i].details["math"]["reward"], math);
    EXPECT_NEAR(mixed->score(samples[i]).reward, a[i].reward, 1e-6);  // one by one agrees
  }
}

TEST(ModelReward, RoutesPickTheRewardByPromptType) {
  test::TempDir dir;
  reward::RewardConfig cfg;
  cfg.model = byte_rm_options(save_byte_rm(dir));
  auto routed = reward::make_routed_reward("format", {"chat=model", "code=math"}, cfg);
  auto model = reward::make_reward("model", cfg), format = reward::make_reward("format", cfg);
  const auto samples = chat_samples();
  const auto got = reward::score_batch(*routed, samples, 2);
  for (size_t i = 0; i < samples.size(); ++i) {
    const bool chat = samples[i].type == "chat";
    const double want = chat ? model->score(samples[i]).reward : format->score(samples[i]).reward;
    EXPECT_NEAR(got[i].reward, want, 2.5e-6) << i;  // batched beside one by one, through the sigmoid (above)
    EXPECT_EQ(got[i].details["route"], chat ? "chat" : "default") << i;
  }
  EXPECT_THROW(reward::make_routed_reward("math", {"chat"}, cfg), Error);
  EXPECT_THROW(reward::make_routed_reward("math", {"chat=math", "chat=format"}, cfg), Error);
}

// score_all keeps score_batch's guarantees: a part that raises fails its sample as a whole (as the
// composite's score() would), and a batched reward that raises scores its whole batch 0.
TEST(RewardScoreAll, ExceptionsScoreZeroAndNeverPropagate) {
  struct Picky : reward::Reward {
    std::string name() const override { return "picky"; }
    reward::Result score(const reward::Sample& s) const override {
      if (s.type == "bad") throw std::runtime_error("boom");
      return {0.25};
    }
  };
  struct BatchFails : reward::Reward {
    std::string name() const override { return "batch"; }
    reward::Result score(const reward::Sample&) const override { return {1.0}; }
    std::vector<reward::Result> score_all(const std::vector<reward::Sample>&, int) const override {
      throw std::runtime_error("device lost");
    }
  };
  std::vector<reward::CompositeReward::Part> parts;
  parts.push_back({reward::make_reward("format"), 1.0});
  parts.push_back({std::make_unique<Picky>(), 2.0});
  const reward::CompositeReward mixed(std::move(parts));
  std::vector<reward::Sample> samples(3);
  samples[1].type = "bad";
  const auto before = reward::counters().reward_exceptions.load();
  const auto rs = reward::score_batch(mixed, samples, 2);
  EXPECT_DOUBLE_EQ(rs[0].reward, 0.5);
  EXPECT_EQ(rs[1].reward, 0.0);
  EXPECT_NE(rs[1].details["reason"].get<std::string>().find("boom"), std::string::npos);
  EXPECT_DOUBLE_EQ(rs[2].reward, 0.5);
  const auto all = reward::score_batch(BatchFails{}, samples, 2);
  ASSERT_EQ(all.size(), 3u);
  for (const auto& r : all)
    EXPECT_NE(r.details["reason"].get<std::string>().find("device lost"), std::string::npos);
  EXPECT_EQ(reward::counters().reward_exceptions.load(), before + 4);
}

// Recipe errors name the key, before a reward model is loaded.
TEST(ModelReward, RecipeErrorsNameTheKey) {
  auto message = [](const std::vector<std::string>& sets) {
    run::Recipe r(nlohmann::json{{"reward", run::reward_section()}});
    for (const auto& s : sets) r.set(s);
    try {
      run::make_recipe_reward(r);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({"reward.spec=math+model"}).find("reward.model_path"), std::string::npos);
  EXPECT_NE(message({"reward.routes=chat=mdoel"}).find("reward.routes"), std::string::npos);
  EXPECT_NE(message({"reward.routes=chat=mdoel"}).find("mdoel"), std::string::npos);
  EXPECT_NE(message({"reward.routes=chat"}).find("TYPE=SPEC"), std::string::npos);
  EXPECT_NE(message({"reward.spec=math+model", "reward.model_path=/nonexistent"}).find("reward.model_path"),
            std::string::npos);
  EXPECT_EQ(message({}), "no error");
}

// ---- GPU ----------------------------------------------------------------------------------------

// The CUDA reward model (bf16 compute, the padded score head through cuBLASLt) against the CPU one
// on the same bf16-rounded weights: scores, gradients, and the loss and gradient norm of one step.
TEST(RmCuda, ScoresAndOneStepMatchCpu) {
  REQUIRE_GPU();
  const model::ModelConfig c = rm_config("qwen2");
  model::Transformer tmp(c);
  tmp.init_random(21, 0.2f);
  std::vector<float> w = tmp.weights_host();
  for (float& x : w) x = bf16_to_f32(f32_to_bf16(x));
  model::Transformer cpu(c, Device::CPU), gpu(c, Device::CUDA);
  cpu.set_weights(w.data());
  gpu.set_weights(w.data());
  const auto pairs = random_pairs(6, 4, 257);
  std::vector<std::vector<int32_t>> seqs;
  for (const auto& p : pairs) seqs.push_back(p.chosen), seqs.push_back(p.rejected);
  auto close = [](const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    double scale = 0, err = 0;
    for (size_t i = 0; i < want.size(); ++i)
      scale = std::max(scale, std::abs(double(want[i]))),
      err = std::max(err, std::abs(double(got[i]) - want[i]));
    fmt::print("[ CUDAERR ] rm {} max abs {:.3e} (scale {:.3e})\n", what, err, scale);
    EXPECT_LT(err, 3e-2 * scale + 1e-3) << what;
  };
  close(scores_of(gpu, seqs), scores_of(cpu, seqs), "scores");
  // Gradients of the Bradley-Terry loss, compared as the model parity does (relative L2). Scores
  // after an AdamW step are no test: the first step moves every weight by about +-lr whatever its
  // gradient's size, so tiny gradient entries whose bf16 sign differs move the scores a lot.
  model::TrainState sc, sg;
  cpu.zero_grads();
  gpu.zero_grads();
  train::rm_loss(cpu, sc, pairs, 64, /*backward=*/true);
  train::rm_loss(gpu, sg, pairs, 64, /*backward=*/true);
  const std::vector<float> g_cpu = to_host_f32(cpu.grads().flat), g_gpu = to_host_f32(gpu.grads().flat);
  double num = 0, den = 0;
  for (size_t i = 0; i < g_cpu.size(); ++i)
    num += (double(g_gpu[i]) - g_cpu[i]) * (double(g_gpu[i]) - g_cpu[i]), den += double(g_cpu[i]) * g_cpu[i];
  fmt::print("[ CUDAERR ] rm gradient rel L2 {:.3e}\n", std::sqrt(num / den));
  EXPECT_LT(std::sqrt(num / den), 5e-2);
  optim::DataParallel opt_cpu(cpu, {}), opt_gpu(gpu, {});
  const auto rc = train::rm_step(cpu, sc, opt_cpu, pairs, 1e-3, 1.0, 64);
  const auto rg = train::rm_step(gpu, sg, opt_gpu, pairs, 1e-3, 1.0, 64);
  fmt::print("[ CUDAERR ] rm loss cpu {:.6f} cuda {:.6f}\n", rc.loss, rg.loss);
  EXPECT_NEAR(rg.loss, rc.loss, 1e-2);
  EXPECT_NEAR(rg.grad_norm, rc.grad_norm, 5e-2 * rc.grad_norm);
}

}  // namespace
