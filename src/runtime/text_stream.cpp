#include "runtime/text_stream.h"

namespace hyrax {

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<std::string> stops, bool skip_special_tokens)
    : decoder_(tokenizer, skip_special_tokens), stops_(std::move(stops)) {}

std::string TextStream::push(int32_t id) {
  if (stopped_) return {};
  held_ += decoder_.push(id);
  const StopMatch m = find_stop(held_, stops_);
  std::string out;
  if (m.pos != std::string::npos) {
    out = held_.substr(0, m.pos);
    held_.clear();
    stopped_ = true;
  } else {
    out = held_.substr(0, held_.size() - m.hold_back);
    held_.erase(0, held_.size() - m.hold_back);
  }
  return out;
}

std::string TextStream::finish() {
  if (stopped_) return {};
  held_ += decoder_.flush();
  const StopMatch m = find_stop(held_, stops_);
  std::string out = m.pos != std::string::npos ? held_.substr(0, m.pos) : held_;
  held_.clear();
  stopped_ = m.pos != std::string::npos;
  return out;
}

}  // namespace hyrax
