#pragma once
// cons@k: the k samples of a problem vote with their final answers and the most frequent answer is
// the model's answer. Tie rule: among the answers with the most votes, the one whose first vote came
// earliest (lowest sample index) wins. A sample with no answer casts no vote, so it never wins unless
// no sample has an answer; then there is no winner and the vote counts as wrong.
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace r1::eval {

// When two answers are the same vote.
enum class VoteRule {
  String,    // equal normalised strings (normalize_latex): cheap, but "0.5" and "\frac{1}{2}" split
  Verifier,  // the math verifier says equivalent: the same judgement that scores the samples
};
VoteRule parse_vote_rule(const std::string& name);  // "string" | "verifier"

// A sample's vote: the final answer extract_answer finds in the completion, normalised; nullopt when
// it has none.
std::optional<std::string> vote_answer(const std::string& completion);

struct VoteResult {
  int winner = -1;     // earliest sample voting for the winning answer; -1: no sample has an answer
  std::string answer;  // that sample's answer
  int votes = 0;       // samples that voted for it
};

// Answers join the group of the first earlier answer they are the same as (compared with the group's
// first answer, so a non-transitive rule still gives one deterministic grouping).
VoteResult majority_vote(const std::vector<std::optional<std::string>>& answers, VoteRule rule);

}  // namespace r1::eval
