#include "tokenizer/jinja/parser.h"

#include <cstring>

#include "core/check.h"

namespace hyrax::jinja {

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Lexer: the template becomes text segments and tag segments (each a token list).

struct Token {
  enum class Type { kName, kInt, kFloat, kString, kOp, kEnd };
  Type type = Type::kEnd;
  std::string text;  // name, operator, string value
  int64_t i = 0;
  double f = 0;
  int line = 0;
};

struct Segment {
  enum class Kind { kText, kVar, kBlock } kind;
  std::string text;
  std::vector<Token> tokens;
  int line = 0;
};

[[noreturn]] void syntax_error(int line, const std::string& what) { fail("chat template line ", line, ": ", what); }

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

// ---------------------------------------------------------------------------------------------------------------
// Parser

class Parser {
 public:
  explicit Parser(std::vector<Segment> segs) : segs_(std::move(segs)) {}

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, &end);
    return body;
  }

 private:
  // --- token cursor within one tag
  const Token& peek(size_t k = 0) const {
    static const Token kEnd{};
    return tpos_ + k < toks_->size() ? (*toks_)[tpos_ + k] : kEnd;
  }
  int line() const { return tpos_ < toks_->size() ? (*toks_)[tpos_].line : tag_line_; }
  bool is_op(const char* op, size_t k = 0) const {
    return peek(k).type == Token::Type::kOp && peek(k).text == op;
  }
  bool is_name(const char* name, size_t k = 0) const {
    return peek(k).type == Token::Type::kName && peek(k).text == name;
  }
  bool at_end() const { return tpos_ >= toks_->size(); }
  Token next() {
    if (at_end()) syntax_error(tag_line_, "unexpected end of tag");
    return (*toks_)[tpos_++];
  }
  void expect_op(const char* op) {
    if (!is_op(op)) syntax_error(line(), std::string("expected '") + op + "'" + got());
    ++tpos_;
  }
  std::string expect_name() {
    if (peek().type != Token::Type::kName) syntax_error(line(), "expected a name" + got());
    return next().text;
  }
  std::string got() const { return at_end() ? " at the end of the tag" : ", got '" + peek().text + "'"; }
  void expect_end() {
    if (!at_end()) syntax_error(line(), "unexpected '" + peek().text + "'");
  }

  static ExprPtr make(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // --- statements
  Body parse_body(const std::vector<std::string>& ends, std::string* end_tag) {
    Body body;
    while (spos_ < segs_.size()) {
      Segment& seg = segs_[spos_];
      if (seg.kind == Segment::Kind::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kText;
        n->line = seg.line;
        n->text = seg.text;
        body.push_back(std::move(n));
        ++spos_;
        continue;
      }
      toks_ = &seg.tokens;
      tpos_ = 0;
      tag_line_ = seg.line;
      ++spos_;
      if (seg.kind == Segment::Kind::kVar) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kOutput;
        n->line = seg.line;
        n->expr = parse_expr();
        expect_end();
        body.push_back(std::move(n));
        continue;
      }
      if (at_end()) syntax_error(seg.line, "empty block tag");
      std::string tag = peek().text;
      for (const auto& e : ends)
        if (tag == e) {
          ++tpos_;
          *end_tag = tag;
          return body;
        }
      body.push_back(parse_statement(tag, seg.line));
    }
    if (!ends.empty()) syntax_error(segs_.empty() ? 1 : segs_.back().line, "missing {% " + ends.back() + " %}");
    return body;
  }

  std::unique_ptr<Node> parse_statement(const std::string& tag, int line_no) {
    auto n = std::make_unique<Node>();
    n->line = line_no;
    ++tpos_;
    if (tag == "if") {
      n->kind = Node::Kind::kIf;
      n->conds.push_back(parse_expr());
      expect_end();
      while (true) {
        std::string end;
        n->bodies.push_back(parse_body({"elif", "else", "endif"}, &end));
        if (end == "elif") {
          n->conds.push_back(parse_expr());
          expect_end();
        } else if (end == "else") {
          expect_end();
          std::string e2;
          n->bodies.push_back(parse_body({"endif"}, &e2));
          break;
        } else {
          break;
        }
      }
      expect_end();
    } else if (tag == "for") {
      n->kind = Node::Kind::kFor;
      n->targets.push_back(expect_name());
      while (is_op(",")) {
        ++tpos_;
        n->targets.push_back(expect_name());
      }
      if (!is_name("in")) syntax_error(line(), "expected 'in' in for" + got());
      ++tpos_;
      n->expr = parse_or_cond(false);
      if (is_name("if")) {
        ++tpos_;
        n->filter = parse_or_cond(false);
      }
      if (is_name("recursive")) syntax_error(line(), "unsupported construct: recursive for loops");
      expect_end();
      std::string end;
      n->bodies.push_back(parse_body({"else", "endfor"}, &end));
      if (end == "else") {
        expect_end();
        n->bodies.push_back(parse_body({"endfor"}, &end));
      }
      expect_end();
    } else if (tag == "set") {
      std::string first = expect_name();
      if (is_op(".")) {
        ++tpos_;
        n->kind = Node::Kind::kSet;
        n->attr_target = true;
        n->targets = {first, expect_name()};
      } else {
        n->targets.push_back(first);
        while (is_op(",")) {
          ++tpos_;
          n->targets.push_back(expect_name());
        }
        n->kind = Node::Kind::kSet;
      }
      if (at_end() && !n->attr_target && n->targets.size() == 1) {
        n->kind = Node::Kind::kSetBlock;
        std::string end;
        n->bodies.push_back(parse_body({"endset"}, &end));
        expect_end();
        return n;
      }
      expect_op("=");
      n->expr = parse_expr();
      expect_end();
    } else if (tag == "macro") {
      n->kind = Node::Kind::kMacro;
      n->name = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        n->params.push_back(expect_name());
        if (is_op("=")) {
          ++tpos_;
          n->defaults.push_back(parse_expr());
        } else {
          n->defaults.push_back(nullptr);
        }
        if (!is_op(")")) expect_op(",");
      }
      expect_op(")");
      expect_end();
      std::string end;
      n->bodies.push_back(parse_body({"endmacro"}, &end));
      if (!at_end() && peek().type == Token::Type::kName) ++tpos_;  // {% endmacro name %}
      expect_end();
    } else if (tag == "break" || tag == "continue") {
      n->kind = tag == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      expect_end();
    } else if (tag == "generation") {
      // transformers' assistant-mask extension: renders its body unchanged.
      n->kind = Node::Kind::kBlock;
      expect_end();
      std::string end;
      n->bodies.push_back(parse_body({"endgeneration"}, &end));
      expect_end();
    } else if (tag == "filter") {
      n->kind = Node::Kind::kFilterBlock;
      n->filter_call = parse_filter_call(nullptr, line_no);
      expect_end();
      std::string end;
      n->bodies.push_back(parse_body({"endfilter"}, &end));
      expect_end();
    } else {
      syntax_error(line_no, "unsupported construct: {% " + tag + " %}");
    }
    return n;
  }

  // --- expressions (Jinja's precedence, lowest first)
  ExprPtr parse_expr() { return parse_or_cond(true); }

  ExprPtr parse_or_cond(bool with_cond) {
    ExprPtr e = parse_or();
    if (with_cond && is_name("if")) {
      int ln = line();
      ++tpos_;
      auto c = make(Expr::Kind::kCond, ln);
      c->b = std::move(e);
      c->a = parse_or();
      if (is_name("else")) {
        ++tpos_;
        c->c = parse_or_cond(true);
      }
      return c;
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      auto o = make(Expr::Kind::kOr, line());
      ++tpos_;
      o->a = std::move(e);
      o->b = parse_and();
      e = std::move(o);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      auto o = make(Expr::Kind::kAnd, line());
      ++tpos_;
      o->a = std::move(e);
      o->b = parse_not();
      e = std::move(o);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto o = make(Expr::Kind::kNot, line());
      ++tpos_;
      o->a = parse_not();
      return o;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int ln = line();
    ExprPtr first = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> rest;
    while (true) {
      if (peek().type == Token::Type::kOp &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == "<=" ||
           peek().text == ">" || peek().text == ">=")) {
        ops.push_back(next().text);
      } else if (is_name("in")) {
        ++tpos_;
        ops.push_back("in");
      } else if (is_name("not") && is_name("in", 1)) {
        tpos_ += 2;
        ops.push_back("notin");
      } else {
        break;
      }
      rest.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    auto c = make(Expr::Kind::kCompare, ln);
    c->args.push_back(std::move(first));
    for (auto& r : rest) c->args.push_back(std::move(r));
    c->ops = std::move(ops);
    return c;
  }

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, int ln) {
    auto e = make(Expr::Kind::kBinary, ln);
    e->name = op;
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      int ln = line();
      std::string op = next().text;
      e = binary(op, std::move(e), parse_concat(), ln);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      int ln = line();
      ++tpos_;
      e = binary("~", std::move(e), parse_math2(), ln);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      int ln = line();
      std::string op = next().text;
      e = binary(op, std::move(e), parse_pow(), ln);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      int ln = line();
      ++tpos_;
      e = binary("**", std::move(e), parse_unary(true), ln);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    int ln = line();
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      bool neg = next().text == "-";
      e = make(neg ? Expr::Kind::kNeg : Expr::Kind::kPos, ln);
      e->a = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    int ln = line();
    Token t = next();
    switch (t.type) {
      case Token::Type::kName: {
        if (t.text == "true" || t.text == "True") return literal(Value::boolean(true), ln);
        if (t.text == "false" || t.text == "False") return literal(Value::boolean(false), ln);
        if (t.text == "none" || t.text == "None") return literal(Value::none(), ln);
        auto e = make(Expr::Kind::kName, ln);
        e->name = t.text;
        return e;
      }
      case Token::Type::kString: {
        std::string s = t.text;
        while (peek().type == Token::Type::kString) s += next().text;  // adjacent literals concatenate
        return literal(Value::string(s), ln);
      }
      case Token::Type::kInt: return literal(Value::integer(t.i), ln);
      case Token::Type::kFloat: return literal(Value::number(t.f), ln);
      case Token::Type::kOp:
        if (t.text == "(") {
          if (is_op(")")) {
            ++tpos_;
            return make(Expr::Kind::kTuple, ln);
          }
          ExprPtr e = parse_expr();
          if (is_op(",")) {
            auto tup = make(Expr::Kind::kTuple, ln);
            tup->args.push_back(std::move(e));
            while (is_op(",")) {
              ++tpos_;
              if (is_op(")")) break;
              tup->args.push_back(parse_expr());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          auto e = make(Expr::Kind::kList, ln);
          while (!is_op("]")) {
            e->args.push_back(parse_expr());
            if (!is_op("]")) expect_op(",");
          }
          ++tpos_;
          return e;
        }
        if (t.text == "{") {
          auto e = make(Expr::Kind::kDict, ln);
          while (!is_op("}")) {
            e->args.push_back(parse_expr());
            expect_op(":");
            e->args.push_back(parse_expr());
            if (!is_op("}")) expect_op(",");
          }
          ++tpos_;
          return e;
        }
        break;
      default: break;
    }
    syntax_error(ln, "unexpected '" + t.text + "'");
  }

  static ExprPtr literal(Value v, int ln) {
    auto e = make(Expr::Kind::kLiteral, ln);
    e->value = std::move(v);
    return e;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().type == Token::Type::kName && is_op("=", 1)) {
        e.kw_names.push_back(next().text);
        ++tpos_;
        e.kw_args.push_back(parse_expr());
      } else {
        if (is_op("*")) syntax_error(line(), "unsupported construct: *args in a call");
        e.args.push_back(parse_expr());
      }
      if (!is_op(")")) expect_op(",");
    }
    ++tpos_;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      int ln = line();
      if (is_op(".")) {
        ++tpos_;
        auto g = make(Expr::Kind::kGetAttr, ln);
        g->a = std::move(e);
        if (peek().type == Token::Type::kInt) {  // x.0 is x[0]
          g->kind = Expr::Kind::kGetItem;
          g->b = literal(Value::integer(next().i), ln);
        } else {
          g->name = expect_name();
        }
        e = std::move(g);
      } else if (is_op("[")) {
        ++tpos_;
        ExprPtr idx[3];
        int n_colons = 0;
        while (!is_op("]")) {
          if (is_op(":")) {
            ++tpos_;
            if (++n_colons > 2) syntax_error(ln, "bad slice");
            continue;
          }
          idx[n_colons] = parse_expr();
        }
        ++tpos_;
        if (n_colons == 0) {
          if (!idx[0]) syntax_error(ln, "empty subscript");
          auto g = make(Expr::Kind::kGetItem, ln);
          g->a = std::move(e);
          g->b = std::move(idx[0]);
          e = std::move(g);
        } else {
          auto s = make(Expr::Kind::kSlice, ln);
          s->a = std::move(e);
          for (auto& x : idx) s->args.push_back(std::move(x));
          e = std::move(s);
        }
      } else if (is_op("(")) {
        auto c = make(Expr::Kind::kCall, ln);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filter_call(ExprPtr input, int ln) {
    auto f = make(Expr::Kind::kFilter, ln);
    f->a = std::move(input);
    f->name = expect_name();
    while (is_op(".")) {  // dotted filter names
      ++tpos_;
      f->name.push_back('.');
      f->name.append(expect_name());
    }
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      int ln = line();
      if (is_op("|")) {
        ++tpos_;
        e = parse_filter_call(std::move(e), ln);
      } else if (is_name("is")) {
        ++tpos_;
        auto t = make(Expr::Kind::kTest, ln);
        t->a = std::move(e);
        if (is_name("not")) {
          ++tpos_;
          t->negated = true;
        }
        t->name = expect_name();
        if (is_op("(")) {
          parse_call_args(*t);
        } else if (!at_end() && (peek().type == Token::Type::kString || peek().type == Token::Type::kInt ||
                                 peek().type == Token::Type::kFloat ||
                                 (peek().type == Token::Type::kName && !is_name("else") && !is_name("or") &&
                                  !is_name("and") && !is_name("if") && !is_name("in") && !is_name("not") &&
                                  !is_name("is")))) {
          t->args.push_back(parse_primary_postfix());
        }
        e = std::move(t);
      } else if (is_op("(")) {
        auto c = make(Expr::Kind::kCall, ln);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_primary_postfix() { return parse_postfix(parse_primary()); }

  std::vector<Segment> segs_;
  size_t spos_ = 0;
  const std::vector<Token>* toks_ = nullptr;
  size_t tpos_ = 0;
  int tag_line_ = 0;
};

}  // namespace

Body parse_template(const std::string& source) {
  Lexer lexer(source);
  Parser parser(lexer.run());
  return parser.parse_all();
}

}  // namespace hyrax::jinja
