#include "tokenizer/stream_decoder.h"

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace hyrax {

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer), skip_special_(skip_special_tokens) {}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_.append(tokenizer_->token_bytes(id));
  // Everything but an incomplete, still well-formed tail is final: decode it the way from_utf8_lossy would.
  size_t keep = unicode::incomplete_utf8_tail(pending_);
  std::string_view ready(pending_.data(), pending_.size() - keep);
  std::string out = unicode::is_valid_utf8(ready) ? std::string(ready) : unicode::to_valid_utf8(ready);
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = unicode::to_valid_utf8(pending_);
  pending_.clear();
  return out;
}

StopMatch find_stop(std::string_view text, const std::vector<std::string>& stops) {
  StopMatch m;
  for (size_t i = 0; i < stops.size(); ++i) {
    const std::string& s = stops[i];
    if (s.empty()) continue;
    size_t at = text.find(s);
    if (at == std::string_view::npos) continue;
    if (at < m.pos || (at == m.pos && s.size() > stops[m.stop_index].size())) {
      m.pos = at;
      m.stop_index = i;
    }
  }
  if (m.pos != std::string::npos) return m;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    // The longest k < |s| with text ending in s[0..k).
    for (size_t k = std::min(s.size() - 1, text.size()); k > m.hold_back; --k) {
      if (text.substr(text.size() - k) == std::string_view(s).substr(0, k)) {
        m.hold_back = k;
        break;
      }
    }
  }
  return m;
}

}  // namespace hyrax
