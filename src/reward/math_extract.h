#pragma once
// Finding the final answer in a completion: the last \boxed{} / \fbox{}, <answer>…</answer>,
// "the (final) answer is …", or GSM8K's "#### …". Which forms count is configurable.
#include <optional>
#include <string>
#include <vector>

namespace r1::reward {

struct ExtractOptions {
  // Tried in this order; the first form present in the text wins.
  std::vector<std::string> methods = {"boxed", "answer_tag", "answer_is", "hash"};
  std::string answer_open = "<answer>", answer_close = "</answer>";
  size_t max_chars = 1000;  // longer "answers" are refused: they are not answers and cost parse time
};

struct Extracted {
  std::string text;    // the answer; several boxes in a row are joined: "2, -3"
  std::string method;  // which form it came from
  std::vector<std::string> boxes;  // the boxes of that row, when there were several
};

// The content of the last \boxed{...} or \fbox{...} in s (balanced braces), if any.
std::optional<std::string> last_boxed(const std::string& s);
// The last boxes in a row, in order: "$\boxed{2}$ and $\boxed{-3}$" → {"2", "-3"}. Boxes belong to one
// row when only connectives lie between them (commas, "and", "or", math delimiters, spaces).
std::vector<std::string> last_boxed_row(const std::string& s);
// The value a sentence gives: "The volume of $ABCD$ is 120" → "120"; text without prose is kept.
std::string value_in_sentence(const std::string& s);

std::optional<Extracted> extract_answer(const std::string& completion, const ExtractOptions& o = {});

}  // namespace r1::reward
