#include "run/train_checkpoint.h"

#include <utility>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "dist/world.h"
#include "model/adapter_checkpoint.h"
#include "model/checkpoint.h"
#include "run/run_inputs.h"

namespace r1::run {

CheckpointContents parse_checkpoint_contents(const std::string& s, const std::string& where) {
  if (s == "full") return CheckpointContents::Full;
  if (s == "weights") return CheckpointContents::Weights;
  throw Error(fmt::format("{} must be full or weights, not '{}'", where, s));
}

const char* checkpoint_contents_name(CheckpointContents c) {
  return c == CheckpointContents::Full ? "full" : "weights";
}

CheckpointContents checkpoint_contents(const Recipe& r) {
  return parse_checkpoint_contents(r.get<std::string>("run.checkpoint_contents"), "recipe key 'run.checkpoint_contents'");
}

namespace {

void save_whole(const RunDir& run, int64_t step, const model::Transformer& m, const optim::DataParallel& opt,
                nlohmann::json state, int keep_last, CheckpointContents contents,
                const std::function<void(const std::string& dir)>& extra) {
  const bool full = contents == CheckpointContents::Full;
  if (!dist::is_root()) {
    if (full) opt.save("");  // only the gather of a sharded state; rank 0 writes
    return;
  }
  state["step"] = step;
  state["contents"] = checkpoint_contents_name(contents);
  run.commit_checkpoint(
      step,
      [&](const std::string& dir) {
        // LoRA: only the adapters change; the frozen base comes from the recipe on resume.
        if (m.has_lora()) model::save_adapter(m, fs::join(dir, "adapter"), "");
        else model::save_model(m, fs::join(dir, "model"), full ? DType::F32 : m.compute_dtype());
        if (full) opt.save(fs::join(dir, "optimizer.safetensors"));
        if (extra) extra(dir);
        fs::write_file_atomic(fs::join(dir, "state.json"), state.dump(2));
      },
      keep_last);
}

// Level full: every rank writes its shard of the model and optimizer files (data_parallel.h).
void save_shards(const RunDir& run, int64_t step, const optim::DataParallel& opt, nlohmann::json state, int keep_last,
                 CheckpointContents contents, const std::function<void(const std::string& dir)>& extra) {
  if (!dist::is_root()) return opt.write_shards("", "");
  const bool full = contents == CheckpointContents::Full;
  state["step"] = step;
  state["contents"] = checkpoint_contents_name(contents);
  run.commit_checkpoint(
      step,
      [&](const std::string& dir) {
        const std::string model = fs::join(dir, "model"), optimizer = full ? fs::join(dir, "optimizer.safetensors") : "";
        opt.prepare_shard_files(model, optimizer);
        opt.write_shards(model, optimizer);
        if (extra) extra(dir);
        fs::write_file_atomic(fs::join(dir, "state.json"), state.dump(2));
      },
      keep_last);
}

}  // namespace

void save_train_checkpoint(const RunDir& run, int64_t step, const model::Transformer& m, const optim::DataParallel& opt,
                           nlohmann::json state, int keep_last, CheckpointContents contents,
                           const std::function<void(const std::string& dir)>& extra) {
  if (opt.writes_shards()) return save_shards(run, step, opt, std::move(state), keep_last, contents, extra);
  save_whole(run, step, m, opt, std::move(state), keep_last, contents, extra);
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

CheckpointContents contents_of(const ResumePoint& ck) {
  if (!ck.state.contains("contents")) return CheckpointContents::Full;
  const nlohmann::json& c = ck.state.at("contents");
  R1_CHECK(c.is_string(), "{}: key 'contents' must be a string", fs::join(ck.path, "state.json"));
  return parse_checkpoint_contents(c.get<std::string>(), fs::join(ck.path, "state.json") + " key 'contents'");
}

void export_trained_model(const model::Transformer& m, const optim::DataParallel& opt, const Recipe& r,
                          const std::string& dir) {
  if (!opt.writes_shards()) {
    if (dist::is_root()) export_model(m, r, dir);
    return;
  }
  const DType dtype = export_dtype(r);
  if (!dist::is_root()) return opt.write_shards("", "", dtype);
  fs::write_dir_atomic(dir, [&](const std::string& tmp) {
    opt.prepare_shard_files(tmp, "", dtype);
    opt.write_shards(tmp, "", dtype);
  });
  const std::string tokenizer = tokenizer_source(r);  // as export_model adds it
  if (!tokenizer.empty() && tokenizer != "byte" && tokenizer != dir) copy_tokenizer_files(tokenizer, dir);
}

void load_train_checkpoint(const ResumePoint& ck, model::Transformer& m, optim::DataParallel& opt) {
  if (m.has_lora()) model::load_adapter(m, fs::join(ck.path, "adapter"));
  else opt.load_weights(fs::join(ck.path, "model"));  // level full: each rank reads its shard
  if (contents_of(ck) == CheckpointContents::Full) {
    // A state saved in an older flat layout is read tensor by tensor into this one (adapters' never moved).
    const std::string path = fs::join(ck.path, "optimizer.safetensors");
    opt.load(path, m.has_lora() ? std::vector<model::FlatMove>{}
                                : model::layout_moves(m.config(), optim::saved_layout_version(path)));
  } else if (dist::is_root()) {
    log::warn("{} holds weights only (run.checkpoint_contents: weights): the AdamW moments restart from zero",
              ck.path);
  }
}

}  // namespace r1::run
