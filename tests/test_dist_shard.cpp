// Sharding levels (parallel.shard, optim/data_parallel.h) on CPU ranks under mpirun: none,
// optimizer (ZeRO-1) and gradients (ZeRO-2) give bitwise the same weights, optimizer state and
// gradient norms at 2 and 3 ranks, full (ZeRO-3, gradients reduce-scattered unit by unit) the same
// to the fp32 summation order, and each level holds the bytes it should between steps; and in one
// process, the passes' unit-by-unit weight gathering and gradient writing (model/weight_units.h).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "base/error.h"
#include "base/fs.h"
#include "dist/comm.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/memory_model.h"
#include "model/random_init.h"
#include "model/safetensors.h"
#include "model/train_state.h"
#include "model/weight_units.h"
#include "optim/sharded_weights.h"
#include "tensor/device_memory.h"
#include "require_gpu.h"
#include "test_util.h"

using namespace r1;

namespace {

std::string sft_args(const test::TempDir& dir, const std::string& name) {
  return "sft " + test::source_path("recipes/sft_tiny_byte.yaml") + " data.path=" + dir.file("train.jsonl") +
         " train.steps=4 train.batch_size=6 train.micro_batch_tokens=64 run.save_every=2 run.dir=" + dir.path() +
         " run.name=" + name;
}

void write_sft_rows(const test::TempDir& dir) {
  std::ofstream out(dir.file("train.jsonl"));
  for (int i = 0; i < 18; ++i)
    out << nlohmann::json{{"prompt", std::to_string(i) + "+" + std::to_string(i) + "="},
                          {"completion", std::to_string(2 * i)}}
               .dump()
        << "\n";
}

std::vector<nlohmann::json> metrics(const std::string& run) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : test::read_lines(fs::join(run, "metrics.jsonl"))) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The largest rank's shard of n elements over `ranks` (data_parallel.cpp: equal shards rounded
// down to 64 elements, the remainder on the last rank).
int64_t largest_shard(int64_t n, int ranks) { return n - (n / ranks) / 64 * 64 * (ranks - 1); }

// The memory model's training state per rank at sharding level `level` (model/memory_model.h), in
// MiB, beside what the run measured between steps: the model counts parameters, the buffers hold
// the flat layout's 64-element-aligned tensors, so the prediction is at most 1% below.
void expect_memory_model(const std::string& model_dir, int ranks, int level, double measured_mib) {
  model::MemorySettings s;
  s.device = Device::CPU;
  s.world = ranks;
  s.shard = level;
  const model::MemoryEstimate e = model::estimate_memory(model::load_config(model_dir + "/config.json"), s);
  const double predicted = double(e.persistent()) / double(1 << 20);
  std::printf("[ SHARD ] level %d, %d ranks: the memory model predicts %.3f MiB per rank, measured %.3f\n", level,
              ranks, predicted, measured_mib);
  EXPECT_LE(predicted, measured_mib) << "level " << level << ", " << ranks << " ranks";
  EXPECT_GE(predicted, 0.99 * measured_mib) << "level " << level << ", " << ranks << " ranks";
}

}  // namespace

// The mpi comm adds every element's ranks in rank order in all_reduce and reduce_scatter alike,
// and every level takes the gradient norm as the same sum of per-shard sums: so the levels differ
// only in what each rank keeps, never in a bit of the result.
TEST(DistShard, LevelsGiveBitwiseTheSameTraining) {
  test::TempDir dir;
  write_sft_rows(dir);
  // Elements of the flat layout (with its alignment padding), what every state buffer holds.
  int64_t n = 0;
  for (const int ranks : {2, 3}) {
    const std::string base = "np" + std::to_string(ranks) + "_";
    for (const char* level : {"none", "optimizer", "gradients"}) {
      auto r = test::run_mpi(ranks, std::string(R1_BINARY) + " " + sft_args(dir, base + level) + " parallel.shard=" + level);
      ASSERT_EQ(r.exit_code, 0) << level << " on " << ranks << " ranks\n" << r.out << r.err;
    }
    if (n == 0) n = int64_t(model::load_model(dir.file(base + "none/model"), Device::CPU, false).weights_host().size());
    for (const std::string f : {"model/model.safetensors", "optimizer.safetensors"})
      for (const char* level : {"optimizer", "gradients"})
        EXPECT_TRUE(fs::read_file(dir.file(base + "none/checkpoints/step_000003/" + f)) ==
                    fs::read_file(dir.file(base + level + "/checkpoints/step_000003/" + f)))
            << ranks << " ranks, shard " << level << ": " << f << " differs from shard none";
    const auto none = metrics(dir.file(base + "none")), opt = metrics(dir.file(base + "optimizer")),
               grads = metrics(dir.file(base + "gradients"));
    ASSERT_EQ(none.size(), 4u);
    for (size_t step = 0; step < none.size(); ++step) {
      EXPECT_EQ(none[step]["grad_norm"].get<double>(), opt[step]["grad_norm"].get<double>()) << "step " << step;
      EXPECT_EQ(none[step]["grad_norm"].get<double>(), grads[step]["grad_norm"].get<double>()) << "step " << step;
      EXPECT_EQ(none[step]["loss"].get<double>(), grads[step]["loss"].get<double>()) << "step " << step;
    }
    // Held between steps by the largest rank, in bytes of f32: weights 4n; moments 8n or 8c; the
    // gradients 4n (none), 4n and the reduce-scattered shard 4c (optimizer), the shard alone 4c
    // (gradients: the full buffer is released after each step).
    const int64_t c = largest_shard(n, ranks);
    auto mib = [](int64_t bytes) { return double(bytes) / double(1 << 20); };
    const double want_none = mib(16 * n), want_opt = mib(8 * n + 12 * c), want_grads = mib(4 * n + 12 * c);
    std::printf("[ SHARD ] %d ranks, %lld parameters: state held per rank %.3f MiB (none), %.3f (optimizer), %.3f "
                "(gradients); gradients / none = %.3f\n",
                ranks, static_cast<long long>(n), want_none, want_opt, want_grads, want_grads / want_none);
    EXPECT_DOUBLE_EQ(none.back()["memory/train_state_mib"].get<double>(), want_none);
    EXPECT_DOUBLE_EQ(opt.back()["memory/train_state_mib"].get<double>(), want_opt);
    EXPECT_DOUBLE_EQ(grads.back()["memory/train_state_mib"].get<double>(), want_grads);
    const std::string model_dir = dir.file(base + "none/model");
    expect_memory_model(model_dir, ranks, 0, want_none);
    expect_memory_model(model_dir, ranks, 1, want_opt);
    expect_memory_model(model_dir, ranks, 2, want_grads);
  }
}

// parallel.zero1: true, the key before sharding levels, is shard: optimizer (bitwise).
TEST(DistShard, Zero1IsTheOptimizerLevel) {
  test::TempDir dir;
  write_sft_rows(dir);
  auto a = test::run_mpi(2, std::string(R1_BINARY) + " " + sft_args(dir, "zero1") + " parallel.zero1=true");
  ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
  auto b = test::run_mpi(2, std::string(R1_BINARY) + " " + sft_args(dir, "optimizer") + " parallel.shard=optimizer");
  ASSERT_EQ(b.exit_code, 0) << b.out << b.err;
  EXPECT_TRUE(fs::read_file(dir.file("zero1/model/model.safetensors")) ==
              fs::read_file(dir.file("optimizer/model/model.safetensors")));
  EXPECT_EQ(metrics(dir.file("zero1")).back()["memory/train_state_mib"],
            metrics(dir.file("optimizer")).back()["memory/train_state_mib"]);
}

TEST(DistShard, BadLevelsFailNamingTheKey) {
  test::TempDir dir;
  write_sft_rows(dir);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"parallel.shard=everything",
       "recipe key 'parallel.shard' must be none, optimizer, gradients or full (got 'everything')"},
      {"parallel.zero1=true parallel.shard=gradients", "'parallel.shard: gradients' disagree"},
  };
  for (const auto& [args, message] : cases) {
    auto r = test::run_r1(sft_args(dir, "bad") + " " + args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
  }
}

// run.export_dtype: bfloat16 exports the trained weights rounded to bf16 (half the bytes; a 7B
// model's export is 15 GB instead of 30), written by one process or by the ranks' shards at level
// full alike, byte for byte what save_model writes of the fp32 weights the last checkpoint keeps.
// Another value stops the run before any compute, naming the key.
TEST(DistShard, ExportInBf16IsTheTrainedWeightsRounded) {
  test::TempDir dir;
  write_sft_rows(dir);
  auto check = [&](const std::string& name) {
    const std::string trained = dir.file(name + "/checkpoints/step_000003/model"), out = dir.file(name + "/model");
    EXPECT_EQ(model::load_config(out + "/config.json").torch_dtype, "bfloat16") << name;
    const std::string rounded = dir.file(name + "_rounded");
    model::save_model(model::load_model(trained, Device::CPU, false), rounded, DType::BF16);
    EXPECT_TRUE(fs::read_file(out + "/model.safetensors") == fs::read_file(rounded + "/model.safetensors")) << name;
    EXPECT_LT(std::filesystem::file_size(out + "/model.safetensors"),
              std::filesystem::file_size(trained + "/model.safetensors") / 2 + 4096)
        << name;
  };
  auto one = test::run_r1(sft_args(dir, "one") + " run.export_dtype=bfloat16");
  ASSERT_EQ(one.exit_code, 0) << one.out << one.err;
  check("one");
  auto full = test::run_mpi(2, std::string(R1_BINARY) + " " + sft_args(dir, "full") +
                                   " parallel.shard=full run.export_dtype=bfloat16");
  ASSERT_EQ(full.exit_code, 0) << full.out << full.err;
  EXPECT_NE((full.out + full.err).find("2 ranks wrote their shards of"), std::string::npos) << full.out << full.err;
  check("full");
  auto bad = test::run_r1(sft_args(dir, "bad") + " run.export_dtype=float16");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("recipe key 'run.export_dtype' must be float32 or bfloat16 (got 'float16')"),
            std::string::npos)
      << bad.err;
  EXPECT_FALSE(fs::exists(dir.file("bad/metrics.jsonl")));
}

namespace {

// Rows of very different lengths, so that the ranks' shares of a batch pack into different numbers
// of micro-batches (and the ranks with fewer run idle passes at level full).
void write_ragged_rows(const test::TempDir& dir) {
  std::ofstream out(dir.file("ragged.jsonl"));
  for (int i = 0; i < 18; ++i)
    out << nlohmann::json{{"prompt", std::to_string(i) + ":"}, {"completion", std::string(size_t(i % 3 == 0 ? 40 : 2), 'a' + char(i))}}
               .dump()
        << "\n";
}

std::string ragged_args(const test::TempDir& dir, const std::string& name) {
  return "sft " + test::source_path("recipes/sft_tiny_byte.yaml") + " data.path=" + dir.file("ragged.jsonl") +
         " data.eval_path=" + dir.file("ragged.jsonl") + " train.steps=4 train.batch_size=6 train.micro_batch_tokens=48" +
         " run.save_every=2 run.dir=" + dir.path() + " run.name=" + name;
}

// How far b ended from a, relative to how far a moved from an earlier point: ||b - a|| / ||a - early||.
double relative_difference(const std::vector<float>& early, const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(b[i]) - a[i]) * (double(b[i]) - a[i]);
    den += (double(a[i]) - early[i]) * (double(a[i]) - early[i]);
  }
  std::printf("[ SHARD ] relative weight difference %.3e\n", std::sqrt(num / den));
  return std::sqrt(num / den);
}

std::vector<float> weights(const std::string& model_dir) {
  return model::load_model(model_dir, Device::CPU, /*trainable=*/false).weights_host();
}

}  // namespace

// GRPO at level full: the rollouts, the reference and the old log-probs run on the whole weights
// (gathered for that part of the step), the update gathers them unit by unit and reduce-scatters
// each unit's gradients as its backward ends. The first step's rewards, lengths and loss are
// bitwise those of shard none (the same weights); the gradients are the same sums in another fp32
// order (see FullShardingMatchesNone), so the weights (the reference's, refreshed at step 2,
// included) end within the tolerance argued there, and the samples stay the same.
TEST(DistShard, GrpoFullShardingMatchesNone) {
  test::TempDir dir;
  auto grpo = [&](const std::string& name, const std::string& level) {
    return test::run_mpi(2, std::string(R1_BINARY) + " grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") +
                                " data.path=" + test::source_path("data/gsm8k_train.jsonl") +
                                " train.steps=3 run.save_every=1 run.keep_last=0 run.samples_every=0 grpo.kl_coef=0.05" +
                                " grpo.ref_refresh_steps=2 run.dir=" + dir.path() + " run.name=" + name +
                                " parallel.shard=" + level);
  };
  auto none = grpo("none", "none");
  ASSERT_EQ(none.exit_code, 0) << none.out << none.err;
  auto full = grpo("full", "full");
  ASSERT_EQ(full.exit_code, 0) << full.out << full.err;
  EXPECT_NE(full.err.find("2 ranks wrote their shards of"), std::string::npos) << full.err;
  const auto a = metrics(dir.file("none")), b = metrics(dir.file("full"));
  ASSERT_EQ(b.size(), 3u);
  for (const char* key : {"reward/mean", "response_length/mean", "loss"})
    EXPECT_EQ(a[0][key], b[0][key]) << key << " at step 0";
  for (size_t step = 0; step < 3; ++step) {
    EXPECT_EQ(a[step]["response_length/mean"], b[step]["response_length/mean"]) << "step " << step;
    EXPECT_NEAR(a[step]["grad_norm"].get<double>(), b[step]["grad_norm"].get<double>(),
                1e-5 * a[step]["grad_norm"].get<double>())
        << "step " << step;
  }
  const std::vector<float> start = weights(dir.file("none/checkpoints/step_000000/model"));
  for (const std::string f : {"checkpoints/step_000002/model", "checkpoints/step_000002/reference", "model"})
    EXPECT_LT(relative_difference(start, weights(dir.file("none/" + f)), weights(dir.file("full/" + f))), 1e-4) << f;
}

// ZeRO-3: each rank holds 1/N of the weights and gathers one unit at a time, and reduce-scatters
// each unit's gradients as its backward ends, adding them into its shard; the micro-batch counts
// differ between ranks (idle passes keep the collectives in step), and the eval pass gathers too.
// The gradients are the same sums as shard none's in another order: none adds a rank's micro-batches
// first and the ranks after (sum_r sum_k g_rk), full the ranks of each micro-batch first (sum_k
// sum_r g_rk; and a tied head's contribution to the embedding apart from the embedding's own).
// Within a rank, too, a unit's GEMMs start from a zeroed buffer whose result is added to the shard,
// where none's GEMMs add into the accumulated buffer (C += A B, blocked). Either way each element
// is the same terms summed in another order, so it differs by at most about R K roundings of
// partial sums, about 1e-7 of its magnitude here (R <= 3 ranks, K <= 3 micro-batches): the
// gradient norms agree to 1e-6, and the weights, whose AdamW steps are g / sqrt(v) (a relative
// change of g changes them by as much, except for elements whose gradient is near 0 and whose
// steps are small), end within 1e-4 of how far they moved (measured: 5e-7 to 2e-6). The first
// step's loss (before any update) and the files' layout are exactly none's.
TEST(DistShard, FullShardingMatchesNone) {
  test::TempDir dir;
  write_ragged_rows(dir);
  int64_t idle = 0;
  for (const int ranks : {2, 3}) {
    const std::string base = "np" + std::to_string(ranks) + "_";
    for (const char* level : {"none", "full"}) {
      auto r = test::run_mpi(ranks, std::string(R1_BINARY) + " " + ragged_args(dir, base + level) + " parallel.shard=" + level);
      ASSERT_EQ(r.exit_code, 0) << level << " on " << ranks << " ranks\n" << r.out << r.err;
      // Full: the checkpoints and the final model are written by every rank's shard, never gathered.
      const bool by_shards = (r.out + r.err).find(std::to_string(ranks) + " ranks wrote their shards of") != std::string::npos;
      EXPECT_EQ(by_shards, std::string(level) == "full") << r.out << r.err;
    }
    if (ranks == 2) {
      // From a checkpoint: each rank of full reads its shard of the file (no whole model anywhere),
      // and the first step's loss is none's (the same starting weights).
      const std::string from = " model.path=" + dir.file(base + "none/checkpoints/step_000001/model");
      for (const char* level : {"none", "full"}) {
        auto r = test::run_mpi(2, std::string(R1_BINARY) + " " + ragged_args(dir, std::string("from_") + level) + from +
                                      " train.steps=1 parallel.shard=" + level);
        ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
        EXPECT_EQ((r.out + r.err).find("read only its shard of the weights") != std::string::npos,
                  std::string(level) == "full")
            << r.out << r.err;
      }
      EXPECT_EQ(metrics(dir.file("from_none"))[0]["loss"].get<double>(),
                metrics(dir.file("from_full"))[0]["loss"].get<double>());
    }
    const std::vector<float> start = weights(dir.file(base + "none/checkpoints/step_000001/model"));
    for (const std::string f : {"checkpoints/step_000003/model", "model"})
      EXPECT_LT(relative_difference(start, weights(dir.file(base + "none/" + f)), weights(dir.file(base + "full/" + f))),
                1e-4)
          << ranks << " ranks: " << f;
    const auto none = metrics(dir.file(base + "none")), full = metrics(dir.file(base + "full"));
    ASSERT_EQ(full.size(), 4u);
    EXPECT_EQ(none[0]["loss"].get<double>(), full[0]["loss"].get<double>());
    for (size_t step = 0; step < full.size(); ++step) {
      const double g = none[step]["grad_norm"].get<double>();
      std::printf("[ SHARD ] %d ranks, step %zu: grad norm none %.9g, full %.9g\n", ranks, step, g,
                  full[step]["grad_norm"].get<double>());
      EXPECT_NEAR(full[step]["grad_norm"].get<double>(), g, 1e-6 * g) << "step " << step;
      EXPECT_NEAR(full[step]["loss"].get<double>(), none[step]["loss"].get<double>(),
                  1e-5 * std::fabs(none[step]["loss"].get<double>()))
          << "step " << step;
      idle += full[step]["idle_passes"].get<int64_t>();
    }
    EXPECT_NEAR(full.back()["eval/loss"].get<double>(), none.back()["eval/loss"].get<double>(),
                1e-5 * std::fabs(none.back()["eval/loss"].get<double>()));
    // Held between steps by the largest rank: its shard of the weights 4c and the one gather
    // buffer (the largest unit: a layer, or the embedding with the head), moments 8c, gradients 4c
    // (the unit buffer their backwards write into lives through a step only).
    const model::ModelConfig cfg = model::load_config(dir.file(base + "full/model/config.json"));
    const model::ModelPlan plan = model::make_plan(cfg);
    const int64_t largest = model::largest_unit(plan, cfg);
    const int64_t n = plan.total, c = largest_shard(n, ranks);
    const double want = double(16 * c + 4 * largest) / double(1 << 20);
    std::printf("[ SHARD ] full, %d ranks: %.3f MiB held per rank (none: %.3f; gather buffer %.3f MiB)\n", ranks,
                want, double(16 * n) / double(1 << 20), double(4 * largest) / double(1 << 20));
    EXPECT_DOUBLE_EQ(full.back()["memory/train_state_mib"].get<double>(), want);
    expect_memory_model(dir.file(base + "full/model"), ranks, 3, want);
    EXPECT_DOUBLE_EQ(none.back()["memory/train_state_mib"].get<double>(), double(16 * n) / double(1 << 20));
  }
  std::printf("[ SHARD ] idle passes over both runs: %lld\n", static_cast<long long>(idle));
  EXPECT_GT(idle, 0) << "the data no longer gives the ranks different micro-batch counts";
}

// A fully sharded run cut on 3 ranks resumes on 2 (the checkpoint is the single-process format,
// each of the 3 ranks having written its shard of the files): it ends where an uninterrupted
// 2-rank run ends, to the rank count's fp32 summation order (its first two steps added 3 ranks'
// gradients, not 2).
TEST(DistShard, FullShardingResumesAtAnotherWorldSize) {
  test::TempDir dir;
  write_ragged_rows(dir);
  auto whole = test::run_mpi(2, std::string(R1_BINARY) + " " + ragged_args(dir, "whole") + " parallel.shard=full");
  ASSERT_EQ(whole.exit_code, 0) << whole.out << whole.err;
  auto cut = test::run_mpi(3, std::string(R1_BINARY) + " " + ragged_args(dir, "cut") + " parallel.shard=full --stop-after 2");
  ASSERT_NE(cut.exit_code, 0);
  ASSERT_TRUE(fs::exists(dir.file("cut/checkpoints/step_000001/COMPLETE")));
  auto resumed = test::run_mpi(2, std::string(R1_BINARY) + " " + ragged_args(dir, "cut") + " parallel.shard=full --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_LT(relative_difference(weights(dir.file("whole/checkpoints/step_000001/model")), weights(dir.file("whole/model")),
                                weights(dir.file("cut/model"))),
            1e-3);
}

namespace {

// Records the units a pass acquires and releases, and whose gradients it writes, in one log (the
// model's weights and gradients stay in place).
class Recorder final : public model::WeightUnits {
 public:
  void acquire(model::WeightUnit u) override { note('a', u), acquired.push_back(u); }
  void release(model::WeightUnit u) override { note('r', u), released.push_back(u); }
  void begin_grads(model::WeightUnit u) override { note('b', u), grads.push_back(u); }
  void end_grads(model::WeightUnit u) override { note('e', u); }
  std::vector<model::WeightUnit> acquired, released, grads;
  std::string log;

 private:
  void note(char what, model::WeightUnit u) {
    log += what;
    log += u.kind == model::UnitKind::Embed ? "E" : u.kind == model::UnitKind::Head ? "H" : std::to_string(u.layer);
    log += ' ';
  }
};

model::ModelConfig tiny(bool tied) {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  model::override_config(c, "vocab_size", "257");
  model::override_config(c, "tie_word_embeddings", tied ? "true" : "false");
  return c;
}

}  // namespace

// The passes acquire the units in pass_units' order, whether they checkpoint or not, write the
// gradients of Head, the layers from the last and Embed while each is acquired, and idle_pass
// (what a rank with fewer micro-batches runs) makes exactly the same calls in the same order.
TEST(WeightUnits, PassesAndIdlePassAcquireTheSameUnits) {
  model::Transformer m(tiny(false));
  m.init_random(5);
  const model::Batch b = model::pack_sequences({{1, 2, 3, 4, 5}, {6, 7, 8}});
  const int L = m.config().num_hidden_layers;
  for (const auto mode : {model::Checkpointing::Off, model::Checkpointing::On}) {
    Recorder rec;
    model::TrainState st;
    st.checkpointing = mode;
    st.weight_units = &rec;
    st.forward(m, b);
    st.backward(m, std::vector<float>(size_t(b.tokens()), -0.1f));
    EXPECT_TRUE(rec.acquired == model::pass_units(L, true));
    EXPECT_TRUE(rec.released == rec.acquired);
    std::vector<model::WeightUnit> grads{{model::UnitKind::Head, -1}};
    for (int l = L - 1; l >= 0; --l) grads.push_back({model::UnitKind::Layer, l});
    grads.push_back({model::UnitKind::Embed, -1});
    EXPECT_TRUE(rec.grads == grads) << rec.log;
    Recorder idle;
    st.weight_units = &idle;
    st.idle_pass(m);
    EXPECT_EQ(idle.log, rec.log);
  }
  Recorder rec, idle;
  model::TrainState st;
  st.weight_units = &rec;
  st.forward(m, b, 1.0f, model::Backward::None);
  st.weight_units = &idle;
  st.idle_pass(m, model::Backward::None);
  EXPECT_TRUE(rec.acquired == model::pass_units(L, false));
  EXPECT_TRUE(idle.acquired == rec.acquired);
}

// In one process (the single comm), ShardedWeights frees the model's weights and gathers each unit
// into its buffer, and the model never holds a gradient buffer: each unit's backward writes into
// one unit buffer that is added into the gradient shard. The log-probs and one backward's gradients
// are bitwise those of the plain model (the tied head's and the embedding's own contributions added
// in the plain buffer's order), a second accumulated backward's to rounding, tied head or not,
// checkpointing or not; whole() brings the weights back unchanged.
TEST(WeightUnits, GatheredUnitsComputeBitwiseLikeTheWholeModel) {
  for (const bool tied : {true, false}) {
    for (const auto mode : {model::Checkpointing::Off, model::Checkpointing::On}) {
      model::Transformer plain(tiny(tied)), sharded(tiny(tied));
      plain.init_random(9);
      sharded.init_random(9);
      const std::vector<float> before = sharded.weights_host();
      std::unique_ptr<dist::Comm> one = dist::make_single_comm();
      optim::ShardedWeights units(sharded, *one, {sharded.plan().total}, 0);
      EXPECT_TRUE(sharded.weights_released());
      EXPECT_TRUE(sharded.params().embed.empty()) << "a unit's views point at nothing until acquired";
      EXPECT_THROW(sharded.weights_host(), Error);
      const model::Batch b = model::pack_sequences({{1, 2, 3, 4, 5, 6}, {7, 8, 9}});
      const std::vector<float> dlogp(size_t(b.tokens()), -0.25f);
      model::TrainState a, s;
      a.checkpointing = s.checkpointing = mode;
      s.weight_units = &units;
      const std::vector<float> la = to_host_f32(a.forward(plain, b)), ls = to_host_f32(s.forward(sharded, b));
      EXPECT_TRUE(la == ls) << "tied " << tied;
      plain.zero_grads();
      sharded.zero_grads();
      a.backward(plain, dlogp);
      s.backward(sharded, dlogp);
      EXPECT_TRUE(to_host_f32(plain.grads().flat) == to_host_f32(units.grad_shard())) << "tied " << tied;
      // A second backward: the plain buffer's GEMMs add into it (C += A B, blocked), the units'
      // start from zero and are added after, so the sums agree to rounding.
      const model::Batch b2 = model::pack_sequences({{3, 1, 4, 1, 5}});
      const std::vector<float> dlogp2(size_t(b2.tokens()), 0.5f);
      a.forward(plain, b2);
      s.forward(sharded, b2);
      a.backward(plain, dlogp2);
      s.backward(sharded, dlogp2);
      EXPECT_EQ(sharded.grad_bytes(), 0) << "the model's gradient buffer came back";
      EXPECT_TRUE(sharded.grads().embed.empty()) << "a unit's gradient views point at nothing after its backward";
      const std::vector<float> want = to_host_f32(plain.grads().flat), got = to_host_f32(units.grad_shard());
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-6f * (1.0f + std::fabs(want[i]))) << "tied " << tied << ", element " << i;
      units.zero_grad_shard();
      EXPECT_TRUE(to_host_f32(units.grad_shard()) == std::vector<float>(size_t(sharded.plan().total), 0.0f));
      s.forward(sharded, b);
      s.weight_units = nullptr;  // a backward that forgets the units fails at once, naming them
      EXPECT_THROW(s.backward(sharded, dlogp), Error);
      units.whole([&] { EXPECT_TRUE(sharded.weights_host() == before); }, /*writes=*/false);
      EXPECT_TRUE(sharded.weights_released());
    }
  }
}

// Prefetch (on by default for device comms, switched on here for the CPU's single comm): the pass's
// hint gathers the next unit into the second buffer, and the acquire that follows takes it from
// there: 2L + 1 of a forward and backward's 2L + 3 acquires (all but the forward's embedding and
// the backward's head), with log-probs and gradients bitwise the plain model's. A hint the pass
// does not follow is dropped (the unit it asks for instead is gathered anew and holds its own
// weights), and so is one that an update of the shard separates from its acquire.
TEST(WeightUnits, PrefetchServesTheNextAcquireBitwise) {
  model::Transformer plain(tiny(false)), sharded(tiny(false));
  plain.init_random(9);
  sharded.init_random(9);
  std::unique_ptr<dist::Comm> one = dist::make_single_comm();
  optim::ShardedWeights units(sharded, *one, {sharded.plan().total}, 0);
  EXPECT_FALSE(units.prefetching()) << "a host comm blocks: nothing to overlap";
  const int64_t single = units.bytes();
  units.set_prefetch(true);
  const int64_t unit_bytes = model::largest_unit(sharded.plan(), sharded.config()) * int64_t(sizeof(float));
  EXPECT_EQ(units.bytes(), single + unit_bytes) << "the second gather buffer";
  const int L = sharded.config().num_hidden_layers;
  const model::Batch b = model::pack_sequences({{1, 2, 3, 4, 5, 6}, {7, 8, 9}});
  const std::vector<float> dlogp(size_t(b.tokens()), -0.25f);
  model::TrainState a, s;
  s.weight_units = &units;
  EXPECT_TRUE(to_host_f32(a.forward(plain, b)) == to_host_f32(s.forward(sharded, b)));
  EXPECT_EQ(units.prefetched_acquires(), L + 1);
  EXPECT_EQ(units.gathered_acquires(), 1);
  plain.zero_grads();
  a.backward(plain, dlogp);
  s.backward(sharded, dlogp);
  EXPECT_TRUE(to_host_f32(plain.grads().flat) == to_host_f32(units.grad_shard()));
  EXPECT_EQ(units.prefetched_acquires(), 2 * L + 1);
  EXPECT_EQ(units.gathered_acquires(), 2);

  // Layer 0's weights as the plain model holds them, by name.
  auto layer0 = [&](model::Transformer& m) {
    std::vector<std::vector<float>> out;
    visit_params(m.params(), m.config(), [&](Tensor& t, const std::string& name, model::ParamShape) {
      if (name.rfind("model.layers.0.", 0) == 0) out.push_back(to_host_f32(t));
    });
    return out;
  };
  const model::WeightUnit embed{model::UnitKind::Embed, -1}, l0{model::UnitKind::Layer, 0},
      l1{model::UnitKind::Layer, 1};
  units.acquire(embed);
  units.prefetch(l1);  // a hint the pass does not follow
  units.release(embed);
  units.acquire(l0);
  EXPECT_EQ(units.gathered_acquires(), 4);
  EXPECT_TRUE(layer0(sharded) == layer0(plain)) << "layer 0 took the prefetched layer 1's weights";
  units.prefetch(l1);
  units.release(l0);
  units.acquire(l1);  // the hint followed
  EXPECT_EQ(units.prefetched_acquires(), 2 * L + 2);
  units.release(l1);
  // An update between a hint and its acquire: the step drops the hint.
  units.acquire(embed);
  units.prefetch(l0);
  units.release(embed);
  std::vector<float> moved = to_host_f32(units.shard());
  for (float& x : moved) x += 1.0f;
  copy_from_host(units.shard(), moved.data());
  units.zero_grad_shard();
  units.acquire(l0);
  EXPECT_EQ(units.prefetched_acquires(), 2 * L + 2);
  const std::vector<std::vector<float>> got = layer0(sharded);
  std::vector<std::vector<float>> want = layer0(plain);
  for (auto& w : want)
    for (float& x : w) x += 1.0f;
  EXPECT_TRUE(got == want) << "layer 0 took weights gathered before the update";
  units.release(l0);
  units.set_prefetch(false);
  EXPECT_EQ(units.bytes(), single);
}

// A WeightSource hands any range of the flat layout, across tensor boundaries and the alignment
// padding (0), with the values a whole load (or init_random) puts there, from f32 and bf16 files;
// a checkpoint that lacks a tensor, or holds one the model does not use, fails when the source is
// made, naming the file and the tensor.
TEST(WeightSource, RangesAreThoseOfTheWholeModel) {
  test::TempDir dir;
  model::Transformer m(tiny(false));
  m.init_random(4);
  const model::ModelConfig& c = m.config();
  const int64_t n = m.plan().total;
  const std::vector<float> drawn = m.weights_host();
  for (const DType dt : {DType::F32, DType::BF16}) {
    const std::string path = dir.file(std::string("m_") + dtype_name(dt));
    model::save_model(m, path, dt);
    const std::vector<float> whole = model::load_model(path).weights_host();
    const model::WeightSource file = model::checkpoint_weights(path, c);
    for (const auto& [begin, count] : std::vector<std::pair<int64_t, int64_t>>{{0, n}, {1, 1000}, {n / 3, n / 3}, {n - 7, 7}}) {
      std::vector<float> got(size_t(count), NAN);
      file(begin, count, got.data());
      EXPECT_TRUE(std::equal(got.begin(), got.end(), whole.begin() + begin)) << dtype_name(dt) << " [" << begin << ", +" << count << ")";
    }
  }
  const model::WeightSource random = model::random_weights(c, 4, model::kInitStd);
  std::vector<float> all(size_t(n), NAN);
  random(0, n, all.data());
  EXPECT_TRUE(all == drawn);
  std::vector<float> part(100, NAN);
  random(n / 2, 100, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), drawn.begin() + n / 2));

  // A checkpoint with one tensor renamed: the model's is missing, the file's is unused.
  const std::string bad = dir.file("renamed");
  model::save_model(m, bad);
  std::vector<model::NamedTensor> tensors;
  for (const model::ParamSpec& spec : m.specs())
    tensors.push_back({spec.name == "model.norm.weight" ? "model.norm.weights" : spec.name, spec.shape,
                       drawn.data() + spec.offset});
  model::save_safetensors(fs::join(bad, "model.safetensors"), tensors, DType::F32);
  try {
    model::checkpoint_weights(bad, c);
    ADD_FAILURE() << "a checkpoint without model.norm.weight was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'model.norm.weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

// A model built without weights (parallel.shard: full from the start) holds no weight or gradient
// memory at all; ShardedWeights fills its shard from the source, and the passes compute what the
// whole model computes.
TEST(WeightSource, ModelBuiltWithoutWeightsTakesItsShardFromTheSource) {
  model::Transformer plain(tiny(true));
  plain.init_random(6);
  const size_t before = memory_use(Device::CPU).now;
  model::Transformer empty(tiny(true), Device::CPU, true, std::nullopt, model::MasterPlace::Device, /*allocate=*/false);
  EXPECT_LT(memory_use(Device::CPU).now - before, size_t(4096)) << "weights were allocated";
  EXPECT_TRUE(empty.weights_released());
  EXPECT_EQ(empty.grad_bytes(), 0);
  std::unique_ptr<dist::Comm> one = dist::make_single_comm();
  optim::ShardedWeights units(empty, *one, {empty.plan().total}, 0, model::random_weights(empty.config(), 6, model::kInitStd));
  const model::Batch b = model::pack_sequences({{1, 2, 3, 4}, {5, 6, 7}});
  model::TrainState a, s;
  s.weight_units = &units;
  EXPECT_TRUE(to_host_f32(a.forward(plain, b)) == to_host_f32(s.forward(empty, b)));
  EXPECT_THROW(optim::ShardedWeights(empty, *one, {empty.plan().total}, 0), Error);  // no source
}

// The same on one GPU (a single comm whose copies run on the compute stream): a bf16 model keeps its
// shard of the fp32 master and of the bf16 compute copy, the passes gather the compute weights a
// unit at a time, and each unit's gradients go into the gradient shard. The log-probs are those of
// the plain model (the same bf16 bytes, at the flat layout's 128-byte alignment); the gradients to
// rounding (the embedding's backward adds with atomics on the GPU). whole() for reading brings the
// compute weights back unchanged without the master copy; for writing, weights set inside it are
// the shard's after.
TEST(CudaWeightUnits, GatheredUnitsComputeLikeTheWholeModel) {
  REQUIRE_GPU();
  for (const bool tied : {true, false})
  for (const bool offload : {false, true}) {  // offload: the fp32 master (and so its shard) in host memory
    model::Transformer plain(tiny(tied), Device::CUDA), sharded(tiny(tied), Device::CUDA);
    plain.init_random(9);
    sharded.init_random(9);
    if (offload) sharded.place_master(model::MasterPlace::Host);
    const std::vector<float> before = sharded.weights_host();
    std::unique_ptr<dist::Comm> one = dist::make_single_comm(Device::CUDA);
    optim::ShardedWeights units(sharded, *one, {sharded.plan().total}, 0);
    EXPECT_TRUE(sharded.weights_released());
    EXPECT_TRUE(sharded.master_released());
    EXPECT_EQ(units.shard().device, offload ? Device::CPU : Device::CUDA);
    EXPECT_EQ(units.compute_shard().dtype, DType::BF16);
    const model::Batch b = model::pack_sequences({{1, 2, 3, 4, 5, 6}, {7, 8, 9}});
    const std::vector<float> dlogp(size_t(b.tokens()), -0.25f);
    model::TrainState a, s;
    s.weight_units = &units;
    const std::vector<float> la = to_host_f32(a.forward(plain, b)), ls = to_host_f32(s.forward(sharded, b));
    EXPECT_TRUE(la == ls) << "tied " << tied;
    plain.zero_grads();
    a.backward(plain, dlogp);
    s.backward(sharded, dlogp);
    EXPECT_EQ(sharded.grad_bytes(), 0);
    const std::vector<float> want = to_host_f32(plain.grads().flat), got = to_host_f32(units.grad_shard());
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::fabs(want[i]))) << "tied " << tied << ", element " << i;
    const std::vector<uint16_t> bf16_before = [&] {
      std::vector<uint16_t> h(size_t(plain.plan().total));
      devmem::copy(h.data(), Device::CPU, plain.params().flat.data, Device::CUDA, h.size() * 2);
      return h;
    }();
    units.whole(
        [&] {
          std::vector<uint16_t> h(size_t(sharded.plan().total));
          devmem::copy(h.data(), Device::CPU, sharded.params().flat.data, Device::CUDA, h.size() * 2);
          EXPECT_TRUE(h == bf16_before) << "tied " << tied;
          EXPECT_TRUE(sharded.master_released());
          EXPECT_THROW(sharded.weights_host(), Error);
        },
        /*writes=*/false);
    std::vector<float> next = before;
    for (float& x : next) x *= 0.5f;
    units.whole([&] { sharded.set_weights(next.data()); }, /*writes=*/true);
    units.whole(
        [&] {
          EXPECT_EQ(sharded.master().flat.device, offload ? Device::CPU : Device::CUDA);
          EXPECT_TRUE(sharded.weights_host() == next);
        },
        /*writes=*/true);
    EXPECT_TRUE(to_host_f32(units.shard()) == next) << "tied " << tied << ", offload " << offload;
    // Built without weights on the GPU: the shards come from the source (the fp32 one staged through
    // the host, the bf16 one rounded from it), and the log-probs are the plain model's.
    model::Transformer empty(tiny(tied), Device::CUDA, true, std::nullopt,
                             offload ? model::MasterPlace::Host : model::MasterPlace::Device, /*allocate=*/false);
    optim::ShardedWeights born(empty, *one, {empty.plan().total}, 0,
                               model::random_weights(empty.config(), 9, model::kInitStd));
    model::TrainState e;
    e.weight_units = &born;
    EXPECT_TRUE(to_host_f32(e.forward(empty, b)) == la) << "tied " << tied << ", offload " << offload;
    EXPECT_TRUE(to_host_f32(born.shard()) == before);
  }
}
