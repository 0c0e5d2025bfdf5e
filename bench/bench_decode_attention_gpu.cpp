// A decode step's attention alone: for each preset's heads, R sequences that each attend K keys of
// the paged KV cache (position K - 1), the launch a decode step runs per layer
// (cuda::rope_qkv_attention_cached: the RoPE of q and k, the cache row's write and the tensor-core
// attention in one kernel). Its time per launch against K splits it into what grows with the keys
// (their bytes) and what does not (the fixed cost per launch), the part bench_rollout_gpu's trace
// cannot separate.
//
//   bench_decode_attention_gpu [--shape qwen2.5-0.5b,...] [--rows 64,256] [--keys 1,128,256,640,1152,2176]
//                              [--rope fused|none] [--splits S] [--cache cold|warm] [--with-qkv] [--stamps]
//
// --rope none: the attention of queries already rotated (cuda::attention_cached), no RoPE and no
//   cache write in it: what the fused prologue costs is the difference.
// --splits S: the key splits fixed at S (cuda::set_decode_attention_splits; default 0, the rule).
// --cache cold (default): the launches cycle through copies of the cache (each its own K and V
//   pool and block table) worth at least 512 MiB (at most 1,024 copies), so no launch finds its
//   keys in L2, as a decode step's layers do not. warm: one copy, read again by every launch (in L2 where it fits).
// --with-qkv: each launch after the layer's packed q/k/v product (cuBLASLt, with its bias) that
//   writes the rows it reads, as a decode step runs them.
// --stamps: one more round with the kernel's phase stamps (cuda::set_decode_attention_stamps),
//   summarised per launch: the blocks' entry spread, prologue, key loop, merge, and the whole span.
//
// Each block table is a random permutation of the pool's blocks (a running engine's sequences
// hold blocks scattered over the pool). The caches hold one repeated bf16 value (0x3C3C, 0.0115):
// the time does not depend on the values.
//
// One JSON line per (shape, rows, keys), "r1-decode-attention": µs per launch by the host clock
// over a CUDA graph of launches (median of 5 replays), and by CUPTI where built with it (the
// attention kernel, the split merge, the q/k/v product, the gaps between them); kv_bytes (the
// keys and values the launch must read), bytes_us (those bytes at the measured copy bandwidth,
// bench_rollout_gpu's roofline denominator), kv_frac = bytes_us / the attention kernel's µs.
// --stamps adds "r1-decode-attention-stamps" lines.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "bench_gpu_util.h"
#include "flags.h"
#include "kernel_trace.h"
#include "model/config.h"

#ifdef R1_HAVE_CUDA
#include <cuda_runtime.h>

#include "device/graph.h"
#include "kernels/cuda/cuda_buffer.h"
#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/cuda_ops.h"
#endif

using namespace r1;

namespace {

struct Args {
  std::vector<std::string> shapes = bench::kDecodeShapes;
  std::vector<long> rows = {64, 256};
  std::vector<long> keys = {1, 128, 256, 640, 1152, 2176};
  std::string rope = "fused";
  long splits = 0;
  std::string cache = "cold";
  bool with_qkv = false, stamps = false;
};

const bench::Flags kFlags("bench_decode_attention_gpu",
                          "[--shape a,b] [--rows 64,256] [--keys 1,640] [--rope fused|none] [--splits S] "
                          "[--cache cold|warm] [--with-qkv] [--stamps]");

Args parse(int argc, char** argv) {
  Args a;
  kFlags.read(argc, argv, {"--with-qkv", "--stamps"}, [&](const std::string& k, const std::string& v) {
    if (k == "--with-qkv") a.with_qkv = true;
    else if (k == "--stamps") a.stamps = true;
    else if (k == "--shape") a.shapes = kFlags.list(k, v);
    else if (k == "--rows") a.rows = kFlags.wholes(k, v, 1, 4096);
    else if (k == "--keys") a.keys = kFlags.wholes(k, v, 1, 1 << 20);
    else if (k == "--splits") a.splits = kFlags.whole(k, v, 0, 64);
    else if (k == "--rope") a.rope = kFlags.one_of(k, v, {"fused", "none"});
    else if (k == "--cache") a.cache = kFlags.one_of(k, v, {"cold", "warm"});
    else return false;
    return true;
  });
  return a;
}

#ifdef R1_HAVE_CUDA

bf16* bf(const Tensor& t) { return static_cast<bf16*>(t.data); }

// One layer's cache: K and V pools of `blocks` blocks and a block table of rows x mb.
struct Layer {
  Tensor k, v, table;
};

// The stamps of one launch, summarised: µs by the SM clock (cycles over the blocks' own
// globaltimer spans give its rate).
nlohmann::json stamp_summary(const std::vector<unsigned long long>& w, int64_t blocks) {
  const int kW = cuda::kDecodeStampWords;
  std::vector<double> rate, prologue, loop, merge, total, warp_loop, entry_ns, exit_ns, tiles;
  std::vector<int> per_sm;
  for (int64_t b = 0; b < blocks; ++b) {
    const unsigned long long* s = w.data() + b * kW;
    const double cycles = double(s[7] - s[0]), ns = double(s[9] - s[8]);
    if (ns > 0) rate.push_back(cycles / ns);
    prologue.push_back(double(s[1] - s[0]));
    loop.push_back(double(s[6] - s[1]));
    merge.push_back(double(s[7] - s[6]));
    total.push_back(cycles);
    for (int q = 0; q < 4; ++q) warp_loop.push_back(double(s[2 + q]) - double(s[1]));
    entry_ns.push_back(double(s[8]));
    exit_ns.push_back(double(s[9]));
    tiles.push_back(double(s[11]));
    const size_t sm = size_t(s[10]);
    if (per_sm.size() <= sm) per_sm.resize(sm + 1, 0);
    per_sm[sm] += 1;
  }
  const double ghz = rate.empty() ? 0.0 : bench::median(rate);  // cycles per ns
  auto us = [&](double cycles) { return ghz > 0 ? cycles / ghz * 1e-3 : 0.0; };
  auto max_of = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); };
  const double first_entry = *std::min_element(entry_ns.begin(), entry_ns.end());
  return {{"sm_ghz", ghz},
          {"blocks", blocks},
          {"most_blocks_on_one_sm", *std::max_element(per_sm.begin(), per_sm.end())},
          {"span_us", (max_of(exit_ns) - first_entry) * 1e-3},
          {"entry_spread_us", (max_of(entry_ns) - first_entry) * 1e-3},
          {"block_us_median", us(bench::median(total))},
          {"block_us_max", us(max_of(total))},
          {"prologue_us_median", us(bench::median(prologue))},
          {"prologue_us_max", us(max_of(prologue))},
          {"loop_us_median", us(bench::median(loop))},
          {"loop_us_max", us(max_of(loop))},
          {"warp_loop_us_median", us(bench::median(warp_loop))},
          {"merge_us_median", us(bench::median(merge))},
          {"merge_us_max", us(max_of(merge))},
          {"tiles_per_block_median", bench::median(tiles)},
          {"loop_us_per_warp_tile", bench::median(tiles) > 0 ? us(bench::median(loop)) / (bench::median(tiles) / 4)
                                                             : 0.0}};
}

int run(const Args& a) {
  std::string why;
  if (!device_usable(Device::CUDA, &why)) {
    std::printf("bench_decode_attention_gpu: no usable CUDA device (%s); nothing to measure\n", why.c_str());
    return 0;
  }
  cuda::set_decode_attention_splits(a.splits);
  const double bw = bench::measured_bandwidth();
  for (const std::string& shape : a.shapes) {
    const model::ModelConfig c = model::preset_config(shape);
    if (c.is_mla()) kFlags.fail("--shape " + shape + ": MLA's latent attention is not this kernel");
    const int64_t NH = c.num_attention_heads, NKV = c.num_key_value_heads, HD = c.head_dim, C = c.hidden_size;
    const int64_t W = (NH + 2 * NKV) * HD, BS = 16;
    const std::vector<float> inv_freq = c.rope_inv_freq();
    if (int64_t(inv_freq.size()) != HD / 2) kFlags.fail("--shape " + shape + ": RoPE over part of the head dims");
    for (const long R : a.rows)
      for (const long K : a.keys) {
        const int64_t MB = (K + BS - 1) / BS, blocks = R * MB;
        const double kv_bytes = double(R) * double(K) * double(NKV) * double(2 * HD) * 2.0;
        const double pool_bytes = double(blocks * BS) * double(NKV) * double(2 * HD) * 2.0;
        const int copies = a.cache == "warm" ? 1 : int(std::clamp<double>(std::ceil(double(512 << 20) / pool_bytes), 2, 1024));
        const int launches = std::max(copies, 32);
        Arena arena(0, Device::CUDA);
        std::vector<Layer> layers(static_cast<size_t>(copies));
        Rng rng(17);
        for (int i = 0; i < copies; ++i) {
          Layer& l = layers[size_t(i)];
          l.k = arena.alloc(DType::BF16, {blocks * BS, NKV, HD});
          l.v = arena.alloc(DType::BF16, {blocks * BS, NKV, HD});
          CUDA_CHECK(cudaMemset(l.k.data, 0x3C, size_t(l.k.numel()) * 2));
          CUDA_CHECK(cudaMemset(l.v.data, 0x3C, size_t(l.v.numel()) * 2));
          std::vector<int32_t> perm(static_cast<size_t>(blocks));
          std::iota(perm.begin(), perm.end(), 0);
          for (size_t j = perm.size(); j > 1; --j) std::swap(perm[j - 1], perm[size_t(rng.next_u32() % j)]);
          l.table = arena.alloc(DType::I32, {R, MB});
          copy_from_host(l.table, perm.data());
        }
        std::vector<int32_t> slots(static_cast<size_t>(R)), pos(static_cast<size_t>(R), int32_t(K - 1));
        std::iota(slots.begin(), slots.end(), 0);
        const Tensor dslots = arena.alloc(DType::I32, {R}), dpos = arena.alloc(DType::I32, {R});
        copy_from_host(dslots, slots.data());
        copy_from_host(dpos, pos.data());
        const Tensor dinv = arena.alloc(DType::F32, {HD / 2});
        copy_from_host_f32(dinv, inv_freq.data());
        const Tensor qkv = bench::random_tensor(arena, DType::BF16, {R, W}, 5, 1.0f);
        const Tensor q = bench::random_tensor(arena, DType::BF16, {R, NH, HD}, 6, 1.0f);
        const Tensor out = arena.alloc(DType::BF16, {R, NH, HD});
        // The split partials: the rule's, or --splits S's (S * (o + lse) per query row).
        const int64_t ws_floats =
            std::max(cuda::attention_cached_workspace(R, NH, HD, MB * BS), int64_t(a.splits) * R * NH * (HD + 1));
        const Tensor ws = ws_floats > 0 ? arena.alloc(DType::F32, {ws_floats}) : Tensor();
        // --with-qkv: the packed q/k/v weights and bias, one per copy, and the layer's input rows.
        std::vector<Tensor> wq, bq;
        for (int i = 0; a.with_qkv && i < copies; ++i) {
          wq.push_back(bench::random_tensor(arena, DType::BF16, {W, C}, 100 + uint64_t(i), 0.02f));
          bq.push_back(bench::random_tensor(arena, DType::BF16, {W}, 200 + uint64_t(i), 0.02f));
        }
        const Tensor x = bench::random_tensor(arena, DType::BF16, {R, C}, 7, 1.0f);
        const float scale = 1.0f / std::sqrt(float(HD));
        auto launch = [&](int i) {
          const Layer& l = layers[size_t(i)];
          const cuda::PagedCache pc{static_cast<const int32_t*>(l.table.data), BS, MB, NKV, HD, HD};
          if (a.with_qkv)
            cuda::gemm(false, true, R, W, C, 1.0f, bf(x), C, bf(wq[size_t(i)]), C, 0.0f, bf(qkv), W,
                       bf(bq[size_t(i)]), cuda::GemmOrder::Any, nullptr);
          float* wsp = ws_floats > 0 ? static_cast<float*>(ws.data) : nullptr;
          if (a.rope == "fused") {
            if (!cuda::rope_qkv_attention_cached(bf(out), bf(qkv), W, bf(l.k), bf(l.v), pc, dslots.i32(), dpos.i32(),
                                                 dinv.f32(), R, NH, scale, wsp, ws_floats))
              throw Error("rope_qkv_attention_cached declined the shape");
          } else {
            cuda::attention_cached(bf(out), bf(q), bf(l.k), bf(l.v), pc, dslots.i32(), dpos.i32(), R, NH, scale, wsp,
                                   ws_floats);
          }
        };
        for (int i = 0; i < copies; ++i) launch(i);  // eager first: plans, kernel attributes
        bench::synchronize();
        cuda::Graph g;
        g.begin_capture();
        for (int i = 0; i < launches; ++i) launch(i % copies);
        g.end_capture();
        g.replay();
        bench::synchronize();
        std::vector<double> wall;
        for (int r = 0; r < 5; ++r) {
          const auto t0 = std::chrono::steady_clock::now();
          g.replay();
          bench::synchronize();
          wall.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
                         launches);
        }
        nlohmann::json j = {{"bench", "r1-decode-attention"},
                            {"shape", shape},
                            {"rows", R},
                            {"keys", K},
                            {"heads", NH},
                            {"kv_heads", NKV},
                            {"head_dim", HD},
                            {"rope", a.rope},
                            {"splits", a.splits},
                            {"cache", a.cache},
                            {"copies", copies},
                            {"with_qkv", a.with_qkv},
                            {"us", bench::median(wall)},
                            {"kv_bytes", kv_bytes},
                            {"bytes_us", kv_bytes / bw * 1e6},
                            {"bandwidth_gbs", bw / 1e9},
                            {"gpu", bench::gpu_name()}};
#ifdef R1_HAVE_CUPTI
        {
          std::vector<bench::KernelRecord> ks;
          {
            bench::KernelTrace trace;
            g.replay();
            bench::synchronize();
            ks = trace.stop();
          }
          const nlohmann::json sum = bench::graph_kernel_summary(ks, double(launches));
          double attn = 0, merge = 0, other = 0;  // µs a launch
          for (const nlohmann::json& k : sum["kernels"]) {
            const std::string name = k["kernel"];
            const bool attention = name.find("decode_mma_kernel") != std::string::npos ||
                                   name.find("decode_attention_kernel") != std::string::npos;
            (attention ? attn : name.find("merge") != std::string::npos ? merge : other) += double(k["us_per_step"]);
          }
          j["attention_us"] = attn;
          j["merge_us"] = merge;
          j["qkv_us"] = other;
          j["gap_us"] = sum["gap_us_per_step"];
          j["kv_frac"] = attn > 0 ? kv_bytes / bw * 1e6 / attn : 0.0;
          j["kernels"] = sum["kernels"];
        }
#endif
        std::printf("%s\n", j.dump().c_str());
        std::fflush(stdout);
        if (a.stamps) {
          const int64_t HG = (NH / NKV + 15) / 16, grid_max = R * NKV * HG * 64;
          const size_t n_words = size_t(grid_max * cuda::kDecodeStampWords);
          const cuda::CudaBuffer buf(n_words * 8);
          auto* st = static_cast<unsigned long long*>(buf.data());
          CUDA_CHECK(cudaMemset(st, 0, n_words * 8));
          cuda::set_decode_attention_stamps(st, int64_t(n_words));
          try {
            for (int i = 0; i < copies; ++i) launch(i);  // the last one's words stay
          } catch (...) {
            cuda::set_decode_attention_stamps(nullptr, 0);
            throw;
          }
          cuda::set_decode_attention_stamps(nullptr, 0);
          bench::synchronize();
          std::vector<unsigned long long> words(n_words);
          CUDA_CHECK(cudaMemcpy(words.data(), st, n_words * 8, cudaMemcpyDeviceToHost));
          int64_t used = 0;  // the launch's blocks: those whose exit stamp is set
          while (used < grid_max && words[size_t(used * cuda::kDecodeStampWords + 9)] != 0) ++used;
          nlohmann::json s = {{"bench", "r1-decode-attention-stamps"}, {"shape", shape}, {"rows", R},
                              {"keys", K}, {"rope", a.rope}, {"splits", a.splits}, {"cache", a.cache},
                              {"gpu", bench::gpu_name()}};
          if (used == 0) throw Error("--stamps: the kernel wrote no stamps (not the tensor-core kernel?)");
          s.update(stamp_summary(words, used));
          s["splits_run"] = used / (R * NKV * HG);  // the key splits the launch ran (blocks per head group)
          std::printf("%s\n", s.dump().c_str());
          std::fflush(stdout);
        }
      }
  }
  cuda::set_decode_attention_splits(0);
  return 0;
}

#else
int run(const Args&) {
  std::fprintf(stderr, "bench_decode_attention_gpu: built without CUDA\n");
  return 1;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  return bench::run_reporting_errors("bench_decode_attention_gpu", {{"bench", "r1-decode-attention"}},
                                     [&] { return run(a); });
}
