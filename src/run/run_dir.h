#pragma once
// A training run's directory (../shared/DESIGN.md "Run directory"):
//   RUN/config.yaml                  the fully resolved config
//   RUN/metrics.jsonl, events.out.*  per-step metrics (metrics.h)
//   RUN/samples/step_NNNNNN.jsonl    prompts, completions, rewards
//   RUN/checkpoints/step_NNNNNN/     model + optimizer + state, with a COMPLETE marker
//   RUN/report.html                  curves (report.h)
// Every file is written through a temporary name and a rename, and a checkpoint directory only
// appears under its final name once complete, so a crash at any point leaves nothing half-written
// that a resume would read.
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace r1::run {

struct CheckpointRef {
  int64_t step = 0;
  std::string path;
};

class RunDir {
 public:
  // Creates `path`, `path`/samples and `path`/checkpoints (and missing parents).
  explicit RunDir(std::string path);

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const;  // path/name

  void write_config(std::string_view yaml) const;  // config.yaml, atomically

  // samples/step_NNNNNN.jsonl, one row per line, atomically.
  void write_samples(int64_t step, const std::vector<nlohmann::json>& rows) const;

  // checkpoints/step_NNNNNN (six digits at least, more when the step needs them).
  std::string checkpoint_path(int64_t step) const;

  // The complete checkpoint with the highest step: a directory named step_<digits> holding the
  // marker file. Leftover temporary directories and directories without the marker are ignored.
  std::optional<CheckpointRef> latest_checkpoint() const;
  std::vector<CheckpointRef> complete_checkpoints() const;  // ascending by step

  // Writes a checkpoint: `write(dir)` fills a fresh temporary directory, the marker goes in last,
  // everything is fsync'd, and the directory is renamed to checkpoint_path(step) in one rename(2).
  // An existing checkpoint of the same step is replaced. If `write` throws, the temporary directory
  // is removed and the exception propagates. keep_last > 0 then deletes the oldest complete
  // checkpoints until keep_last remain (never the one just written). Returns the final path.
  std::string commit_checkpoint(int64_t step, const std::function<void(const std::string& dir)>& write,
                                int keep_last = 0) const;

  static constexpr const char* kCompleteMarker = "COMPLETE";

 private:
  std::string path_;
};

}  // namespace r1::run
