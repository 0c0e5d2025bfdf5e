#include "run/train_checkpoint.h"

#include <utility>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "dist/world.h"
#include "model/adapter_checkpoint.h"
#include "model/checkpoint.h"

namespace r1::run {

void save_train_checkpoint(const RunDir& run, int64_t step, const model::Transformer& m, const optim::DataParallel& opt,
                           nlohmann::json state, int keep_last,
                           const std::function<void(const std::string& dir)>& extra) {
  if (!dist::is_root()) {
    opt.save("");  // only the gather of a sharded state; rank 0 writes
    return;
  }
  state["step"] = step;
  run.commit_checkpoint(
      step,
      [&](const std::string& dir) {
        // LoRA: only the adapters change; the frozen base comes from the recipe on resume.
        if (m.has_lora()) model::save_adapter(m, fs::join(dir, "adapter"), "");
        else model::save_model(m, fs::join(dir, "model"));
        opt.save(fs::join(dir, "optimizer.safetensors"));
        if (extra) extra(dir);
        fs::write_file_atomic(fs::join(dir, "state.json"), state.dump(2));
      },
      keep_last);
}

ResumePoint resume_point(const RunDir& run) {
  auto ck = run.latest_checkpoint();
  R1_CHECK(ck.has_value(), "--resume: {} has no complete checkpoint", run.path());
  ResumePoint p;
  p.path = std::move(ck->path);
  p.state = nlohmann::json::parse(fs::read_file(fs::join(p.path, "state.json")));
  p.step = p.state.at("step").get<int64_t>();
  log::info("resuming {} from step {}", run.path(), p.step + 1);
  return p;
}

void load_train_checkpoint(const ResumePoint& ck, model::Transformer& m, optim::DataParallel& opt) {
  if (m.has_lora()) model::load_adapter(m, fs::join(ck.path, "adapter"));
  else model::load_weights(fs::join(ck.path, "model"), m);
  opt.load(fs::join(ck.path, "optimizer.safetensors"));
}

}  // namespace r1::run
