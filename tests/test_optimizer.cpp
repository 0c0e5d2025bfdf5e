// AdamW, gradient clipping and LR schedules (src/train/optimizer.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "optim/optimizer.h"

using r1::Tensor;
using r1::optim::AdamW;
using r1::optim::AdamWConfig;
using r1::optim::LrSchedule;
using r1::optim::ParamSlice;

namespace {

std::string temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("r1_test_optimizer_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

struct TempDirCleanup {
  ~TempDirCleanup() {
    std::error_code ec;
    std::filesystem::remove_all(
        std::filesystem::temp_directory_path() / ("r1_test_optimizer_" + std::to_string(getpid())), ec);
  }
};

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const r1::Error& e) {
    return e.what();
  }
  return "<no r1::Error thrown>";
}

// Deterministic gradient for parameter i at step t (1-based), of mixed sign and magnitude.
float grad_at(int i, int t) { return float(std::sin(0.7 * i + 1.3 * t) * (0.2 + 0.15 * i)); }

// torch.optim.AdamW (decoupled decay, bias-corrected moments), in double.
struct RefAdamW {
  std::vector<double> p, m, v;
  int t = 0;
  void step(const std::vector<float>& g, const std::vector<bool>& covered, const std::vector<bool>& decay,
            double lr, double scale, const AdamWConfig& c) {
    ++t;
    const double bc1 = 1.0 - std::pow(double(c.beta1), t), bc2 = 1.0 - std::pow(double(c.beta2), t);
    for (size_t i = 0; i < p.size(); ++i) {
      if (!covered[i]) continue;
      const double gi = double(g[i]) * scale;
      if (decay[i]) p[i] *= 1.0 - lr * c.weight_decay;
      m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
      v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
      const double denom = std::sqrt(v[i]) / std::sqrt(bc2) + c.eps;
      p[i] -= lr / bc1 * m[i] / denom;
    }
  }
};

}  // namespace

// Two slices (one decayed, one not) with an uncovered parameter between them, 3 steps with varying
// LR and a grad_scale, against the double-precision reference.
TEST(OptimizerAdamW, MatchesTorchReference) {
  const int n = 10;
  const std::vector<ParamSlice> slices = {{"w", 0, 6, true}, {"b", 7, 3, false}};
  AdamWConfig cfg;
  cfg.beta1 = 0.9f;
  cfg.beta2 = 0.95f;
  cfg.eps = 1e-3f;  // large enough that grad_scale (which Adam otherwise cancels) shows in the result
  cfg.weight_decay = 0.1f;
  AdamW opt(slices, cfg);

  std::vector<float> p(n), g(n);
  for (int i = 0; i < n; ++i) p[i] = 0.5f - 0.13f * float(i);
  RefAdamW ref{std::vector<double>(p.begin(), p.end()), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  std::vector<bool> covered(n, true), decay(n, false);
  covered[6] = false;
  for (int i = 0; i < 6; ++i) decay[i] = true;

  const float lrs[3] = {1e-2f, 2e-2f, 5e-3f};
  const float scale = 0.5f;
  for (int t = 1; t <= 3; ++t) {
    for (int i = 0; i < n; ++i) g[i] = grad_at(i, t);
    opt.step(Tensor::f32(p.data(), {n}), Tensor::f32(g.data(), {n}), lrs[t - 1], scale);
    ref.step(g, covered, decay, lrs[t - 1], scale, cfg);
    EXPECT_EQ(opt.steps_taken(), t);
    for (int i = 0; i < n; ++i)
      EXPECT_NEAR(p[i], ref.p[i], 2e-6 + 1e-6 * std::abs(ref.p[i])) << "param " << i << " step " << t;
  }
  EXPECT_EQ(p[6], 0.5f - 0.13f * 6.0f);  // not in any slice: untouched
  // Weight decay mattered: the decayed slice differs from an undecayed run.
  AdamWConfig nodecay = cfg;
  nodecay.weight_decay = 0.0f;
  AdamW opt2(slices, nodecay);
  std::vector<float> p2(n);
  for (int i = 0; i < n; ++i) p2[i] = 0.5f - 0.13f * float(i);
  for (int t = 1; t <= 3; ++t) {
    for (int i = 0; i < n; ++i) g[i] = grad_at(i, t);
    opt2.step(Tensor::f32(p2.data(), {n}), Tensor::f32(g.data(), {n}), lrs[t - 1], scale);
  }
  EXPECT_NE(p2[0], p[0]);
  for (int i = 7; i < n; ++i) EXPECT_EQ(p2[i], p[i]) << "undecayed slice must not depend on weight_decay";
}

// grad_scale multiplies the gradients before the moments: scale s on g equals scale 1 on s * g.
TEST(OptimizerAdamW, GradScaleIsApplied) {
  AdamWConfig cfg;
  cfg.eps = 1e-2f;
  const int n = 5;
  std::vector<float> pa(n, 1.0f), pb(n, 1.0f), pc(n, 1.0f), g(n), g_half(n);
  AdamW a({{"w", 0, n, true}}, cfg), b({{"w", 0, n, true}}, cfg), c({{"w", 0, n, true}}, cfg);
  for (int t = 1; t <= 3; ++t) {
    for (int i = 0; i < n; ++i) {
      g[i] = grad_at(i, t);
      g_half[i] = 0.5f * g[i];
    }
    a.step(Tensor::f32(pa.data(), {n}), Tensor::f32(g.data(), {n}), 1e-2f, 0.5f);
    b.step(Tensor::f32(pb.data(), {n}), Tensor::f32(g_half.data(), {n}), 1e-2f, 1.0f);
    c.step(Tensor::f32(pc.data(), {n}), Tensor::f32(g.data(), {n}), 1e-2f, 1.0f);
  }
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), sizeof(float) * n), 0);
  EXPECT_NE(std::memcmp(pa.data(), pc.data(), sizeof(float) * n), 0);
}

TEST(OptimizerAdamW, ValidatesShapesAndSlices) {
  std::vector<float> p(8, 1.0f), g(8, 0.1f);
  AdamW opt({{"embed", 0, 4, true}, {"lm_head", 4, 6, true}}, {});
  std::string e = error_of([&] { opt.step(Tensor::f32(p.data(), {8}), Tensor::f32(g.data(), {8}), 1e-3f); });
  EXPECT_NE(e.find("lm_head"), std::string::npos) << e;
  EXPECT_EQ(opt.steps_taken(), 0);

  AdamW ok({{"w", 0, 8, true}}, {});
  e = error_of([&] { ok.step(Tensor::f32(p.data(), {8}), Tensor::f32(g.data(), {7}), 1e-3f); });
  EXPECT_NE(e.find("numel"), std::string::npos) << e;

  e = error_of([] { AdamW bad({{"a", 0, 4, true}, {"b", 3, 2, true}}, {}); });
  EXPECT_NE(e.find("overlaps"), std::string::npos) << e;
  EXPECT_NE(e.find("'a'"), std::string::npos) << e;
  e = error_of([] { AdamW bad({{"neg", -1, 4, true}}, {}); });
  EXPECT_NE(e.find("neg"), std::string::npos) << e;
}

// Interrupt after 2 steps, save, load into a fresh optimizer: step 3 is bit-identical.
TEST(OptimizerAdamW, SaveLoadResumesBitExactly) {
  TempDirCleanup cleanup;
  const int n = 37;
  const std::vector<ParamSlice> slices = {{"a", 0, 30, true}, {"b", 30, 7, false}};
  AdamWConfig cfg;
  cfg.weight_decay = 0.05f;
  AdamW opt(slices, cfg);
  std::vector<float> p(n), g(n);
  for (int i = 0; i < n; ++i) p[i] = std::cos(0.3f * float(i));
  for (int t = 1; t <= 2; ++t) {
    for (int i = 0; i < n; ++i) g[i] = grad_at(i, t);
    opt.step(Tensor::f32(p.data(), {n}), Tensor::f32(g.data(), {n}), 3e-3f, 0.8f);
  }
  const std::string path = temp_path("adamw.safetensors");
  opt.save(path);
  std::vector<float> p_resumed = p;

  for (int i = 0; i < n; ++i) g[i] = grad_at(i, 3);
  opt.step(Tensor::f32(p.data(), {n}), Tensor::f32(g.data(), {n}), 3e-3f, 0.8f);

  AdamW resumed(slices, cfg);
  resumed.load(path);
  EXPECT_EQ(resumed.steps_taken(), 2);
  resumed.step(Tensor::f32(p_resumed.data(), {n}), Tensor::f32(g.data(), {n}), 3e-3f, 0.8f);
  EXPECT_EQ(resumed.steps_taken(), 3);
  EXPECT_EQ(std::memcmp(p.data(), p_resumed.data(), sizeof(float) * n), 0);

  // The file is a plain safetensors file with m and v of shape [N], f32.
  r1::model::SafetensorsReader reader(path);
  ASSERT_TRUE(reader.contains("m"));
  ASSERT_TRUE(reader.contains("v"));
  EXPECT_EQ(reader.info("m").dtype, r1::DType::F32);
  EXPECT_EQ(reader.info("v").shape, std::vector<int64_t>{n});

  // Loading into an optimizer of another size fails, naming the file, and changes nothing.
  AdamW other({{"x", 0, 5, true}}, cfg);
  std::string e = error_of([&] { other.load(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_EQ(other.steps_taken(), 0);
  e = error_of([&] { other.load(temp_path("missing.safetensors")); });
  EXPECT_NE(e.find("missing.safetensors"), std::string::npos) << e;
}

// The step count lives in the metadata as an exact integer, also beyond float's 2^24 range;
// missing or malformed counts are errors naming the file.
TEST(OptimizerAdamW, LoadStepFromMetadata) {
  TempDirCleanup cleanup;
  const std::string path = temp_path("adamw_steps.safetensors");
  const std::vector<float> m = {0.1f, 0.2f, 0.3f}, v = {0.01f, 0.02f, 0.03f};
  const std::vector<r1::model::NamedTensor> tensors = {{"m", {3}, m.data()}, {"v", {3}, v.data()}};
  r1::model::save_safetensors(path, tensors, r1::DType::F32, {{"format", "pt"}, {"step", "16777217"}});
  AdamW opt({{"w", 0, 3, true}}, {});
  opt.load(path);
  EXPECT_EQ(opt.steps_taken(), 16777217);

  AdamW fresh({{"w", 0, 3, true}}, {});
  for (const char* bad : {"abc", "-3", "12x", ""}) {
    r1::model::save_safetensors(path, tensors, r1::DType::F32, {{"format", "pt"}, {"step", bad}});
    std::string e = error_of([&] { fresh.load(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("step"), std::string::npos) << e;
  }
  r1::model::save_safetensors(path, tensors, r1::DType::F32, {{"format", "pt"}});
  std::string e = error_of([&] { fresh.load(path); });
  EXPECT_NE(e.find("step"), std::string::npos) << e;
  EXPECT_EQ(fresh.steps_taken(), 0);
}

// The flat layout keeps each attention's q, k and v weights together, then their biases (one decode
// product); a state saved in the older layout (each bias after its weight, no "layout" record) is
// read tensor by tensor into the new one, whole or as a shard.
TEST(OptimizerAdamW, StateOfTheOlderLayoutIsReadTensorByTensor) {
  TempDirCleanup cleanup;
  namespace model = r1::model;
  model::ModelConfig cfg = model::preset_config("tiny", "qwen2");
  ASSERT_TRUE(cfg.attention_bias);
  const std::vector<model::ParamSpec> now = model::param_specs(cfg), old = model::param_specs(cfg, 1);
  auto find = [](const std::vector<model::ParamSpec>& specs, const std::string& name) {
    for (const auto& s : specs)
      if (s.name == name) return s;
    ADD_FAILURE() << "no " << name;
    return model::ParamSpec{};
  };
  const std::string at = "model.layers.1.self_attn.";
  const model::ParamSpec qw = find(now, at + "q_proj.weight"), kw = find(now, at + "k_proj.weight"),
                         vw = find(now, at + "v_proj.weight"), qb = find(now, at + "q_proj.bias"),
                         kb = find(now, at + "k_proj.bias");
  EXPECT_EQ(kw.offset, qw.offset + qw.numel());  // weights adjacent, then the biases
  EXPECT_EQ(vw.offset + vw.numel(), qb.offset);
  EXPECT_EQ(kb.offset, qb.offset + qb.numel());
  EXPECT_EQ(find(old, at + "q_proj.bias").offset, find(old, at + "q_proj.weight").offset + qw.numel());
  const int64_t total = model::total_params(now);
  ASSERT_EQ(total, model::total_params(old));

  // Moments of the old layout whose every element names its tensor and index.
  std::vector<float> m(size_t(total), 0.0f), v(size_t(total), 0.0f);
  auto value = [](size_t k, int64_t j) { return float(k) * 4096.0f + float(j); };
  for (size_t k = 0; k < old.size(); ++k)
    for (int64_t j = 0; j < old[k].numel(); ++j) {
      m[size_t(old[k].offset + j)] = value(k, j);
      v[size_t(old[k].offset + j)] = -value(k, j);
    }
  const std::string path = temp_path("old_layout.safetensors");
  r1::model::save_safetensors(path, {{"m", {total}, m.data()}, {"v", {total}, v.data()}}, r1::DType::F32,
                              {{"format", "pt"}, {"step", "3"}});
  EXPECT_EQ(r1::optim::saved_layout_version(path), 1);
  const std::vector<model::FlatMove> moves = model::layout_moves(cfg, 1);
  ASSERT_FALSE(moves.empty());

  for (const int64_t begin : {int64_t(0), total / 3}) {  // the whole state, and a shard of it
    const int64_t n = begin == 0 ? total : total / 3;
    AdamW opt({{"shard", 0, n, true}}, {});
    opt.load(path, total, begin, moves);
    EXPECT_EQ(opt.steps_taken(), 3);
    const std::string again = temp_path("new_layout.safetensors");
    opt.save(again);
    EXPECT_EQ(r1::optim::saved_layout_version(again), r1::model::kParamLayoutVersion);
    r1::model::SafetensorsReader reader(again);
    const float* got_m = static_cast<const float*>(reader.info("m").data);
    const float* got_v = static_cast<const float*>(reader.info("v").data);
    int64_t wrong = 0, checked = 0;
    for (const model::ParamSpec& s : now) {
      size_t k = 0;
      while (old[k].name != s.name) ++k;
      for (int64_t j = 0; j < s.numel(); ++j) {
        const int64_t e = s.offset + j - begin;
        if (e < 0 || e >= n) continue;
        ++checked;
        wrong += got_m[e] != value(k, j) || got_v[e] != -value(k, j);
      }
    }
    EXPECT_EQ(wrong, 0) << "elements of the old layout not at their tensor's new place, shard at " << begin;
    EXPECT_GT(checked, n / 2);
  }

  model::ModelConfig no_bias = cfg;  // without biases the two layouts are one
  no_bias.attention_bias = false;
  EXPECT_TRUE(model::layout_moves(no_bias, 1).empty());
  std::string e = error_of([&] { model::layout_moves(cfg, 7); });
  EXPECT_NE(e.find("layout version 7"), std::string::npos) << e;
  for (const char* bad : {"7", "0", "two"}) {  // a newer layout, or no layout at all: refused, naming the file
    r1::model::save_safetensors(path, {{"m", {total}, m.data()}, {"v", {total}, v.data()}}, r1::DType::F32,
                                {{"format", "pt"}, {"step", "3"}, {"layout", bad}});
    e = error_of([&] { r1::optim::saved_layout_version(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("layout"), std::string::npos) << e;
  }
}

// 200 steps of AdamW on an ill-conditioned quadratic cut the loss by more than 99%.
TEST(OptimizerAdamW, MinimisesQuadratic) {
  const int n = 16;
  std::vector<float> x(n, 0.0f), g(n), a(n), c(n);
  for (int i = 0; i < n; ++i) {
    a[i] = 0.5f + 0.5f * float(i);  // curvatures 0.5 .. 8
    c[i] = std::sin(1.7f * float(i)) * 2.0f;
  }
  auto loss = [&] {
    double l = 0.0;
    for (int i = 0; i < n; ++i) l += 0.5 * a[i] * double(x[i] - c[i]) * double(x[i] - c[i]);
    return l;
  };
  AdamW opt({{"x", 0, n, false}}, {});
  const double l0 = loss();
  for (int t = 0; t < 200; ++t) {
    for (int i = 0; i < n; ++i) g[i] = a[i] * (x[i] - c[i]);
    opt.step(Tensor::f32(x.data(), {n}), Tensor::f32(g.data(), {n}), 0.05f);
  }
  EXPECT_LT(loss(), 0.01 * l0) << "initial " << l0 << " final " << loss();
}

TEST(OptimizerClip, ExactNormAndScale) {
  std::vector<float> g = {3.0f, 0.0f, -4.0f, 0.0f};
  auto r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {4}), 1.0);
  EXPECT_DOUBLE_EQ(r.norm, 5.0);
  EXPECT_FLOAT_EQ(r.scale, float(1.0 / (5.0 + 1e-6)));

  r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {4}), 2.5);
  EXPECT_FLOAT_EQ(r.scale, float(2.5 / (5.0 + 1e-6)));
}

TEST(OptimizerClip, BelowThresholdAndDisabled) {
  std::vector<float> g = {3.0f, -4.0f};
  auto r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {2}), 10.0);
  EXPECT_DOUBLE_EQ(r.norm, 5.0);
  EXPECT_EQ(r.scale, 1.0f);
  r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {2}), 5.0);  // at the threshold: no clipping
  EXPECT_EQ(r.scale, 1.0f);
  r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {2}), 0.0);  // max_norm <= 0: disabled
  EXPECT_DOUBLE_EQ(r.norm, 5.0);
  EXPECT_EQ(r.scale, 1.0f);
  r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {2}), -1.0);
  EXPECT_EQ(r.scale, 1.0f);
}

TEST(OptimizerClip, NonFiniteGradsAreReported) {
  std::vector<float> g = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
  auto r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {3}), 1.0);
  EXPECT_TRUE(std::isnan(r.norm));
  EXPECT_EQ(r.scale, 1.0f);
  g[1] = std::numeric_limits<float>::infinity();
  r = r1::optim::clip_grad_norm(Tensor::f32(g.data(), {3}), 1.0);
  EXPECT_FALSE(std::isfinite(r.norm));
  EXPECT_EQ(r.scale, 1.0f);
}

// ---------------------------------------------------------------------------------------------
// LR schedules (Hugging Face get_*_schedule_with_warmup conventions)

namespace {
LrSchedule sched(const std::string& kind, int64_t warmup, int64_t total, double min_ratio) {
  LrSchedule s;
  s.kind = kind;
  s.lr = 1e-3;
  s.warmup_steps = warmup;
  s.total_steps = total;
  s.min_lr_ratio = min_ratio;
  return s;
}
}  // namespace

TEST(LrSchedule, WarmupIsHuggingFaceConvention) {
  for (const char* kind : {"constant", "cosine", "linear"}) {
    auto s = sched(kind, 10, 110, 0.1);
    EXPECT_EQ(r1::optim::lr_at(s, 0), 0.0) << kind;  // HF: step / warmup, so step 0 has LR 0
    EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 1), 1e-4) << kind;
    EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 5), 5e-4) << kind;
    EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 9), 9e-4) << kind;
    EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 10), 1e-3) << kind;  // peak right after warmup
  }
}

TEST(LrSchedule, Cosine) {
  auto s = sched("cosine", 10, 110, 0.1);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 35), 1e-3 * (0.1 + 0.9 * 0.5 * (1.0 + std::sqrt(0.5))));
  EXPECT_NEAR(r1::optim::lr_at(s, 60), 1e-3 * 0.55, 1e-15);
  EXPECT_NEAR(r1::optim::lr_at(s, 110), 1e-4, 1e-15);
  EXPECT_NEAR(r1::optim::lr_at(s, 10000), 1e-4, 1e-15);  // floor after the end
  // Monotone non-increasing after warmup.
  for (int64_t t = 10; t < 120; ++t) EXPECT_LE(r1::optim::lr_at(s, t + 1), r1::optim::lr_at(s, t)) << t;

  auto z = sched("cosine", 0, 100, 0.0);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(z, 0), 1e-3);  // no warmup: starts at the peak
  EXPECT_NEAR(r1::optim::lr_at(z, 50), 0.5e-3, 1e-15);
  EXPECT_NEAR(r1::optim::lr_at(z, 100), 0.0, 1e-18);
}

TEST(LrSchedule, Linear) {
  auto s = sched("linear", 10, 110, 0.1);
  EXPECT_NEAR(r1::optim::lr_at(s, 35), 1e-3 * (0.1 + 0.9 * 0.75), 1e-15);
  EXPECT_NEAR(r1::optim::lr_at(s, 60), 1e-3 * 0.55, 1e-15);
  EXPECT_NEAR(r1::optim::lr_at(s, 110), 1e-4, 1e-15);
  EXPECT_NEAR(r1::optim::lr_at(s, 500), 1e-4, 1e-15);
  auto z = sched("linear", 0, 4, 0.0);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(z, 0), 1e-3);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(z, 1), 0.75e-3);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(z, 4), 0.0);
}

TEST(LrSchedule, ConstantAndEdgeCases) {
  auto s = sched("constant", 4, 10, 0.5);  // min ratio does not apply to constant
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 2), 0.5e-3);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 4), 1e-3);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(s, 1000), 1e-3);
  // warmup == total: peak at the boundary, then straight to the floor.
  auto w = sched("cosine", 5, 5, 0.2);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(w, 5), 1e-3);
  EXPECT_NEAR(r1::optim::lr_at(w, 6), 0.2e-3, 1e-15);
  // min_lr_ratio 1: flat after warmup.
  auto f = sched("linear", 2, 10, 1.0);
  EXPECT_DOUBLE_EQ(r1::optim::lr_at(f, 7), 1e-3);
}

TEST(LrSchedule, ValidateErrors) {
  EXPECT_NO_THROW(r1::optim::validate(LrSchedule{}));
  auto s = sched("cosin", 0, 10, 0.0);
  std::string e = error_of([&] { r1::optim::validate(s); });
  EXPECT_NE(e.find("'cosin'"), std::string::npos) << e;
  EXPECT_NE(e.find("constant, cosine, linear"), std::string::npos) << e;
  EXPECT_THROW(r1::optim::lr_at(s, 0), r1::Error);

  EXPECT_THROW(r1::optim::validate(sched("cosine", -1, 10, 0.0)), r1::Error);
  EXPECT_THROW(r1::optim::validate(sched("cosine", 0, -10, 0.0)), r1::Error);
  EXPECT_THROW(r1::optim::validate(sched("cosine", 0, 10, -0.1)), r1::Error);
  EXPECT_THROW(r1::optim::validate(sched("cosine", 0, 10, 1.5)), r1::Error);
  EXPECT_THROW(r1::optim::validate(sched("cosine", 0, 10, std::nan(""))), r1::Error);
  e = error_of([] { r1::optim::validate(sched("linear", 0, 10, 2.0)); });
  EXPECT_NE(e.find("min_lr_ratio"), std::string::npos) << e;
  auto neg_lr = sched("cosine", 0, 10, 0.0);
  neg_lr.lr = -1.0;
  EXPECT_THROW(r1::optim::validate(neg_lr), r1::Error);
  EXPECT_THROW(r1::optim::lr_at(sched("cosine", 0, 10, 0.0), -1), r1::Error);
}
