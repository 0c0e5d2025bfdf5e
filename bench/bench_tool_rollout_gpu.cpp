// GPU throughput of multi-turn tool rollouts (rollout/turns.h): a random Qwen2.5 model (bf16), E
// episodes in flight at once (one KV-cache slot each), each a prompt of --prompt-len tokens and
// up to --turns tool calls. A random model writes no code, so a turn ends after --turn-len model
// tokens; the call then runs on the engine's worker threads while the GPU keeps decoding the other
// episodes: a real sandboxed Python program (--tool python, through env/python_tool.h) or a fixed
// latency (--tool sleep --tool-ms N); its observation is --obs-len tokens, prefilled on the same
// cache. Episodes end after their last observation's answer (--answer-len tokens) or at --new.
//
//   build/bench/bench_tool_rollout_gpu [--shape 0.5b] [--episodes 256] [--prompt-len 128]
//       [--turns 3] [--turn-len 128] [--obs-len 32] [--answer-len 64] [--new 1024]
//       [--tool python|sleep] [--tool-ms 50] [--threads 16] [--sync-every 16]
// Prints one JSON line: episodes/s, tokens/s, the GPU busy share (prefill + decode time over the
// wall time of the generate call; the rest is host work and waiting for tools with nothing to
// decode: tool_wait_s), turns and observation tokens.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/rng.h"
#include "base/timer.h"
#include "bench_gpu_util.h"
#include "flags.h"
#include "env/python_tool.h"
#include "model/config.h"
#include "model/transformer.h"
#include "reward/sandbox.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"

using namespace r1;

namespace {

struct Args {
  std::string shape = "0.5b", tool = "python";
  int episodes = 256, prompt_len = 128, turns = 3, turn_len = 128, obs_len = 32, answer_len = 64, new_tokens = 1024;
  int tool_ms = 50, threads = 16, sync_every = 16;
};

const bench::Flags kFlags("bench_tool_rollout_gpu",
                          "[--shape 0.5b|1.5b|10m] [--episodes N] [--prompt-len N] [--turns N] [--turn-len N] "
                          "[--obs-len N] [--answer-len N] [--new N] [--tool python|sleep] [--tool-ms N] [--threads N] "
                          "[--sync-every N]");

Args parse(int argc, char** argv) {
  Args a;
  kFlags.read(argc, argv, {}, [&](const std::string& k, const std::string& v) {
    auto number = [&] { return int(kFlags.whole(k, v, 0, 1L << 30)); };
    if (k == "--shape") a.shape = kFlags.one_of(k, v, {"0.5b", "1.5b", "10m"});
    else if (k == "--tool") a.tool = kFlags.one_of(k, v, {"python", "sleep"});
    else if (k == "--episodes") a.episodes = number();
    else if (k == "--prompt-len") a.prompt_len = number();
    else if (k == "--turns") a.turns = number();
    else if (k == "--turn-len") a.turn_len = number();
    else if (k == "--obs-len") a.obs_len = number();
    else if (k == "--answer-len") a.answer_len = number();
    else if (k == "--new") a.new_tokens = number();
    else if (k == "--tool-ms") a.tool_ms = number();
    else if (k == "--threads") a.threads = number();
    else if (k == "--sync-every") a.sync_every = number();
    else return false;
    return true;
  });
  if (a.episodes < 1 || a.prompt_len < 1 || a.turn_len < 1 || a.threads < 1 || a.sync_every < 1)
    kFlags.fail("--episodes, --prompt-len, --turn-len, --threads, --sync-every must be >= 1");
  return a;
}

int run(const Args& a) {
  std::string why;
  if (!device_usable(Device::CUDA, &why)) {
    std::printf("bench_tool_rollout_gpu: no usable CUDA device (%s); nothing to measure\n", why.c_str());
    return 0;
  }
  const model::ModelConfig cfg = model::preset_config(a.shape == "10m" ? "10m" : "qwen2.5-" + a.shape);
  model::Transformer m(cfg, Device::CUDA, /*trainable=*/false);
  bench::init_uniform(m, 1);
  env::PythonToolOptions tool;
  tool.timeout_seconds = 5.0;
  // The sandbox's missing protections (if any) are reported, and the calls run with what there is.
  tool.allow_unsandboxed = true;
  const reward::SandboxSupport& support = reward::sandbox_support();

  Rng rng(3);
  std::vector<rollout::Request> reqs(size_t(a.episodes));
  for (int i = 0; i < a.episodes; ++i) {
    for (int t = 0; t < a.prompt_len; ++t) reqs[size_t(i)].prompt.push_back(int32_t(rng.next_u32() % 150000));
    reqs[size_t(i)].id = i;
  }
  std::atomic<int64_t> calls{0}, tool_errors{0};
  std::atomic<double> tool_seconds{0};
  rollout::GenerateParams gp;
  gp.sampling = {1.0f, 1.0f, 0, 42};
  gp.token_text = [](int32_t) { return std::string("x"); };  // one byte per token: a turn's length in tokens
  gp.turns.max_turns = a.turns;
  gp.turns.threads = a.threads;
  const int turn_len = a.turn_len;
  gp.turns.ends_turn = [turn_len](int64_t, int64_t, const std::string& text) { return int(text.size()) >= turn_len; };
  gp.turns.respond = [&](const rollout::Turn& t) {
    Timer timer;
    rollout::Observation ob;
    if (a.tool == "python") {
      const env::ToolRun r = env::run_python_tool(
          "s = 0\nfor i in range(20000):\n    s += i * i\nprint(s)\n", tool);
      tool_errors += r.error;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(a.tool_ms));
    }
    for (int k = 0; k < a.obs_len; ++k) ob.tokens.push_back(int32_t(1000 + (t.sample + k) % 1000));
    ++calls;
    double cur = tool_seconds.load();
    while (!tool_seconds.compare_exchange_weak(cur, cur + timer.seconds())) {
    }
    return ob;
  };
  const int context = a.prompt_len + a.new_tokens;
  rollout::Engine engine(m, {a.episodes, context, 8192, a.sync_every});
  {  // warm-up: graph captures and GEMM plans, a turn each
    rollout::GenerateParams w = gp;
    w.max_new_tokens = std::min(a.new_tokens, a.turn_len + a.obs_len + 2 * a.sync_every);
    engine.generate(reqs, w);
  }
  const rollout::GenerateStats s0 = engine.stats();
  const int64_t calls0 = calls.load();
  const double tool_s0 = tool_seconds.load();
  // The episode's budget: its turns, their observations and the final answer.
  gp.max_new_tokens = std::min(a.new_tokens, a.turns * (a.turn_len + a.obs_len) + a.answer_len);
  Timer t;
  const std::vector<rollout::Completion> outs = engine.generate(reqs, gp);
  const double seconds = t.seconds();
  const rollout::GenerateStats s1 = engine.stats();
  int64_t model_tokens = 0, all_tokens = 0, turns_done = 0;
  for (const auto& o : outs) {
    model_tokens += rollout::model_token_count(o);
    all_tokens += int64_t(o.tokens.size());
    turns_done += o.turns;
  }
  const double decode_s = s1.decode_seconds - s0.decode_seconds, prefill_s = s1.prefill_seconds - s0.prefill_seconds;
  nlohmann::json out = {{"bench", "r1-tool-rollout"},
                        {"shape", a.shape},
                        {"episodes", a.episodes},
                        {"prompt_len", a.prompt_len},
                        {"turns", a.turns},
                        {"turn_len", a.turn_len},
                        {"obs_len", a.obs_len},
                        {"max_new_tokens", gp.max_new_tokens},
                        {"tool", a.tool},
                        {"threads", a.threads},
                        {"seconds", seconds},
                        {"episodes_s", double(a.episodes) / seconds},
                        {"model_tok_s", double(model_tokens) / seconds},
                        {"gpu_busy_share", (decode_s + prefill_s) / seconds},
                        {"decode_s", decode_s},
                        {"prefill_s", prefill_s},
                        {"tool_wait_s", s1.tool_wait_seconds - s0.tool_wait_seconds},
                        {"tool_calls", calls.load() - calls0},
                        {"tool_errors", tool_errors.load()},
                        {"tool_call_mean_ms", 1e3 * (tool_seconds.load() - tool_s0) / std::max<double>(1, double(calls.load() - calls0))},
                        {"turns_per_episode", double(turns_done) / a.episodes},
                        {"model_tokens", model_tokens},
                        {"observation_tokens", all_tokens - model_tokens},
                        {"host_syncs", s1.host_syncs - s0.host_syncs},
                        {"sandbox_missing", support.missing},
                        {"gpu", bench::gpu_name()}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  return bench::run_reporting_errors("bench_tool_rollout_gpu",
                                     nlohmann::json{{"bench", "r1-tool-rollout"}, {"shape", a.shape}, {"episodes", a.episodes}},
                                     [&] { return run(a); });
}
