#include "train/sft_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <optional>

#include "base/error.h"
#include "base/host_memory.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/rng.h"
#include "base/timer.h"
#include "data/sft_data.h"
#include "dist/world.h"
#include "tensor/device_memory.h"
#include "text/chat_template.h"
#include "run/metrics.h"
#include "optim/optimizer.h"
#include "run/report.h"
#include "run/run_dir.h"
#include "train/sft.h"
#include "run/train_checkpoint.h"
#include "model/lora.h"
#include "model/memory_model.h"
#include "model/train_state.h"
#include "run/memory_preflight.h"

namespace r1::train {

nlohmann::json sft_recipe_defaults() {
  // The shared data section without the GRPO problem fields, plus SFT's own keys.
  nlohmann::json data = run::data_section("", "custom");
  for (const char* k : {"preset", "question_field", "answer_field", "type_field"}) data.erase(k);
  data["eval_path"] = "";     // held-out rows in the same format: eval/loss
  data["add_eos"] = true;     // prompt/completion rows: the completion ends with the tokenizer's EOS
  data["max_tokens"] = 2048;  // longer sequences are dropped, or truncated (overlong)
  data["overlong"] = "drop";  // drop | truncate
  return {
      {"device", "cpu"},  // cpu | cuda
      {"model", run::model_section()},
      {"data", data},
      {"train",
       {{"epochs", 1},
        {"steps", 0},  // steps > 0 overrides epochs (cycling through the data)
        {"batch_size", 32},
        {"micro_batch_tokens", 8192},
        {"lr", 1e-5},
        {"lr_schedule", "cosine"},
        {"warmup_steps", 0},
        {"min_lr_ratio", 0.0},
        {"max_grad_norm", 1.0},
        {"weight_decay", 0.0},
        {"beta1", 0.9},
        {"beta2", 0.999},
        {"seed", 1},
        {"eval_every", 0},  // eval_every 0: at the end only
        {"activation_checkpointing", "auto"},  // auto | on | off (model/train_state.h)
        {"optimizer_offload", "auto"},  // auto | on | off: AdamW on the CPU, its state in host memory
        {"lora", run::lora_section()}}},
      {"run", run::run_section("sft", {{"save_every", 100}, {"keep_last", 2},
                                       {"checkpoint_contents", "full"}, {"export_dtype", "float32"}})},
      {"parallel", run::parallel_section()},
  };
}

namespace {

constexpr int64_t kFinalLossSteps = 10;  // summary's final_loss: the mean of these last steps
constexpr uint64_t kShuffleStream = 0x5346545368756666ull;  // "SFTShuff": the data order's Rng streams

// data.* as a SftFormat; `chat` holds the chat template the format points to.
data::SftFormat sft_format(const run::Recipe& r, std::unique_ptr<text::ChatTemplate>& chat) {
  data::SftFormat f;
  const run::PromptRenderer render = run::make_renderer(r);  // checks data.template
  f.render_prompt = [render](const std::string& prompt) {
    data::Problem p;
    p.question = prompt;
    return render(p);
  };
  if (r.get<std::string>("data.template") == "chat") {
    chat = std::make_unique<text::ChatTemplate>(text::ChatTemplate::load(tokenizer_source(r)));
    f.chat = chat.get();
  }
  f.add_eos = r.get<bool>("data.add_eos");
  f.max_tokens = r.get<int>("data.max_tokens");
  R1_CHECK(f.max_tokens > 0, "recipe key 'data.max_tokens' must be positive (got {})", f.max_tokens);
  const std::string overlong = r.get<std::string>("data.overlong");
  R1_CHECK(overlong == "drop" || overlong == "truncate",
           "recipe key 'data.overlong' must be drop or truncate (got '{}')", overlong);
  f.truncate = overlong == "truncate";
  return f;
}

data::SftData load_data(const run::Recipe& r, const std::string& key, const text::Codec& codec,
                        const data::SftFormat& format) {
  const std::string path = r.get<std::string>(key);
  R1_CHECK(!path.empty(), "recipe key '{}' is empty: name a JSONL file of prompt/completion or messages rows",
           key);
  R1_CHECK(fs::exists(path), "recipe key '{}': {} does not exist", key, path);
  data::SftData d = data::load_sft_jsonl(path, codec, format);
  R1_CHECK(!d.examples.empty(),
           "{}: none of its {} rows is usable: each is longer than data.max_tokens={} "
           "(data.overlong: {}) or has no loss token",
           path, d.rows, format.max_tokens, format.truncate ? "truncate" : "drop");
  if (d.dropped > 0 || d.truncated > 0)
    log::info("{}: {} of {} rows dropped, {} truncated (data.max_tokens={}, data.overlong: {})", path,
              d.dropped, d.rows, d.truncated, format.max_tokens, format.truncate ? "truncate" : "drop");
  return d;
}

// Which examples each step trains on. Epoch e visits the examples in a permutation drawn from
// (seed, e) alone, so any step's batch is rebuilt on resume without replaying the steps before it.
class DataOrder {
 public:
  DataOrder(int64_t examples, int64_t batch_size, int64_t total, uint64_t seed)
      : n_(examples), batch_(batch_size), total_(total), seed_(seed) {}

  std::vector<int64_t> batch(int64_t step) {
    std::vector<int64_t> out;
    for (int64_t g = step * batch_; g < std::min(total_, (step + 1) * batch_); ++g) out.push_back(at(g));
    return out;
  }
  // Epochs completed after `step` (fractional).
  double epoch_after(int64_t step) const {
    return double(std::min(total_, (step + 1) * batch_)) / double(n_);
  }

 private:
  int64_t at(int64_t g) {
    if (g / n_ != epoch_) shuffle(g / n_);
    return perm_[size_t(g % n_)];
  }
  void shuffle(int64_t epoch) {
    epoch_ = epoch;
    perm_ = permutation(n_, seed_, kShuffleStream + uint64_t(epoch));
  }
  int64_t n_, batch_, total_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
};

// What a checkpoint's state.json holds beyond the weights and the optimizer, for exact resume and
// a summary that does not depend on where the run was cut.
struct Progression {
  int64_t tokens = 0;               // loss tokens trained on so far
  std::vector<double> recent_loss;  // the last kFinalLossSteps step losses
  std::optional<double> eval_loss;  // the latest eval/loss
};

nlohmann::json state_json(int64_t examples, const Progression& p) {
  nlohmann::json j = {{"examples", examples}, {"tokens", p.tokens}, {"recent_loss", p.recent_loss}};
  if (p.eval_loss) j["eval_loss"] = *p.eval_loss;
  return j;
}

// The memory model's check of the run (run/memory_preflight.h): the policy and its optimizer and
// micro-batches of micro_batch_tokens (or one sequence of data.max_tokens when that is longer).
run::MemoryPlan plan_memory(const run::Recipe& r, const text::Codec& codec, Device device,
                            const optim::DataParallelConfig& parallel, int64_t micro_batch_tokens,
                            model::Checkpointing checkpointing) {
  const model::ModelConfig mc = run::recipe_model_config(r, codec);
  const model::LoraConfig lora = run::lora_config(r);
  model::MemorySettings s;
  s.device = device;
  s.lora_params = lora.enabled() ? model::total_params(model::lora_specs(mc, lora)) : 0;
  s.world = dist::world_size();
  s.shard = int(parallel.shard);
  s.recompute = device != Device::CPU;
  s.checkpoint = checkpointing == model::Checkpointing::On;
  s.checkpoint_auto = checkpointing == model::Checkpointing::Auto;
  s.sequence_tokens = r.get<int>("data.max_tokens");
  s.train_tokens = std::max(micro_batch_tokens, s.sequence_tokens);
  const run::MemoryPlan plan = run::plan_memory(mc, s, run::optimizer_offload(r), run::free_device_memory(device),
                                                "lower train.micro_batch_tokens", run::free_host_memory_share(device));
  if (dist::is_root()) log::info("memory: {}", model::describe(plan.estimate));
  return plan;
}

// The training state (weights, moments, gradients) the largest rank holds between steps, in MiB;
// collective under mpirun.
double held_state_mib(const optim::DataParallel& opt) {
  const int64_t mine = opt.held_bytes().total();
  const int64_t most = opt.world_size() > 1 ? dist::host_comm().all_reduce_scalar(mine, dist::Op::Max) : mine;
  return double(most) / double(1 << 20);
}

// Loads the weights, the optimizer and the progression of checkpoint `ck`.
void restore(const run::ResumePoint& ck, int64_t examples, model::Transformer& m, optim::DataParallel& opt, Progression& prog) {
  const nlohmann::json& st = ck.state;
  R1_CHECK(st.at("examples").get<int64_t>() == examples,
           "--resume: {} was trained on {} examples, the data now has {}", ck.path,
           st.at("examples").get<int64_t>(), examples);
  run::load_train_checkpoint(ck, m, opt);
  prog.tokens = st.at("tokens").get<int64_t>();
  prog.recent_loss = st.at("recent_loss").get<std::vector<double>>();
  if (st.contains("eval_loss")) prog.eval_loss = st.at("eval_loss").get<double>();
}

}  // namespace

std::string run_sft(const run::Recipe& r, const run::RunOptions& opts) {
  // Everything that can be wrong with the inputs fails here, before the run directory exists.
  const Device device = run::recipe_device(r);
  const run::CheckpointContents contents = run::checkpoint_contents(r);
  run::export_dtype(r);  // checked before any compute, used at the end
  std::unique_ptr<text::Codec> codec = run::load_codec(r);
  std::unique_ptr<text::ChatTemplate> chat;
  const data::SftFormat format = sft_format(r, chat);
  const data::SftData train = load_data(r, "data.path", *codec, format);
  const bool has_eval = !r.get<std::string>("data.eval_path").empty();
  const data::SftData eval = has_eval ? load_data(r, "data.eval_path", *codec, format) : data::SftData{};

  const int64_t n = int64_t(train.examples.size()), batch_size = r.get<int>("train.batch_size");
  const int64_t epochs = r.get<int>("train.epochs"), steps_key = r.get<int>("train.steps");
  const int64_t micro_batch_tokens = r.get<int>("train.micro_batch_tokens"),
                eval_every = r.get<int>("train.eval_every");
  R1_CHECK(batch_size > 0, "recipe key 'train.batch_size' must be positive (got {})", batch_size);
  R1_CHECK(micro_batch_tokens > 0, "recipe key 'train.micro_batch_tokens' must be positive (got {})",
           micro_batch_tokens);
  R1_CHECK(steps_key > 0 || epochs > 0, "recipe: train.epochs or train.steps must be positive");
  const int64_t total = steps_key > 0 ? steps_key * batch_size : epochs * n;
  const int64_t steps = steps_key > 0 ? steps_key : (total + batch_size - 1) / batch_size;
  const optim::LrSchedule sched{r.get<std::string>("train.lr_schedule"), r.get<double>("train.lr"),
                         r.get<int>("train.warmup_steps"), steps, r.get<double>("train.min_lr_ratio")};
  optim::validate(sched);
  const double max_grad_norm = r.get<double>("train.max_grad_norm");
  const optim::AdamWConfig adamw{float(r.get<double>("train.beta1")), float(r.get<double>("train.beta2")), 1e-8f,
                          float(r.get<double>("train.weight_decay"))};
  const uint64_t seed = uint64_t(r.get<int>("train.seed"));
  const model::Checkpointing checkpointing = model::parse_checkpointing(
      r.get<std::string>("train.activation_checkpointing"), "recipe key 'train.activation_checkpointing'");
  optim::DataParallelConfig parallel = run::parallel_config(r);
  const run::MemoryPlan memory = plan_memory(r, *codec, device, parallel, micro_batch_tokens, checkpointing);
  parallel.offload.enabled = memory.offload;
  std::unique_ptr<model::Transformer> m =
      run::load_or_init_model(r, *codec, device, seed, true, "model",
                              memory.offload ? model::MasterPlace::Host : model::MasterPlace::Device, &parallel.source);
  optim::DataParallel opt(*m, adamw, parallel);
  R1_CHECK(batch_size % opt.world_size() == 0,
           "recipe key 'train.batch_size' ({}) must be a multiple of the number of ranks ({})", batch_size,
           opt.world_size());
  dist::Comm* ranks = opt.world_size() > 1 ? &dist::host_comm() : nullptr;
  model::TrainState state;
  state.dropout_seed = seed;  // LoRA dropout masks: fixed by (seed, step, batch)
  state.checkpointing = checkpointing;
  state.weight_units = opt.weight_units();  // parallel.shard: full gathers the weights unit by unit
  DataOrder order(n, batch_size, total, seed);

  run::RunDir run(run::run_path(r));
  int64_t start = 0;
  std::optional<int64_t> resume_step;
  Progression prog;
  if (opts.resume) {
    const run::ResumePoint ck = run::resume_point(run);
    restore(ck, n, *m, opt, prog);
    resume_step = ck.step;
    start = ck.step + 1;
  } else if (dist::is_root()) {
    run.write_config(r.to_yaml());
  }
  log::info("sft: {} examples{}, {} steps of {} examples on {}", n,
            has_eval ? fmt::format(" (+{} held out)", eval.examples.size()) : "", steps, batch_size,
            device_name(device));
  // Rank 0 writes the run directory; every rank computes and takes part in the checkpoints.
  std::optional<run::MetricsWriter> metrics;
  if (dist::is_root()) metrics.emplace(run.path(), resume_step);
  const int save_every = r.get<int>("run.save_every"), keep_last = r.get<int>("run.keep_last");
  auto save = [&](int64_t step) {
    run::save_train_checkpoint(run, step, *m, opt, state_json(n, prog), keep_last, contents);
  };

  Progress bar("sft", steps - start, "step");
  for (int64_t step = start; step < steps; ++step) {
    Timer timer;
    std::vector<SftSequence> batch;
    for (int64_t i : order.batch(step)) batch.push_back(train.examples[size_t(i)]);
    const double lr = optim::lr_at(sched, step);
    state.dropout_step = uint64_t(step);
    reset_memory_peak(device);
    SftStepResult res = sft_step(*m, state, opt, batch, lr, max_grad_norm, micro_batch_tokens);
    const double update_peak = double(memory_use(device).peak);
    if (res.skipped) log::warn("sft step {}: non-finite gradient norm; the update was skipped", step);
    const double secs = timer.seconds();
    prog.tokens += res.tokens;
    prog.recent_loss.push_back(res.loss);
    if (int64_t(prog.recent_loss.size()) > kFinalLossSteps) prog.recent_loss.erase(prog.recent_loss.begin());
    run::Scalars mt = {{"loss", res.loss},
                  {"lr", lr},
                  {"grad_norm", res.grad_norm},
                  {"tokens", double(res.tokens)},
                  {"tokens_per_s", secs > 0 ? double(res.packed_tokens) / secs : 0.0},
                  {"epoch", order.epoch_after(step)},
                  {"micro_batches", double(res.micro_batches)},  // rank 0's
                  {"checkpointed_micro_batches", double(res.checkpointed)},
                  {"memory/activations_mib", double(state.peak_bytes()) / double(1 << 20)},
                  {"memory/update_gib", update_peak / double(1 << 30)},
                  {"memory/host_peak_gib", double(peak_resident_bytes()) / double(1 << 30)},
                  // What the largest rank keeps between steps (parallel.shard shrinks it).
                  {"memory/train_state_mib", held_state_mib(opt)}};
    if (opt.weight_units()) mt.push_back({"idle_passes", double(res.idle_passes)});
    if (has_eval && ((eval_every > 0 && (step + 1) % eval_every == 0) || step + 1 == steps)) {
      prog.eval_loss = sft_loss(*m, state, eval.examples, micro_batch_tokens, ranks).loss;
      mt.push_back({"eval/loss", *prog.eval_loss});
    }
    if (metrics) metrics->log(step, mt);
    if ((save_every > 0 && (step + 1) % save_every == 0) || step + 1 == steps) save(step);
    bar.update(1, fmt::format("loss {:.4f} lr {:.2e}", res.loss, lr));
    run::stop_if_asked(opts, step);
  }
  bar.finish();
  run::export_trained_model(*m, opt, r, run.file("model"));
  if (!dist::is_root()) return run.path();

  const double final_loss = prog.recent_loss.empty()
                                ? 0.0
                                : std::accumulate(prog.recent_loss.begin(), prog.recent_loss.end(), 0.0) /
                                      double(prog.recent_loss.size());
  nlohmann::json summary = {
      {"final_loss", final_loss}, {"steps", steps},        {"examples", n},
      {"dropped", train.dropped}, {"tokens", prog.tokens}, {"model", run.file("model")}};
  if (prog.eval_loss) summary["eval/loss"] = *prog.eval_loss;
  run::write_summary(run.path(), summary);
  log::info("model: {}; report: {}", run.file("model"), run::write_report(run.path()));
  return run.path();
}

}  // namespace r1::train
