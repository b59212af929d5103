// Pre-tokenization as HF tokenizers runs it on the text between added tokens: a sequence of steps, each splitting
// every current piece further. Supported steps: Split (regex or literal pattern, the five delimiter behaviours,
// invert) and ByteLevel (add_prefix_space, use_regex with GPT-2's pattern); the byte mapping itself is implicit,
// since hyrax runs BPE on raw bytes.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/split_regex.h"

namespace hyrax::tok {

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum Kind { kSplit, kByteLevel } kind = kSplit;
  std::unique_ptr<SplitRegex> regex;  // Split's pattern; ByteLevel's GPT-2 pattern when use_regex
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  bool add_prefix_space = false;  // ByteLevel
};

class PreTokenizer {
 public:
  PreTokenizer() = default;
  /// From tokenizer.json's "pre_tokenizer" (null: the whole text is one piece). force_pcre2: run every regex on
  /// PCRE2 (tests cross-check the native matchers with it).
  static PreTokenizer from_json(const nlohmann::json& j, bool force_pcre2 = false);
  /// A single Split(regex, Isolated) step: tiktoken's pre-tokenization.
  static PreTokenizer from_pattern(const std::string& pattern, bool force_pcre2 = false);

  /// Calls on_piece(piece) for every non-empty piece of `text` (well-formed UTF-8), in order.
  template <typename F>
  void split(std::string_view text, F&& on_piece) const;

  /// A one-line description ("Split(native cl100k, Removed, invert) + ByteLevel").
  std::string describe() const;

 private:
  // Pieces of the general path: views into the text or into `owned` (ByteLevel's prefix space).
  void split_general(std::string_view text, std::vector<std::string_view>& out) const;

  std::vector<PreTokenizerStep> steps_;
  const SplitRegex* fast_regex_ = nullptr;  // the only splitting step, when pieces are exactly its matches and gaps
  bool fast_keep_gaps_ = true;
};

/// Calls on_match(start, end) for every match of `regex` in `text`, as Oniguruma's find_iter reports them (an empty
/// match right where the previous match ended is skipped).
template <typename F>
void for_each_match(const SplitRegex& regex, std::string_view text, F&& on_match) {
  size_t pos = 0, last_end = std::string_view::npos, start, end;
  while (pos <= text.size() && regex.find(text, pos, &start, &end)) {
    if (start == end && end == last_end) {
      if (pos >= text.size()) break;
      size_t step = 1;
      while (pos + step < text.size() && (static_cast<unsigned char>(text[pos + step]) & 0xC0) == 0x80) ++step;
      pos += step;
      continue;
    }
    on_match(start, end);
    pos = last_end = end;
  }
}

template <typename F>
void PreTokenizer::split(std::string_view text, F&& on_piece) const {
  if (text.empty()) return;
  if (steps_.empty()) {
    on_piece(text);
    return;
  }
  if (fast_regex_) {
    size_t prev = 0;
    for_each_match(*fast_regex_, text, [&](size_t s, size_t e) {
      if (fast_keep_gaps_ && s > prev) on_piece(text.substr(prev, s - prev));
      if (e > s) on_piece(text.substr(s, e - s));
      prev = e;
    });
    if (fast_keep_gaps_ && prev < text.size()) on_piece(text.substr(prev));
    return;
  }
  thread_local std::vector<std::string_view> pieces;
  split_general(text, pieces);
  for (std::string_view p : pieces) on_piece(p);
}

}  // namespace hyrax::tok
