#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace hyrax::tok::byte_level {

namespace {

struct Maps {
  std::array<uint32_t, 256> to_char{};
  std::array<int16_t, 512> to_byte{};  // every mapped character is below U+0200
  Maps() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_char[b] = printable ? uint32_t(b) : next++;
      to_byte[to_char[b]] = int16_t(b);
    }
  }
};

const Maps& maps() {
  static const Maps m;
  return m;
}

}  // namespace

uint32_t byte_to_char(uint8_t b) { return maps().to_char[b]; }

int char_to_byte(uint32_t cp) { return cp < 512 ? maps().to_byte[cp] : -1; }

std::optional<std::string> decode_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    size_t len = unicode::valid_sequence_length(token, i);
    if (len == 0) return std::nullopt;
    uint32_t cp;
    unicode::decode_valid(reinterpret_cast<const unsigned char*>(token.data() + i), &cp);
    int b = char_to_byte(cp);
    if (b < 0) return std::nullopt;
    out.push_back(char(b));
    i += len;
  }
  return out;
}

std::string encode_bytes(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) unicode::append_utf8(out, byte_to_char(b));
  return out;
}

}  // namespace hyrax::tok::byte_level
