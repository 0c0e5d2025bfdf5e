// Crash consistency: a writer killed (SIGKILL) at each of its file operations in turn — during a
// training checkpoint save and during `r1 convert` — leaves the last complete checkpoint for resume
// and never a half-written file where a reader looks. fs::file_op_point() is where the kill lands.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "base/fs.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "optim/data_parallel.h"
#include "run/run_dir.h"
#include "run/train_checkpoint.h"
#include "test_util.h"

namespace r1 {
namespace {
namespace stdfs = std::filesystem;

model::Transformer tiny_model(uint64_t seed) {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "257");
  model::Transformer m(c);
  m.init_random(seed);
  return m;
}

// Runs f in a child that SIGKILLs itself at its n-th file operation; true when it was killed,
// false when f finished first (n is past the last operation).
template <typename F>
bool killed_at(long n, F&& f) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    fs::set_kill_after_file_ops(n);
    try {
      f();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return true;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "op " << n << ": status " << status;
  return false;
}

bool is_leftover_name(const std::string& name) {
  return name.find(".tmp.") != std::string::npos || name.find(".old.") != std::string::npos;
}

TEST(CrashConsistency, CheckpointSaveKilledAtEveryFileOperation) {
  test::TempDir dir;
  const std::string pristine = dir.file("pristine");
  model::Transformer first = tiny_model(1), second = tiny_model(2);
  optim::DataParallel opt_first(first, {}), opt_second(second, {});
  {
    run::RunDir run(pristine);
    run::save_train_checkpoint(run, 1, first, opt_first, {{"cursor", 1}}, /*keep_last=*/1, run::CheckpointContents::Full);
  }
  const std::vector<float> w1 = first.weights_host(), w2 = second.weights_host();
  ASSERT_NE(w1, w2);
  model::Transformer probe = tiny_model(9);
  optim::DataParallel probe_opt(probe, {});

  long n = 1;
  int saw_first = 0, saw_second = 0;
  for (;; ++n) {
    ASSERT_LT(n, 5000) << "the save never finished";
    const std::string path = dir.file("run" + std::to_string(n));
    stdfs::copy(pristine, path, stdfs::copy_options::recursive);
    run::RunDir run(path);
    const bool killed = killed_at(n, [&] {
      run::save_train_checkpoint(run, 2, second, opt_second, {{"cursor", 2}}, /*keep_last=*/1, run::CheckpointContents::Full);
    });
    // Resume finds a complete checkpoint, step 1 or 2, whose every file loads and holds that step.
    const run::ResumePoint rp = run::resume_point(run);
    ASSERT_TRUE(rp.step == 1 || rp.step == 2) << "op " << n;
    EXPECT_EQ(rp.state.at("cursor").get<int>(), rp.step) << "op " << n;
    run::load_train_checkpoint(rp, probe, probe_opt);
    EXPECT_EQ(probe.weights_host(), rp.step == 1 ? w1 : w2) << "op " << n;
    (rp.step == 1 ? saw_first : saw_second)++;
    // Nothing else is visible as a checkpoint: other entries are named leftovers of the dead writer.
    for (const auto& e : stdfs::directory_iterator(run.file("checkpoints"))) {
      const std::string name = e.path().filename().string();
      if (is_leftover_name(name)) continue;
      EXPECT_TRUE(name == "step_000001" || name == "step_000002") << "op " << n << ": " << name;
      EXPECT_TRUE(stdfs::exists(e.path() / "state.json")) << "op " << n << ": " << name << " is incomplete";
    }
    if (!killed) break;
    // The next save after the crash sweeps the leftovers.
    run::save_train_checkpoint(run, 3, first, opt_first, {{"cursor", 3}}, /*keep_last=*/1, run::CheckpointContents::Full);
    for (const auto& e : stdfs::directory_iterator(run.file("checkpoints")))
      EXPECT_FALSE(is_leftover_name(e.path().filename().string())) << "op " << n << ": " << e.path();
    EXPECT_EQ(run::resume_point(run).step, 3);
    stdfs::remove_all(path);
  }
  EXPECT_GT(saw_first, 5) << "kills before the checkpoint was published";
  EXPECT_GT(saw_second, 1) << "kills after it was published (removing the old one)";
  EXPECT_GT(n, 20) << "too few file operations to have tested much";
}

// `r1 convert --model SRC --out OUT` killed at its n-th file operation; OUT already holds an f32
// conversion and a tokenizer file, and the new conversion is bf16.
TEST(CrashConsistency, ConvertKilledAtEveryFileOperation) {
  test::TempDir dir;
  const std::string src = dir.file("src");
  model::Transformer m = tiny_model(4);
  model::save_model(m, src);
  const std::string pristine = dir.file("pristine_out");
  ASSERT_EQ(test::run_r1("convert --model " + src + " --out " + pristine, "").exit_code, 0);
  fs::write_file_atomic(pristine + "/tokenizer.json", "{}");
  auto dtype_of = [](const std::string& d) { return model::load_config(d + "/config.json").torch_dtype; };
  ASSERT_EQ(dtype_of(pristine), "float32");

  long n = 1;
  int saw_old = 0, saw_new = 0;
  for (;; ++n) {
    ASSERT_LT(n, 5000) << "convert never finished";
    const std::string parent = dir.file("p" + std::to_string(n));
    const std::string out = parent + "/out";
    stdfs::create_directories(parent);
    stdfs::copy(pristine, out, stdfs::copy_options::recursive);
    const bool killed = killed_at(n, [&] {
      ::setenv("R1_KILL_AFTER_FILE_OPS", std::to_string(n).c_str(), 1);
      ::execl(R1_BINARY, R1_BINARY, "convert", "--model", src.c_str(), "--out", out.c_str(), "--dtype", "bf16",
              static_cast<char*>(nullptr));
      ::_exit(4);
    });
    for (const auto& e : stdfs::directory_iterator(parent)) {
      const std::string name = e.path().filename().string();
      EXPECT_TRUE(name == "out" || is_leftover_name(name)) << "op " << n << ": " << name;
    }
    if (stdfs::exists(out)) {
      // A whole model, old or new, with the tokenizer kept and no temporary file inside.
      for (const auto& e : stdfs::directory_iterator(out))
        EXPECT_FALSE(is_leftover_name(e.path().filename().string())) << "op " << n << ": " << e.path();
      EXPECT_TRUE(stdfs::exists(out + "/tokenizer.json")) << "op " << n;
      const std::string dtype = dtype_of(out);
      (dtype == "float32" ? saw_old : saw_new)++;
      EXPECT_TRUE(dtype == "float32" || dtype == "bfloat16") << dtype;
      model::Transformer back = model::load_model(out);
      EXPECT_EQ(back.weights_host().size(), m.weights_host().size()) << "op " << n;
    } else {
      EXPECT_TRUE(killed) << "op " << n << ": convert finished without an output";
    }
    if (!killed) {
      EXPECT_EQ(dtype_of(out), "bfloat16");
      break;
    }
    // Run again to the end: the leftovers beside OUT are swept.
    ASSERT_EQ(test::run_r1("convert --model " + src + " --out " + out + " --dtype bf16", "").exit_code, 0);
    for (const auto& e : stdfs::directory_iterator(parent))
      EXPECT_EQ(e.path().filename().string(), "out") << "op " << n;
    stdfs::remove_all(parent);
  }
  EXPECT_GT(saw_old, 3);
  EXPECT_GT(n, 10);
}

}  // namespace
}  // namespace r1
