// Unicode helpers for the tokenizer: UTF-8 decoding and validation, lossy repair of invalid UTF-8 the way HF
// tokenizers (Rust's String::from_utf8_lossy) and Python's bytes.decode(errors="replace") do it, and the character
// classes of the pre-tokenizer regexes, probed from HF tokenizers (tools/tokenizer/gen_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hyrax::unicode {

/// One bit per class; a code point may have several (\p{Lm} is in both o200k letter classes, for example).
enum UnicodeFlag : uint16_t {
  kLu = 1 << 0,      // \p{Lu}
  kLl = 1 << 1,      // \p{Ll}
  kLt = 1 << 2,      // \p{Lt}
  kLm = 1 << 3,      // \p{Lm}
  kLo = 1 << 4,      // \p{Lo}
  kMark = 1 << 5,    // \p{M}
  kNumber = 1 << 6,  // \p{N}
  kSpace = 1 << 7,   // \s (Unicode White_Space; the same set for Oniguruma and Rust's regex)
  kWord = 1 << 8,    // \w of Rust's regex (Alphabetic, M, Nd, Pc, Join_Control)
};
constexpr uint16_t kLetter = kLu | kLl | kLt | kLm | kLo;  // \p{L}

namespace detail {
struct FlagRun {
  uint32_t start;
  uint16_t flags;
};
struct CaseFold {
  char letter;
  uint32_t cp;
};
extern const FlagRun kFlagRuns[];
extern const size_t kNumFlagRuns;
extern const CaseFold kExtraFolds[];
extern const size_t kNumExtraFolds;

struct FlagTable {
  uint16_t stage1[0x110000 >> 8];  // block index per 256 code points
  uint16_t* stage2;                // blocks of 256 flags, deduplicated
};
const FlagTable& flag_table();
}  // namespace detail

/// The class bits of code point `cp` (0 for cp > 0x10FFFF).
inline uint16_t flags(uint32_t cp) {
  static const detail::FlagTable& t = detail::flag_table();
  if (cp >= 0x110000) return 0;
  return t.stage2[(size_t(t.stage1[cp >> 8]) << 8) | (cp & 0xFF)];
}

/// True if `cp` is matched by (?i:letter) for a lower-case ASCII `letter` (ASCII cases plus folds such as U+017F
/// LATIN SMALL LETTER LONG S for 's').
bool matches_letter_ci(uint32_t cp, char letter);

/// Decodes the code point at p (valid UTF-8 assumed, p < end) and returns its byte length.
inline int decode_valid(const unsigned char* p, uint32_t* cp) {
  unsigned c = p[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  if (c < 0xE0) {
    *cp = ((c & 0x1F) << 6) | (p[1] & 0x3F);
    return 2;
  }
  if (c < 0xF0) {
    *cp = ((c & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    return 3;
  }
  *cp = ((c & 0x07) << 18) | ((p[1] & 0x3F) << 12) | ((p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  return 4;
}

/// Appends the UTF-8 encoding of `cp` to `out`.
void append_utf8(std::string& out, uint32_t cp);

/// Length of the well-formed UTF-8 sequence at s[pos], or 0 if the bytes there do not start one (a lone or
/// unexpected continuation byte, an overlong form, a surrogate, a truncated sequence, > U+10FFFF).
size_t valid_sequence_length(std::string_view s, size_t pos);

/// Length of the maximal prefix of an ill-formed sequence at s[pos] that a lossy decoder replaces by one U+FFFD
/// (Unicode's "maximal subpart" practice, shared by Rust and Python). Only meaningful where
/// valid_sequence_length(s, pos) == 0.
size_t invalid_subpart_length(std::string_view s, size_t pos);

/// True if `s` is well-formed UTF-8.
bool is_valid_utf8(std::string_view s);

/// `s` with every ill-formed subsequence replaced by U+FFFD, exactly like String::from_utf8_lossy.
std::string to_valid_utf8(std::string_view s);

/// Number of bytes at the end of `s` that form an incomplete but so far well-formed UTF-8 sequence (0-3): the bytes
/// a streaming decoder holds back until the character is complete.
size_t incomplete_utf8_tail(std::string_view s);

}  // namespace hyrax::unicode
