#pragma once
// Splits a Jinja template into text and tag tokens, applying the whitespace rules transformers
// renders chat templates with: trim_blocks, lstrip_blocks, '-' and '+' markers, and dropping one
// trailing newline of the template (keep_trailing_newline=False).
#include <string>
#include <vector>

namespace r1::text::jinja {

struct Token {
  enum class Kind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof } kind;
  std::string text;
  int line;
};

std::vector<Token> lex(const std::string& source);

}  // namespace r1::text::jinja
