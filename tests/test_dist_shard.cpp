// Sharding levels (parallel.shard, optim/data_parallel.h) on CPU ranks under mpirun: none,
// optimizer (ZeRO-1) and gradients (ZeRO-2) give bitwise the same weights, optimizer state and
// gradient norms at 2 and 3 ranks, and each level holds the bytes it should between steps.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>

#include "base/fs.h"
#include "model/checkpoint.h"
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
      {"parallel.shard=everything", "recipe key 'parallel.shard' must be none, optimizer or gradients (got 'everything')"},
      {"parallel.shard=full", "recipe key 'parallel.shard': full (ZeRO-3"},
      {"parallel.zero1=true parallel.shard=gradients", "'parallel.shard: gradients' disagree"},
  };
  for (const auto& [args, message] : cases) {
    auto r = test::run_r1(sft_args(dir, "bad") + " " + args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
  }
}
