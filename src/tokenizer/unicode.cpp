#include "tokenizer/unicode.h"

#include <algorithm>
#include <map>
#include <vector>

namespace hyrax::unicode {

namespace detail {

const FlagTable& flag_table() {
  static const FlagTable* table = [] {
    auto* t = new FlagTable;
    std::vector<uint16_t> blocks;
    std::map<std::vector<uint16_t>, uint16_t> seen;
    size_t run = 0;
    std::vector<uint16_t> block(256);
    for (uint32_t b = 0; b < (0x110000 >> 8); ++b) {
      for (uint32_t i = 0; i < 256; ++i) {
        uint32_t cp = (b << 8) | i;
        while (run + 1 < kNumFlagRuns && kFlagRuns[run + 1].start <= cp) ++run;
        block[i] = kFlagRuns[run].flags;
      }
      auto [it, inserted] = seen.emplace(block, uint16_t(blocks.size() / 256));
      if (inserted) blocks.insert(blocks.end(), block.begin(), block.end());
      t->stage1[b] = it->second;
    }
    t->stage2 = new uint16_t[blocks.size()];
    std::copy(blocks.begin(), blocks.end(), t->stage2);
    return t;
  }();
  return *table;
}

}  // namespace detail

bool matches_letter_ci(uint32_t cp, char letter) {
  if (cp == uint32_t(letter) || cp == uint32_t(letter - 'a' + 'A')) return true;
  if (cp < 0x80) return false;
  for (size_t i = 0; i < detail::kNumExtraFolds; ++i)
    if (detail::kExtraFolds[i].letter == letter && detail::kExtraFolds[i].cp == cp) return true;
  return false;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

namespace {

// The well-formed byte ranges of the second byte after each lead byte (Unicode Table 3-7); later bytes are 80..BF.
struct LeadInfo {
  int len;  // 0: not a lead byte
  unsigned char lo, hi;
};

LeadInfo lead_info(unsigned char c) {
  if (c < 0x80) return {1, 0, 0};
  if (c < 0xC2) return {0, 0, 0};
  if (c < 0xE0) return {2, 0x80, 0xBF};
  if (c == 0xE0) return {3, 0xA0, 0xBF};
  if (c == 0xED) return {3, 0x80, 0x9F};
  if (c < 0xF0) return {3, 0x80, 0xBF};
  if (c == 0xF0) return {4, 0x90, 0xBF};
  if (c < 0xF4) return {4, 0x80, 0xBF};
  if (c == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// How many bytes of the sequence at s[pos] are well-formed so far (1..len), and its full length.
size_t well_formed_prefix(std::string_view s, size_t pos, int* full_len) {
  auto c = static_cast<unsigned char>(s[pos]);
  LeadInfo li = lead_info(c);
  *full_len = li.len;
  if (li.len <= 1) return li.len;
  size_t n = 1;
  for (int k = 1; k < li.len && pos + k < s.size(); ++k) {
    auto b = static_cast<unsigned char>(s[pos + k]);
    unsigned char lo = k == 1 ? li.lo : 0x80, hi = k == 1 ? li.hi : 0xBF;
    if (b < lo || b > hi) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t valid_sequence_length(std::string_view s, size_t pos) {
  int full = 0;
  size_t n = well_formed_prefix(s, pos, &full);
  return (full > 0 && n == size_t(full)) ? n : 0;
}

size_t invalid_subpart_length(std::string_view s, size_t pos) {
  int full = 0;
  size_t n = well_formed_prefix(s, pos, &full);
  return std::max<size_t>(n, 1);
}

bool is_valid_utf8(std::string_view s) {
  size_t i = 0, n = s.size();
  while (i < n) {
    // ASCII fast path, eight bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t len = valid_sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    size_t len = valid_sequence_length(s, i);
    if (len > 0) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      i += invalid_subpart_length(s, i);
    }
  }
  return out;
}

size_t incomplete_utf8_tail(std::string_view s) {
  // A pending sequence starts at most 3 bytes before the end.
  size_t start = s.size() >= 3 ? s.size() - 3 : 0;
  for (size_t pos = start; pos < s.size(); ++pos) {
    auto c = static_cast<unsigned char>(s[pos]);
    if (c < 0xC2 || c > 0xF4) continue;  // not a lead byte of a multi-byte sequence
    int full = 0;
    size_t n = well_formed_prefix(s, pos, &full);
    if (pos + n == s.size() && n < size_t(full)) return n;
  }
  return 0;
}

}  // namespace hyrax::unicode
