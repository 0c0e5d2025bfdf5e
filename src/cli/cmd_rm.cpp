// r1 rm [RECIPE.yaml] [key=value ...] [--resume] [--print-recipe]: reward-model training on
// preference pairs (train/rm_run.h). Arguments with '=' are dotted overrides, others recipe files.
// r1 rm --score MODEL_DIR [--device D]: a reward model's per-token scores of token sequences,
// {"ids": [...]} per stdin line -> {"scores": [...], "reward": the score at the last id} per stdout
// line (what tools/parity/rm_parity.py compares with transformers).
#include <iostream>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/jsonl.h"
#include "model/checkpoint.h"
#include "tensor/device_memory.h"
#include "run/recipe.h"
#include "train/rm_run.h"
#include "model/train_state.h"

namespace r1::cli {

namespace {

void score_sequences(const std::string& dir, const std::string& device_name, int64_t batch_tokens) {
  const Device device = parse_device(device_name, "--device");
  require_device(device, "r1 rm --device " + device_name);
  const model::Transformer m = model::load_model(dir, device, /*trainable=*/false);
  const model::ModelConfig& c = m.config();
  R1_CHECK(c.num_labels == 1, "{}: not a reward model (num_labels = {}; r1 rm writes one-label classifiers)",
           dir, c.num_labels);
  // Every line is read and checked before anything is computed or printed.
  const std::vector<std::vector<int32_t>> seqs = read_id_lines(std::cin, "stdin", c);
  model::TrainState state;
  std::string out;
  for (size_t first = 0; first < seqs.size();) {
    size_t last = first;
    int64_t tokens = 0;
    while (last < seqs.size() && (last == first || tokens + int64_t(seqs[last].size()) <= batch_tokens))
      tokens += int64_t(seqs[last++].size());
    const model::Batch b = model::pack_sequences({seqs.begin() + long(first), seqs.begin() + long(last)});
    const std::vector<float> scores = state.score_forward(m, b);
    for (int64_t s = 0; s < b.sequences(); ++s) {
      const auto begin = scores.begin() + b.cu_seqlens[size_t(s)],
                 end = scores.begin() + b.cu_seqlens[size_t(s) + 1];
      out += nlohmann::json{{"scores", std::vector<float>(begin, end)}, {"reward", *(end - 1)}}.dump() + "\n";
    }
    first = last;
  }
  std::cout << out << std::flush;
}

}  // namespace

void add_rm(CLI::App& app) {
  struct Opts {
    std::vector<std::string> args;
    bool resume = false, print = false;
    int64_t stop_after = -1, batch_tokens = 8192;
    std::string score, device = "cpu";
  };
  auto o = std::make_shared<Opts>();
  auto* cmd =
      app.add_subcommand("rm", "reward-model training on preference pairs (Bradley-Terry), or scoring");
  cmd->add_option("args", o->args,
                  "recipe YAML files and dotted overrides, e.g. data.path=pairs.jsonl train.lr=1e-5");
  cmd->add_flag("--resume", o->resume, "continue from the run directory's latest complete checkpoint");
  cmd->add_flag("--print-recipe", o->print, "print the fully resolved recipe and exit");
  cmd->add_option("--score", o->score,
                  "score token sequences with this reward model: {\"ids\": [...]} per stdin line -> "
                  "{\"scores\": [...], \"reward\": x} per stdout line");
  cmd->add_option("--device", o->device, "with --score: cpu | cuda")->capture_default_str();
  cmd->add_option("--batch-tokens", o->batch_tokens, "with --score: tokens packed into one forward")
      ->capture_default_str();
  cmd->add_option("--stop-after", o->stop_after, "testing: end abruptly after this step (as kill -9 would)")
      ->group("");
  cmd->callback([o] {
    if (!o->score.empty()) {
      R1_CHECK(o->args.empty() && !o->resume && !o->print,
               "r1 rm --score takes no recipe, overrides or --resume");
      score_sequences(o->score, o->device, o->batch_tokens);
      return;
    }
    run::Recipe recipe(train::rm_recipe_defaults());
    recipe.apply_args(o->args);
    if (o->print) {
      fmt::print("{}", recipe.to_yaml());
      return;
    }
    train::run_rm(recipe, {o->resume, o->stop_after});
  });
}

}  // namespace r1::cli
