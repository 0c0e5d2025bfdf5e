#include "run/run_inputs.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "base/fs.h"
#include "data/jsonl_dataset.h"
#include "dist/world.h"
#include "model/adapter_checkpoint.h"
#include "model/checkpoint.h"
#include "model/random_init.h"
#include "reward/composite.h"
#include "tensor/device_memory.h"
#include "text/chat_template.h"
#include "text/hf_codec.h"

namespace r1::run {

nlohmann::json model_section() {
  return {{"path", ""},        // HF model directory; empty: a fresh random model from init_preset
          {"tokenizer", ""},   // tokenizer directory (default: path); "byte": the built-in byte codec
          {"init_preset", "tiny"},
          {"init_arch", ""},  // model_type; "": the preset's own (qwen2 for tiny)
          {"init_vocab_size", 0},
          // config.json keys over the preset, e.g. [hidden_size=96, num_hidden_layers=3]
          {"init_overrides", nlohmann::json::array()}};
}

nlohmann::json data_section(const std::string& path, const std::string& preset) {
  return {{"path", path},
          {"preset", preset},  // gsm8k | math500 | aime24 | amc23 | custom (the *_field keys)
          {"question_field", "question"},
          {"answer_field", "answer"},
          {"type_field", "type"},      // custom: the field holding a prompt type (optional per row)
          {"template", "r1-zero"},     // r1-zero | chat | none
          {"prompt_suffix", ""}};
}

nlohmann::json run_section(const std::string& name, nlohmann::json extra) {
  nlohmann::json j = {{"dir", "runs"}, {"name", name}};
  for (auto& [k, v] : extra.items()) j[k] = v;
  return j;
}

nlohmann::json reward_section(const std::string& spec) {
  return {{"spec", spec},
          {"routes", nlohmann::json::array()},  // "TYPE=SPEC": samples of that prompt type scored by SPEC
          {"model_path", ""},                   // reward model directory, for specs that name `model`
          {"model_tokenizer", ""},              // its tokenizer: "" (model_path), a directory or "byte"
          {"model_device", ""},                 // "" (cpu) | cpu | cuda
          {"model_transform", "sigmoid"},       // sigmoid: score -> (0, 1) | raw
          {"model_batch", 16},                  // sequences per reward-model forward pass
          {"allow_unsandboxed", false},         // code: run model code even where the sandbox is incomplete
          {"deadline_s", 120.0}};               // per sample; a rule reward past it is killed, scores 0
}

std::unique_ptr<reward::Reward> make_recipe_reward(const Recipe& r, const std::string& section) {
  const std::string spec = r.get<std::string>(section + ".spec");
  const auto routes = r.get<std::vector<std::string>>(section + ".routes");
  const auto& kinds = reward::reward_kinds();
  bool uses_model = false;
  auto check_spec = [&](const std::string& s, const std::string& key) {
    std::vector<std::string> names;
    try {
      names = reward::reward_names(s);
    } catch (const Error& e) {
      fail("recipe key '{}': {}", key, e.what());
    }
    for (const std::string& n : names) {
      R1_CHECK(std::find(kinds.begin(), kinds.end(), n) != kinds.end(),
               "recipe key '{}': unknown reward '{}' in '{}' (known: {})", key, n, s, fmt::join(kinds, ", "));
      uses_model |= n == "model";
    }
  };
  check_spec(spec, section + ".spec");
  for (const std::string& route : routes) {
    const size_t eq = route.find('=');
    R1_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < route.size(),
             "recipe key '{}.routes': '{}' is not TYPE=SPEC (e.g. chat=model)", section, route);
    check_spec(route.substr(eq + 1), section + ".routes");
  }
  reward::RewardConfig cfg;
  cfg.model.path = r.get<std::string>(section + ".model_path");
  cfg.model.tokenizer = r.get<std::string>(section + ".model_tokenizer");
  cfg.model.device = r.get<std::string>(section + ".model_device");
  if (cfg.model.device.empty()) cfg.model.device = "cpu";
  cfg.model.transform = r.get<std::string>(section + ".model_transform");
  cfg.model.batch = r.get<int>(section + ".model_batch");
  cfg.code.allow_unsandboxed = r.get<bool>(section + ".allow_unsandboxed");
  cfg.deadline_s = r.get<double>(section + ".deadline_s");
  R1_CHECK(cfg.deadline_s >= 0, "recipe key '{}.deadline_s' must be >= 0 (got {})", section, cfg.deadline_s);
  if (uses_model) {
    R1_CHECK(!cfg.model.path.empty(), "recipe key '{}.model_path' must be set: the reward names 'model'", section);
    R1_CHECK(fs::exists(fs::join(cfg.model.path, "config.json")),
             "recipe key '{}.model_path': {} is not a model directory (no config.json)", section, cfg.model.path);
    R1_CHECK(cfg.model.transform == "sigmoid" || cfg.model.transform == "raw",
             "recipe key '{}.model_transform' must be sigmoid or raw (got '{}')", section, cfg.model.transform);
    R1_CHECK(cfg.model.batch > 0, "recipe key '{}.model_batch' must be > 0 (got {})", section, cfg.model.batch);
    parse_device(cfg.model.device, "recipe key '" + section + ".model_device'");
  }
  return reward::make_routed_reward(spec, routes, cfg);
}

Device recipe_device(const Recipe& r) {
  const Device d = parse_device(r.get<std::string>("device"), "recipe key 'device'");
  require_device(d, "recipe key 'device'");
  return d;
}

std::string tokenizer_source(const Recipe& r, const std::string& section) {
  std::string tok = r.get<std::string>(section + ".tokenizer");
  if (tok.empty()) tok = r.get<std::string>(section + ".path");
  R1_CHECK(!tok.empty(), "recipe: {0}.tokenizer must be set when {0}.path is empty (a directory or \"byte\")",
           section);
  return tok;
}

std::unique_ptr<text::Codec> load_codec(const Recipe& r, const std::string& section) {
  const std::string tok = tokenizer_source(r, section);
  if (tok == "byte") return std::make_unique<text::ByteCodec>();
  const std::string model_path = r.get<std::string>(section + ".path");
  return text::HfCodec::load(tok, model_path.empty() ? tok : model_path);
}

nlohmann::json lora_section() {
  return {{"rank", 0},  // r; 0: train every weight
          {"alpha", 16.0},
          {"dropout", 0.0},
          {"targets", {"all-linear"}},  // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
          {"rslora", false}};           // scale alpha / sqrt(r) instead of alpha / r
}

model::LoraConfig lora_config(const Recipe& r, const std::string& section) {
  model::LoraConfig c;
  if (!r.has(section + ".rank")) return c;
  c.rank = r.get<int>(section + ".rank");
  if (c.rank == 0) return c;
  c.alpha = r.get<double>(section + ".alpha");
  c.dropout = r.get<double>(section + ".dropout");
  c.targets = r.get<std::vector<std::string>>(section + ".targets");
  c.rslora = r.get<bool>(section + ".rslora");
  model::validate(c, "recipe section '" + section + "'");
  return c;
}

model::ModelConfig recipe_model_config(const Recipe& r, const text::Codec& codec, const std::string& section) {
  std::string path = r.get<std::string>(section + ".path");
  if (!path.empty() && model::is_adapter_dir(path)) path = model::adapter_base_model(path);
  if (!path.empty()) return model::load_config(fs::join(path, "config.json"));
  model::ModelConfig mc =
      model::preset_config(r.get<std::string>(section + ".init_preset"), r.get<std::string>(section + ".init_arch"));
  const int v = r.get<int>(section + ".init_vocab_size");
  // All settings first, then one check: hidden_size=3584 with num_attention_heads=28 is valid in any order.
  std::vector<std::string> settings = {"vocab_size=" + std::to_string(v > 0 ? v : codec.vocab_size())};
  for (const std::string& kv : r.get<std::vector<std::string>>(section + ".init_overrides")) settings.push_back(kv);
  model::apply_config_settings(mc, settings, "recipe key '" + section + ".init_overrides'");
  return mc;
}

std::unique_ptr<model::Transformer> load_or_init_model(const Recipe& r, const text::Codec& codec, Device device,
                                                       uint64_t seed, bool trainable, const std::string& section,
                                                       model::MasterPlace master, model::WeightSource* sharded) {
  // LoRA: the base is loaded frozen (no fp32 copy, no gradients) and training updates the adapters.
  const model::LoraConfig lora = trainable ? lora_config(r) : model::LoraConfig();
  const std::string path = r.get<std::string>(section + ".path");
  const bool adapter = !path.empty() && model::is_adapter_dir(path);
  R1_CHECK(path.empty() || adapter || fs::exists(fs::join(path, "config.json")), "recipe key '{}.path': {} is not a "
           "model directory (no config.json, no adapter_config.json)", section, path);
  const bool born_sharded = sharded && trainable && !lora.enabled() && !adapter &&
                            dist::world_size() > 1 && parallel_config(r).shard == optim::Shard::Full;
  if (born_sharded) {
    model::ModelConfig c;
    if (!path.empty()) {
      c = model::load_config(fs::join(path, "config.json"));
      *sharded = model::checkpoint_weights(path, c);
    } else {
      c = recipe_model_config(r, codec, section);
      *sharded = model::random_weights(c, seed, model::kInitStd);
    }
    return std::make_unique<model::Transformer>(c, device, true, std::nullopt, master, /*allocate=*/false);
  }
  if (adapter) {  // a PEFT adapter: its base, then the adapter
    R1_CHECK(!lora.enabled(), "recipe key '{}.path' is a LoRA adapter ({}) and train.lora.rank is {}: continue "
             "training the adapter with rank 0, or start a new one from its base model", section, path, lora.rank);
    return std::make_unique<model::Transformer>(model::load_adapted_model(path, "", device));
  }
  if (!path.empty()) {
    auto m = std::make_unique<model::Transformer>(
        model::load_model(path, device, trainable && !lora.enabled(), master));
    if (lora.enabled()) m->add_lora(lora, seed);
    return m;
  }
  auto m = std::make_unique<model::Transformer>(recipe_model_config(r, codec, section), device,
                                                trainable && !lora.enabled(), std::nullopt, master);
  m->init_random(seed);
  if (lora.enabled()) m->add_lora(lora, seed + 1);
  return m;
}

std::vector<data::Problem> load_problems(const Recipe& r, const std::string& section) {
  const std::string preset = r.get<std::string>(section + ".preset");
  data::JsonlFields fields =
      preset == "custom" ? data::JsonlFields{r.get<std::string>(section + ".question_field"),
                                             r.get<std::string>(section + ".answer_field"), false, ""}
                         : data::preset_fields(preset);
  if (preset == "custom") fields.type = r.get<std::string>(section + ".type_field");
  const std::string path = r.get<std::string>(section + ".path");
  R1_CHECK(fs::exists(path), "recipe key '{}.path': {} does not exist", section, path);
  return data::load_jsonl_problems(path, fields);
}

PromptRenderer make_renderer(const Recipe& r, const std::string& section, const std::string& model_section) {
  const std::string name = r.get<std::string>(section + ".template");
  const std::string suffix = r.get<std::string>(section + ".prompt_suffix");
  std::shared_ptr<text::ChatTemplate> tmpl;
  if (name == "r1-zero") tmpl = std::make_shared<text::ChatTemplate>(text::ChatTemplate::builtin("r1-zero"));
  else if (name == "chat")
    tmpl = std::make_shared<text::ChatTemplate>(text::ChatTemplate::load(tokenizer_source(r, model_section)));
  else R1_CHECK(name == "none", "recipe key '{}.template' must be r1-zero, chat or none (got '{}')", section, name);
  return [tmpl, suffix](const data::Problem& p) {
    if (!tmpl) return p.question + suffix;
    nlohmann::ordered_json msgs =
        nlohmann::ordered_json::array({{{"role", "user"}, {"content", p.question + suffix}}});
    return tmpl->render(msgs, true);
  };
}

std::string run_path(const Recipe& r) { return fs::join(r.get<std::string>("run.dir"), r.get<std::string>("run.name")); }

std::string base_model_path(const Recipe& r, const std::string& section) {
  const std::string path = r.get<std::string>(section + ".path");
  if (path.empty()) return "";
  return model::is_adapter_dir(path) ? model::adapter_base_model(path) : path;
}

DType export_dtype(const Recipe& r) {
  const std::string v = r.get<std::string>("run.export_dtype");
  if (v == "float32") return DType::F32;
  if (v == "bfloat16") return DType::BF16;
  fail("recipe key 'run.export_dtype' must be float32 or bfloat16 (got '{}')", v);
}

void export_model(const model::Transformer& m, const Recipe& r, const std::string& dir) {
  const DType dtype = export_dtype(r);
  const std::string tokenizer = tokenizer_source(r);
  if (m.has_lora()) {
    // A PEFT adapter over the base model's directory; a random base is saved beside it once.
    std::string base = base_model_path(r);
    if (base.empty()) {
      base = dir + "_base";
      if (!fs::exists(fs::join(base, "config.json"))) model::save_model(m, base, dtype);
    }
    model::save_adapter(m, dir, std::filesystem::absolute(base).lexically_normal().string());
  } else {
    model::save_model(m, dir, dtype);
  }
  if (tokenizer.empty() || tokenizer == "byte" || tokenizer == dir) return;
  copy_tokenizer_files(tokenizer, dir);
}

void copy_tokenizer_files(const std::string& from, const std::string& to) {
  static const char* kFiles[] = {"tokenizer.json",          "tokenizer_config.json", "special_tokens_map.json",
                                 "chat_template.jinja",     "generation_config.json", "vocab.json",
                                 "merges.txt",              "added_tokens.json"};
  for (const char* f : kFiles) {
    const std::string src = fs::join(from, f);
    if (fs::exists(src)) fs::write_file_atomic(fs::join(to, f), fs::read_file(src));
  }
}

void write_summary(const std::string& run_dir, const nlohmann::json& summary) {
  fs::write_file_atomic(fs::join(run_dir, "summary.json"), summary.dump(2) + "\n");
}

nlohmann::json read_summary(const std::string& run_dir) {
  const std::string path = fs::join(run_dir, "summary.json");
  R1_CHECK(fs::exists(path), "{} does not exist: the run in {} has not finished", path, run_dir);
  try {
    return nlohmann::json::parse(fs::read_file(path));
  } catch (const nlohmann::json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

void stop_if_asked(const RunOptions& opts, int64_t step) {
  if (opts.stop_after < 0 || step != opts.stop_after) return;
  if (dist::world_size() > 1) dist::host_comm().barrier();
  std::_Exit(137);
}

void check_ranks_agree(const Recipe& r, const RunOptions& opts) {
  if (dist::world_size() <= 1) return;
  const nlohmann::json mine = {{"recipe", r.values()}, {"resume", opts.resume}, {"stop_after", opts.stop_after}};
  const std::vector<std::string> all = dist::host_comm().all_gather_strings(mine.dump());
  const nlohmann::json root = nlohmann::json::parse(all[0]);
  for (size_t q = 1; q < all.size(); ++q) {
    if (all[q] == all[0]) continue;
    const nlohmann::json other = nlohmann::json::parse(all[q]);
    std::string what = "the options are";  // --resume or --stop-after, when every key agrees
    std::string a = fmt::format("--resume {} --stop-after {}", root["resume"].dump(), root["stop_after"].dump());
    std::string b = fmt::format("--resume {} --stop-after {}", other["resume"].dump(), other["stop_after"].dump());
    for (const std::string& key : r.keys()) {
      std::string path = "/recipe/" + key;  // "train.lr" -> "/recipe/train/lr" (keys hold no '/' or '~')
      std::replace(path.begin(), path.end(), '.', '/');
      const nlohmann::json::json_pointer at(path);
      if (root.at(at) == other.at(at)) continue;
      what = fmt::format("recipe key '{}' is", key);
      a = root.at(at).dump();
      b = other.at(at).dump();
      break;
    }
    fail("the ranks run different recipes: {} {} on rank 0 and {} on rank {}; every rank must be given the same "
         "recipe files, overrides and options", what, a, b, q);
  }
}

nlohmann::json parallel_section() {
  return {{"shard", "none"}, {"zero1", false}, {"bucket_mb", 25}, {"overlap", true}};
}

optim::DataParallelConfig parallel_config(const Recipe& r) {
  optim::DataParallelConfig c;
  c.shard = optim::parse_shard(r.get<std::string>("parallel.shard"), "recipe key 'parallel.shard'");
  // The key before sharding levels: zero1: true is shard: optimizer, and may not contradict it.
  if (r.get<bool>("parallel.zero1")) {
    R1_CHECK(c.shard == optim::Shard::None || c.shard == optim::Shard::Optimizer,
             "recipe keys 'parallel.zero1: true' (the old spelling of 'parallel.shard: optimizer') and "
             "'parallel.shard: {}' disagree; set parallel.shard alone", optim::shard_name(c.shard));
    c.shard = optim::Shard::Optimizer;
  }
  const double mb = r.get<double>("parallel.bucket_mb");
  R1_CHECK(mb > 0, "recipe key 'parallel.bucket_mb' must be positive (got {})", mb);
  c.bucket_bytes = int64_t(mb * double(1 << 20));
  c.overlap = r.get<bool>("parallel.overlap");
  return c;
}

}  // namespace r1::run
