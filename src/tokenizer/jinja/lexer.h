// The lexer of the Jinja subset: the template becomes text segments and tag segments (token lists), with
// transformers' whitespace rules already applied (trim_blocks, lstrip_blocks, {%- -%}, {%+ +%}, newlines
// normalized to "\n", one trailing newline dropped).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hyrax::jinja {

struct Token {
  enum class Type { kName, kInt, kFloat, kString, kOp, kEnd };
  Type type = Type::kEnd;
  std::string text;  // name, operator, string value
  int64_t i = 0;
  double f = 0;
  int line = 0;
};

struct Segment {
  enum class Kind { kText, kVar, kBlock } kind;
  std::string text;
  std::vector<Token> tokens;
  int line = 0;
};

/// Splits a template into segments; errors name the line.
std::vector<Segment> lex_template(const std::string& source);

/// Throws hyrax::Error("chat template line N: what").
[[noreturn]] void syntax_error(int line, const std::string& what);

}  // namespace hyrax::jinja
