#include "tokenizer/jinja/lexer.h"

#include <cctype>
#include <cstring>

#include "core/check.h"

namespace hyrax::jinja {

void syntax_error(int line, const std::string& what) { fail("chat template line ", line, ": ", what); }

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string normalize_newlines(const std::string& src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Jinja's string literal escapes (Python's unicode-escape).
std::string unescape(const std::string& s, int line) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    auto hex = [&](int n) {
      HYRAX_REQUIRE(i + size_t(n) < s.size(), "chat template line ", line, ": truncated escape in string literal");
      uint32_t v = 0;
      for (int k = 0; k < n; ++k) {
        char h = s[++i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= uint32_t(h - '0');
        else if (h >= 'a' && h <= 'f') v |= uint32_t(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= uint32_t(h - 'A' + 10);
        else syntax_error(line, "bad escape in string literal");
      }
      return v;
    };
    auto put = [&](uint32_t cp) {
      if (cp < 0x80) {
        out += char(cp);
      } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
      } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
      }
    };
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\n': break;  // line continuation
      case 'x': put(hex(2)); break;
      case 'u': put(hex(4)); break;
      case 'U': put(hex(8)); break;
      default:
        if (c >= '0' && c <= '7') {
          uint32_t v = uint32_t(c - '0');
          for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) v = v * 8 + uint32_t(s[++i] - '0');
          put(v);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

}  // namespace

namespace {

class Lexer {
 public:
  explicit Lexer(const std::string& source) : src_(normalize_newlines(source)) {}

  std::vector<Segment> run() {
    std::vector<Segment> segs;
    size_t pos = 0;
    bool strip_next = false;    // the previous tag ended with '-'
    bool line_starting = true;  // the previous match ended a line (for lstrip_blocks)
    while (pos <= src_.size()) {
      size_t open = find_open(pos);
      std::string text = src_.substr(pos, (open == std::string::npos ? src_.size() : open) - pos);
      int text_line = line_;
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
      }
      if (open == std::string::npos) {
        count_lines(pos, src_.size());
        if (!text.empty()) segs.push_back({Segment::Kind::kText, text, {}, text_line});
        break;
      }
      char kind = src_[open + 1];  // '{', '%' or '#'
      char sign = open + 2 < src_.size() ? src_[open + 2] : 0;
      if (sign == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: spaces and tabs between a line start and a block or comment tag go.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 || line_starting) {
          bool blank = l_pos < text.size();
          for (size_t k = l_pos; k < text.size(); ++k) blank &= is_space(text[k]);
          if (blank) text.erase(l_pos);
        }
      }
      count_lines(pos, open);
      if (!text.empty()) segs.push_back({Segment::Kind::kText, text, {}, text_line});
      size_t p = open + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      int tag_line = line_;
      char close_sign = 0;
      size_t end;
      if (kind == '#') {
        end = src_.find("#}", p);
        if (end == std::string::npos) syntax_error(tag_line, "unclosed comment {#");
        close_sign = end > p ? src_[end - 1] : 0;
        count_lines(open, end);
        end += 2;
      } else {
        Segment seg{kind == '{' ? Segment::Kind::kVar : Segment::Kind::kBlock, {}, {}, tag_line};
        end = lex_tag(p, kind == '{' ? '}' : '%', seg.tokens, &close_sign);
        segs.push_back(std::move(seg));
      }
      // After the closer: '-' strips what follows; trim_blocks drops one newline after a block or comment.
      strip_next = close_sign == '-';
      line_starting = false;
      if (!strip_next && close_sign != '+' && kind != '{' && end < src_.size() && src_[end] == '\n') {
        ++end;
        ++line_;
        line_starting = true;
      }
      if (strip_next) {
        size_t k = end;
        while (k < src_.size() && is_space(src_[k])) ++k;
        line_starting = k > end && src_[k - 1] == '\n';
      }
      pos = end;
      if (pos == src_.size()) break;
    }
    return segs;
  }

 private:
  size_t find_open(size_t pos) const {
    while (true) {
      size_t p = src_.find('{', pos);
      if (p == std::string::npos || p + 1 >= src_.size()) return std::string::npos;
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') return p;
      pos = p + 1;
    }
  }

  void count_lines(size_t from, size_t to) {
    for (size_t k = from; k < to && k < src_.size(); ++k) line_ += src_[k] == '\n';
  }

  // Tokens from p up to the closer ("}}" or "%}", optionally preceded by '-' or '+'); returns the position after it.
  size_t lex_tag(size_t p, char close, std::vector<Token>& toks, char* close_sign) {
    int depth = 0;
    static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                 "(", ")", "[", "]", "{", "}", ",", ":", ".", "|"};
    while (true) {
      if (p >= src_.size()) syntax_error(line_, std::string("unclosed tag, expected ") + close + "}");
      char c = src_[p];
      if (c == '\n') {
        ++line_;
        ++p;
        continue;
      }
      if (is_space(c)) {
        ++p;
        continue;
      }
      if (depth == 0) {
        const std::string closer{close, '}'};
        if ((c == '-' || c == '+') && src_.compare(p + 1, 2, closer) == 0) {
          *close_sign = c;
          return p + 3;
        }
        if (src_.compare(p, 2, closer) == 0) {
          *close_sign = 0;
          return p + 2;
        }
      }
      Token t;
      t.line = line_;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = p;
        while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        t.type = Token::Type::kName;
        t.text = src_.substr(p, e - p);
        p = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = p;
        bool is_float = false;
        while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
          is_float = true;
          ++e;
          while (e < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[e])) || src_[e] == '_')) ++e;
        }
        if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
          size_t f = e + 1;
          if (f < src_.size() && (src_[f] == '+' || src_[f] == '-')) ++f;
          if (f < src_.size() && std::isdigit(static_cast<unsigned char>(src_[f]))) {
            is_float = true;
            e = f;
            while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
          }
        }
        std::string num;
        for (size_t k = p; k < e; ++k)
          if (src_[k] != '_') num += src_[k];
        if (is_float) {
          t.type = Token::Type::kFloat;
          t.f = std::stod(num);
        } else {
          t.type = Token::Type::kInt;
          t.i = std::stoll(num);
        }
        p = e;
      } else if (c == '\'' || c == '"') {
        size_t e = p + 1;
        while (e < src_.size() && src_[e] != c) {
          if (src_[e] == '\\') ++e;
          if (e < src_.size() && src_[e] == '\n') ++line_;
          ++e;
        }
        if (e >= src_.size()) syntax_error(t.line, "unterminated string literal");
        t.type = Token::Type::kString;
        t.text = unescape(src_.substr(p + 1, e - p - 1), t.line);
        p = e + 1;
      } else {
        const char* op = nullptr;
        for (const char* o : kOps)
          if (src_.compare(p, std::strlen(o), o) == 0) {
            op = o;
            break;
          }
        if (!op) syntax_error(line_, std::string("unexpected character '") + c + "'");
        t.type = Token::Type::kOp;
        t.text = op;
        p += t.text.size();
        if (t.text == "(" || t.text == "[" || t.text == "{") ++depth;
        if (t.text == ")" || t.text == "]" || t.text == "}") --depth;
      }
      toks.push_back(std::move(t));
    }
  }

  std::string src_;
  int line_ = 1;
};

}  // namespace

std::vector<Segment> lex_template(const std::string& source) { return Lexer(source).run(); }

}  // namespace hyrax::jinja
