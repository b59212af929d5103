#include "tokenizer/jinja/parser.h"

#include "core/check.h"
#include "tokenizer/jinja/lexer.h"

namespace hyrax::jinja {

namespace {

// Recursive descent over the segments, with Jinja's operator precedence.
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
  Parser parser(lex_template(source));
  return parser.parse_all();
}

}  // namespace hyrax::jinja
