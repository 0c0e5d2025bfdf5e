// LoRA adapters (model/lora.h) on CPU: a fresh adapter changes nothing, gradients match finite
// differences (with and without dropout), the base stays frozen through optimizer steps, adapters
// off give the base model, decoding uses the adapters, and the config checks what PEFT writes.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "base/error.h"
#include "base/fs.h"
#include "base/rng.h"
#include "model/adapter_checkpoint.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "model/lora.h"
#include "model/safetensors.h"
#include "model/train_state.h"
#include "optim/optimizer.h"
#include "tensor/device_memory.h"
#include "test_util.h"

using namespace r1;

namespace {

model::Transformer tiny(const std::string& arch = "qwen2", uint64_t seed = 7) {
  model::Transformer m(model::preset_config("tiny", arch));
  m.init_random(seed, 0.2f);
  return m;
}

model::LoraConfig lora_cfg(double dropout = 0.0, std::vector<std::string> targets = {"all-linear"}) {
  model::LoraConfig c;
  c.rank = 4;
  c.alpha = 8;
  c.dropout = dropout;
  c.targets = std::move(targets);
  return c;
}

model::Batch batch_of(const model::Transformer& m) {
  const int V = m.config().vocab_size;
  std::vector<std::vector<int32_t>> seqs;
  Rng rng(3);
  for (int len : {11, 6}) {
    std::vector<int32_t> s;
    for (int i = 0; i < len; ++i) s.push_back(int32_t(rng.next_u32() % uint32_t(V)));
    seqs.push_back(s);
  }
  return model::pack_sequences(seqs);
}

// Nonzero adapters (B too), so every adapter gradient path carries signal.
void randomize_adapter(model::Transformer& m, uint64_t seed, float std = 0.3f) {
  std::vector<float> a = m.adapter_host();
  Rng rng(seed);
  for (float& x : a) x = std * rng.normal();
  m.set_adapter(a.data());
}

// loss = sum_t w_t * logp_t with fixed weights, and its gradient through backward.
double weighted_logp(model::TrainState& st, model::Transformer& m, const model::Batch& b, const std::vector<float>& w) {
  const std::vector<float> logp = to_host_f32(st.forward(m, b));
  double s = 0;
  for (size_t t = 0; t < logp.size(); ++t) s += double(w[t]) * logp[t];
  return s;
}

}  // namespace

TEST(Lora, FreshAdapterLeavesTheModelUnchanged) {
  for (const char* arch : {"qwen2", "llama", "qwen3"}) {
    model::Transformer base = tiny(arch), adapted = tiny(arch);
    adapted.add_lora(lora_cfg(), 11);
    const model::Batch b = batch_of(base);
    model::TrainState s1, s2;
    EXPECT_EQ(to_host_f32(s1.forward(base, b)), to_host_f32(s2.forward(adapted, b))) << arch;
  }
}

TEST(Lora, AdaptersChangeTheOutputAndOffGivesTheBase) {
  model::Transformer base = tiny(), m = tiny();
  m.add_lora(lora_cfg(), 11);
  randomize_adapter(m, 5);
  const model::Batch b = batch_of(m);
  model::TrainState sb, sm;
  const std::vector<float> lb = to_host_f32(sb.forward(base, b));
  const std::vector<float> lm = to_host_f32(sm.forward(m, b));
  double diff = 0;
  for (size_t i = 0; i < lb.size(); ++i) diff = std::max(diff, std::fabs(double(lb[i]) - lm[i]));
  EXPECT_GT(diff, 1e-3);
  sm.adapters = false;  // the KL reference: the same model, adapters off
  EXPECT_EQ(to_host_f32(sm.forward(m, b)), lb);
}

TEST(Lora, TrainableWeightsAreTheAdaptersInPeftNames) {
  model::Transformer m = tiny();
  m.add_lora(lora_cfg(0.0, {"q_proj", "v_proj"}), 11);
  const auto t = m.trainable_weights();
  const model::ModelConfig& c = m.config();
  ASSERT_EQ(t.specs->size(), size_t(4 * c.num_hidden_layers));  // A and B of q and v per layer
  EXPECT_EQ((*t.specs)[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ((*t.specs)[0].shape, (std::vector<int64_t>{4, c.hidden_size}));
  EXPECT_EQ((*t.specs)[3].name, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
  EXPECT_EQ((*t.specs)[3].shape, (std::vector<int64_t>{c.kv_dim(), 4}));
  EXPECT_EQ(t.grads.numel(), model::total_params(*t.specs));
  EXPECT_TRUE(t.compute.empty());  // CPU: the f32 adapters are the compute weights
  EXPECT_TRUE(m.grads().embed.empty());
  EXPECT_TRUE(m.grads().layers[0].attn.q.w.empty());
  EXPECT_FALSE(m.grads().layers[0].attn.q.lora_a.empty());
  EXPECT_TRUE(m.grads().layers[0].attn.k.lora_a.empty());
}

// Adapter gradients against central differences of the same loss, for every adapted linear kind,
// without and with dropout (the mask is fixed by the state's seed and step, so the loss is a
// deterministic function of the adapter weights).
TEST(Lora, GradientsMatchFiniteDifferences) {
  for (double dropout : {0.0, 0.3}) {
    model::Transformer m = tiny("qwen3");
    m.add_lora(lora_cfg(dropout), 11);
    randomize_adapter(m, 5);
    const model::Batch b = batch_of(m);
    std::vector<float> w(size_t(b.tokens()));
    Rng rng(9);
    for (float& x : w) x = rng.normal();
    model::TrainState st;
    st.dropout_seed = 17;
    st.dropout_step = 2;
    weighted_logp(st, m, b, w);
    m.zero_grads();
    st.backward(m, w);
    const std::vector<float> grad = to_host_f32(m.grads().flat);
    std::vector<float> a = m.adapter_host();
    const auto& specs = m.adapter_specs();
    int checked = 0;
    for (size_t k = 0; k < specs.size(); k += 5) {  // A and B tensors of several linears
      for (int64_t j : {int64_t(0), specs[k].numel() / 2, specs[k].numel() - 1}) {
        const size_t i = size_t(specs[k].offset + j);
        const float keep = a[i], h = 1e-2f;
        a[i] = keep + h;
        m.set_adapter(a.data());
        const double up = weighted_logp(st, m, b, w);
        a[i] = keep - h;
        m.set_adapter(a.data());
        const double down = weighted_logp(st, m, b, w);
        a[i] = keep;
        m.set_adapter(a.data());
        const double fd = (up - down) / (2.0 * h);
        EXPECT_NEAR(grad[i], fd, 2e-3 + 2e-2 * std::fabs(fd)) << specs[k].name << "[" << j << "] dropout " << dropout;
        ++checked;
      }
    }
    EXPECT_GE(checked, 12);
  }
}

TEST(Lora, DropoutOnlyInTraining) {
  model::Transformer m = tiny();
  m.add_lora(lora_cfg(0.5), 11);
  randomize_adapter(m, 5);
  const model::Batch b = batch_of(m);
  model::TrainState train;  // a trainable model's forward saves and drops
  const std::vector<float> dropped = to_host_f32(train.forward(m, b));
  // Decoding (nothing saved) runs the adapters without dropout.
  model::Transformer copy = tiny();
  copy.add_lora(lora_cfg(0.0), 11);
  copy.set_adapter(m.adapter_host().data());
  model::TrainState no_drop;
  const std::vector<float> full = to_host_f32(no_drop.forward(copy, b));
  EXPECT_NE(dropped, full);
  model::TrainState eval;  // dropout off in a saving forward too (model.eval())
  eval.dropout = false;
  EXPECT_EQ(to_host_f32(eval.forward(m, b)), full);
  model::KVCache cache(m, 1, 32);
  Arena arena;
  std::vector<int32_t> ids(b.ids.begin(), b.ids.begin() + 11), slots(11, 0), pos(11), rows(10);
  for (int i = 0; i < 11; ++i) pos[size_t(i)] = i;
  for (int i = 0; i < 10; ++i) rows[size_t(i)] = i;
  const Tensor logits = model::forward_cached(m, cache, ids, slots, pos, rows, arena);
  const int64_t V = m.config().vocab_size;
  for (int i = 0; i < 10; ++i) {  // the cached forward's log-probs are the no-dropout ones
    const float* z = logits.f32() + int64_t(i) * V;
    double mx = z[0], s = 0;
    for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(z[v]));
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(z[v]) - mx);
    EXPECT_NEAR(double(z[ids[size_t(i) + 1]]) - mx - std::log(s), full[size_t(i)], 2e-5);
  }
}

TEST(Lora, OptimizerUpdatesOnlyTheAdapters) {
  model::Transformer m = tiny();
  m.add_lora(lora_cfg(), 11);
  const std::vector<float> base_before = m.weights_host(), adapter_before = m.adapter_host();
  optim::AdamW opt = optim::make_adamw(m, {0.9f, 0.999f, 1e-8f, 0.0f});
  const model::Batch b = batch_of(m);
  model::TrainState st;
  std::vector<float> w(size_t(b.tokens()), -1.0f);
  double first = 0, last = 0;
  for (int step = 0; step < 20; ++step) {
    const double loss = weighted_logp(st, m, b, w);  // the negative log-likelihood
    if (step == 0) first = loss;
    last = loss;
    st.backward(m, w);
    optim::clip_and_step(opt, m, 1e-2, 1.0, true);
  }
  EXPECT_EQ(m.weights_host(), base_before);
  EXPECT_NE(m.adapter_host(), adapter_before);
  EXPECT_LT(last, first - 1.0);  // the adapters alone fit the batch
}

TEST(Lora, ScalesAndTargets) {
  model::LoraConfig c = lora_cfg();
  c.rank = 16;
  c.alpha = 32;
  EXPECT_FLOAT_EQ(c.scale(), 2.0f);
  c.rslora = true;
  EXPECT_FLOAT_EQ(c.scale(), 8.0f);
  EXPECT_EQ(c.modules(), (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "q_a_proj", "q_b_proj",
                                                    "kv_a_proj_with_mqa", "kv_b_proj", "gate_proj", "up_proj",
                                                    "down_proj"}));  // all-linear: the latent attention's too
  c.targets = {"up_proj", "q_proj"};
  EXPECT_EQ(c.modules(), (std::vector<std::string>{"q_proj", "up_proj"}));
  c.targets = {"lm_head"};
  EXPECT_THROW(model::validate(c, "recipe train.lora"), Error);
  try {
    model::validate(c, "recipe train.lora");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown LoRA target module 'lm_head'"), std::string::npos);
  }
  c = lora_cfg();
  c.rank = 0;
  EXPECT_THROW(model::validate(c, "x"), Error);
  c = lora_cfg(1.0);
  EXPECT_THROW(model::validate(c, "x"), Error);
}

TEST(Lora, AdapterConfigRoundTripsAndRefusesWhatIsNotImplemented) {
  model::LoraConfig c = lora_cfg(0.05, {"q_proj", "down_proj"});
  c.rslora = true;
  const model::LoraConfig back = model::lora_config_from_json(model::lora_config_json(c, "base"), "adapter_config.json");
  EXPECT_EQ(back.rank, c.rank);
  EXPECT_EQ(back.alpha, c.alpha);
  EXPECT_EQ(back.dropout, c.dropout);
  EXPECT_EQ(back.rslora, true);
  EXPECT_EQ(back.targets, (std::vector<std::string>{"q_proj", "down_proj"}));
  auto error_of = [](const std::string& text) {
    try {
      model::lora_config_from_json(text, "dir/adapter_config.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string ok = R"("peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"])";
  EXPECT_EQ(error_of("{" + ok + "}"), "");
  EXPECT_NE(error_of("{" + ok + R"(, "use_dora": true})").find("dir/adapter_config.json: key 'use_dora'"),
            std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "bias": "all"})").find("key 'bias'"), std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "modules_to_save": ["lm_head"]})").find("modules_to_save"), std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "rank_pattern": {"q": 4}})").find("rank_pattern"), std::string::npos);
  EXPECT_NE(error_of(R"({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ".*proj"})")
                .find("regular expressions are not supported"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"peft_type": "IA3"})").find("peft_type"), std::string::npos);
  EXPECT_NE(error_of("[1, 2").find("not valid JSON"), std::string::npos);
}

// ---- PEFT directories and merging (model/adapter_checkpoint.h) ----
TEST(LoraFiles, AdapterDirectoryRoundTrips) {
  test::TempDir dir;
  model::Transformer m = tiny();
  model::LoraConfig cfg = lora_cfg(0.1, {"q_proj", "up_proj"});
  cfg.rslora = true;
  m.add_lora(cfg, 11);
  randomize_adapter(m, 5);
  const std::string out = fs::join(dir.path(), "adapter");
  model::save_adapter(m, out, "Qwen/Qwen2.5-0.5B");
  const std::string config = fs::read_file(fs::join(out, "adapter_config.json"));
  EXPECT_NE(config.find("\"base_model_name_or_path\": \"Qwen/Qwen2.5-0.5B\""), std::string::npos);
  EXPECT_NE(config.find("\"task_type\": \"CAUSAL_LM\""), std::string::npos);
  model::SafetensorsReader reader(fs::join(out, "adapter_model.safetensors"));
  EXPECT_TRUE(reader.contains("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"));
  EXPECT_EQ(reader.names().size(), m.adapter_specs().size());

  model::Transformer back = tiny();
  model::load_adapter(back, out);
  EXPECT_EQ(back.lora().rank, cfg.rank);
  EXPECT_TRUE(back.lora().rslora);
  EXPECT_EQ(back.adapter_host(), m.adapter_host());
  const model::Batch b = batch_of(m);
  model::TrainState s1, s2;
  s1.adapters = s2.adapters = true;
  EXPECT_EQ(to_host_f32(s1.forward(m, b)), to_host_f32(s2.forward(back, b)));
}

TEST(LoraFiles, BadAdapterDirectoriesNameTheProblem) {
  test::TempDir dir;
  model::Transformer m = tiny();
  m.add_lora(lora_cfg(0.0, {"q_proj"}), 11);
  const std::string out = fs::join(dir.path(), "adapter");
  model::save_adapter(m, out, "base");
  auto error_of = [&](const std::string& config_text) {
    fs::write_file_atomic(fs::join(out, "adapter_config.json"), config_text);
    model::Transformer fresh = tiny();
    try {
      model::load_adapter(fresh, out);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  model::LoraConfig more = lora_cfg(0.0, {"q_proj", "v_proj"});
  EXPECT_NE(error_of(model::lora_config_json(more, "base")).find("no tensor 'base_model.model.model.layers.0.self_attn.v_proj"),
            std::string::npos);
  model::LoraConfig fewer = lora_cfg(0.0, {"q_proj"});
  fewer.rank = 2;
  EXPECT_NE(error_of(model::lora_config_json(fewer, "base")).find("lora_A.weight"), std::string::npos);  // shape
  model::Transformer none = tiny();
  try {
    model::load_adapter(none, dir.path());
    ADD_FAILURE() << "a directory without adapter_config.json loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a PEFT adapter directory"), std::string::npos);
  }
}

TEST(LoraFiles, MergedModelComputesTheAdaptedModel) {
  test::TempDir dir;
  for (const char* arch : {"qwen2", "llama"}) {
    model::Transformer m = tiny(arch);
    m.add_lora(lora_cfg(0.0, {"all-linear"}), 11);
    randomize_adapter(m, 5);
    const std::string out = fs::join(dir.path(), std::string("merged_") + arch);
    model::save_merged(m, out);
    model::Transformer merged = model::load_model(out, Device::CPU, false);
    const model::Batch b = batch_of(m);
    model::TrainState s1, s2;
    const std::vector<float> l1 = to_host_f32(s1.forward(m, b)), l2 = to_host_f32(s2.forward(merged, b));
    for (size_t i = 0; i < l1.size(); ++i) EXPECT_NEAR(l1[i], l2[i], 1e-4) << arch << " token " << i;
  }
}

// r1 merge: adapter directory (+ its base from base_model_name_or_path) -> a plain HF model that
// computes what base + adapter compute; bad inputs fail before anything is written.
TEST(LoraFiles, MergeCommandWritesTheAdaptedModel) {
  test::TempDir dir;
  model::Transformer m = tiny("qwen2");
  const std::string base = dir.file("base"), adapter = dir.file("adapter"), out = dir.file("merged");
  model::save_model(m, base);
  m.add_lora(lora_cfg(0.0, {"q_proj", "down_proj"}), 11);
  randomize_adapter(m, 9);
  model::save_adapter(m, adapter, base);
  const test::RunResult r = test::run_r1("merge --adapter " + adapter + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  model::Transformer merged = model::load_model(out, Device::CPU, false);
  const model::Batch b = batch_of(m);
  model::TrainState s1, s2;
  const std::vector<float> l1 = to_host_f32(s1.forward(m, b)), l2 = to_host_f32(s2.forward(merged, b));
  for (size_t i = 0; i < l1.size(); ++i) EXPECT_NEAR(l1[i], l2[i], 1e-4) << "token " << i;

  const test::RunResult not_adapter = test::run_r1("merge --adapter " + base + " --out " + dir.file("x"));
  EXPECT_NE(not_adapter.exit_code, 0);
  EXPECT_NE(not_adapter.err.find("not a PEFT adapter directory"), std::string::npos) << not_adapter.err;
  const test::RunResult onto_base = test::run_r1("merge --adapter " + adapter + " --out " + base);
  EXPECT_NE(onto_base.exit_code, 0);
  EXPECT_NE(onto_base.err.find("--out must differ"), std::string::npos) << onto_base.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

// PEFT spells "all-linear" out as full module paths; r1 reads them, and refuses a subset of layers.
TEST(Lora, FullModulePathsCoverEveryLayerOrAreRefused) {
  const auto cfg = [](const std::string& targets) {
    return model::lora_config_from_json(R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": )" +
                                            targets + "}",
                                        "x/adapter_config.json");
  };
  const model::LoraConfig every = cfg(R"(["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj", "q_proj"])");
  EXPECT_EQ(every.modules(), (std::vector<std::string>{"q_proj", "up_proj"}));
  model::Transformer m = tiny();  // 2 layers
  m.add_lora(every, 3);
  EXPECT_EQ(m.adapter_specs().size(), 8u);  // (q, up) x (A, B) x 2 layers
  model::Transformer n = tiny();
  try {
    n.add_lora(cfg(R"(["model.layers.0.mlp.up_proj"])"), 3);
    FAIL() << "expected an error";
  } catch (const r1::Error& e) {
    EXPECT_NE(std::string(e.what()).find("x/adapter_config.json: target_modules names up_proj on 1 of the model's 2 layers"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(cfg(R"(["model.layers.0.mlp.fc1"])"), r1::Error);
}

// LoRA on the MoE and MLA blocks: the expert linears (routed and shared) and the latent
// attention's projections are targets under their HF module names, the router is not, and the
// adapter gradients through routing and the latent path match finite differences.
TEST(Lora, MoeExpertsAndLatentAttentionAreTargets) {
  for (const char* preset : {"tiny-qwen3-moe", "tiny-deepseek-v3"}) {
    model::Transformer m(model::preset_config(preset));
    m.init_random(7, 0.2f);
    m.add_lora(lora_cfg(), 11);
    randomize_adapter(m, 5, 0.2f);
    const model::ModelConfig& c = m.config();
    std::set<std::string> names;
    for (const auto& s : m.adapter_specs()) names.insert(s.name);
    const std::string last = "base_model.model.model.layers." + std::to_string(c.num_hidden_layers - 1) + ".";
    const std::string expert = last + "mlp.experts." + std::to_string(c.moe.num_experts - 1) + ".down_proj.lora_A.weight";
    EXPECT_TRUE(names.count(expert)) << preset;
    for (const auto& n : names) EXPECT_EQ(n.find("mlp.gate.lora"), std::string::npos) << n;
    if (c.is_mla()) {
      EXPECT_TRUE(names.count(last + "self_attn.kv_b_proj.lora_B.weight")) << preset;
      EXPECT_TRUE(names.count(last + "self_attn.kv_a_proj_with_mqa.lora_A.weight")) << preset;
      if (c.moe.n_shared_experts > 0) EXPECT_TRUE(names.count(last + "mlp.shared_experts.up_proj.lora_B.weight"));
    }
    const model::Batch b = batch_of(m);
    std::vector<float> w(size_t(b.tokens()));
    Rng rng(9);
    for (float& x : w) x = rng.normal();
    model::TrainState st;
    weighted_logp(st, m, b, w);
    m.zero_grads();
    st.backward(m, w);
    const std::vector<float> grad = to_host_f32(m.grads().flat);
    std::vector<float> a = m.adapter_host();
    const auto& specs = m.adapter_specs();
    int checked = 0, nonzero = 0;
    for (size_t k = 0; k < specs.size(); k += 7) {
      const size_t i = size_t(specs[k].offset + specs[k].numel() / 2);
      const float keep = a[i], h = 1e-2f;
      a[i] = keep + h;
      m.set_adapter(a.data());
      const double up = weighted_logp(st, m, b, w);
      a[i] = keep - h;
      m.set_adapter(a.data());
      const double down = weighted_logp(st, m, b, w);
      a[i] = keep;
      m.set_adapter(a.data());
      const double fd = (up - down) / (2.0 * h);
      EXPECT_NEAR(grad[i], fd, 2e-3 + 2e-2 * std::fabs(fd)) << preset << " " << specs[k].name;
      ++checked;
      nonzero += std::fabs(fd) > 1e-4 ? 1 : 0;
    }
    EXPECT_GE(checked, 8) << preset;
    EXPECT_GE(nonzero, 3) << preset;
  }
}
