// r1 demo: the built-in default job. Until the GRPO demo exists, it trains a tiny byte-level
// model from random weights to add two numbers (supervised, on the answer tokens), then shows
// greedy completions over the KV cache for held-out sums: the engine end to end, no downloads.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/timer.h"
#include "cli/commands.h"
#include "model/checkpoint.h"
#include "train/optimizer.h"

namespace r1::cli {

namespace {

struct Example {
  std::string prompt, answer;  // "17+25=", "42\n"
};

std::vector<int32_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

// Greedy continuation of `prompt` until '\n' or max_new bytes, decoding over a KV cache.
std::string greedy(const model::Transformer& m, const std::string& prompt, int max_new) {
  model::KVCache cache(m.config(), 1, int64_t(prompt.size()) + max_new);
  Arena arena;
  std::vector<int32_t> ids = bytes(prompt), pos(ids.size()), slots(ids.size(), 0);
  for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
  std::string out;
  int32_t next_pos = int32_t(ids.size());
  for (int step = 0; step < max_new; ++step) {
    arena.reset();
    Tensor logits = model::forward_cached(m, cache, ids, slots, pos, {int32_t(ids.size()) - 1}, arena);
    const float* z = logits.f32();
    int32_t tok = int32_t(std::max_element(z, z + logits.size(1)) - z);
    out += char(tok);
    if (tok == '\n') break;
    ids = {tok};
    pos = {next_pos++};
    slots = {0};
  }
  return out;
}

}  // namespace

void add_demo(CLI::App& app) {
  struct Opts {
    int steps = 3000, batch = 64;
    float lr = 3e-3f;
    uint64_t seed = 1;
    std::string save;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("demo", "train a tiny model from scratch on a built-in task and show it");
  cmd->add_option("--steps", o->steps, "optimizer steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences per step")->capture_default_str();
  cmd->add_option("--lr", o->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed for weights and data order")->capture_default_str();
  cmd->add_option("--save", o->save, "save the trained model to this directory (HF format)");
  cmd->callback([o] {
    // Two-digit sums: 8100 problems, a fixed tenth held out to test generalisation.
    std::vector<Example> train, test;
    Rng split(o->seed, 1);
    for (int a = 10; a < 100; ++a)
      for (int b = 10; b < 100; ++b)
        (split.uniform() < 0.1f ? test : train).push_back({fmt::format("{}+{}=", a, b), fmt::format("{}\n", a + b)});

    model::ModelConfig cfg = model::preset_config("tiny", "qwen2");
    model::Transformer m(cfg);
    m.init_random(o->seed);
    std::vector<train::ParamSlice> slices;
    for (const auto& s : m.specs()) slices.push_back({s.name, s.offset, s.numel(), s.shape.size() > 1});
    train::AdamW opt(slices, {0.9f, 0.95f, 1e-8f, 0.01f});
    train::LrSchedule sched{"cosine", o->lr, o->steps / 20, o->steps, 0.1};
    log::info("r1 demo: a {:.2f}M-parameter {} model learns two-digit addition from random weights",
              cfg.num_parameters() / 1e6, cfg.model_type);
    log::info("{} training problems, {} held out; {} steps of {} sequences", train.size(), test.size(),
              o->steps, o->batch);

    model::TrainState state;
    Rng order(o->seed, 2);
    Progress bar("train", o->steps, "step");
    Timer clock;
    int64_t tokens_seen = 0;
    float first_loss = 0, loss = 0;
    for (int step = 0; step < o->steps; ++step) {
      std::vector<std::vector<int32_t>> seqs;
      std::vector<int> prompt_len;
      for (int i = 0; i < o->batch; ++i) {
        const Example& e = train[order.next_u32() % train.size()];
        seqs.push_back(bytes(e.prompt + e.answer));
        prompt_len.push_back(int(e.prompt.size()));
      }
      model::Batch batch = model::pack_sequences(seqs);
      // Loss on answer tokens only: logp[t] predicts token t+1, so the answer starts at prompt_len-1.
      std::vector<float> mask(size_t(batch.tokens()), 0.0f);
      float count = 0;
      for (int64_t b = 0; b < batch.sequences(); ++b)
        for (int32_t t = batch.cu_seqlens[size_t(b)] + prompt_len[size_t(b)] - 1; t + 1 < batch.cu_seqlens[size_t(b) + 1]; ++t) {
          mask[size_t(t)] = 1.0f;
          count += 1;
        }
      Tensor logp = state.forward(m, batch);
      double sum = 0;
      std::vector<float> dlogp(mask.size());
      for (size_t t = 0; t < mask.size(); ++t) {
        sum -= mask[t] * logp.f32()[t];
        dlogp[t] = -mask[t] / count;
      }
      loss = float(sum / count);
      if (step == 0) first_loss = loss;
      m.zero_grads();
      state.backward(m, dlogp);
      train::ClipResult clip = train::clip_grad_norm(m.grads().flat, 1.0);
      opt.step(m.params().flat, m.grads().flat, float(train::lr_at(sched, step)), clip.scale);
      tokens_seen += batch.tokens();
      bar.update(1, fmt::format("loss {:.3f} | {:.0f} tok/s", loss, tokens_seen / clock.seconds()));
    }
    bar.finish();

    int correct = 0;
    for (const Example& e : test) correct += greedy(m, e.prompt, 5) == e.answer;
    log::info("answer loss {:.3f} -> {:.3f}; held-out accuracy {}/{} = {:.1f}%", first_loss, loss, correct,
              test.size(), 100.0 * correct / double(test.size()));
    Rng pick(o->seed, 3);
    for (int i = 0; i < 8; ++i) {
      const Example& e = test[pick.next_u32() % test.size()];
      std::string got = greedy(m, e.prompt, 5);
      if (!got.empty() && got.back() == '\n') got.pop_back();
      fmt::print("  {}{:<4} {}\n", e.prompt, got, got + "\n" == e.answer ? "correct" : "wrong");
    }
    if (!o->save.empty()) {
      model::save_model(m, o->save);
      log::info("saved the trained model to {}", o->save);
    }
  });
}

}  // namespace r1::cli
