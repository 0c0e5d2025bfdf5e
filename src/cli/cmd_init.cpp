// r1 init: a fresh random model directory (config.json + model.safetensors) from a size preset
// and config overrides, so tests and demos need no downloads.
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "cli/commands.h"
#include "model/checkpoint.h"

namespace r1::cli {

void add_init(CLI::App& app) {
  struct Opts {
    std::string out, preset = "tiny", arch = "qwen2", dtype = "f32";
    std::vector<std::string> sets;
    uint64_t seed = 0;
    float std = 0.02f;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("init", "create a random-initialised HF model directory");
  cmd->add_option("--out,-o", o->out, "model directory to create")->required();
  cmd->add_option("--preset", o->preset, "size preset: " + [] {
    std::string s;
    for (const auto& n : model::preset_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
  }())->capture_default_str();
  cmd->add_option("--arch", o->arch, "model_type: qwen2, llama or qwen3")->capture_default_str();
  cmd->add_option("--set", o->sets, "config override KEY=VALUE (config.json key), repeatable");
  cmd->add_option("--seed", o->seed, "initialisation seed")->capture_default_str();
  cmd->add_option("--std", o->std, "standard deviation of the normal init (HF initializer_range)")
      ->capture_default_str();
  cmd->add_option("--dtype", o->dtype, "stored dtype: f32 or bf16")->capture_default_str();
  cmd->add_flag("--force", o->force, "overwrite an existing model in --out");
  cmd->callback([o] {
    model::ModelConfig cfg = model::preset_config(o->preset, o->arch);
    for (const std::string& kv : o->sets) {
      auto eq = kv.find('=');
      R1_CHECK(eq != std::string::npos, "--set expects KEY=VALUE, got '{}'", kv);
      model::override_config(cfg, kv.substr(0, eq), kv.substr(eq + 1));
    }
    R1_CHECK(o->dtype == "f32" || o->dtype == "bf16", "--dtype must be f32 or bf16, got '{}'", o->dtype);
    R1_CHECK(o->force || !fs::exists(fs::join(o->out, "config.json")),
             "{} already holds a model (config.json); pass --force to overwrite it", o->out);
    model::Transformer m(cfg);
    m.init_random(o->seed, o->std);
    model::save_model(m, o->out, o->dtype == "bf16" ? DType::BF16 : DType::F32);
    log::info("wrote {} ({} model, {:.2f}M parameters, {} layers, hidden {}, vocab {})", o->out,
              cfg.model_type, cfg.num_parameters() / 1e6, cfg.num_hidden_layers, cfg.hidden_size,
              cfg.vocab_size);
  });
}

}  // namespace r1::cli
