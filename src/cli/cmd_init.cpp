// r1 init: a fresh random model directory (config.json + model.safetensors) from a size preset
// and config overrides, so tests and demos need no downloads. The weights are drawn as they are
// written, so a 7B model needs no more memory than a chunk; `--list-keys` prints docs/CONFIG.md.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/timer.h"
#include "cli/commands.h"
#include "model/random_init.h"

namespace r1::cli {

void add_init(CLI::App& app) {
  struct Opts {
    std::string out, preset = "tiny", arch, dtype = "f32";
    std::vector<std::string> sets;
    uint64_t seed = 0;
    float std = 0.02f;
    bool force = false, list_keys = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("init", "create a random-initialised HF model directory");
  cmd->add_option("--out,-o", o->out, "model directory to create (required)");
  cmd->add_option("--preset", o->preset,
                  fmt::format("size preset: {}", fmt::join(model::preset_names(), ", ")))
      ->capture_default_str();
  cmd->add_option("--arch", o->arch, "model_type: qwen2, llama, qwen3, qwen3_moe or deepseek_v3 (default: the preset's own)");
  cmd->add_option(
      "--set", o->sets,
      "config override KEY=VALUE (config.json key; see --list-keys), repeatable; all are applied, "
      "then the config is checked");
  cmd->add_option("--seed", o->seed, "initialisation seed")->capture_default_str();
  cmd->add_option("--std", o->std, "standard deviation of the normal init (HF initializer_range)")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "stored dtype: f32 or bf16")->capture_default_str();
  cmd->add_flag("--force", o->force, "overwrite an existing model in --out");
  cmd->add_flag("--list-keys", o->list_keys, "print the config.json key reference (docs/CONFIG.md) and exit");
  cmd->callback([o] {
    if (o->list_keys) {
      fmt::print("{}", model::config_reference_markdown());
      return;
    }
    R1_CHECK(!o->out.empty(), "r1 init: --out is required");
    model::ModelConfig cfg = model::preset_config(o->preset, o->arch);
    model::apply_config_settings(cfg, o->sets, "--set");
    R1_CHECK(o->dtype == "f32" || o->dtype == "bf16", "--dtype must be f32 or bf16, got '{}'", o->dtype);
    R1_CHECK(o->force || !fs::exists(fs::join(o->out, "config.json")),
             "{} already holds a model (config.json); pass --force to overwrite it", o->out);
    Timer timer;
    model::write_random_model(cfg, o->out, o->dtype == "bf16" ? DType::BF16 : DType::F32, o->seed, o->std);
    log::info("wrote {} ({} model, {:.2f}M parameters, {} layers, hidden {}, vocab {}) in {:.1f} s", o->out,
              cfg.model_type, cfg.num_parameters() / 1e6, cfg.num_hidden_layers, cfg.hidden_size,
              cfg.vocab_size, timer.seconds());
  });
}

}  // namespace r1::cli
