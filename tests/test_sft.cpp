// SFT: the loss covers exactly the masked-in tokens (checked against a step done by hand), chat
// conversations are masked to their assistant turns, a short run learns, a killed run resumed
// equals an uninterrupted one bit for bit, and bad rows fail by file and line before any output.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/fs.h"
#include "data/sft_data.h"
#include "model/adapter_checkpoint.h"
#include "model/transformer.h"
#include "model/train_state.h"
#include "test_util.h"
#include "text/chat_template.h"
#include "text/codec.h"
#include "optim/optimizer.h"
#include "run/recipe.h"
#include "train/sft.h"
#include "train/sft_run.h"

using namespace r1;

namespace {

// A tiny qwen2-shaped model (hidden 64, 2 layers) over the byte codec's 257 ids.
model::Transformer byte_model(uint64_t seed) {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "257");
  model::Transformer m(c);
  m.init_random(seed);
  return m;
}

std::vector<int32_t> bytes(const std::string& s) { return text::ByteCodec().encode(s); }

// One AdamW step by hand on one packed micro-batch: the loss is the mean -logp of the tokens
// (sequence, position) listed in `targets`, each scored at the row before it.
void hand_step(model::Transformer& m, const std::vector<data::SftSequence>& seqs,
               const std::vector<std::pair<int, int>>& targets, double lr, double* loss = nullptr) {
  std::vector<std::vector<int32_t>> toks;
  for (const auto& s : seqs) toks.push_back(s.tokens);
  model::Batch b = model::pack_sequences(toks);
  model::TrainState st;
  st.forward(m, b);
  const std::vector<float> logp = st.logp_host();
  std::vector<float> dlogp(size_t(b.tokens()), 0.0f);
  double sum = 0;
  for (auto [seq, k] : targets) {
    const size_t row = size_t(b.cu_seqlens[size_t(seq)] + k - 1);
    sum -= logp[row];
    dlogp[row] = -1.0f / float(targets.size());
  }
  if (loss) *loss = sum / double(targets.size());
  optim::AdamW opt = optim::make_adamw(m, {});
  m.zero_grads();
  st.backward(m, dlogp);
  optim::ClipResult clip = optim::clip_grad_norm(m.grads().flat, 1.0);
  optim::optimizer_step(opt, m, float(lr), clip.scale);
}

std::vector<data::SftSequence> two_sequences() {
  data::SftSequence a = data::prompt_completion_sequence(bytes("12+30="), bytes("42;"));
  data::SftSequence b;  // a mask with two separate spans
  b.tokens = bytes("abcdefghijkl");
  b.loss_mask = {0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0};
  return {a, b};
}

TEST(SftStep, LossAndUpdateCoverOnlyTheMaskedTokens) {
  const std::vector<data::SftSequence> seqs = two_sequences();
  // The masked-in tokens: the completion (positions 6..8) and the two spans of the second sequence.
  const std::vector<std::pair<int, int>> targets = {{0, 6}, {0, 7}, {0, 8}, {1, 3},
                                                    {1, 4}, {1, 5}, {1, 8}, {1, 9}};
  model::Transformer by_hand = byte_model(5), stepped = byte_model(5), wrong = byte_model(5);
  double hand_loss = 0;
  hand_step(by_hand, seqs, targets, 1e-2, &hand_loss);

  optim::DataParallel opt(stepped, {});
  model::TrainState st;
  train::SftStepResult r = train::sft_step(stepped, st, opt, seqs, 1e-2, 1.0);
  EXPECT_EQ(r.tokens, 8);
  EXPECT_EQ(r.packed_tokens, 21);
  EXPECT_NEAR(r.loss, hand_loss, 1e-9);
  EXPECT_EQ(stepped.weights_host(), by_hand.weights_host())
      << "sft_step's gradient is not the masked tokens' alone";

  // A prompt token as a target changes the update: the mask is what keeps the prompt out.
  std::vector<std::pair<int, int>> with_prompt = targets;
  with_prompt.push_back({0, 3});
  hand_step(wrong, seqs, with_prompt, 1e-2);
  EXPECT_NE(wrong.weights_host(), by_hand.weights_host());
}

TEST(SftStep, PromptCompletionFormIsTheSameStep) {
  // The r1 demo's form: a prompt/completion example trains exactly as its SftSequence.
  std::vector<train::SftExample> examples = {{bytes("7+8="), bytes("15;")}, {bytes("100+1="), bytes("101;")}};
  std::vector<data::SftSequence> seqs;
  for (const auto& e : examples) seqs.push_back(data::prompt_completion_sequence(e.prompt, e.completion));
  model::Transformer a = byte_model(2), b = byte_model(2);
  optim::DataParallel oa(a, {}), ob(b, {});
  model::TrainState sa, sb;
  for (int step = 0; step < 3; ++step) {
    auto ra = train::sft_step(a, sa, oa, examples, 1e-2, 1.0, 8);  // one sequence per micro-batch
    auto rb = train::sft_step(b, sb, ob, seqs, 1e-2, 1.0, 8);
    EXPECT_EQ(ra.loss, rb.loss);
  }
  EXPECT_EQ(a.weights_host(), b.weights_host());
}

TEST(SftData, ChatMaskCoversExactlyTheAssistantTurns) {
  text::ChatTemplate chat(
      "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|assistant|>{% endif %}",
      nlohmann::ordered_json::object());
  nlohmann::ordered_json msgs = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Bye?"},
    {"role": "assistant", "content": "Bye"}, {"role": "user", "content": "Left."}])");
  text::ByteCodec codec;
  data::SftSequence s = data::chat_sequence(msgs, chat, codec);
  ASSERT_EQ(s.loss_mask.size(), s.tokens.size());
  EXPECT_EQ(codec.decode(s.tokens), chat.render(msgs, false));
  std::vector<std::string> spans;
  for (size_t t = 0; t < s.tokens.size(); ++t) {
    if (!s.loss_mask[t]) continue;
    if (t == 0 || !s.loss_mask[t - 1]) spans.emplace_back();
    spans.back() += char(s.tokens[t]);
  }
  EXPECT_EQ(spans, (std::vector<std::string>{"Hi there<|end|>\n", "Bye<|end|>\n"}));

  // A template that rewrites earlier turns once later ones follow cannot be split by prefixes.
  text::ChatTemplate last_only("{{ messages[-1].content }}", nlohmann::ordered_json::object());
  EXPECT_THROW(data::chat_sequence(msgs, last_only, codec), Error);
}

TEST(SftData, PromptCompletionRowsAndOverlongRows) {
  test::TempDir dir;
  std::ofstream(dir.file("d.jsonl")) << R"({"prompt": "ab", "completion": "cd", "source": "x"})"
                                        "\n\n"
                                     << R"({"prompt": "a much longer prompt", "completion": "e"})"
                                        "\n";
  text::ByteCodec codec;
  data::SftFormat f;
  f.render_prompt = [](const std::string& p) { return "Q:" + p + "="; };
  f.max_tokens = 8;
  data::SftData d = data::load_sft_jsonl(dir.file("d.jsonl"), codec, f);
  EXPECT_EQ(d.rows, 2);
  EXPECT_EQ(d.dropped, 1);
  ASSERT_EQ(d.examples.size(), 1u);
  std::vector<int32_t> want = bytes("Q:ab=cd");
  want.push_back(text::ByteCodec::kEos);
  EXPECT_EQ(d.examples[0].tokens, want);
  EXPECT_EQ(d.examples[0].loss_mask, (std::vector<uint8_t>{0, 0, 0, 0, 0, 1, 1, 1}));

  f.truncate = true;  // cut to 8 tokens, all prompt: no loss token left, so dropped all the same
  d = data::load_sft_jsonl(dir.file("d.jsonl"), codec, f);
  EXPECT_EQ(d.examples.size(), 1u);
  EXPECT_EQ(d.dropped, 1);
  f.max_tokens = 6;  // the first row loses its EOS and last completion byte but keeps a loss token
  d = data::load_sft_jsonl(dir.file("d.jsonl"), codec, f);
  ASSERT_EQ(d.examples.size(), 1u);
  EXPECT_EQ(d.truncated, 1);
  EXPECT_EQ(d.examples[0].loss_tokens(), 1);
}

// Rows whose completion is "the <word>" for a prompt "<n>:", a task a tiny model memorises.
std::string write_rows(const test::TempDir& dir, const std::string& name, int n) {
  static const char* kWords[] = {"cat", "dog", "owl", "emu", "yak", "elk", "ant", "bee"};
  std::ofstream out(dir.file(name));
  for (int i = 0; i < n; ++i)
    out << nlohmann::json{{"prompt", std::to_string(i) + ":"},
                          {"completion", std::string("the ") + kWords[i % 8]},
                          {"origin", "test"}}
               .dump()
        << "\n";
  return dir.file(name);
}

TEST(SftRun, LossDropsOnATinyDataset) {
  test::TempDir dir;
  run::Recipe r(train::sft_recipe_defaults());
  r.apply_args({test::source_path("recipes/sft_tiny_byte.yaml"),
                "data.path=" + write_rows(dir, "train.jsonl", 16),
                "data.eval_path=" + write_rows(dir, "eval.jsonl", 4), "train.epochs=30",
                "train.eval_every=10", "run.dir=" + dir.path(), "run.name=learn"});
  const std::string run = train::run_sft(r, {});  // in process, as a pipeline drives it
  const std::vector<std::string> lines = test::read_lines(fs::join(run, "metrics.jsonl"));
  ASSERT_EQ(lines.size(), 60u);  // 16 rows x 30 epochs / 8 per step
  const double first = nlohmann::json::parse(lines.front()).at("loss").get<double>();
  const nlohmann::json summary = run::read_summary(run);
  EXPECT_LT(summary.at("final_loss").get<double>(), 0.25 * first)
      << "loss " << first << " -> " << summary.dump();
  EXPECT_EQ(summary.at("steps"), 60);
  EXPECT_EQ(summary.at("examples"), 16);
  EXPECT_EQ(summary.at("dropped"), 0);
  // Each epoch visits every row once: 30 x (16 rows x (7 completion bytes + EOS)) loss tokens.
  EXPECT_EQ(summary.at("tokens"), 30 * 16 * 8);
  EXPECT_TRUE(summary.contains("eval/loss"));
  EXPECT_NE(lines[9].find("eval/loss"), std::string::npos);
  EXPECT_TRUE(fs::exists(fs::join(run, "model/config.json")));
  EXPECT_TRUE(fs::exists(fs::join(run, "report.html")));
  EXPECT_TRUE(fs::exists(fs::join(run, "config.yaml")));
}

std::string run_args(const test::TempDir& dir, const std::string& name) {
  return "sft " + test::source_path("recipes/sft_tiny_byte.yaml") + " data.path=" + dir.file("train.jsonl") +
         " train.steps=6 train.batch_size=5 run.save_every=2 run.dir=" + dir.path() + " run.name=" + name;
}

TEST(SftRun, KilledAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  write_rows(dir, "train.jsonl", 12);  // 6 steps of 5 cycle through 2.5 epochs
  auto full = test::run_r1(run_args(dir, "full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  auto killed = test::run_r1(run_args(dir, "cut") + " --stop-after 4");
  ASSERT_NE(killed.exit_code, 0);  // ended abruptly after step 4; the last checkpoint is step 3
  EXPECT_FALSE(fs::exists(dir.file("cut/checkpoints/step_000005")));
  auto resumed = test::run_r1(run_args(dir, "cut") + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming"), std::string::npos);
  for (const char* f : {"model/model.safetensors", "optimizer.safetensors", "state.json"})
    EXPECT_TRUE(fs::read_file(dir.file(std::string("full/checkpoints/step_000005/") + f)) ==
                fs::read_file(dir.file(std::string("cut/checkpoints/step_000005/") + f)))
        << f << " of the resumed run differs from the uninterrupted run";
  EXPECT_TRUE(fs::read_file(dir.file("full/model/model.safetensors")) ==
              fs::read_file(dir.file("cut/model/model.safetensors")));
  EXPECT_NE(fs::read_file(dir.file("full/checkpoints/step_000005/model/model.safetensors")),
            fs::read_file(dir.file("full/checkpoints/step_000003/model/model.safetensors")));
  EXPECT_EQ(test::read_lines(dir.file("cut/metrics.jsonl")).size(), 6u);
  EXPECT_EQ(run::read_summary(dir.file("full")).at("final_loss"),
            run::read_summary(dir.file("cut")).at("final_loss"));
}

TEST(SftRun, RowWithoutCompletionNamesFileAndLineAndWritesNothing) {
  test::TempDir dir;
  std::ofstream(dir.file("train.jsonl")) << R"({"prompt": "1", "completion": "one"})"
                                            "\n"
                                         << R"({"prompt": "2", "answer": "two"})"
                                            "\n";
  auto r = test::run_r1(run_args(dir, "x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("train.jsonl line 2: missing string field 'completion'"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

TEST(SftRun, BadRowsAreErrorsBeforeAnyOutput) {
  test::TempDir dir;
  const std::pair<const char*, const char*> cases[] = {
      {R"({"messages": [{"role": "user", "content": "hi"}]})", "line 1: \"messages\" has no assistant turn"},
      {R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})",
       "line 1: a \"messages\" row needs a chat template (data.template: chat)"},
      {R"({"prompt": "p", "completion": ""})", "line 1: empty completion"},
      {R"({"messages": [{"role": "robot", "content": "hi"}]})", "line 1: messages[0] has role 'robot'"},
      {R"(["prompt", "completion"])", "line 1: expected a JSON object"}};
  for (auto [row, message] : cases) {
    std::ofstream(dir.file("train.jsonl")) << row << "\n";
    auto r = test::run_r1(run_args(dir, "x"));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir.file("x")));
  }
}

TEST(SftRun, UnknownRecipeKeyNamesTheNearestKey) {
  test::TempDir dir;
  write_rows(dir, "train.jsonl", 4);
  auto r = test::run_r1(run_args(dir, "x") + " train.bach_size=4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("train.batch_size"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

}  // namespace

// LoRA (train.lora.*): over a base that SFT gave the "the <word>" habit, adapters alone learn to
// say "my <word>"; the base stays as it was; the run's model is a PEFT adapter directory naming
// the base; a fresh random base is saved beside the adapter; a kill + resume equals the whole run.
TEST(SftRun, LoraAdaptersLearnAndResumeExactly) {
  test::TempDir dir;
  write_rows(dir, "train.jsonl", 12);
  auto base = test::run_r1(run_args(dir, "base") + " train.steps=40");
  ASSERT_EQ(base.exit_code, 0) << base.err;
  const std::string base_weights = fs::read_file(dir.file("base/model/model.safetensors"));
  {
    std::ofstream out(dir.file("my.jsonl"));
    for (const std::string& line : test::read_lines(dir.file("train.jsonl"))) {
      nlohmann::json row = nlohmann::json::parse(line);
      row["completion"] = "my " + row["completion"].get<std::string>().substr(4);
      out << row.dump() << "\n";
    }
  }
  const std::string lora = " train.lora.rank=8 train.lora.alpha=16 train.lora.dropout=0.1";
  auto tuned = test::run_r1(run_args(dir, "tuned") + lora + " train.steps=40 train.lr=1e-2 data.path=" +
                            dir.file("my.jsonl") + " model.path=" + dir.file("base/model"));
  ASSERT_EQ(tuned.exit_code, 0) << tuned.err;
  const std::vector<std::string> lines = test::read_lines(dir.file("tuned/metrics.jsonl"));
  const double first = nlohmann::json::parse(lines.front()).at("loss").get<double>();
  const double last = run::read_summary(dir.file("tuned")).at("final_loss").get<double>();
  EXPECT_LT(last, 0.65 * first) << first << " -> " << last;
  EXPECT_TRUE(fs::read_file(dir.file("base/model/model.safetensors")) == base_weights);
  EXPECT_TRUE(fs::exists(dir.file("tuned/model/adapter_config.json")));
  EXPECT_TRUE(fs::exists(dir.file("tuned/model/adapter_model.safetensors")));
  EXPECT_FALSE(fs::exists(dir.file("tuned/model/config.json")));
  EXPECT_FALSE(fs::exists(dir.file("tuned/model_base")));  // the base is the recipe's model.path
  EXPECT_EQ(model::adapter_base_model(dir.file("tuned/model")), dir.file("base/model"));
  EXPECT_TRUE(fs::exists(dir.file("tuned/checkpoints/step_000039/adapter/adapter_model.safetensors")));
  EXPECT_FALSE(fs::exists(dir.file("tuned/checkpoints/step_000039/model")));
  // A run whose model.path is the adapter directory loads base + adapter and trains on (rank 0).
  auto more = test::run_r1(run_args(dir, "more") + " train.lr=1e-2 data.path=" + dir.file("my.jsonl") +
                           " model.path=" + dir.file("tuned/model"));
  ASSERT_EQ(more.exit_code, 0) << more.err;
  EXPECT_LT(nlohmann::json::parse(test::read_lines(dir.file("more/metrics.jsonl")).front()).at("loss").get<double>(),
            0.8 * first);
  // Over a random base (init_preset), the base is saved beside the adapter as model_base/.
  // Killed after step 4 (checkpoint at 3), resumed: the same adapter as the uninterrupted run.
  auto a = test::run_r1(run_args(dir, "a") + lora);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto killed = test::run_r1(run_args(dir, "b") + lora + " --stop-after 4");
  ASSERT_NE(killed.exit_code, 0);
  auto resumed = test::run_r1(run_args(dir, "b") + lora + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_TRUE(fs::read_file(dir.file("a/model/adapter_model.safetensors")) ==
              fs::read_file(dir.file("b/model/adapter_model.safetensors")));
  // Both knobs at once is an error naming them.
  EXPECT_TRUE(fs::exists(dir.file("a/model_base/model.safetensors")));
  EXPECT_EQ(model::adapter_base_model(dir.file("a/model")), dir.file("a/model_base"));
  auto both = test::run_r1(run_args(dir, "c") + lora + " model.path=" + dir.file("tuned/model"));
  EXPECT_NE(both.exit_code, 0);
  EXPECT_NE(both.err.find("is a LoRA adapter"), std::string::npos) << both.err;
  auto bad = test::run_r1(run_args(dir, "d") + " train.lora.rank=4 train.lora.targets=[lm_head]");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("unknown LoRA target module 'lm_head'"), std::string::npos) << bad.err;
}
