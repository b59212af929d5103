// Streaming detokenization: text as tokens arrive, never a broken UTF-8 sequence. A character split across tokens
// is held back until complete; bytes that can no longer become valid are emitted as U+FFFD, exactly where HF's
// decode of the whole sequence puts them, so the concatenated output equals Tokenizer::decode(all ids).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hyrax {

class Tokenizer;

class StreamDecoder {
 public:
  /// `tokenizer` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);

  /// Adds one token; returns the text that became complete (possibly empty).
  std::string push(int32_t id);
  /// Ends the stream: returns what was held back (an incomplete sequence becomes U+FFFD) and resets.
  std::string flush();
  /// Drops everything held back.
  void reset() { pending_.clear(); }
  /// Bytes held back (0-3).
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

/// Where the earliest of `stops` occurs in `text`, for streaming generation with stop strings.
struct StopMatch {
  size_t pos = std::string::npos;  // start of the earliest full stop string, npos if none
  size_t stop_index = 0;           // which stop string
  /// Bytes at the end of `text` that could be the start of a stop string: hold them back from the user until the
  /// next token decides (always 0 when pos != npos).
  size_t hold_back = 0;
};

/// Finds the earliest complete stop string in `text` (the longest wins at the same position) and, if none, the
/// longest tail of `text` that is a proper prefix of some stop string. Empty stop strings are ignored.
StopMatch find_stop(std::string_view text, const std::vector<std::string>& stops);

}  // namespace hyrax
