// Lexer and parser of the Jinja subset, with the whitespace rules transformers renders chat templates under:
// trim_blocks and lstrip_blocks on, {%- -%} / {{- -}} / {#- -#} strip, {%+ / +%} opt out, newlines normalized to
// "\n" and one trailing newline dropped (keep_trailing_newline off).
#pragma once

#include <string>

#include "tokenizer/jinja/ast.h"

namespace hyrax::jinja {

/// Parses a template; errors (hyrax::Error) name the construct and its line.
Body parse_template(const std::string& source);

}  // namespace hyrax::jinja
