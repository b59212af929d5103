#include "tokenizer/split_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>
#include <mutex>
#include <vector>

#include "core/check.h"
#include "tokenizer/unicode.h"

namespace hyrax::tok {

const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kCl100kPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|)"
    R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Variants spelled differently but matched by the same native code: Qwen2's single digits.
static const char* const kCl100kOneDigitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

using unicode::kLetter;
using unicode::kLl;
using unicode::kLm;
using unicode::kLo;
using unicode::kLt;
using unicode::kLu;
using unicode::kMark;
using unicode::kNumber;
using unicode::kSpace;

// A cursor over well-formed UTF-8 with the class bits of the character under it.
struct Text {
  const unsigned char* s;
  size_t n;

  // Class bits and byte length of the character at i (i < n).
  inline uint16_t at(size_t i, int* len, uint32_t* cp_out = nullptr) const {
    uint32_t cp;
    if (s[i] < 0x80) {
      cp = s[i];
      *len = 1;
    } else {
      *len = unicode::decode_valid(s + i, &cp);
    }
    if (cp_out) *cp_out = cp;
    return unicode::flags(cp);
  }

  // End of the run of characters whose bits intersect `mask`, starting at i.
  inline size_t run(size_t i, uint16_t mask) const {
    while (i < n) {
      int len;
      if (!(at(i, &len) & mask)) break;
      i += len;
    }
    return i;
  }
  // End of the run of characters that are neither \s nor \p{L} nor \p{N}.
  inline size_t run_other(size_t i) const {
    while (i < n) {
      int len;
      if (at(i, &len) & (kSpace | kLetter | kNumber)) break;
      i += len;
    }
    return i;
  }
  inline size_t run_crlf(size_t i, bool slash = false) const {
    while (i < n && (s[i] == '\r' || s[i] == '\n' || (slash && s[i] == '/'))) ++i;
    return i;
  }
};

// The contraction alternatives 's|'t|'re|'ve|'m|'ll|'d at i (the apostrophe included); returns its end or 0.
size_t contraction(const Text& t, size_t i, bool ignore_case) {
  if (i >= t.n || t.s[i] != '\'' || i + 1 >= t.n) return 0;
  auto is = [&](size_t at, char letter, size_t* next) {
    if (at >= t.n) return false;
    int len;
    uint32_t cp;
    t.at(at, &len, &cp);
    bool ok = ignore_case ? unicode::matches_letter_ci(cp, letter) : cp == uint32_t(letter);
    if (ok) *next = at + len;
    return ok;
  };
  size_t a, b;
  for (char c : {'s', 't'})
    if (is(i + 1, c, &a)) return a;
  if (is(i + 1, 'r', &a) && is(a, 'e', &b)) return b;
  if (is(i + 1, 'v', &a) && is(a, 'e', &b)) return b;
  if (is(i + 1, 'm', &a)) return a;
  if (is(i + 1, 'l', &a) && is(a, 'l', &b)) return b;
  if (is(i + 1, 'd', &a)) return a;
  return 0;
}

// The whitespace alternatives shared by cl100k and o200k: \s*[\r\n]+ | \s+(?!\S) | \s+ at i (a \s character).
size_t whitespace_tail(const Text& t, size_t i, bool crlf_alternative) {
  size_t end = i, last_start = i, after_crlf = 0;
  while (end < t.n) {
    int len;
    if (!(t.at(end, &len) & kSpace)) break;
    if (t.s[end] == '\r' || t.s[end] == '\n') after_crlf = end + 1;
    last_start = end;
    end += len;
  }
  if (crlf_alternative && after_crlf) return after_crlf;  // \s*[\r\n]+ backtracks to the last CR/LF
  if (end == t.n) return end;                              // \s+(?!\S) at the end of the text
  if (last_start > i) return last_start;                   // \s+(?!\S) leaves the last space to the next word
  return end;                                              // \s+
}

class NativeRegex : public SplitRegex {
 public:
  enum Kind { kGpt2, kCl100k, kO200k };
  NativeRegex(Kind kind, int max_digits) : kind_(kind), max_digits_(max_digits) {}

  bool find(std::string_view text, size_t pos, size_t* start, size_t* end) const override {
    if (pos >= text.size()) return false;
    Text t{reinterpret_cast<const unsigned char*>(text.data()), text.size()};
    *start = pos;
    switch (kind_) {
      case kGpt2: *end = match_gpt2(t, pos); break;
      case kCl100k: *end = match_cl100k(t, pos); break;
      case kO200k: *end = match_o200k(t, pos); break;
    }
    return true;  // every character starts a match of these patterns
  }

  std::string engine() const override {
    switch (kind_) {
      case kGpt2: return "native gpt2";
      case kCl100k: return max_digits_ == 1 ? "native cl100k (single digits)" : "native cl100k";
      case kO200k: return "native o200k";
    }
    return "native";
  }

 private:
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  size_t match_gpt2(const Text& t, size_t i) const {
    if (size_t e = contraction(t, i, false)) return e;
    size_t j = (t.s[i] == ' ' && i + 1 < t.n) ? i + 1 : i;
    int len;
    uint16_t f = t.at(j, &len);
    if (f & kLetter) return t.run(j, kLetter);
    if (f & kNumber) return t.run(j, kNumber);
    if (!(f & kSpace)) return t.run_other(j);
    return whitespace_tail(t, i, false);
  }

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  size_t match_cl100k(const Text& t, size_t i) const {
    if (size_t e = contraction(t, i, true)) return e;
    int len0;
    uint16_t f0 = t.at(i, &len0);
    if (f0 & kLetter) return t.run(i, kLetter);
    bool crlf0 = t.s[i] == '\r' || t.s[i] == '\n';
    if (!(f0 & kNumber) && !crlf0 && i + len0 < t.n) {
      int len1;
      if (t.at(i + len0, &len1) & kLetter) return t.run(i + len0, kLetter);
    }
    if (f0 & kNumber) {
      size_t e = i;
      for (int k = 0; k < max_digits_ && e < t.n; ++k) {
        int len;
        if (!(t.at(e, &len) & kNumber)) break;
        e += len;
      }
      return e;
    }
    size_t j = (t.s[i] == ' ' && i + 1 < t.n) ? i + 1 : i;
    int lenj;
    if (!(t.at(j, &lenj) & (kSpace | kLetter | kNumber))) return t.run_crlf(t.run_other(j));
    return whitespace_tail(t, i, true);
  }

  // o200k: two letter alternatives (upper-then-lower, upper runs), digits by three, punctuation with trailing
  // CR/LF or '/', then the whitespace alternatives.
  size_t match_o200k(const Text& t, size_t i) const {
    constexpr uint16_t kUpper = kLu | kLt | kLm | kLo | kMark;  // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
    constexpr uint16_t kLower = kLl | kLm | kLo | kMark;        // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
    int len0;
    uint16_t f0 = t.at(i, &len0);
    bool crlf0 = t.s[i] == '\r' || t.s[i] == '\n';
    bool prefix0 = !crlf0 && !(f0 & (kLetter | kNumber));  // [^\r\n\p{L}\p{N}] matches the first character
    size_t starts[2];
    int n_starts = 0;
    if (prefix0 && i + len0 < t.n) starts[n_starts++] = i + len0;
    starts[n_starts++] = i;
    // Alternative 1: prefix? upper* lower+ contraction?
    for (int k = 0; k < n_starts; ++k) {
      size_t j = starts[k], last_lower_end = 0, e = j;
      while (e < t.n) {
        int len;
        uint16_t f = t.at(e, &len);
        if (!(f & kUpper)) break;
        if (f & kLower) last_lower_end = e + len;
        e += len;
      }
      size_t end = 0;
      int len;
      if (e < t.n && (t.at(e, &len) & kLower)) {
        end = t.run(e, kLower);
      } else if (last_lower_end) {
        end = last_lower_end;  // upper* gives back its last character that is also lower
      }
      if (end) {
        size_t c = contraction(t, end, true);
        return c ? c : end;
      }
    }
    // Alternative 2: prefix? upper+ lower* contraction?
    for (int k = 0; k < n_starts; ++k) {
      size_t j = starts[k];
      int len;
      if (!(t.at(j, &len) & kUpper)) continue;
      size_t end = t.run(t.run(j, kUpper), kLower);
      size_t c = contraction(t, end, true);
      return c ? c : end;
    }
    if (f0 & kNumber) {
      size_t e = i;
      for (int k = 0; k < 3 && e < t.n; ++k) {
        int len;
        if (!(t.at(e, &len) & kNumber)) break;
        e += len;
      }
      return e;
    }
    size_t j = (t.s[i] == ' ' && i + 1 < t.n) ? i + 1 : i;
    int lenj;
    if (!(t.at(j, &lenj) & (kSpace | kLetter | kNumber))) return t.run_crlf(t.run_other(j), true);
    return whitespace_tail(t, i, true);
  }

  Kind kind_;
  int max_digits_;
};

// Oniguruma's \s is Unicode White_Space; PCRE2's (with UCP) lacks U+0085. Rewrite \s and \S to explicit sets.
std::string widen_space_class(const std::string& p) {
  static const char* kSpaces = R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029})"
                               R"(\x{202F}\x{205F}\x{3000})";
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char d = p[i + 1];
      if (d == 's') {
        out += in_class ? std::string(kSpaces) : "[" + std::string(kSpaces) + "]";
      } else if (d == 'S' && !in_class) {
        out += "[^" + std::string(kSpaces) + "]";
      } else {
        out += c;
        out += d;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ']' is a literal
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

class Pcre2Regex : public SplitRegex {
 public:
  explicit Pcre2Regex(const std::string& pattern) : pattern_(pattern) {
    std::string p = widen_space_class(pattern);
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                          &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("pre_tokenizer regex /", pattern, "/ does not compile: ", reinterpret_cast<char*>(msg), " at offset ", off);
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Pcre2Regex() override {
    pcre2_code_free(code_);
  }

  bool find(std::string_view text, size_t pos, size_t* start, size_t* end) const override {
    // One match-data block per thread, reused across calls.
    thread_local struct Md {
      pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
      ~Md() { pcre2_match_data_free(md); }
    } md;
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.md, nullptr)
                  : pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    HYRAX_REQUIRE(rc >= 0, "pre_tokenizer regex /", pattern_, "/ failed to match (PCRE2 error ", rc, ")");
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.md);
    *start = ov[0];
    *end = ov[1];
    return true;
  }

  std::string engine() const override { return jit_ ? "pcre2 jit" : "pcre2"; }

 private:
  std::string pattern_;
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

// A literal string pattern: plain substring search.
class LiteralRegex : public SplitRegex {
 public:
  explicit LiteralRegex(std::string s) : s_(std::move(s)) {}
  bool find(std::string_view text, size_t pos, size_t* start, size_t* end) const override {
    if (s_.empty()) return false;
    size_t at = text.find(s_, pos);
    if (at == std::string_view::npos) return false;
    *start = at;
    *end = at + s_.size();
    return true;
  }
  std::string engine() const override { return "literal"; }

 private:
  std::string s_;
};

}  // namespace

std::unique_ptr<SplitRegex> SplitRegex::compile(const std::string& pattern, bool force_pcre2) {
  if (!force_pcre2) {
    if (pattern == kGpt2Pattern) return std::make_unique<NativeRegex>(NativeRegex::kGpt2, 0);
    if (pattern == kCl100kPattern) return std::make_unique<NativeRegex>(NativeRegex::kCl100k, 3);
    if (pattern == kCl100kOneDigitPattern) return std::make_unique<NativeRegex>(NativeRegex::kCl100k, 1);
    if (pattern == kO200kPattern) return std::make_unique<NativeRegex>(NativeRegex::kO200k, 3);
  }
  return std::make_unique<Pcre2Regex>(pattern);
}

std::unique_ptr<SplitRegex> SplitRegex::literal(const std::string& literal) {
  return std::make_unique<LiteralRegex>(literal);
}

}  // namespace hyrax::tok
