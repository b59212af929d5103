// The regexes of Split pre-tokenizers. The patterns that real byte-level BPE tokenizers use (GPT-2's, cl100k's and
// its variants, o200k's) run on hand-written matchers that reproduce Oniguruma's backtracking result exactly and
// fast; any other pattern runs on PCRE2 (JIT), with \s widened to Oniguruma's (Unicode White_Space) meaning.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace hyrax::tok {

class SplitRegex {
 public:
  virtual ~SplitRegex() = default;

  /// Finds the leftmost match in text[pos..] (text is well-formed UTF-8); false if there is none. After an empty
  /// match the caller resumes one character further, as Oniguruma's find_iter does.
  virtual bool find(std::string_view text, size_t pos, size_t* start, size_t* end) const = 0;

  /// Which engine runs the pattern ("native gpt2", "native cl100k", "native o200k", "pcre2").
  virtual std::string engine() const = 0;

  /// Compiles `pattern` (Oniguruma syntax as in tokenizer.json). force_pcre2 skips the native matchers (tests).
  static std::unique_ptr<SplitRegex> compile(const std::string& pattern, bool force_pcre2 = false);

  /// A regex matching `literal` exactly (Split's {"String": ...} pattern).
  static std::unique_ptr<SplitRegex> literal(const std::string& literal);
};

/// GPT-2's pattern, the one ByteLevel uses when use_regex is true.
extern const char* const kGpt2Pattern;
/// cl100k_base's pattern as tokenizer.json files spell it (also Llama 3's).
extern const char* const kCl100kPattern;
/// o200k_base's pattern.
extern const char* const kO200kPattern;

}  // namespace hyrax::tok
