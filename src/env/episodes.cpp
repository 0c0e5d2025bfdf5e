#include "env/episodes.h"

#include <memory>
#include <mutex>

#include "base/error.h"

namespace r1::env {

std::string model_text(const rollout::Completion& c, const text::Codec& codec) {
  std::vector<int32_t> ids;
  for (size_t t = 0; t < c.tokens.size(); ++t)
    if (rollout::is_model_token(c, t)) ids.push_back(c.tokens[t]);
  const bool stopped_on_model_token =
      c.finish == rollout::FinishReason::Stop && !c.tokens.empty() && rollout::is_model_token(c, c.tokens.size() - 1);
  if (stopped_on_model_token && !ids.empty()) ids.pop_back();
  return codec.decode(ids);
}

nlohmann::json trajectory_turns(const rollout::Completion& c, const text::Codec& codec) {
  nlohmann::json turns = nlohmann::json::array();
  size_t t = 0;
  while (t < c.tokens.size()) {
    const bool model = rollout::is_model_token(c, t);
    std::vector<int32_t> ids;
    for (; t < c.tokens.size() && rollout::is_model_token(c, t) == model; ++t) ids.push_back(c.tokens[t]);
    turns.push_back({{"role", model ? "model" : "observation"}, {"text", codec.decode(ids)}});
  }
  return turns;
}

std::vector<EpisodeRun> run_episodes(rollout::Engine& engine, const text::Codec& codec, const Environment* env,
                                     const EpisodeSettings& settings, const std::vector<rollout::Request>& requests,
                                     const std::vector<const data::Problem*>& problems, rollout::GenerateParams gp) {
  R1_CHECK(problems.size() == requests.size(), "run_episodes: {} problems for {} requests", problems.size(),
           requests.size());
  // Episodes by (request, sample), reset before generation; each is touched by one worker at a time
  // (a sequence has at most one call in flight).
  std::vector<std::vector<std::unique_ptr<Episode>>> episodes(requests.size());
  std::mutex encode_mu;  // the codec is not promised to be thread-safe
  if (env) {
    for (size_t i = 0; i < requests.size(); ++i)
      for (int s = 0; s < requests[i].n; ++s) episodes[i].push_back(env->reset(*problems[i]));
    gp.token_text = [&codec](int32_t id) { return codec.token_text(id); };
    gp.turns.max_turns = settings.max_turns;
    gp.turns.threads = settings.threads;
    gp.turns.ends_turn = [env](int64_t, int64_t, const std::string& text) { return env->ends_turn(text); };
    gp.turns.respond = [&](const rollout::Turn& turn) {
      const StepResult r = episodes[size_t(turn.prompt)][size_t(turn.sample)]->step({turn.tokens, turn.text});
      rollout::Observation ob;
      ob.end = r.done;
      if (!r.observation.empty()) {
        std::lock_guard<std::mutex> lock(encode_mu);
        ob.tokens = codec.encode(r.observation);
      }
      // Per-turn rewards stay in the episode; finish() adds them up.
      return ob;
    };
  }
  std::vector<rollout::Completion> outs = engine.generate(requests, gp);
  std::vector<EpisodeRun> runs(outs.size());
  for (size_t k = 0; k < outs.size(); ++k) {
    EpisodeRun& r = runs[k];
    r.out = std::move(outs[k]);
    r.model_text = model_text(r.out, codec);
    r.trajectory_text = codec.decode(r.out.tokens);
    if (env)
      r.outcome = episodes[size_t(r.out.prompt_index)][size_t(r.out.sample_index)]->finish(r.trajectory_text);
  }
  return runs;
}

}  // namespace r1::env
