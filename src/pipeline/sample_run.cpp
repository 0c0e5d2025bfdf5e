#include "pipeline/sample_run.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "base/error.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "eval/generate_scored.h"
#include "reward/composite.h"
#include "reward/language_reward.h"
#include "rollout/sampler.h"
#include "pipeline/rejection_sampling.h"

namespace r1::pipeline {

nlohmann::json sample_recipe_defaults() {
  nlohmann::json data = run::data_section();
  data["limit"] = 0;  // the first N problems; 0: all
  return {
      {"device", "cpu"},  // cpu | cuda: where the model generates
      {"model", run::model_section()},
      {"data", data},
      {"reward", run::reward_section("math+format:0.2")},  // ranks the samples of a prompt
      // Temperature 0.6, top-p 0.95: the R1 paper's sampling setting, so the kept samples come from
      // the distribution the model is evaluated and used with; variety comes from n.
      {"sample",
       {{"n", 8},
        {"temperature", 0.6},
        {"top_p", 0.95},
        {"top_k", 0},
        {"max_completion_tokens", 1024},
        {"max_prompt_tokens", 512},
        {"batch", 64},
        {"seed", 1234},
        {"correct_spec", "math"},  // a sample is correct when this reward is >= threshold
        {"threshold", 1.0},
        {"keep", "best"},
        {"best_k", 1},
        {"dedup", true},
        {"chunk", 64},
        {"pairs_per_prompt", 1}}},
      {"filters",
       {{"drop_truncated", true},
        {"require_format", false},
        {"max_length", 0},
        {"language", ""},
        {"language_min", 0.95},
        {"max_repetition", 0.0},
        {"repetition_ngram", 4}}},
      {"run", run::run_section("sample")},
  };
}

namespace {

constexpr const char* kData = "data.jsonl";
constexpr const char* kPairs = "pairs.jsonl";
constexpr const char* kProgress = "progress.json";

struct Settings {
  eval::SamplingSpec sampling;
  SampleFilters filters;
  SelectionSpec select;
  int64_t chunk = 64, limit = 0;
  std::string correct_spec;
};

// Every bad value fails here, naming its key, before any compute.
Settings read_settings(const run::Recipe& r) {
  Settings s;
  eval::SamplingSpec& sp = s.sampling;
  sp.k = r.get<int>("sample.n");
  sp.temperature = float(r.get<double>("sample.temperature"));
  sp.top_p = float(r.get<double>("sample.top_p"));
  sp.top_k = r.get<int>("sample.top_k");
  sp.max_completion_tokens = r.get<int>("sample.max_completion_tokens");
  sp.max_prompt_tokens = r.get<int>("sample.max_prompt_tokens");
  sp.batch = r.get<int>("sample.batch");
  sp.seed = uint64_t(r.get<int64_t>("sample.seed"));
  R1_CHECK(sp.k >= 1, "recipe key 'sample.n' must be >= 1 (got {})", sp.k);
  R1_CHECK(sp.max_completion_tokens >= 1, "recipe key 'sample.max_completion_tokens' must be >= 1");
  R1_CHECK(sp.max_prompt_tokens >= 0, "recipe key 'sample.max_prompt_tokens' must be >= 0 (0: no limit)");
  R1_CHECK(sp.batch >= 1, "recipe key 'sample.batch' must be >= 1 (got {})", sp.batch);
  rollout::check_sampling({sp.temperature, sp.top_p, sp.top_k, sp.seed});

  SampleFilters& f = s.filters;
  f.threshold = r.get<double>("sample.threshold");
  f.drop_truncated = r.get<bool>("filters.drop_truncated");
  f.require_format = r.get<bool>("filters.require_format");
  f.max_length = r.get<int64_t>("filters.max_length");
  f.language = r.get<std::string>("filters.language");
  f.language_min = r.get<double>("filters.language_min");
  f.max_repetition = r.get<double>("filters.max_repetition");
  f.repetition_ngram = r.get<int>("filters.repetition_ngram");
  R1_CHECK(f.max_length >= 0, "recipe key 'filters.max_length' must be >= 0 (0: off)");
  R1_CHECK(f.language_min >= 0 && f.language_min <= 1, "recipe key 'filters.language_min' must be in [0, 1]");
  R1_CHECK(f.max_repetition >= 0 && f.max_repetition <= 1,
           "recipe key 'filters.max_repetition' must be in [0, 1]");
  R1_CHECK(f.repetition_ngram >= 1, "recipe key 'filters.repetition_ngram' must be >= 1");
  if (!f.language.empty()) {
    try {
      reward::language_share("", f.language);
    } catch (const Error& e) {
      fail("recipe key 'filters.language': {}", e.what());
    }
  }

  SelectionSpec& sel = s.select;
  sel.keep = parse_keep_mode(r.get<std::string>("sample.keep"));
  sel.best_k = r.get<int>("sample.best_k");
  sel.dedup = r.get<bool>("sample.dedup");
  sel.pairs_per_prompt = r.get<int>("sample.pairs_per_prompt");
  R1_CHECK(sel.best_k >= 1, "recipe key 'sample.best_k' must be >= 1 (got {})", sel.best_k);
  R1_CHECK(sel.pairs_per_prompt >= 0, "recipe key 'sample.pairs_per_prompt' must be >= 0");

  s.chunk = r.get<int64_t>("sample.chunk");
  s.limit = r.get<int64_t>("data.limit");
  s.correct_spec = r.get<std::string>("sample.correct_spec");
  R1_CHECK(s.chunk >= 1, "recipe key 'sample.chunk' must be >= 1 (got {})", s.chunk);
  R1_CHECK(s.limit >= 0, "recipe key 'data.limit' must be >= 0 (0: all)");
  return s;
}

std::unique_ptr<reward::Reward> make_correctness_reward(const std::string& spec) {
  try {
    return reward::make_reward(spec);
  } catch (const Error& e) {
    fail("recipe key 'sample.correct_spec': {}", e.what());
  }
}

// Running counts over the chunks done; kept in the progress record, so a resumed run's summary
// equals an uninterrupted run's.
struct Tally {
  int64_t prompts = 0, skipped = 0, samples = 0, correct = 0, accepted = 0, kept_tokens = 0, pairs = 0;
  std::array<int64_t, kVerdicts> verdicts{};

  nlohmann::json to_json() const {
    nlohmann::json j = {{"prompts", prompts},   {"skipped", skipped},
                        {"samples", samples},   {"correct", correct},
                        {"accepted", accepted}, {"kept_tokens", kept_tokens},
                        {"pairs", pairs},       {"verdicts", nlohmann::json::object()}};
    for (int v = 0; v < kVerdicts; ++v) j["verdicts"][verdict_name(Verdict(v))] = verdicts[size_t(v)];
    return j;
  }
  static Tally from_json(const nlohmann::json& j) {
    Tally t;
    auto get = [&](const char* k) { return j.at(k).get<int64_t>(); };
    t.prompts = get("prompts");
    t.skipped = get("skipped");
    t.samples = get("samples");
    t.correct = get("correct");
    t.accepted = get("accepted");
    t.kept_tokens = get("kept_tokens");
    t.pairs = get("pairs");
    for (int v = 0; v < kVerdicts; ++v)
      t.verdicts[size_t(v)] = j.at("verdicts").at(verdict_name(Verdict(v))).get<int64_t>();
    return t;
  }
};

// The resume point: written atomically after each chunk's rows are appended and synced.
struct ProgressRecord {
  int64_t chunks = 0, problems = 0;
  int64_t data_bytes = 0, pairs_bytes = 0;  // file lengths after the last complete chunk
  Tally tally;
};

void save_progress(const std::string& run, const ProgressRecord& p) {
  nlohmann::json j = {{"chunks_done", p.chunks},
                      {"problems_done", p.problems},
                      {"data_bytes", p.data_bytes},
                      {"pairs_bytes", p.pairs_bytes},
                      {"tally", p.tally.to_json()}};
  fs::write_file_atomic(fs::join(run, kProgress), j.dump(2) + "\n");
}

ProgressRecord load_progress(const std::string& run) {
  const std::string path = fs::join(run, kProgress);
  R1_CHECK(fs::exists(path), "--resume: {} has no progress record ({})", run, path);
  try {
    nlohmann::json j = nlohmann::json::parse(fs::read_file(path));
    return {j.at("chunks_done").get<int64_t>(), j.at("problems_done").get<int64_t>(),
            j.at("data_bytes").get<int64_t>(), j.at("pairs_bytes").get<int64_t>(),
            Tally::from_json(j.at("tally"))};
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not a progress record: {}", path, e.what());
  }
}

int64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? int64_t(st.st_size) : 0;
}

// Cuts `path` back to `bytes` (creating it empty when bytes is 0): drops rows past the last
// progress record, including a half-written one.
void truncate_to(const std::string& path, int64_t bytes) {
  R1_CHECK(file_size(path) >= bytes, "{} is shorter ({} bytes) than its progress record says ({})", path,
           file_size(path), bytes);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  R1_CHECK(fd >= 0, "cannot open {}: {}", path, std::strerror(errno));
  const bool ok = ::ftruncate(fd, off_t(bytes)) == 0 && ::fsync(fd) == 0;
  const int e = errno;
  ::close(fd);
  R1_CHECK(ok, "cannot truncate {}: {}", path, std::strerror(e));
}

// Appends and syncs, so the bytes are on disk before the progress record that counts them.
void append_synced(const std::string& path, const std::string& bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  R1_CHECK(fd >= 0, "cannot open {}: {}", path, std::strerror(errno));
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      fail("cannot write {}: {}", path, std::strerror(e));
    }
    off += size_t(n);
  }
  const bool ok = ::fsync(fd) == 0;
  const int e = errno;
  ::close(fd);
  R1_CHECK(ok, "cannot flush {}: {}", path, std::strerror(e));
}

// A resume must use the recipe the run started with, or its files would mix two settings.
void check_same_recipe(const run::Recipe& r, const std::string& run) {
  const std::string path = fs::join(run, "config.yaml");
  run::Recipe saved(sample_recipe_defaults());
  saved.load_yaml(path);
  for (const std::string& k : r.keys()) {
    if (k == "run.dir" || k == "run.name") continue;
    R1_CHECK(saved.at(k) == r.at(k),
             "--resume: recipe key '{}' is {} but {} has {}; resume with the recipe "
             "the run started with, or start a new run",
             k, r.at(k).dump(), path, saved.at(k).dump());
  }
}

// The per-part rewards of a composite ({"math": 1, "format": 0}), else {name: reward}; plus the
// answer the math verifier read and the reward route, when there are. (Never timings: rows must not
// depend on the machine.)
nlohmann::ordered_json reward_summary(const reward::Result& res, const std::string& name) {
  const nlohmann::json& d = res.details;
  nlohmann::ordered_json s = nlohmann::ordered_json::object();
  for (const auto& [k, v] : d.items())
    if (v.is_object() && v.contains("reward")) s[k] = v.at("reward");
  if (s.empty()) s[name] = res.reward;
  const nlohmann::json& math = d.contains("math") && d.at("math").is_object() ? d.at("math") : d;
  if (math.contains("extracted")) s["extracted"] = math.at("extracted");
  if (d.contains("route")) s["route"] = d.at("route");
  return s;
}

// What every row carries about where it came from.
struct Provenance {
  std::string model, data;
  uint64_t seed = 0;
  double temperature = 0, top_p = 0;
};

void add_provenance(nlohmann::ordered_json& row, const Provenance& p) {
  row["model"] = p.model;
  row["data"] = p.data;
  row["seed"] = p.seed;
  row["temperature"] = p.temperature;
  row["top_p"] = p.top_p;
}

// Model text need not be valid UTF-8 (a byte-level model, a cut multi-byte character): such bytes are
// written as U+FFFD, as every r1 JSONL output does.
std::string jsonl_line(const nlohmann::ordered_json& row) {
  return row.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

struct ChunkOutput {
  std::string data, pairs;  // JSONL text to append
};

// Selects the samples of one chunk's problems and renders their rows; counts into `t`.
ChunkOutput select_chunk(const std::vector<data::Problem>& problems,
                         const std::vector<eval::ProblemSamples>& scored,
                         const std::vector<std::vector<double>>& correctness, const Settings& s,
                         const std::string& reward_name, const Provenance& prov, Tally& t) {
  ChunkOutput out;
  for (size_t i = 0; i < scored.size(); ++i) {
    const eval::ProblemSamples& ps = scored[i];
    const data::Problem& pr = problems[ps.problem];
    ++t.prompts;
    if (ps.skipped) {
      ++t.skipped;
      continue;
    }
    const Selection sel = select_samples(ps, correctness[i], s.filters, s.select);
    t.samples += int64_t(ps.samples.size());
    for (size_t j = 0; j < ps.samples.size(); ++j) {
      t.correct += correctness[i][j] >= s.filters.threshold ? 1 : 0;
      ++t.verdicts[size_t(sel.verdicts[j])];
    }
    t.accepted += sel.kept.empty() ? 0 : 1;
    for (size_t rank = 0; rank < sel.kept.size(); ++rank) {
      const size_t j = sel.kept[rank];
      const eval::ScoredSample& smp = ps.samples[j];
      nlohmann::ordered_json row = {{"prompt", ps.prompt},
                                    {"completion", smp.text},
                                    {"question", pr.question},
                                    {"answer", pr.answer},
                                    {"problem_id", pr.id},
                                    {"sample_index", j},
                                    {"rank", rank},
                                    {"reward", smp.result.reward},
                                    {"correct_reward", correctness[i][j]},
                                    {"rewards", reward_summary(smp.result, reward_name)},
                                    {"length", smp.tokens},
                                    {"finish", rollout::finish_reason_name(smp.finish)}};
      add_provenance(row, prov);
      out.data += jsonl_line(row);
      t.kept_tokens += smp.tokens;
    }
    for (const auto& [c, r] : sel.pairs) {
      const eval::ScoredSample &chosen = ps.samples[c], &rejected = ps.samples[r];
      nlohmann::ordered_json row = {{"prompt", ps.prompt},
                                    {"chosen", chosen.text},
                                    {"rejected", rejected.text},
                                    {"question", pr.question},
                                    {"answer", pr.answer},
                                    {"problem_id", pr.id},
                                    {"chosen_index", c},
                                    {"rejected_index", r},
                                    {"chosen_reward", chosen.result.reward},
                                    {"rejected_reward", rejected.result.reward},
                                    {"chosen_correct_reward", correctness[i][c]},
                                    {"rejected_correct_reward", correctness[i][r]}};
      add_provenance(row, prov);
      out.pairs += jsonl_line(row);
      ++t.pairs;
    }
  }
  return out;
}

// The correctness reward of every sample: the ranking reward's own when `correct` is null.
std::vector<std::vector<double>> score_correctness(const std::vector<data::Problem>& problems,
                                                   const std::vector<eval::ProblemSamples>& scored,
                                                   const reward::Reward* correct) {
  std::vector<reward::Sample> samples;
  if (correct)
    for (const eval::ProblemSamples& ps : scored)
      for (const eval::ScoredSample& s : ps.samples)
        samples.push_back(
            {s.text, problems[ps.problem].answer, nullptr, ps.prompt, problems[ps.problem].type});
  const std::vector<reward::Result> res =
      correct ? reward::score_batch(*correct, samples) : std::vector<reward::Result>{};
  std::vector<std::vector<double>> out(scored.size());
  size_t k = 0;
  for (size_t i = 0; i < scored.size(); ++i)
    for (const eval::ScoredSample& s : scored[i].samples)
      out[i].push_back(correct ? res[k++].reward : s.result.reward);
  return out;
}

nlohmann::json make_summary(const Tally& t, const std::string& run, const std::string& model) {
  const int64_t sampled = t.prompts - t.skipped, kept = t.verdicts[size_t(Verdict::Kept)];
  nlohmann::json filtered = nlohmann::json::object();
  for (int v = 1; v < kVerdicts; ++v) filtered[verdict_name(Verdict(v))] = t.verdicts[size_t(v)];
  return {{"prompts", t.prompts},
          {"skipped_prompts", t.skipped},
          {"samples", t.samples},
          {"correct", t.correct},
          {"pass@1", t.samples ? double(t.correct) / double(t.samples) : 0.0},
          {"accepted_prompts", t.accepted},
          {"acceptance_rate", sampled ? double(t.accepted) / double(sampled) : 0.0},
          {"kept", kept},
          {"mean_kept_length", kept ? double(t.kept_tokens) / double(kept) : 0.0},
          {"filtered", filtered},
          {"pairs", t.pairs},
          {"model", model},
          {"data", fs::join(run, kData)},
          {"pairs_file", fs::join(run, kPairs)}};
}

}  // namespace

bool sample_can_resume(const std::string& run_dir) { return fs::exists(fs::join(run_dir, kProgress)); }

std::string run_sample(const run::Recipe& r, const run::RunOptions& opts) {
  // Everything that can be wrong with the inputs fails here, before any compute.
  const Settings s = read_settings(r);
  const Device device = run::recipe_device(r);
  std::unique_ptr<text::Codec> codec = run::load_codec(r);
  std::vector<data::Problem> problems = run::load_problems(r);
  if (s.limit > 0 && size_t(s.limit) < problems.size()) problems.resize(size_t(s.limit));
  std::unique_ptr<reward::Reward> rank_reward = run::make_recipe_reward(r);
  const std::string reward_spec = r.get<std::string>("reward.spec");
  // The ranking reward's own score decides correctness when it is the same reward (no per-type routes).
  std::unique_ptr<reward::Reward> correct_reward;
  if (s.correct_spec != reward_spec || !r.get<std::vector<std::string>>("reward.routes").empty())
    correct_reward = make_correctness_reward(s.correct_spec);
  run::PromptRenderer render = run::make_renderer(r);
  const std::string run = run::run_path(r);
  const std::string data_file = fs::join(run, kData), pairs_file = fs::join(run, kPairs);

  ProgressRecord progress;
  if (opts.resume) {
    progress = load_progress(run);
    check_same_recipe(r, run);
    truncate_to(data_file, progress.data_bytes);
    truncate_to(pairs_file, progress.pairs_bytes);
    log::info("resuming {} after {} problems ({} chunks)", run, progress.problems, progress.chunks);
  }
  std::unique_ptr<model::Transformer> m = run::load_or_init_model(r, *codec, device, s.sampling.seed, false);
  if (!opts.resume) {  // start over: a summary left from an earlier run would say this one finished
    std::filesystem::create_directories(run);
    std::filesystem::remove(fs::join(run, "summary.json"));
    fs::write_file_atomic(fs::join(run, "config.yaml"), r.to_yaml());
    truncate_to(data_file, 0);
    truncate_to(pairs_file, 0);
    save_progress(run, progress);
  }

  const std::string model_path = r.get<std::string>("model.path");
  const Provenance prov{model_path.empty() ? "init:" + r.get<std::string>("model.init_preset") : model_path,
                        r.get<std::string>("data.path"), s.sampling.seed, r.get<double>("sample.temperature"),
                        r.get<double>("sample.top_p")};
  const int64_t total = int64_t(problems.size());
  const int64_t chunks = (total + s.chunk - 1) / s.chunk;
  Progress bar("sample", total - progress.problems, "problem");
  for (int64_t c = progress.chunks; c < chunks; ++c) {
    const int64_t begin = c * s.chunk, end = std::min(total, begin + s.chunk);
    const std::vector<data::Problem> part(problems.begin() + begin, problems.begin() + end);
    // The bar moves with finished sequences, in problems.
    int64_t shown = 0;
    auto on_progress = [&](int64_t done, int64_t all) {
      const int64_t now = all > 0 ? done * int64_t(part.size()) / all : 0;
      if (now > shown) bar.update(now - shown);
      shown = std::max(shown, now);
    };
    const std::vector<eval::ProblemSamples> scored =
        eval::generate_scored(*m, *codec, *rank_reward, part, render, s.sampling, on_progress);
    const auto correctness = score_correctness(part, scored, correct_reward.get());
    const ChunkOutput out =
        select_chunk(part, scored, correctness, s, rank_reward->name(), prov, progress.tally);
    append_synced(data_file, out.data);
    append_synced(pairs_file, out.pairs);
    progress.chunks = c + 1;
    progress.problems = end;
    progress.data_bytes += int64_t(out.data.size());
    progress.pairs_bytes += int64_t(out.pairs.size());
    save_progress(run, progress);
    const Tally& t = progress.tally;
    bar.update(int64_t(part.size()) - shown,
               fmt::format("kept {} pass@1 {:.2f} accepted {:.2f}", t.verdicts[size_t(Verdict::Kept)],
                           t.samples ? double(t.correct) / double(t.samples) : 0.0,
                           t.prompts > t.skipped ? double(t.accepted) / double(t.prompts - t.skipped) : 0.0));
    if (opts.stop_after >= 0 && c == opts.stop_after) std::_Exit(137);  // as abrupt as kill -9
  }
  bar.finish();
  const nlohmann::json summary = make_summary(progress.tally, run, prov.model);
  run::write_summary(run, summary);
  log::info("kept {} samples of {} prompts (acceptance {:.2f}, pass@1 {:.3f}), {} pairs: {}",
            summary["kept"].get<int64_t>(), summary["prompts"].get<int64_t>(),
            summary["acceptance_rate"].get<double>(), summary["pass@1"].get<double>(),
            summary["pairs"].get<int64_t>(), data_file);
  return run;
}

}  // namespace r1::pipeline
