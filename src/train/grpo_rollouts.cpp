#include "train/grpo_rollouts.h"

#include <algorithm>

#include "base/error.h"
#include "base/rng.h"
#include "train/grpo_moe.h"

namespace r1::train {

std::vector<Group> render_prompts(const std::vector<PromptDraw>& draws,
                                  const std::vector<data::Problem>& problems,
                                  const std::function<std::string(const data::Problem&)>& render,
                                  const text::Codec& codec, int max_prompt_tokens,
                                  std::vector<int64_t>& too_long) {
  std::vector<Group> groups;
  for (const PromptDraw& d : draws) {
    Group g;
    g.slot = d.slot;
    g.problem = d.problem;
    g.prompt_text = render(problems[size_t(d.problem)]);
    g.prompt = codec.encode(g.prompt_text);
    if (g.prompt.empty() || int64_t(g.prompt.size()) > max_prompt_tokens) {
      too_long.push_back(d.slot);
      continue;
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

Progress rollout_progress(int64_t bound) {
  Progress bar("rollout", bound, "tok");
  bar.quiet_for(10.0);
  return bar;
}

uint64_t sampling_seed(uint64_t run_seed, int64_t step) {
  uint32_t r[4];
  Philox::generate(run_seed, 0xC0FFEE, uint64_t(step), r);
  return (uint64_t(r[0]) << 32) | r[1];
}

void sample_groups(rollout::Engine& engine, const text::Codec& codec,
                   const std::vector<data::Problem>& problems, const GrpoConfig& cfg, uint64_t seed,
                   std::vector<Group>& groups, const env::Environment* env) {
  if (groups.empty()) return;
  rollout::GenerateParams gp;
  gp.sampling = {cfg.temperature, cfg.top_p, cfg.top_k, seed, cfg.sampled_logprobs};
  gp.exact_logprobs = cfg.exact_logprobs;
  gp.max_new_tokens = cfg.max_completion_tokens;
  if (!cfg.ignore_eos) gp.stop_ids = codec.eos_ids();
  gp.record_routes = records_routes(cfg.moe, engine.model().config());
  Progress bar = rollout_progress(int64_t(groups.size()) * cfg.group_size * cfg.max_completion_tokens);
  gp.on_decoded = [&bar](int64_t n) { bar.update(n); };
  std::vector<rollout::Request> reqs;
  std::vector<const data::Problem*> of_request;
  for (const Group& g : groups) {
    reqs.push_back({g.prompt, cfg.group_size, problems[size_t(g.problem)].id});
    of_request.push_back(&problems[size_t(g.problem)]);
  }
  std::vector<env::EpisodeRun> runs =
      env::run_episodes(engine, codec, env, {cfg.max_turns, cfg.tool_threads}, reqs, of_request, gp);
  for (Group& g : groups) g.seqs.assign(size_t(cfg.group_size), {});
  for (env::EpisodeRun& r : runs) {
    Sequence& s = groups[size_t(r.out.prompt_index)].seqs[size_t(r.out.sample_index)];
    s.text = std::move(r.model_text);
    s.episode = std::move(r.outcome);
    s.out = std::move(r.out);
  }
  bar.finish();
}

void ScoreSums::add(const ScoreSums& o) {
  completions += o.completions;
  score_sum += o.score_sum;
  truncated += o.truncated;
  overlong_penalty_sum += o.overlong_penalty_sum;
  timeouts += o.timeouts;
  episodes += o.episodes;
  tool_calls += o.tool_calls;
  tool_errors += o.tool_errors;
  turns += o.turns;
  for (const auto& [name, v] : o.part_sums) part_sums[name] += v;
}

double overlong_penalty(int64_t length, int max_tokens, int buffer, double penalty) {
  if (buffer <= 0) return 0.0;
  const int64_t start = max_tokens - buffer;
  return length > start ? -penalty * double(length - start) / double(buffer) : 0.0;
}

double filter_value(const reward::Reward& reward, const reward::Result& r, const std::string& filter,
                    double shaped) {
  if (filter == "reward") return shaped;
  if (r.details.contains(filter)) {
    const nlohmann::json& part = r.details.at(filter);
    if (part.is_object() && part.contains("reward") && part.at("reward").is_number())
      return part.at("reward").get<double>();
  }
  if (reward.name() == filter) return r.reward;
  std::string parts;
  for (const auto& [name, v] : r.details.items())
    if (v.is_object() && v.contains("reward")) parts += (parts.empty() ? "" : ", ") + name;
  fail(
      "grpo.dynamic_sampling_filter '{}': the reward '{}' has no such part (parts: {}); name one, or "
      "'reward'",
      filter, reward.name(), parts.empty() ? "none" : parts);
}

ScoreSums score_groups(std::vector<Group>& groups, const reward::Reward& reward,
                       const std::vector<data::Problem>& problems, const GrpoConfig& cfg) {
  std::vector<reward::Sample> samples;
  for (const Group& g : groups) {
    const data::Problem& p = problems[size_t(g.problem)];
    for (const Sequence& s : g.seqs) samples.push_back({s.text, p.answer, nullptr, g.prompt_text, p.type});
  }
  const std::vector<reward::Result> results = reward::score_batch(reward, samples);
  ScoreSums sums;
  size_t k = 0;
  for (Group& g : groups)
    for (Sequence& s : g.seqs) {
      const reward::Result& r = results[k++];
      const int64_t length = rollout::model_token_count(s.out);  // observations are not the model's length
      s.score = r.reward;
      s.details = r.details;
      if (s.episode) {
        const env::EpisodeOutcome& e = *s.episode;
        s.score += e.reward;
        nlohmann::json part = e.details;
        part["reward"] = e.reward;
        part["turns"] = e.turns;
        if (!s.details.is_object()) s.details = nlohmann::json::object();
        s.details["env"] = part;
        sums.episodes += 1;
        sums.tool_calls += e.tool_calls;
        sums.tool_errors += e.tool_errors;
        sums.turns += e.turns;
      }
      s.truncated = s.out.finish == rollout::FinishReason::Length;
      s.in_loss = length > 0 && !(cfg.mask_truncated && s.truncated);
      const double penalty =
          overlong_penalty(length, cfg.max_completion_tokens, cfg.overlong_buffer, cfg.overlong_penalty);
      s.reward = s.score + penalty;
      if (cfg.dynamic_sampling)
        s.filter_value = filter_value(reward, r, cfg.dynamic_sampling_filter, s.reward);
      sums.completions += 1;
      sums.score_sum += s.score;
      sums.truncated += s.truncated;
      sums.overlong_penalty_sum += penalty;
      sums.timeouts += r.details.value("timed_out", false);
      // A composite reward reports each part under its name as {"reward": x, ...}.
      for (const auto& [name, v] : s.details.items())
        if (v.is_object() && v.contains("reward") && v.at("reward").is_number())
          sums.part_sums[name] += v.at("reward").get<double>();
    }
  return sums;
}

GroupVerdict judge_group(const Group& g, bool dynamic_sampling) {
  auto spread = [&](double Sequence::*field) {
    double lo = 1e300, hi = -1e300;
    for (const Sequence& s : g.seqs) {
      lo = std::min(lo, s.*field);
      hi = std::max(hi, s.*field);
    }
    return hi - lo;
  };
  GroupVerdict v;
  v.zero_variance = !(spread(&Sequence::reward) >= 1e-12);  // NaN rewards count as no signal
  v.filtered = dynamic_sampling && !(spread(&Sequence::filter_value) >= 1e-12);
  return v;
}

}  // namespace r1::train
