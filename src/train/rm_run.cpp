#include "train/rm_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/timer.h"
#include "model/checkpoint.h"
#include "run/metrics.h"
#include "run/report.h"
#include "train/rm.h"
#include "run/run_dir.h"
#include "run/train_checkpoint.h"
#include "model/train_state.h"

namespace r1::train {

nlohmann::json rm_recipe_defaults() {
  return {
      {"device", "cpu"},  // cpu | cuda
      // model.path: a causal LM (its backbone gets a fresh score head) or a reward model
      {"model", run::model_section()},
      {"data",
       {{"path", ""},             // JSONL, one {"prompt", "chosen", "rejected"} per line
        {"template", "r1-zero"},  // how prompts are rendered: r1-zero | chat | none
        {"prompt_suffix", ""},
        {"max_tokens", 1024},  // pairs with a longer sequence (prompt + response + EOS) are left out
        {"eval_path", ""},     // held-out pairs; when empty, eval_fraction of data.path is held out
        {"eval_fraction", 0.0}}},
      {"train",
       {{"epochs", 1},
        {"steps", 0},       // steps > 0 overrides epochs
        {"batch_size", 8},  // pairs per optimizer step
        {"lr", 1e-5},
        {"lr_schedule", "cosine"},
        {"warmup_steps", 0},
        {"min_lr_ratio", 0.0},
        {"max_grad_norm", 1.0},
        {"weight_decay", 0.0},
        {"seed", 1},
        {"micro_batch_tokens", 8192},
        {"activation_checkpointing", "auto"},  // auto | on | off (model/train_state.h)
        {"eval_every", 0}}},  // steps between held-out evaluations (0: at the end only)
      {"run", run::run_section("rm", {{"save_every", 50}, {"keep_last", 2},
                                      {"checkpoint_contents", "full"}, {"export_dtype", "float32"}})},
  };
}

namespace {

// Reads every pair of a JSONL file, rendered and tokenized; a bad line is an error naming the file
// and line. Pairs with a sequence longer than max_tokens are counted in `dropped` and left out.
std::vector<PreferencePair> load_pairs(const std::string& path, const std::string& key,
                                       const text::Codec& codec, const run::PromptRenderer& render,
                                       int64_t max_tokens, int64_t& dropped) {
  R1_CHECK(fs::exists(path), "recipe key '{}': {} does not exist", key, path);
  std::ifstream in(path);
  R1_CHECK(in, "cannot open {}", path);
  const int32_t eos = codec.eos_ids().at(0);
  std::vector<PreferencePair> pairs;
  std::string line;
  int64_t rows = 0;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{} line {}", path, no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
      fail("{}: invalid JSON: {}", where, e.what());
    }
    R1_CHECK(j.is_object(), "{}: expected a JSON object {{\"prompt\", \"chosen\", \"rejected\"}}", where);
    R1_CHECK(j.contains("prompt") && j["prompt"].is_string(), "{}: missing string field 'prompt'", where);
    for (const char* side : {"chosen", "rejected"})
      R1_CHECK(j.contains(side) && j[side].is_string() && !j[side].get<std::string>().empty(),
               "{}: '{}' is missing or empty", where, side);
    ++rows;
    const std::vector<int32_t> prompt = codec.encode(render({0, j["prompt"].get<std::string>()}));
    PreferencePair p{prompt, prompt};
    for (auto [side, seq] : {std::pair{"chosen", &p.chosen}, std::pair{"rejected", &p.rejected}}) {
      const std::vector<int32_t> body = codec.encode(j[side].get<std::string>());
      seq->insert(seq->end(), body.begin(), body.end());
      seq->push_back(eos);
    }
    if (int64_t(std::max(p.chosen.size(), p.rejected.size())) > max_tokens) {
      ++dropped;
      continue;
    }
    pairs.push_back(std::move(p));
  }
  R1_CHECK(rows > 0, "{} has no pairs", path);
  R1_CHECK(!pairs.empty(), "{}: all {} pairs are longer than data.max_tokens = {}", path, rows, max_tokens);
  return pairs;
}

// Moves a seeded random share of `train` (at least one pair, never all) into the held-out set.
std::vector<PreferencePair> hold_out(std::vector<PreferencePair>& train, double fraction, uint64_t seed) {
  Rng rng(seed, 0x6576616C);  // a stream of its own: the split does not shift the batch order
  for (size_t i = train.size(); i > 1; --i) std::swap(train[i - 1], train[rng.next_u32() % i]);
  const size_t n =
      std::clamp<size_t>(size_t(std::llround(fraction * double(train.size()))), 1, train.size() - 1);
  std::vector<PreferencePair> eval(std::make_move_iterator(train.end() - long(n)),
                                   std::make_move_iterator(train.end()));
  train.resize(train.size() - n);
  return eval;
}

// Every token id inside the model's vocabulary and every sequence inside its context.
void check_fits(const std::vector<PreferencePair>& pairs, const model::ModelConfig& c,
                const std::string& key) {
  for (const PreferencePair& p : pairs)
    for (const auto* seq : {&p.chosen, &p.rejected}) {
      for (int32_t id : *seq)
        R1_CHECK(id >= 0 && id < c.vocab_size,
                 "recipe key '{}': token id {} is outside the model's vocabulary of {} (does model.tokenizer "
                 "belong to the model?)",
                 key, id, c.vocab_size);
      R1_CHECK(c.max_position_embeddings <= 0 || int64_t(seq->size()) <= c.max_position_embeddings,
               "recipe key '{}': a sequence of {} tokens exceeds the model's context of {} (lower "
               "data.max_tokens)",
               key, seq->size(), c.max_position_embeddings);
    }
}

// model.path as a reward model (a causal LM gets a fresh score head), or a fresh one of model.init_*.
std::unique_ptr<model::Transformer> reward_model(const run::Recipe& r, const text::Codec& codec, Device device,
                                                 uint64_t seed) {
  const std::string path = r.get<std::string>("model.path");
  if (!path.empty()) {
    R1_CHECK(fs::exists(fs::join(path, "config.json")),
             "recipe key 'model.path': {} is not a model directory (no config.json)", path);
    return std::make_unique<model::Transformer>(model::load_classifier(path, 1, seed, device));
  }
  // A fresh causal LM of model.init_* (as every command makes one), its lm_head swapped for a score head.
  const auto lm = run::load_or_init_model(r, codec, Device::CPU, seed, /*trainable=*/false);
  model::ModelConfig mc = lm->config();
  mc.num_labels = 1;
  // The codec's EOS becomes the config's, so the saved config names a pad id (HF pools by it).
  if (mc.eos_token_ids.empty()) mc.eos_token_ids = codec.eos_ids();
  return std::make_unique<model::Transformer>(model::classifier_from(*lm, mc, seed, device));
}

// The pairs of step `step`: batch_size consecutive pairs of the epoch's seeded permutation.
class BatchOrder {
 public:
  BatchOrder(size_t n, int64_t batch_size, uint64_t seed) : n_(n), batch_(size_t(batch_size)), seed_(seed) {}
  int64_t steps_per_epoch() const { return int64_t((n_ + batch_ - 1) / batch_); }
  std::vector<size_t> indices(int64_t step) {
    const int64_t epoch = step / steps_per_epoch(), k = step % steps_per_epoch();
    if (epoch != epoch_) {
      perm_ = permutation(int64_t(n_), seed_, uint64_t(epoch));
      epoch_ = epoch;
    }
    const size_t begin = size_t(k) * batch_, end = std::min(n_, begin + batch_);
    return {perm_.begin() + long(begin), perm_.begin() + long(end)};
  }

 private:
  size_t n_, batch_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

struct RmData {
  std::vector<PreferencePair> train, eval;
};

// data.path's pairs and the held-out ones (data.eval_path, or a share of data.path).
RmData load_rm_data(const run::Recipe& r, const text::Codec& codec) {
  const run::PromptRenderer render = run::make_renderer(r, "data", "model");
  const int64_t max_tokens = r.get<int>("data.max_tokens");
  const double eval_fraction = r.get<double>("data.eval_fraction");
  R1_CHECK(max_tokens > 0, "recipe key 'data.max_tokens' must be > 0");
  R1_CHECK(eval_fraction >= 0 && eval_fraction < 1, "recipe key 'data.eval_fraction' must be in [0, 1)");
  const std::string path = r.get<std::string>("data.path"), eval_path = r.get<std::string>("data.eval_path");
  R1_CHECK(!path.empty(), "recipe key 'data.path' must name a JSONL file of {{prompt, chosen, rejected}}");
  int64_t dropped = 0;
  RmData d;
  d.train = load_pairs(path, "data.path", codec, render, max_tokens, dropped);
  if (!eval_path.empty()) {
    d.eval = load_pairs(eval_path, "data.eval_path", codec, render, max_tokens, dropped);
  } else if (eval_fraction > 0) {
    R1_CHECK(d.train.size() >= 2, "recipe key 'data.eval_fraction': {} has too few pairs to hold some out",
             path);
    d.eval = hold_out(d.train, eval_fraction, uint64_t(r.get<int>("train.seed")));
  }
  if (dropped > 0) log::warn("{} pairs left out: longer than data.max_tokens = {}", dropped, max_tokens);
  return d;
}

}  // namespace

std::string run_rm(const run::Recipe& r, const run::RunOptions& opts) {
  // Everything that can be wrong with the inputs fails here, before anything is written.
  const Device device = run::recipe_device(r);
  const run::CheckpointContents contents = run::checkpoint_contents(r);
  run::export_dtype(r);  // checked before any compute, used at the end
  std::unique_ptr<text::Codec> codec = run::load_codec(r);
  R1_CHECK(!codec->eos_ids().empty(),
           "recipe key 'model.tokenizer': the tokenizer has no end-of-sequence token");
  const auto [train, eval] = load_rm_data(r, *codec);
  const int64_t batch_size = r.get<int>("train.batch_size");
  const int64_t micro_batch_tokens = r.get<int>("train.micro_batch_tokens");
  const uint64_t seed = uint64_t(r.get<int>("train.seed"));
  R1_CHECK(batch_size > 0, "recipe key 'train.batch_size' must be > 0");
  R1_CHECK(micro_batch_tokens > 0, "recipe key 'train.micro_batch_tokens' must be > 0");

  BatchOrder order(train.size(), batch_size, seed);
  const int64_t steps = r.get<int>("train.steps") > 0 ? r.get<int>("train.steps")
                                                      : r.get<int>("train.epochs") * order.steps_per_epoch();
  R1_CHECK(steps > 0, "recipe keys 'train.steps' / 'train.epochs': nothing to train (0 steps)");
  optim::LrSchedule sched{r.get<std::string>("train.lr_schedule"), r.get<double>("train.lr"),
                   r.get<int>("train.warmup_steps"), steps, r.get<double>("train.min_lr_ratio")};
  optim::validate(sched);
  const double max_grad_norm = r.get<double>("train.max_grad_norm");
  const int eval_every = r.get<int>("train.eval_every");

  std::unique_ptr<model::Transformer> m = reward_model(r, *codec, device, seed);
  check_fits(train, m->config(), "data.path");
  check_fits(eval, m->config(), "data.eval_path");
  optim::DataParallel opt(*m, optim::AdamWConfig{0.9f, 0.999f, 1e-8f, float(r.get<double>("train.weight_decay"))});
  model::TrainState state;
  state.checkpointing = model::parse_checkpointing(r.get<std::string>("train.activation_checkpointing"),
                                                   "recipe key 'train.activation_checkpointing'");

  run::RunDir run(run::run_path(r));
  int64_t start = 0;
  std::optional<int64_t> resume_step;
  if (opts.resume) {
    const run::ResumePoint ck = run::resume_point(run);
    run::load_train_checkpoint(ck, *m, opt);
    resume_step = ck.step;
    start = ck.step + 1;
  } else {
    run.write_config(r.to_yaml());
  }
  run::MetricsWriter metrics(run.path(), resume_step);
  const int save_every = r.get<int>("run.save_every"), keep_last = r.get<int>("run.keep_last");
  auto save = [&](int64_t step) {
    run::save_train_checkpoint(run, step, *m, opt, nlohmann::json::object(), keep_last, contents);
  };

  log::info("rm: {} training pairs, {} held out, {} steps", train.size(), eval.size(), steps);
  Progress bar("rm", steps - start, "step");
  nlohmann::json summary = {{"steps", steps}, {"model", run.file("model")}};
  for (int64_t step = start; step < steps; ++step) {
    Timer timer;
    std::vector<PreferencePair> batch;
    for (size_t i : order.indices(step)) batch.push_back(train[i]);
    const double lr = optim::lr_at(sched, step);
    const RmStepResult res = rm_step(*m, state, opt, batch, lr, max_grad_norm, micro_batch_tokens);
    run::Scalars row = {{"loss", res.loss},           {"accuracy", res.accuracy},
                   {"margin", res.margin},       {"lr", lr},
                   {"grad_norm", res.grad_norm}, {"tokens_per_s", double(res.tokens) / timer.seconds()},
                   {"micro_batches", double(res.micro_batches)},
                   {"checkpointed_micro_batches", double(res.checkpointed)},
                   {"memory/activations_mib", double(state.peak_bytes()) / double(1 << 20)}};
    summary["loss"] = res.loss;
    summary["accuracy"] = res.accuracy;
    if (!eval.empty() && ((eval_every > 0 && (step + 1) % eval_every == 0) || step + 1 == steps)) {
      const RmStats ev = rm_loss(*m, state, eval, micro_batch_tokens, /*backward=*/false);
      row.push_back({"eval/loss", ev.loss});
      row.push_back({"eval/accuracy", ev.accuracy});
      summary["eval/loss"] = ev.loss;
      summary["eval/accuracy"] = ev.accuracy;
    }
    metrics.log(step, row);
    if ((save_every > 0 && (step + 1) % save_every == 0) || step + 1 == steps) save(step);
    bar.update(1, fmt::format("loss {:.3f} accuracy {:.2f}", res.loss, res.accuracy));
    run::stop_if_asked(opts, step);
  }
  bar.finish();
  run::export_model(*m, r, run.file("model"));
  run::write_summary(run.path(), summary);
  log::info("model: {}; report: {}", run.file("model"), run::write_report(run.path()));
  return run.path();
}

}  // namespace r1::train
