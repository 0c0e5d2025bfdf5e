#pragma once
// The shape of a normalised answer: a scalar, or a structure compared element by element.
#include <optional>
#include <string>
#include <vector>

namespace r1::reward {

struct Answer {
  enum Kind { Scalar, Sequence, Set, Union, Matrix, Text, Choice, Equation, Relation, Ratio, Labelled };
  Kind kind = Scalar;
  std::string text;            // Scalar: LaTeX; Text: lower-case words; Choice: the letter
  char open = 0, close = 0;    // Sequence: "(", "]" ... — tuples and intervals alike
  std::vector<Answer> items;   // elements; Matrix row-major; Equation {lhs, rhs}; Relation operands
  int rows = 0, cols = 0;      // Matrix
  std::string label;           // the name an answer was given ("x" of "x = 3"); "" when none
  std::vector<std::string> ops;  // Relation: "<", "\le" or "\ne" between consecutive items
  bool ordered_labels = false;   // Labelled: the order is given, as in "(p,q) = (3,2)"
  std::string approx;            // "\frac{1}{3} \approx 0.33": the approximation given beside the value
};

const char* kind_name(Answer::Kind k);

// `s` is normalize_latex() output.
Answer parse_answer(const std::string& s);

// Splits s at `sep` outside (), [], {} and \{ \}.
std::vector<std::string> split_top(const std::string& s, const std::string& sep);

// Lower-case letters and digits of a text answer: "\text{ Evelyn }" → "evelyn".
std::string text_key(const std::string& s);

// ---- the parts parse_answer is built from (math_relation.cpp, math_matrix.cpp) ----

// A name an answer may be given: x, x_1, AB, \theta, \text{area}, f(x), {M}, \angle ABC.
bool is_name(const std::string& s);
// The name's spelling for comparing labels: no spaces, \text and braces.
std::string label_key(const std::string& s);
// "(p, q)" → {"p", "q"} when every element is a name.
std::optional<std::vector<std::string>> name_tuple(const std::string& s);
// Inequalities: "x \ge 5" → [5, \infty); "-2 \le x \le 7" → [-2, 7]; "x \ne 3" → a union; others a
// Relation compared operand by operand. nullopt when s has no relation at its top level.
std::optional<Answer> parse_relation(const std::string& s);
// "11:21" (each part a scalar) → Ratio; nullopt otherwise.
std::optional<Answer> parse_ratio(const std::string& s);
// One matrix environment (pmatrix, bmatrix, array, ...; in brackets or not), or arithmetic on them
// ("2 M", "M + N", "M N"); cells become scalar LaTeX. nullopt when s is neither.
std::optional<Answer> parse_matrix_expression(const std::string& s);

}  // namespace r1::reward
