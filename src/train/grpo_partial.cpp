#include "train/grpo_partial.h"

#include <algorithm>

#include "base/error.h"
#include "env/episodes.h"

namespace r1::train {

bool rollout_done(const Sequence& s, int max_completion_tokens) {
  return s.out.finish == rollout::FinishReason::Stop || int64_t(s.out.tokens.size()) >= max_completion_tokens;
}

bool group_done(const Group& g, int max_completion_tokens) {
  return !g.seqs.empty() && std::all_of(g.seqs.begin(), g.seqs.end(), [&](const Sequence& s) {
    return rollout_done(s, max_completion_tokens);
  });
}

int64_t carried_stream(const Group& g, int64_t sample, int group_size) {
  return int64_t(0x80000000u | uint32_t((g.draw * group_size + sample) & 0x7fffffff));
}

namespace {

// A segment's tokens appended to the sequence it continues.
void append_segment(Sequence& s, const rollout::Completion& c, int64_t step, const text::Codec& codec,
                    int max_completion_tokens) {
  rollout::Completion& o = s.out;
  o.tokens.insert(o.tokens.end(), c.tokens.begin(), c.tokens.end());
  o.logprobs.insert(o.logprobs.end(), c.logprobs.begin(), c.logprobs.end());
  o.from_model.insert(o.from_model.end(), c.from_model.begin(), c.from_model.end());
  o.finish = c.finish;
  s.versions.insert(s.versions.end(), c.tokens.size(), int32_t(step));
  if (rollout_done(s, max_completion_tokens)) s.text = env::model_text(o, codec);
}

}  // namespace

void roll_segment(rollout::Engine& engine, const text::Codec& codec,
                  const std::vector<data::Problem>& problems, const GrpoConfig& cfg, uint64_t seed,
                  int64_t step, std::vector<Group>& in_flight) {
  const int M = cfg.max_completion_tokens, G = cfg.group_size;
  rollout::GenerateParams gp;
  gp.sampling = {cfg.temperature, cfg.top_p, cfg.top_k, seed, cfg.sampled_logprobs};
  gp.exact_logprobs = cfg.exact_logprobs;
  gp.max_new_tokens = std::min(cfg.partial_rollout_tokens, M);
  if (!cfg.ignore_eos) gp.stop_ids = codec.eos_ids();
  std::vector<rollout::Request> reqs;
  std::vector<std::pair<size_t, int64_t>> target;  // per request: (group, sample); sample -1: all G
  for (size_t gi = 0; gi < in_flight.size(); ++gi) {
    Group& g = in_flight[gi];
    if (g.seqs.empty()) {
      reqs.push_back({g.prompt, G, problems[size_t(g.problem)].id});
      target.emplace_back(gi, -1);
      g.seqs.assign(size_t(G), {});
      for (int s = 0; s < G; ++s) g.seqs[size_t(s)].out.sample_index = s;
      continue;
    }
    for (int64_t s = 0; s < int64_t(g.seqs.size()); ++s) {
      const rollout::Completion& o = g.seqs[size_t(s)].out;
      if (rollout_done(g.seqs[size_t(s)], M)) continue;
      std::vector<int32_t> prefix = g.prompt;  // recomputed by the engine's prefill, as a preempted sequence
      prefix.insert(prefix.end(), o.tokens.begin(), o.tokens.end());
      const int left = M - int(o.tokens.size());
      reqs.push_back(
          {std::move(prefix), 1, carried_stream(g, s, G), std::min(cfg.partial_rollout_tokens, left)});
      target.emplace_back(gi, s);
    }
  }
  if (reqs.empty()) return;
  int64_t bound = 0;
  for (const rollout::Request& r : reqs) bound += int64_t(r.n) * (r.max_new_tokens > 0 ? r.max_new_tokens : gp.max_new_tokens);
  Progress bar = rollout_progress(bound);
  gp.on_decoded = [&bar](int64_t n) { bar.update(n); };
  const std::vector<rollout::Completion> outs = engine.generate(reqs, gp);
  bar.finish();
  for (const rollout::Completion& c : outs) {
    const auto [gi, sample] = target[size_t(c.prompt_index)];
    Sequence& s = in_flight[gi].seqs[size_t(sample < 0 ? c.sample_index : sample)];
    append_segment(s, c, step, codec, M);
  }
}

std::vector<Group> take_finished(std::vector<Group>& in_flight, int64_t n, int max_completion_tokens) {
  std::vector<Group> done, rest;
  for (Group& g : in_flight) {
    if (int64_t(done.size()) < n && group_done(g, max_completion_tokens))
      done.push_back(std::move(g));
    else
      rest.push_back(std::move(g));
  }
  in_flight = std::move(rest);
  return done;
}

Carried carried(const std::vector<Group>& in_flight, int max_completion_tokens) {
  Carried c;
  for (const Group& g : in_flight)
    for (const Sequence& s : g.seqs)
      if (!rollout_done(s, max_completion_tokens)) {
        c.seqs += 1;
        c.tokens += double(s.out.tokens.size());
      }
  return c;
}

int64_t max_version_lag(const std::vector<Group>& kept, int64_t step) {
  int64_t lag = 0;
  for (const Group& g : kept)
    for (const Sequence& s : g.seqs)
      if (s.in_loss)
        for (int32_t v : s.versions) lag = std::max(lag, step - v);
  return lag;
}

void keep_sampler_pi_old(std::vector<Group>& kept, int64_t step) {
  for (Group& g : kept)
    for (Sequence& s : g.seqs) {
      if (s.old_logp.empty()) continue;
      R1_CHECK(s.versions.size() == s.old_logp.size() && s.out.logprobs.size() == s.old_logp.size(),
               "GRPO partial rollouts: {} versions and {} sampler log-probs for {} tokens", s.versions.size(),
               s.out.logprobs.size(), s.old_logp.size());
      for (size_t t = 0; t < s.old_logp.size(); ++t)
        if (s.versions[t] < step) s.old_logp[t] = s.out.logprobs[t];
    }
}

nlohmann::json in_flight_json(const std::vector<Group>& in_flight) {
  nlohmann::json groups = nlohmann::json::array();
  for (const Group& g : in_flight) {
    nlohmann::json seqs = nlohmann::json::array();
    for (const Sequence& s : g.seqs)
      seqs.push_back(
          {{"tokens", s.out.tokens},
           {"logprobs", s.out.logprobs},  // floats, printed with enough digits to read back exactly
           {"from_model", s.out.from_model},
           {"versions", s.versions},
           {"finish", rollout::finish_reason_name(s.out.finish)}});
    // Texts are not stored (they need not be UTF-8): the trainer renders and decodes them again.
    groups.push_back({{"draw", g.draw}, {"problem", g.problem}, {"prompt", g.prompt}, {"seqs", seqs}});
  }
  return groups;
}

std::vector<Group> in_flight_from_json(const nlohmann::json& j) {
  R1_CHECK(j.is_array(), "state.json: partial_rollouts must be a list of groups");
  std::vector<Group> groups;
  for (const nlohmann::json& jg : j) {
    Group g;
    g.draw = jg.at("draw").get<int64_t>();
    g.slot = g.draw;
    g.problem = jg.at("problem").get<int64_t>();
    g.prompt = jg.at("prompt").get<std::vector<int32_t>>();
    int64_t sample = 0;
    for (const nlohmann::json& js : jg.at("seqs")) {
      Sequence s;
      s.out.sample_index = sample++;
      s.out.tokens = js.at("tokens").get<std::vector<int32_t>>();
      s.out.logprobs = js.at("logprobs").get<std::vector<float>>();
      s.out.from_model = js.at("from_model").get<std::vector<uint8_t>>();
      s.versions = js.at("versions").get<std::vector<int32_t>>();
      s.out.finish = js.at("finish").get<std::string>() == "stop" ? rollout::FinishReason::Stop
                                                                  : rollout::FinishReason::Length;
      R1_CHECK(s.out.logprobs.size() == s.out.tokens.size() && s.versions.size() == s.out.tokens.size(),
               "state.json: a carried sequence of problem {} has {} tokens but {} log-probs and {} versions",
               g.problem, s.out.tokens.size(), s.out.logprobs.size(), s.versions.size());
      g.seqs.push_back(std::move(s));
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

}  // namespace r1::train
