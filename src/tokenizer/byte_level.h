// GPT-2's byte <-> character map that byte-level BPE vocabularies are written in: printable Latin-1 bytes map to
// themselves, the other 68 bytes to U+0100.. in byte order (so ' ' is "Ġ", '\n' is "Ċ").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hyrax::tok::byte_level {

/// The character standing for byte b.
uint32_t byte_to_char(uint8_t b);

/// The byte that character cp stands for, or -1 if cp is not in the map.
int char_to_byte(uint32_t cp);

/// The bytes a byte-level token string stands for, or nullopt if some character is outside the map.
std::optional<std::string> decode_token(std::string_view token);

/// The byte-level spelling of raw bytes ("hello world" -> "helloĠworld").
std::string encode_bytes(std::string_view bytes);

}  // namespace hyrax::tok::byte_level
