// rollout.exact_logprobs on the GPU (issue 20; kernels/invariance.h): with the batch-invariant
// forward on, the bf16 GEMMs' rows, the decode attention against the training forward's, and a
// whole rollout against the trainer give the same bits. Each test also prints what the same
// comparison gives with the mode off, to show it sees the mode. Skips without a usable GPU.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "base/bf16.h"
#include "base/rng.h"
#include "exact_util.h"
#include "kernels/invariance.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "model/train_state.h"
#include "model/transformer.h"
#include "require_gpu.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "test_util.h"

#ifdef R1_HAVE_CUDA
#include "kernels/cuda/cuda_ops.h"
#endif

using namespace r1;

namespace {

std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = scale * rng.normal();
  return v;
}

// A device tensor of `dt` holding v (rounded to bf16 when dt is bf16).
Tensor device(Arena& a, DType dt, const std::vector<float>& v, std::initializer_list<int64_t> dims) {
  Tensor t = a.alloc(dt, dims);
  copy_from_host_f32(t, v.data());
  return t;
}

// The raw bytes of a device tensor.
std::vector<uint8_t> bytes(const Tensor& t) {
  std::vector<uint8_t> b(size_t(t.numel()) * dtype_size(t.dtype));
  devmem::copy(b.data(), Device::CPU, t.data, t.device, b.size());
  return b;
}

bool same_row(const std::vector<uint8_t>& a, int64_t ra, const std::vector<uint8_t>& b, int64_t rb, size_t row_bytes) {
  return std::memcmp(a.data() + size_t(ra) * row_bytes, b.data() + size_t(rb) * row_bytes, row_bytes) == 0;
}

// Rows of an (M, N) linear that differ from the same row computed alone, over M and rows.
int64_t linear_row_differences(int64_t N, int64_t K, DType out_dt) {
  Arena a(0, Device::CUDA);
  constexpr int64_t kRows = 4100;  // up to a training micro-batch's rows
  const std::vector<float> A = randn(kRows * K, 1), W = randn(N * K, 2, 1.0f / std::sqrt(float(K)));
  const Tensor x = device(a, DType::BF16, A, {kRows, K}), w = device(a, DType::BF16, W, {N, K});
  const size_t row_bytes = size_t(N) * dtype_size(out_dt);
  int64_t differ = 0;
  for (int64_t M : {2, 3, 7, 16, 17, 33, 64, 100, 128, 257, 300, 1024, 4100}) {
    Tensor out = a.alloc(out_dt, {M, N});
    ops::linear_forward(out, x.rows(0, M), w, {});
    const std::vector<uint8_t> all = bytes(out);
    for (int64_t r : {int64_t(0), M / 2, M - 1}) {
      Tensor one = a.alloc(out_dt, {1, N});
      ops::linear_forward(one, x.rows(r, r + 1), w, {});
      differ += same_row(all, r, bytes(one), 0, row_bytes) ? 0 : 1;
    }
  }
  return differ;
}

}  // namespace

// The bf16 products of a forward (every projection, and the f32 logits of the head): a row is the
// same bits for any number of rows beside it, at Qwen2.5-0.5B/1.5B widths.
TEST(CudaExact, LinearRowsAreTheSameBitsInAnyBatch) {
  REQUIRE_GPU();
  struct Shape {
    int64_t N, K;
    DType out;
  };
  for (const Shape s : {Shape{896, 896, DType::BF16}, Shape{4864, 896, DType::BF16}, Shape{896, 4864, DType::BF16},
                        Shape{1536, 8960, DType::BF16}, Shape{4096, 896, DType::F32}, Shape{259, 256, DType::F32}}) {
    int64_t off = 0, on = 0, per_shape = 0, small_ref = 0;
    {
      ops::BatchInvariantScope mode(false);
      off = linear_row_differences(s.N, s.K, s.out);
    }
    {
      ops::BatchInvariantScope mode(true);
      on = linear_row_differences(s.N, s.K, s.out);
#ifdef R1_HAVE_CUDA
      cuda::set_invariant_gemm_policy(0);  // the best algorithm for each M, the alternative
      per_shape = linear_row_differences(s.N, s.K, s.out);
      cuda::set_invariant_gemm_policy(64);  // one algorithm for every M, chosen at decode's rows
      small_ref = linear_row_differences(s.N, s.K, s.out);
      cuda::set_invariant_gemm_policy(cuda::kInvariantGemmRows);
#endif
    }
    std::printf("[ EXACT ] linear N %lld K %lld -> %s: rows differing from the row alone (of 39): off %lld, "
                "on %lld, on with each M's own algorithm %lld, on with the algorithm of 64 rows %lld\n",
                static_cast<long long>(s.N), static_cast<long long>(s.K), dtype_name(s.out),
                static_cast<long long>(off), static_cast<long long>(on), static_cast<long long>(per_shape),
                static_cast<long long>(small_ref));
    EXPECT_EQ(on, 0) << "N " << s.N << " K " << s.K;
    EXPECT_EQ(small_ref, 0) << "N " << s.N << " K " << s.K << " (algorithm of 64 rows)";
  }
}

// The decode attention over the paged cache against the training forward (flash) on the same q, k
// and v: every token of every sequence decoded (all at once, and each sequence's tokens alone) is
// the training forward's row, bit for bit, for GQA groups of 7 and 8 and MHA, head dims 64 and 128.
TEST(CudaExact, DecodeAttentionIsTheTrainingForwardsBits) {
  REQUIRE_GPU();
  ops::BatchInvariantScope mode(true);
  for (const bool split : {false, true}) {  // one pass, and the fixed key splits
#ifdef R1_HAVE_CUDA
  cuda::set_exact_attention_split(split);
#endif
  struct Heads {
    int64_t NH, NKV, HD;
  };
  const std::vector<int> lens = {1, 17, 64, 65, 200, 700};
  int64_t T = 0;
  std::vector<int32_t> cu = {0};
  for (int l : lens) cu.push_back(int32_t(T += l));
  for (const Heads h : {Heads{14, 2, 64}, Heads{16, 2, 128}, Heads{8, 8, 128}, Heads{12, 2, 128}}) {
    Arena a(0, Device::CUDA);
    const std::vector<float> q = randn(T * h.NH * h.HD, 3), k = randn(T * h.NKV * h.HD, 4), v = randn(T * h.NKV * h.HD, 5);
    const Tensor tq = device(a, DType::BF16, q, {T, h.NH, h.HD}), tk = device(a, DType::BF16, k, {T, h.NKV, h.HD}),
                 tv = device(a, DType::BF16, v, {T, h.NKV, h.HD});
    const float scale = 1.0f / std::sqrt(float(h.HD));
    Tensor train = a.alloc(DType::BF16, {T, h.NH, h.HD}), lse = a.alloc_f32({T, h.NH});
    ops::attention_forward(train, lse, tq, tk, tv, upload_i32(a, cu), scale);
    const std::vector<uint8_t> want = bytes(train);
    // The paged cache: blocks of 16 rows, each sequence's blocks in reverse order (not contiguous).
    const int64_t BS = 16, MB = (700 + BS - 1) / BS, S = int64_t(lens.size()), NB = S * MB;
    Tensor kc = a.alloc(DType::BF16, {NB, BS, h.NKV, h.HD}), vc = a.alloc(DType::BF16, {NB, BS, h.NKV, h.HD});
    ops::zero(kc);
    ops::zero(vc);
    std::vector<int32_t> table(size_t(S * MB)), slots, pos;
    for (int64_t s = 0; s < S; ++s)
      for (int64_t j = 0; j < MB; ++j) table[size_t(s * MB + j)] = int32_t(s * MB + (MB - 1 - j));
    for (int64_t s = 0; s < S; ++s)
      for (int p = 0; p < lens[size_t(s)]; ++p) slots.push_back(int32_t(s)), pos.push_back(p);
    const Tensor tt = upload_i32(a, table).reshape({S, MB}), ts = upload_i32(a, slots), tp = upload_i32(a, pos);
    ops::kv_cache_write(kc, vc, tk, tv, tt, ts, tp);
    Tensor dec = a.alloc(DType::BF16, {T, h.NH, h.HD});
    const int64_t ws = ops::attention_cached_workspace(T, h.NH, h.HD, MB * BS);
    const Tensor work = ws > 0 ? a.alloc_f32({ws}) : Tensor();
    ops::attention_cached(dec, tq, kc, vc, tt, ts, tp, scale, work);
    const std::vector<uint8_t> got = bytes(dec);
    const size_t row = size_t(h.NH * h.HD) * 2;
    int64_t differ = 0;
    for (int64_t t = 0; t < T; ++t) differ += same_row(got, t, want, t, row) ? 0 : 1;
    EXPECT_EQ(differ, 0) << "NH " << h.NH << " NKV " << h.NKV << " HD " << h.HD;
    // One sequence's last token alone.
    const int64_t last = T - 1;
    Tensor one = a.alloc(DType::BF16, {1, h.NH, h.HD});
    ops::attention_cached(one, tq.rows(last, T), kc, vc, tt, ts.rows(last, T), tp.rows(last, T),
                          scale, work);
    EXPECT_TRUE(same_row(bytes(one), 0, want, last, row));
    std::printf("[ EXACT ] decode vs training attention%s NH %lld NKV %lld HD %lld: %lld of %lld rows differ\n",
                split ? " (fixed splits)" : "", static_cast<long long>(h.NH), static_cast<long long>(h.NKV),
                static_cast<long long>(h.HD), static_cast<long long>(differ), static_cast<long long>(T));
  }
  }
#ifdef R1_HAVE_CUDA
  cuda::set_exact_attention_split(false);
#endif
}

namespace {

model::ModelConfig small_qwen2() {
  model::ModelConfig c = model::preset_config("tiny", "qwen2");
  for (auto [k, v] : std::vector<std::pair<const char*, const char*>>{{"hidden_size", "256"},
                                                                     {"intermediate_size", "704"},
                                                                     {"num_attention_heads", "4"},
                                                                     {"num_key_value_heads", "2"},
                                                                     {"num_hidden_layers", "2"},
                                                                     {"vocab_size", "5000"}})
    model::override_config(c, k, v);
  return c;
}

test::ExactGap rollout_vs_trainer(const model::Transformer& m, bool exact) {
  ops::BatchInvariantScope mode(exact);
  rollout::GenerateParams gp;
  gp.sampling.temperature = 0.8f;
  gp.sampling.seed = 7;
  gp.max_new_tokens = 48;
  gp.exact_logprobs = exact;
  return test::sampler_vs_trainer(m, test::exact_requests(16, 4, 40, 5000, 5), gp, 128, false);
}

}  // namespace

// The test on the GPU: 64 sequences decoded together, each prompt's samples decoded alone,
// and the trainer's bf16 forward of all 64 packed give the same log-prob bits.
TEST(CudaExact, ASequenceAloneInABatchAndInTrainingIsTheSameBits) {
  REQUIRE_GPU();
  model::Transformer m(small_qwen2(), Device::CUDA, false, DType::BF16);
  m.init_random(3, 0.05f);
  const test::ExactGap off = rollout_vs_trainer(m, false);
  const test::ExactGap on = rollout_vs_trainer(m, true);
#ifdef R1_HAVE_CUDA
  cuda::set_exact_attention_split(true);
  const test::ExactGap split = rollout_vs_trainer(m, true);
  cuda::set_exact_attention_split(false);
  std::printf("[ EXACT ] ... with the attention's fixed key splits: %lld, %lld, %.3g\n",
              static_cast<long long>(split.batch), static_cast<long long>(split.packed), split.max_gap);
  EXPECT_EQ(split.batch, 0);
  EXPECT_EQ(split.packed, 0);
#endif
  std::printf("[ EXACT ] GPU rollout vs trainer over %lld tokens: off: %lld/64 sequences differ alone vs batch, "
              "%lld/64 sampler vs trainer, max |gap| %.3g; on: %lld, %lld, %.3g\n",
              static_cast<long long>(on.tokens), static_cast<long long>(off.batch), static_cast<long long>(off.packed),
              off.max_gap, static_cast<long long>(on.batch), static_cast<long long>(on.packed), on.max_gap);
  EXPECT_EQ(on.batch, 0);
  EXPECT_EQ(on.packed, 0);
  EXPECT_EQ(on.max_gap, 0.0);
  EXPECT_GT(on.tokens, 64 * 10);
}

// r1 grpo on the GPU with rollout.exact_logprobs and pi_old from the sampler: the first update's
// gap is 0.0 and no token clips, step after step.
TEST(CudaExact, GrpoFirstUpdateRatiosAreExactlyOne) {
  REQUIRE_GPU();
  test::TempDir dir;
  const auto r = test::run_r1("grpo " + test::source_path("recipes/tiny_byte_gsm8k.yaml") + " data.path=" +
                              test::source_path("data/gsm8k_train.jsonl") + " run.dir=" + dir.path() +
                              " run.name=x device=cuda train.steps=3 rollout.exact_logprobs=true"
                              // head dim 64: the tensor-core attention the exact forward takes (tiny's is 16)
                              " 'model.init_overrides=[hidden_size=256,num_attention_heads=4]'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = test::read_lines(dir.file("x/metrics.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  for (const std::string& line : lines) {
    const nlohmann::json j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("logp_gap/max")) << line;
    EXPECT_EQ(j["logp_gap/max"].get<double>(), 0.0) << line;
    EXPECT_EQ(j["clip_fraction_first"].get<double>(), 0.0) << line;
  }
}
