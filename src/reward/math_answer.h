#pragma once
// The shape of a normalised answer: a scalar, or a structure compared element by element.
#include <string>
#include <vector>

namespace r1::reward {

struct Answer {
  enum Kind { Scalar, Sequence, Set, Union, Matrix, Text, Choice, Equation };
  Kind kind = Scalar;
  std::string text;            // Scalar: LaTeX; Text: lower-case words; Choice: the letter
  char open = 0, close = 0;    // Sequence: "(", "]" ... — tuples and intervals alike
  std::vector<Answer> items;   // elements; Matrix row-major; Equation {lhs, rhs}
  int rows = 0, cols = 0;      // Matrix
};

const char* kind_name(Answer::Kind k);

// `s` is normalize_latex() output.
Answer parse_answer(const std::string& s);

// Splits s at `sep` outside (), [], {} and \{ \}.
std::vector<std::string> split_top(const std::string& s, const std::string& sep);

// Lower-case letters and digits of a text answer: "\text{ Evelyn }" → "evelyn".
std::string text_key(const std::string& s);

}  // namespace r1::reward
