// Generated ids -> text for a user, as they arrive: complete UTF-8 only, special tokens hidden, and stop strings
// honoured (text that might begin a stop string is held back until the next token decides).
#pragma once

#include <string>
#include <vector>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace hyrax {

class TextStream {
 public:
  /// `tokenizer` must outlive the stream.
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stops, bool skip_special_tokens = true);

  /// Adds one generated id; returns the text that may be shown now. Once a stop string appears, stopped() turns
  /// true and the text before it is all that is ever returned.
  std::string push(int32_t id);
  /// Ends the stream: returns what was held back (nothing after a stop).
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  StreamDecoder decoder_;
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace hyrax
