// r1 convert: load an HF model directory and write it back (optionally as bf16), through r1's own
// reader and writer: a sharded or f16 checkpoint becomes one model.safetensors that transformers,
// vLLM and r1 all load.
#include <string>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "cli/commands.h"
#include "model/checkpoint.h"

namespace r1::cli {

void add_convert(CLI::App& app) {
  struct Opts {
    std::string model, out, dtype = "f32";
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("convert", "re-save an HF model directory (e.g. as bf16)");
  cmd->add_option("--model,-m", o->model, "source HF model directory")->required();
  cmd->add_option("--out,-o", o->out, "destination directory")->required();
  cmd->add_option("--dtype", o->dtype, "stored dtype: f32 or bf16")->capture_default_str();
  cmd->callback([o] {
    R1_CHECK(o->dtype == "f32" || o->dtype == "bf16", "--dtype must be f32 or bf16, got '{}'", o->dtype);
    R1_CHECK(o->model != o->out, "--out must differ from --model");
    model::Transformer m = model::load_model(o->model);
    // The output directory appears whole or not at all: a crash midway never leaves half a model.
    // An existing one keeps its other files (a tokenizer), not its old weights, index or config.
    fs::write_dir_atomic(
        o->out, [&](const std::string& tmp) { model::save_model(m, tmp, o->dtype == "bf16" ? DType::BF16 : DType::F32); },
        [](const std::string& name) {
          return name != "config.json" && name != "model.safetensors.index.json" &&
                 !(name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0);
        });
    log::info("wrote {} ({})", o->out, o->dtype);
  });
}

}  // namespace r1::cli
