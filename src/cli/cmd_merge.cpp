// r1 merge: a LoRA adapter directory (PEFT layout) merged into its base model, W + s B A for each
// adapted linear, written as a plain HF model directory that transformers, vLLM and r1 load
// without PEFT. The tokenizer files of the base (or of the adapter directory) are copied along.
#include <filesystem>
#include <string>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "cli/commands.h"
#include "model/adapter_checkpoint.h"
#include "run/run_inputs.h"

namespace r1::cli {

void add_merge(CLI::App& app) {
  struct Opts {
    std::string adapter, base, out, dtype = "f32";
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("merge", "merge a LoRA adapter into its base model (an HF model directory)");
  cmd->add_option("--adapter,-a", o->adapter, "PEFT adapter directory (adapter_config.json)")->required();
  cmd->add_option("--base,-b", o->base, "base model directory (default: the adapter's base_model_name_or_path)");
  cmd->add_option("--out,-o", o->out, "destination directory")->required();
  cmd->add_option("--dtype", o->dtype, "stored dtype: f32 or bf16")->capture_default_str();
  cmd->callback([o] {
    R1_CHECK(o->dtype == "f32" || o->dtype == "bf16", "--dtype must be f32 or bf16, got '{}'", o->dtype);
    R1_CHECK(model::is_adapter_dir(o->adapter), "--adapter {}: not a PEFT adapter directory (needs "
             "adapter_config.json, and no config.json)", o->adapter);
    const std::string base = o->base.empty() ? model::adapter_base_model(o->adapter) : o->base;
    auto same = [](const std::string& a, const std::string& b) {
      return std::filesystem::absolute(a).lexically_normal() == std::filesystem::absolute(b).lexically_normal();
    };
    R1_CHECK(!same(o->out, base) && !same(o->out, o->adapter),
             "--out must differ from the adapter and its base");
    const model::Transformer m = model::load_adapted_model(o->adapter, base);
    model::save_merged(m, o->out, o->dtype == "bf16" ? DType::BF16 : DType::F32);
    run::copy_tokenizer_files(base, o->out);
    run::copy_tokenizer_files(o->adapter, o->out);  // the adapter's own, where it has them
    log::info("wrote {}: {} merged into {} ({})", o->out, o->adapter, base, o->dtype);
  });
}

}  // namespace r1::cli
