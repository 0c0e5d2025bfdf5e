#pragma once
// Per-step metrics of a training run: one JSON object per line in RUN/metrics.jsonl, every scalar
// mirrored into a TensorBoard event file in RUN/. metrics.jsonl is the record; the event file is a
// view of it, rebuilt from it on resume.
//
// Key names the report (report.h) knows and charts first; any other key still gets a chart:
//   reward/mean, reward/std, reward/<component>[/mean|/std], accuracy, format_rate,
//   eval/pass@1 (and other eval/*), response_length/mean, response_length/max, kl, entropy,
//   clip_fraction, grad_norm, lr, tokens_per_s, zero_variance_groups, reflection_rate, loss,
//   time/rollout, time/reward, time/reference, time/train.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace r1::run {

class TensorBoardWriter;

// Ordered (name, value) pairs, so metrics.jsonl keeps the order the trainer logs them in.
using Scalars = std::vector<std::pair<std::string, double>>;

double unix_time();  // seconds since the epoch, with sub-second precision

class MetricsWriter {
 public:
  // Opens RUN/metrics.jsonl for appending. A fresh run (resume_step empty) starts both files
  // empty. A resumed run keeps only the lines with step <= *resume_step (the steps after the
  // checkpoint will be logged again) and drops a torn last line; the TensorBoard file is then
  // rebuilt from the kept lines so the two never disagree.
  MetricsWriter(const std::string& run_dir, std::optional<int64_t> resume_step, bool tensorboard = true);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Appends {"step": step, "time": now, name: value...} and flushes, so a crash loses at most the
  // line being written. Non-finite values are written as null (JSON has no NaN) but reach
  // TensorBoard as they are. "step" and "time" are reserved names.
  void log(int64_t step, const Scalars& values);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace r1::run
