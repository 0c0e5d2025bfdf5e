// src/train run directory: TensorBoard event files (read back by an independent decoder),
// metrics.jsonl with resume truncation, samples, atomic checkpoints, and the HTML report.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "test_util.h"
#include "run/metrics.h"
#include "run/report.h"
#include "run/run_dir.h"
#include "run/tensorboard.h"

namespace stdfs = std::filesystem;
using r1::test::TempDir;
using namespace r1::run;

namespace {

// ---------------------------------------------------------------------------------------------
// A minimal TFRecord + Event decoder, written from the format description rather than from the
// writer, so the two cannot share a mistake.

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> values;  // summary.value: (tag, simple_value)
};

struct Cursor {
  const std::string& s;
  size_t at = 0, end = 0;
  bool done() const { return at >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (at >= end) throw std::runtime_error("truncated varint");
      const uint8_t b = uint8_t(s[at++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  }
  uint64_t fixed(int n) {
    if (at + n > end) throw std::runtime_error("truncated fixed");
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= uint64_t(uint8_t(s[at + i])) << (8 * i);
    at += n;
    return v;
  }
  Cursor sub() {
    const uint64_t n = varint();
    if (at + n > end) throw std::runtime_error("truncated bytes");
    Cursor c{s, at, at + n};
    at += n;
    return c;
  }
  void skip(int wire) {
    if (wire == 0)
      varint();
    else if (wire == 1)
      fixed(8);
    else if (wire == 5)
      fixed(4);
    else if (wire == 2)
      sub();
    else
      throw std::runtime_error("bad wire type");
  }
};

Event decode_event(const std::string& data) {
  Event e;
  Cursor c{data, 0, data.size()};
  while (!c.done()) {
    const uint64_t key = c.varint();
    const int field = int(key >> 3), wire = int(key & 7);
    if (field == 1 && wire == 1) {
      const uint64_t u = c.fixed(8);
      std::memcpy(&e.wall_time, &u, 8);
    } else if (field == 2 && wire == 0) {
      e.step = int64_t(c.varint());
    } else if (field == 3 && wire == 2) {
      Cursor b = c.sub();
      e.file_version = data.substr(b.at, b.end - b.at);
    } else if (field == 5 && wire == 2) {
      Cursor summary = c.sub();
      while (!summary.done()) {
        const uint64_t k = summary.varint();
        if (k >> 3 != 1 || (k & 7) != 2) {
          summary.skip(int(k & 7));
          continue;
        }
        Cursor v = summary.sub();
        std::string tag;
        float val = std::numeric_limits<float>::quiet_NaN();
        while (!v.done()) {
          const uint64_t vk = v.varint();
          if (vk == (1 << 3 | 2)) {
            Cursor t = v.sub();
            tag = data.substr(t.at, t.end - t.at);
          } else if (vk == (2 << 3 | 5)) {
            const uint32_t u = uint32_t(v.fixed(4));
            std::memcpy(&val, &u, 4);
          } else {
            v.skip(int(vk & 7));
          }
        }
        e.values.push_back({tag, val});
      }
    } else {
      c.skip(wire);
    }
  }
  return e;
}

uint32_t masked(const std::string& s, size_t off, size_t n) {
  const uint32_t c = crc32c(s.data() + off, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Reads every record, checking both CRCs; throws on any framing or checksum error.
std::vector<Event> read_events(const std::string& path) {
  const std::string s = r1::fs::read_file(path);
  std::vector<Event> out;
  size_t at = 0;
  auto u32 = [&](size_t o) {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(s[o + i])) << (8 * i);
    return v;
  };
  while (at < s.size()) {
    if (at + 12 > s.size()) throw std::runtime_error("truncated header");
    uint64_t len = 0;
    for (int i = 0; i < 8; ++i) len |= uint64_t(uint8_t(s[at + i])) << (8 * i);
    if (u32(at + 8) != masked(s, at, 8)) throw std::runtime_error("bad length crc");
    if (at + 12 + len + 4 > s.size()) throw std::runtime_error("truncated record");
    if (u32(at + 12 + len) != masked(s, at + 12, len)) throw std::runtime_error("bad data crc");
    out.push_back(decode_event(s.substr(at + 12, len)));
    at += 12 + len + 4;
  }
  return out;
}

std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : stdfs::directory_iterator(dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) out.push_back(e.path().string());
  return out;
}

// (step, value) of every scalar event with this tag, in file order.
std::vector<std::pair<int64_t, float>> scalars(const std::vector<Event>& evs, const std::string& tag) {
  std::vector<std::pair<int64_t, float>> out;
  for (const Event& e : evs)
    for (const auto& [t, v] : e.values)
      if (t == tag) out.push_back({e.step, v});
  return out;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (const std::string& l : r1::test::read_lines(path)) out.push_back(nlohmann::json::parse(l));
  return out;
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : stdfs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

void put(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A pid that belonged to a process that has exited (a crashed trainer's leftovers carry one).
int dead_pid() {
  const pid_t p = fork();
  if (p == 0) _exit(0);
  int status = 0;
  waitpid(p, &status, 0);
  return int(p);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// TensorBoard

TEST(TensorBoard, Crc32cKnownVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // RFC 3720 B.4: 32 bytes of zeros.
  const std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  // Incremental use gives the same CRC as one pass.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, EventFileReadsBack) {
  TempDir dir;
  std::string path;
  {
    TensorBoardWriter w(dir.path(), 1700000000.25);
    path = w.path();
    w.add_scalar("reward/mean", 1, 0.5f, 1700000001.5);
    w.add_scalar("kl", 1, 1e-3f, 1700000001.5);
    w.add_scalar("reward/mean", 2, -0.75f, 1700000002.5);
    w.add_scalar("big step", 5000000000LL, 3.0f, 1700000003.5);  // multi-byte varint
    w.flush();
  }
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(stdfs::path(path).filename().string(), std::string("events.out.tfevents.1700000000.") + host);

  const auto evs = read_events(path);
  ASSERT_EQ(evs.size(), 5u);
  EXPECT_EQ(evs[0].file_version, "brain.Event:2");
  EXPECT_DOUBLE_EQ(evs[0].wall_time, 1700000000.25);
  EXPECT_TRUE(evs[0].values.empty());
  EXPECT_DOUBLE_EQ(evs[1].wall_time, 1700000001.5);
  EXPECT_EQ(scalars(evs, "reward/mean"), (std::vector<std::pair<int64_t, float>>{{1, 0.5f}, {2, -0.75f}}));
  EXPECT_EQ(scalars(evs, "kl"), (std::vector<std::pair<int64_t, float>>{{1, 1e-3f}}));
  EXPECT_EQ(scalars(evs, "big step"), (std::vector<std::pair<int64_t, float>>{{5000000000LL, 3.0f}}));
}

TEST(TensorBoard, SameSecondGetsNewFile) {
  TempDir dir;
  TensorBoardWriter a(dir.path(), 1700000000.0), b(dir.path(), 1700000000.9);
  EXPECT_NE(a.path(), b.path());
  EXPECT_EQ(read_events(a.path()).size(), 1u);
  EXPECT_EQ(read_events(b.path()).size(), 1u);
}

TEST(TensorBoard, CorruptionIsDetectedByReader) {
  // The reader really checks the CRCs (so the round trip above means something).
  TempDir dir;
  std::string path;
  {
    TensorBoardWriter w(dir.path(), 1700000000.0);
    w.add_scalar("x", 1, 1.0f, 1700000000.0);
    path = w.path();
  }
  std::string s = r1::fs::read_file(path);
  s[s.size() - 6] ^= 0x01;  // inside the last record's data
  put(path, s);
  EXPECT_THROW(read_events(path), std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// RunDir: layout, config, samples, metrics

TEST(RunDir, CreatesLayoutAndConfig) {
  TempDir tmp;
  RunDir run(tmp.file("runs/demo"));
  EXPECT_TRUE(stdfs::is_directory(tmp.file("runs/demo/samples")));
  EXPECT_TRUE(stdfs::is_directory(tmp.file("runs/demo/checkpoints")));
  run.write_config("model: tiny\ntrain:\n  lr: 1.0e-6\n");
  EXPECT_EQ(r1::fs::read_file(run.file("config.yaml")), "model: tiny\ntrain:\n  lr: 1.0e-6\n");
  EXPECT_EQ(run.checkpoint_path(42), tmp.file("runs/demo/checkpoints/step_000042"));
  EXPECT_EQ(run.checkpoint_path(1234567), tmp.file("runs/demo/checkpoints/step_1234567"));
  RunDir again(tmp.file("runs/demo"));  // reopening an existing run is fine
  put(tmp.file("file"), "x");
  EXPECT_THROW(RunDir(tmp.file("file")), r1::Error);
}

TEST(RunDir, SamplesAreJsonl) {
  TempDir tmp;
  RunDir run(tmp.path());
  std::vector<nlohmann::json> rows = {
      {{"prompt", "1+1=?"}, {"completion", "<think>\n1+1</think> 2"}, {"reward", 1.0}},
      {{"prompt", "line\nbreak \"q\""}, {"completion", ""}, {"reward", 0.0}}};
  run.write_samples(7, rows);
  const auto back = read_jsonl(run.file("samples/step_000007.jsonl"));
  EXPECT_EQ(back, rows);
  EXPECT_EQ(names_in(run.file("samples")), std::vector<std::string>{"step_000007.jsonl"});  // no temp left
}

TEST(RunDir, MetricsLinesAndTensorBoardMirror) {
  TempDir tmp;
  RunDir run(tmp.path());
  {
    MetricsWriter m(run.path(), std::nullopt);
    m.log(1, {{"reward/mean", 0.25}, {"kl", 0.0}, {"lr", 1e-6}});
    m.log(2, {{"reward/mean", 0.5}, {"loss", std::nan("")}});
    // Flushed per line: visible before the writer goes away.
    const auto lines = read_jsonl(run.file("metrics.jsonl"));
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["step"], 1);
    EXPECT_NEAR(lines[0]["time"].get<double>(), unix_time(), 60.0);
    EXPECT_EQ(lines[0]["reward/mean"], 0.25);
    EXPECT_EQ(lines[0]["lr"], 1e-6);
    EXPECT_TRUE(lines[1]["loss"].is_null());  // JSON has no NaN
    // Keys keep the order they were logged in.
    EXPECT_EQ(r1::test::read_lines(run.file("metrics.jsonl"))[0].rfind("{\"step\":1,\"time\":", 0), 0u);
    EXPECT_THROW(m.log(3, {{"step", 1.0}}), r1::Error);
  }
  const auto files = event_files(run.path());
  ASSERT_EQ(files.size(), 1u);
  const auto evs = read_events(files[0]);
  EXPECT_EQ(scalars(evs, "reward/mean"), (std::vector<std::pair<int64_t, float>>{{1, 0.25f}, {2, 0.5f}}));
  EXPECT_EQ(scalars(evs, "lr"), (std::vector<std::pair<int64_t, float>>{{1, 1e-6f}}));
  ASSERT_EQ(scalars(evs, "loss").size(), 1u);
  EXPECT_TRUE(std::isnan(scalars(evs, "loss")[0].second));
}

TEST(RunDir, MetricsResumeTruncatesLaterSteps) {
  TempDir tmp;
  RunDir run(tmp.path());
  {
    MetricsWriter m(run.path(), std::nullopt);
    for (int s = 1; s <= 5; ++s) m.log(s, {{"reward/mean", s * 0.1}});
  }
  // A crash mid-line leaves a torn record at the end.
  { std::ofstream(run.file("metrics.jsonl"), std::ios::app) << "{\"step\":6,\"time\":17000"; }
  {
    MetricsWriter m(run.path(), 3);  // resumed from the step-3 checkpoint
    auto lines = read_jsonl(run.file("metrics.jsonl"));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines.back()["step"], 3);
    m.log(4, {{"reward/mean", 0.9}});
  }
  auto lines = read_jsonl(run.file("metrics.jsonl"));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[3]["step"], 4);
  EXPECT_EQ(lines[3]["reward/mean"], 0.9);
  // The event file was rebuilt from the kept lines: one file, steps 1..4, the redone step's new value.
  const auto files = event_files(run.path());
  ASSERT_EQ(files.size(), 1u);
  const auto got = scalars(read_events(files[0]), "reward/mean");
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, float>>{{1, 0.1f}, {2, 0.2f}, {3, float(0.3)}, {4, 0.9f}}));

  // A fresh run in the same directory starts empty.
  { MetricsWriter m(run.path(), std::nullopt); }
  EXPECT_TRUE(r1::test::read_lines(run.file("metrics.jsonl")).empty());
  EXPECT_EQ(event_files(run.path()).size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// RunDir: checkpoints

namespace {
void dummy_save(const std::string& dir, int64_t step) {
  // Stands in for model::save_model, AdamW::save and the state JSON.
  stdfs::create_directories(dir + "/model");
  put(dir + "/model/model.safetensors", std::string(1000, char('a' + step % 26)));
  put(dir + "/optimizer.safetensors", "moments");
  put(dir + "/state.json", nlohmann::json{{"step", step}}.dump());
}
}  // namespace

TEST(RunDir, CommitAndLatest) {
  TempDir tmp;
  RunDir run(tmp.path());
  EXPECT_FALSE(run.latest_checkpoint().has_value());
  for (int64_t s : {10, 20}) {
    const std::string p = run.commit_checkpoint(s, [&](const std::string& d) { dummy_save(d, s); });
    EXPECT_EQ(p, run.checkpoint_path(s));
  }
  const auto latest = run.latest_checkpoint();
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->step, 20);
  EXPECT_EQ(latest->path, run.checkpoint_path(20));
  EXPECT_EQ(nlohmann::json::parse(r1::fs::read_file(latest->path + "/state.json"))["step"], 20);
  EXPECT_TRUE(stdfs::is_regular_file(latest->path + "/model/model.safetensors"));
  EXPECT_TRUE(stdfs::is_regular_file(latest->path + "/" + RunDir::kCompleteMarker));
  EXPECT_EQ(names_in(run.file("checkpoints")), (std::vector<std::string>{"step_000010", "step_000020"}));
  // Steps compare as numbers, not names.
  run.commit_checkpoint(1000000, [&](const std::string& d) { dummy_save(d, 1000000); });
  EXPECT_EQ(run.latest_checkpoint()->step, 1000000);
}

TEST(RunDir, CrashLeftoversAreIgnoredAndCleaned) {
  TempDir tmp;
  RunDir run(tmp.path());
  run.commit_checkpoint(20, [&](const std::string& d) { dummy_save(d, 20); });
  const std::string ck = run.file("checkpoints");
  // Killed mid-save: the temp directory (even holding a marker) is not a checkpoint.
  const std::string leftover = ck + "/step_000030.tmp." + std::to_string(dead_pid());
  dummy_save(leftover, 30);
  put(leftover + "/COMPLETE", "{}");
  // A directory under a final name but without the marker, a marker-less file, stray names.
  dummy_save(ck + "/step_000040", 40);
  put(ck + "/step_000050", "not a directory");
  stdfs::create_directories(ck + "/step_00006x");
  put(ck + "/step_00006x/COMPLETE", "");
  EXPECT_EQ(run.latest_checkpoint()->step, 20);
  ASSERT_EQ(run.complete_checkpoints().size(), 1u);

  // The next save removes the dead process's temp directory, and leaves the rest alone.
  run.commit_checkpoint(25, [&](const std::string& d) { dummy_save(d, 25); });
  EXPECT_FALSE(stdfs::exists(leftover));
  EXPECT_EQ(run.latest_checkpoint()->step, 25);
  EXPECT_TRUE(stdfs::exists(ck + "/step_000040"));
}

TEST(RunDir, FailedSaveLeavesNothing) {
  TempDir tmp;
  RunDir run(tmp.path());
  run.commit_checkpoint(10, [&](const std::string& d) { dummy_save(d, 10); });
  EXPECT_THROW(run.commit_checkpoint(20,
                                     [&](const std::string& d) {
                                       dummy_save(d, 20);
                                       r1::fail("disk full");
                                     }),
               r1::Error);
  EXPECT_EQ(names_in(run.file("checkpoints")), std::vector<std::string>{"step_000010"});
  EXPECT_EQ(run.latest_checkpoint()->step, 10);
}

TEST(RunDir, ReplaceSameStepAndKeepLast) {
  TempDir tmp;
  RunDir run(tmp.path());
  run.commit_checkpoint(10, [&](const std::string& d) { put(d + "/v", "old"); });
  run.commit_checkpoint(10, [&](const std::string& d) { put(d + "/v", "new"); });
  EXPECT_EQ(r1::fs::read_file(run.checkpoint_path(10) + "/v"), "new");
  EXPECT_EQ(names_in(run.file("checkpoints")), std::vector<std::string>{"step_000010"});

  for (int64_t s : {20, 30, 40})
    run.commit_checkpoint(
        s, [&](const std::string& d) { dummy_save(d, s); }, 2);
  EXPECT_EQ(names_in(run.file("checkpoints")), (std::vector<std::string>{"step_000030", "step_000040"}));
  // keep_last never deletes the checkpoint just written, even when older-numbered.
  run.commit_checkpoint(
      35, [&](const std::string& d) { dummy_save(d, 35); }, 1);
  const auto left = names_in(run.file("checkpoints"));
  EXPECT_TRUE(std::find(left.begin(), left.end(), "step_000035") != left.end());
  EXPECT_EQ(left.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Report

namespace {
void fill_sample_run(const RunDir& run, int steps) {
  run.write_config("# resolved\nmodel: tiny <b>bold</b> & \"q\"\ngrpo:\n  group_size: 8\n  beta: 0.04\n");
  MetricsWriter m(run.path(), std::nullopt, /*tensorboard=*/false);
  for (int s = 1; s <= steps; ++s) {
    const double t = s / double(steps);
    const double noise = std::sin(s * 12.9898) * 0.08;
    Scalars v = {{"reward/mean", 0.1 + 0.8 * t + noise},
                 {"reward/accuracy", 0.05 + 0.8 * t + noise},
                 {"reward/format", std::min(1.0, 0.3 + 1.5 * t) + noise / 2},
                 {"reward/std", 0.4 - 0.2 * t},
                 {"accuracy", 0.05 + 0.8 * t + noise},
                 {"format_rate", std::min(1.0, 0.3 + 1.5 * t)},
                 {"response_length/mean", 120 + 300 * t + 40 * noise},
                 {"response_length/max", 400 + 600 * t},
                 {"kl", 1e-4 + 0.02 * t * t},
                 {"entropy", 1.2 - 0.6 * t + noise},
                 {"clip_fraction", 0.01 + 0.02 * std::abs(noise)},
                 {"grad_norm", 2.0 / (1 + 5 * t) + std::abs(noise)},
                 {"lr", s < 10 ? 1e-6 * s / 10 : 1e-6},
                 {"tokens_per_s", 15000 + 3000 * noise},
                 {"zero_variance_groups", 0.6 - 0.4 * t},
                 {"reflection_rate", 0.01 + 0.1 * t * t},
                 {"time/rollout", 3.0 + noise},
                 {"time/train", 1.5},
                 {"my_custom_metric", s % 7}};
    if (s % 25 == 0 || s == 1) v.push_back({"eval/pass@1", 0.1 + 0.7 * t});
    m.log(s, v);
  }
}
}  // namespace

TEST(Report, SelfContainedWithChartsAndEscapedConfig) {
  TempDir tmp;
  RunDir run(tmp.file("my-run"));
  fill_sample_run(run, 200);
  { std::ofstream(run.file("metrics.jsonl"), std::ios::app) << "{\"step\":201,"; }  // torn line
  const std::string path = write_report(run.path());
  EXPECT_EQ(path, run.file("report.html"));
  const std::string html = r1::fs::read_file(path);
  EXPECT_NE(html.find("Run: my-run"), std::string::npos);
  // Offline: nothing is fetched.
  for (const char* bad : {"<script", "src=", "href=", "url(", "@import", "http://", "https://"})
    EXPECT_EQ(html.find(bad), std::string::npos) << bad;
  // Config is shown, escaped.
  EXPECT_NE(html.find("tiny &lt;b&gt;bold&lt;/b&gt; &amp; &quot;q&quot;"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold</b>"), std::string::npos);
  for (const char* title :
       {"Reward (mean per component)", "Evaluation (pass@1)", "Accuracy", "Format rate", "Response length",
        "KL to reference", "Entropy", "Clip fraction", "Gradient norm", "Learning rate", "Throughput",
        "Zero-variance groups", "Reflection-word rate", "Time per step", "my_custom_metric"})
    EXPECT_NE(html.find(std::string("<h3>") + title), std::string::npos) << title;
  EXPECT_NE(html.find("steps 1–200 · 200 records"), std::string::npos);
  EXPECT_NE(html.find("<title>eval/pass@1 · step 200: 0.8</title>"), std::string::npos);
  EXPECT_NE(html.find("line raw"), std::string::npos);  // smoothed: many points
  size_t svgs = 0;
  for (size_t at = 0; (at = html.find("<svg", at)) != std::string::npos; ++at) ++svgs;
  EXPECT_EQ(svgs, 16u);  // the 15 above and "Reward std"
}

TEST(Report, EmptyRunStillRenders) {
  TempDir tmp;
  RunDir run(tmp.path());
  const std::string html = r1::fs::read_file(write_report(run.path()));
  EXPECT_NE(html.find("no metrics recorded yet"), std::string::npos);
  EXPECT_NE(html.find("no config.yaml"), std::string::npos);
  MetricsWriter m(run.path(), std::nullopt, false);
  m.log(0, {{"reward/mean", 0.5}});  // one point: a flat axis must not divide by zero
  const std::string one = r1::fs::read_file(write_report(run.path()));
  EXPECT_EQ(one.find("nan"), std::string::npos);
  EXPECT_EQ(one.find("inf"), std::string::npos);
}

TEST(Report, LongRunStaysSmall) {
  // 20k steps: lines are decimated (keeping spikes), hover targets capped.
  TempDir tmp;
  RunDir run(tmp.path());
  {
    MetricsWriter m(run.path(), std::nullopt, false);
    for (int s = 1; s <= 20000; ++s) m.log(s, {{"reward/mean", s == 12345 ? 50.0 : std::sin(s * 0.01)}});
  }
  const std::string html = r1::fs::read_file(write_report(run.path()));
  EXPECT_LT(html.size(), 150000u);
  EXPECT_NE(html.find("max 50</span>"), std::string::npos);  // the spike survives in the stats
  // ... and in the drawn line: a vertex at the top of the plot (the top tick is 50, at y = 14).
  EXPECT_NE(html.find(",14.0 "), std::string::npos);
}
