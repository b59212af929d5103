// Encoding and decoding; loading lives in tokenizer_load.cpp.
#include "tokenizer/tokenizer.h"

#include "core/check.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/unicode.h"

namespace hyrax {

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  pre_->split(text, [&](std::string_view piece) { bpe_->encode_piece(piece, out); });
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out, bool allow_special) const {
  std::string repaired;
  if (!unicode::is_valid_utf8(text)) {
    repaired = unicode::to_valid_utf8(text);
    text = repaired;
  }
  added_.split(text, allow_special, [&](std::string_view piece, int32_t id) {
    if (id >= 0)
      out.push_back(id);
    else
      encode_plain(piece, out);
  });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_into(text, out, allow_special);
  return out;
}

std::vector<int32_t> Tokenizer::encode_with_special_tokens(std::string_view text) const {
  HYRAX_REQUIRE(post_processor_error_.empty(), post_processor_error_);
  std::vector<int32_t> out = post_prefix_;
  encode_into(text, out, true);
  out.insert(out.end(), post_suffix_.begin(), post_suffix_.end());
  return out;
}

namespace {

// transformers' clean_up_tokenization: removes the space before punctuation and common English contractions.
std::string clean_up_tokenization(std::string s) {
  static const std::pair<const char*, const char*> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (auto [from, to] : kRules) {
    std::string out;
    std::string_view f(from);
    size_t pos = 0, hit;
    while ((hit = s.find(f, pos)) != std::string::npos) {
      out.append(s, pos, hit - pos);
      out.append(to);
      pos = hit + f.size();
    }
    out.append(s, pos, std::string::npos);
    s = std::move(out);
  }
  return s;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= present_.size() || !present_[id]) continue;
    if (skip_special_tokens && special_[id]) continue;
    bytes.append(decode_bytes_[id]);
  }
  std::string text = unicode::is_valid_utf8(bytes) ? std::move(bytes) : unicode::to_valid_utf8(bytes);
  if (config_.clean_up_tokenization_spaces) text = clean_up_tokenization(std::move(text));
  return text;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || size_t(id) >= present_.size() || !present_[id]) return {};
  return decode_bytes_[id];
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= present_.size() || !present_[id]) return std::nullopt;
  return vocab_strings_[id];
}

int32_t Tokenizer::token_to_id(std::string_view token) const {
  if (const tok::AddedToken* t = added_.find(token)) return t->id;
  std::optional<std::string> bytes = tok::byte_level::decode_token(token);
  if (!bytes) return -1;
  int32_t id = bpe_->token_id(*bytes);
  // The bytes index holds what the vocabulary spells in byte-level form; confirm the spelling round-trips.
  if (id >= 0 && vocab_strings_[id] != token) return -1;
  return id;
}

size_t Tokenizer::vocab_size() const { return present_.size(); }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < special_.size() && special_[id];
}

std::string Tokenizer::describe_pre_tokenizer() const { return pre_->describe(); }

}  // namespace hyrax
