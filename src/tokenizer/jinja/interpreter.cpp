#include "tokenizer/jinja/interpreter.h"

#include <cmath>

#include "core/check.h"

namespace hyrax::jinja {

namespace {

[[noreturn]] void error_at(int line, const std::string& what) { fail("chat template line ", line, ": ", what); }

// Code points of a UTF-8 string, as byte offsets (for Python indexing and slicing of str).
std::vector<size_t> char_offsets(const std::string& s) {
  std::vector<size_t> offs;
  for (size_t k = 0; k < s.size(); ++k)
    if ((static_cast<unsigned char>(s[k]) & 0xC0) != 0x80) offs.push_back(k);
  return offs;
}

// Python's slice indices for a sequence of length n.
std::vector<int64_t> slice_indices(int64_t n, const Value* start, const Value* stop, const Value* step, int line) {
  int64_t st = 1;
  if (step && !step->is_none()) {
    if (step->type != Value::Type::kInt) error_at(line, "slice step must be an integer");
    st = step->i;
    if (st == 0) error_at(line, "slice step cannot be zero");
  }
  auto norm = [&](const Value* v, int64_t dflt) -> int64_t {
    if (!v || v->is_none()) return dflt;
    if (v->type != Value::Type::kInt) error_at(line, "slice indices must be integers");
    int64_t x = v->i;
    if (x < 0) x += n;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  int64_t a = norm(start, st > 0 ? 0 : n - 1), b = norm(stop, st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t k = a; st > 0 ? k < b : k > b; k += st) idx.push_back(k);
  return idx;
}

}  // namespace

std::vector<Value> iterate(const Value& v, int line) {
  switch (v.type) {
    case Value::Type::kUndefined: return {};
    case Value::Type::kArray: return *v.arr;
    case Value::Type::kObject: {
      std::vector<Value> keys;
      for (const auto& [k, x] : v.obj->items) keys.push_back(Value::string(k));
      return keys;
    }
    case Value::Type::kString: {
      std::vector<Value> chars;
      std::vector<size_t> offs = char_offsets(v.s);
      for (size_t k = 0; k < offs.size(); ++k)
        chars.push_back(Value::string(v.s.substr(offs[k], (k + 1 < offs.size() ? offs[k + 1] : v.s.size()) - offs[k])));
      return chars;
    }
    default: error_at(line, "'" + v.type_name() + "' object is not iterable");
  }
}

Interpreter::Interpreter(const Body& body, const Object& globals) : body_(body) {
  frames_.emplace_back();
  for (const auto& [k, v] : globals.items) frames_[0][k] = v;
}

std::string Interpreter::render() {
  std::string out;
  Flow f = exec(body_, out);
  if (f != Flow::kNormal) fail("chat template: break or continue outside a loop");
  return out;
}

Value Interpreter::lookup(const std::string& name) const {
  for (size_t k = frames_.size(); k-- > 0;) {
    auto it = frames_[k].find(name);
    if (it != frames_[k].end()) return it->second;
  }
  return Value::undefined("'" + name + "' is undefined");
}

Interpreter::Flow Interpreter::exec(const Body& body, std::string& out) {
  for (const auto& np : body) {
    const Node& n = *np;
    switch (n.kind) {
      case Node::Kind::kText: out += n.text; break;
      case Node::Kind::kOutput: out += eval(*n.expr).str(); break;
      case Node::Kind::kIf: {
        size_t branch = 0;
        for (; branch < n.conds.size(); ++branch)
          if (eval(*n.conds[branch]).truthy()) break;
        if (branch < n.bodies.size()) {
          Flow f = exec(n.bodies[branch], out);
          if (f != Flow::kNormal) return f;
        }
        break;
      }
      case Node::Kind::kFor: {
        Flow f = exec_for(n, out);
        if (f != Flow::kNormal) return f;
        break;
      }
      case Node::Kind::kSet: {
        Value v = eval(*n.expr);
        if (n.attr_target) {
          Value target = lookup(n.targets[0]);
          if (!target.is_object() || !target.obj->is_namespace)
            error_at(n.line, "cannot assign attribute '" + n.targets[1] + "' of '" + n.targets[0] +
                                 "': only namespace() objects take attribute assignment");
          target.obj->set(n.targets[1], std::move(v));
        } else if (n.targets.size() == 1) {
          assign(n.targets[0], std::move(v));
        } else {
          std::vector<Value> items = iterate(v, n.line);
          if (items.size() != n.targets.size())
            error_at(n.line, "cannot unpack " + std::to_string(items.size()) + " values into " +
                                 std::to_string(n.targets.size()) + " names");
          for (size_t k = 0; k < items.size(); ++k) assign(n.targets[k], items[k]);
        }
        break;
      }
      case Node::Kind::kSetBlock: {
        std::string captured;
        exec(n.bodies[0], captured);
        assign(n.targets[0], Value::string(captured));
        break;
      }
      case Node::Kind::kMacro: define_macro(n); break;
      case Node::Kind::kBreak: return Flow::kBreak;
      case Node::Kind::kContinue: return Flow::kContinue;
      case Node::Kind::kBlock: {
        Flow f = exec(n.bodies[0], out);
        if (f != Flow::kNormal) return f;
        break;
      }
      case Node::Kind::kFilterBlock: {
        std::string captured;
        exec(n.bodies[0], captured);
        CallArgs args;
        args.line = n.line;
        for (const auto& a : n.filter_call->args) args.pos.push_back(eval(*a));
        for (size_t k = 0; k < n.filter_call->kw_names.size(); ++k)
          args.kw.emplace_back(n.filter_call->kw_names[k], eval(*n.filter_call->kw_args[k]));
        out += filter(n.filter_call->name, Value::string(captured), args, n.line).str();
        break;
      }
    }
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_for(const Node& n, std::string& out) {
  std::vector<Value> items = iterate(eval(*n.expr), n.line);
  auto bind = [&](const Value& item) {
    if (n.targets.size() == 1) {
      assign(n.targets[0], item);
      return;
    }
    std::vector<Value> parts = iterate(item, n.line);
    if (parts.size() != n.targets.size())
      error_at(n.line, "cannot unpack " + std::to_string(parts.size()) + " values into " +
                           std::to_string(n.targets.size()) + " loop variables");
    for (size_t k = 0; k < parts.size(); ++k) assign(n.targets[k], parts[k]);
  };
  if (n.filter) {  // `for x in xs if cond`: the loop sees only the items that pass
    std::vector<Value> kept;
    for (const Value& item : items) {
      frames_.emplace_back();
      bind(item);
      bool keep = eval(*n.filter).truthy();
      frames_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (n.bodies.size() > 1) return exec(n.bodies[1], out);
    return Flow::kNormal;
  }
  int64_t len = int64_t(items.size());
  for (int64_t k = 0; k < len; ++k) {
    frames_.emplace_back();
    bind(items[k]);
    Object loop;
    loop.set("index", Value::integer(k + 1));
    loop.set("index0", Value::integer(k));
    loop.set("revindex", Value::integer(len - k));
    loop.set("revindex0", Value::integer(len - k - 1));
    loop.set("first", Value::boolean(k == 0));
    loop.set("last", Value::boolean(k == len - 1));
    loop.set("length", Value::integer(len));
    loop.set("depth", Value::integer(1));
    loop.set("depth0", Value::integer(0));
    loop.set("previtem", k > 0 ? items[k - 1] : Value::undefined("there is no previous item"));
    loop.set("nextitem", k + 1 < len ? items[k + 1] : Value::undefined("there is no next item"));
    loop.set("cycle", Value::function("loop.cycle", [k](const CallArgs& a) {
      if (a.pos.empty()) fail("chat template line ", a.line, ": loop.cycle() needs at least one argument");
      return a.pos[size_t(k) % a.pos.size()];
    }));
    assign("loop", Value::object(std::move(loop)));
    Flow f = exec(n.bodies[0], out);
    frames_.pop_back();
    if (f == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

void Interpreter::define_macro(const Node& n) {
  const Node* node = &n;
  assign(n.name, Value::function(n.name, [this, node](const CallArgs& args) {
    if (++depth_ > 100) fail("chat template line ", node->line, ": macro recursion too deep");
    std::vector<Frame> saved = std::move(frames_);
    frames_.clear();
    frames_.push_back(saved[0]);
    frames_.emplace_back();
    if (args.pos.size() > node->params.size())
      fail("chat template line ", args.line, ": macro '", node->name, "' takes ", node->params.size(),
           " arguments, got ", args.pos.size());
    for (size_t k = 0; k < node->params.size(); ++k) {
      const Value* v = args.get(k, node->params[k].c_str());
      if (v) {
        assign(node->params[k], *v);
      } else if (node->defaults[k]) {
        assign(node->params[k], eval(*node->defaults[k]));
      } else {
        assign(node->params[k], Value::undefined("macro parameter '" + node->params[k] + "' was not given"));
      }
    }
    for (const auto& [k, v] : args.kw) {
      bool known = false;
      for (const auto& p : node->params) known |= p == k;
      if (!known) fail("chat template line ", args.line, ": macro '", node->name, "' has no parameter '", k, "'");
    }
    std::string out;
    try {
      exec(node->bodies[0], out);
    } catch (...) {
      frames_ = std::move(saved);
      --depth_;
      throw;
    }
    // Top-level assignments inside the macro stay local to it; keep the caller's frames.
    frames_ = std::move(saved);
    --depth_;
    return Value::string(out);
  }));
}

Value Interpreter::get_attr(const Value& obj, const std::string& name, int line) {
  if (obj.is_undefined()) error_at(line, obj.s.empty() ? "attribute '" + name + "' of an undefined value" : obj.s);
  if (obj.is_object()) {
    Value m = obj.obj->is_namespace ? Value() : bound_method(obj, name);
    if (!m.is_undefined()) return m;
    if (const Value* v = obj.obj->find(name)) return *v;
    return Value::undefined("'dict object' has no attribute '" + name + "'");
  }
  Value m = bound_method(obj, name);
  if (!m.is_undefined()) return m;
  return Value::undefined("'" + obj.type_name() + " object' has no attribute '" + name + "'");
}

Value Interpreter::get_item(const Value& obj, const Value& key, int line) {
  if (obj.is_undefined()) error_at(line, obj.s.empty() ? "subscript of an undefined value" : obj.s);
  if (obj.is_object()) {
    if (key.is_string()) {
      if (const Value* v = obj.obj->find(key.s)) return *v;
      Value m = obj.obj->is_namespace ? Value() : bound_method(obj, key.s);
      return m.is_undefined() ? Value::undefined("'dict object' has no attribute '" + key.s + "'") : m;
    }
    return Value::undefined("'dict object' has no attribute '" + key.str() + "'");
  }
  if ((obj.is_array() || obj.is_string()) && key.type == Value::Type::kInt) {
    if (obj.is_array()) {
      int64_t n = int64_t(obj.arr->size()), k = key.i < 0 ? key.i + n : key.i;
      if (k < 0 || k >= n) return Value::undefined("list index out of range");
      return (*obj.arr)[size_t(k)];
    }
    std::vector<size_t> offs = char_offsets(obj.s);
    int64_t n = int64_t(offs.size()), k = key.i < 0 ? key.i + n : key.i;
    if (k < 0 || k >= n) return Value::undefined("string index out of range");
    size_t end = size_t(k) + 1 < offs.size() ? offs[size_t(k) + 1] : obj.s.size();
    return Value::string(obj.s.substr(offs[size_t(k)], end - offs[size_t(k)]));
  }
  if (key.is_string()) return get_attr(obj, key.s, line);
  return Value::undefined("'" + obj.type_name() + " object' has no item " + key.repr());
}

Value Interpreter::call(const Value& callee, const CallArgs& args, int line) {
  if (callee.type != Value::Type::kFunction)
    error_at(line, callee.is_undefined() ? (callee.s.empty() ? "call of an undefined value" : callee.s)
                                         : "'" + callee.type_name() + "' object is not callable");
  return (*callee.fn)(args);
}

bool Interpreter::compare(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "==") return equal(a, b);
  if (op == "!=") return !equal(a, b);
  if (op == "in" || op == "notin") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) error_at(line, "'in <string>' requires a string as left operand, not " + a.type_name());
      found = b.s.find(a.s) != std::string::npos;
    } else if (b.is_array()) {
      for (const Value& x : *b.arr) found |= equal(a, x);
    } else if (b.is_object()) {
      found = a.is_string() && b.obj->find(a.s) != nullptr;
    } else if (!b.is_undefined()) {
      error_at(line, "argument of type '" + b.type_name() + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  int c;
  if (a.is_number() && b.is_number()) {
    double x = a.as_double(), y = b.as_double();
    c = x < y ? -1 : x > y ? 1 : 0;
  } else if (a.is_string() && b.is_string()) {
    c = a.s.compare(b.s);
  } else {
    error_at(line, "'" + op + "' not supported between '" + a.type_name() + "' and '" + b.type_name() + "'");
  }
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

Value Interpreter::binary(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "~") return Value::string(a.str() + b.str());
  if (a.is_undefined() || b.is_undefined())
    error_at(line, "undefined value in '" + op + "' (" + (a.is_undefined() ? a.s : b.s) + ")");
  auto ints = [&] { return a.type != Value::Type::kFloat && b.type != Value::Type::kFloat; };
  auto ival = [](const Value& v) { return v.type == Value::Type::kBool ? int64_t(v.b) : v.i; };
  bool numeric = (a.is_number() || a.type == Value::Type::kBool) && (b.is_number() || b.type == Value::Type::kBool);
  if (op == "+") {
    if (numeric) return ints() ? Value::integer(ival(a) + ival(b)) : Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) return Value::string(a.s + b.s);
    if (a.is_array() && b.is_array()) {
      Array r = *a.arr;
      r.insert(r.end(), b.arr->begin(), b.arr->end());
      return Value::array(std::move(r));
    }
  } else if (op == "-") {
    if (numeric) return ints() ? Value::integer(ival(a) - ival(b)) : Value::number(a.as_double() - b.as_double());
  } else if (op == "*") {
    if (numeric) return ints() ? Value::integer(ival(a) * ival(b)) : Value::number(a.as_double() * b.as_double());
    const Value* seq = a.is_number() ? &b : &a;
    const Value* cnt = a.is_number() ? &a : &b;
    if (cnt->type == Value::Type::kInt && (seq->is_string() || seq->is_array())) {
      int64_t n = std::max<int64_t>(0, cnt->i);
      if (seq->is_string()) {
        std::string r;
        for (int64_t k = 0; k < n; ++k) r += seq->s;
        return Value::string(r);
      }
      Array r;
      for (int64_t k = 0; k < n; ++k) r.insert(r.end(), seq->arr->begin(), seq->arr->end());
      return Value::array(std::move(r));
    }
  } else if (op == "/") {
    if (numeric) {
      if (b.as_double() == 0) error_at(line, "division by zero");
      return Value::number(a.as_double() / b.as_double());
    }
  } else if (op == "//" || op == "%") {
    if (numeric) {
      if (b.as_double() == 0) error_at(line, "division by zero");
      if (ints()) {
        int64_t x = ival(a), y = ival(b), q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return Value::integer(op == "//" ? q : r);
      }
      double x = a.as_double(), y = b.as_double(), q = std::floor(x / y);
      return Value::number(op == "//" ? q : x - q * y);
    }
  } else if (op == "**") {
    if (numeric) {
      if (ints() && ival(b) >= 0) {
        int64_t r = 1;
        for (int64_t k = 0; k < ival(b); ++k) r *= ival(a);
        return Value::integer(r);
      }
      return Value::number(std::pow(a.as_double(), b.as_double()));
    }
  }
  error_at(line, "unsupported operand types for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
}

Value Interpreter::eval(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral: return e.value;
    case Expr::Kind::kName: return lookup(e.name);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple: {
      Array a;
      for (const auto& x : e.args) a.push_back(eval(*x));
      return e.kind == Expr::Kind::kTuple ? Value::tuple_of(std::move(a)) : Value::array(std::move(a));
    }
    case Expr::Kind::kDict: {
      Object o;
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        Value key = eval(*e.args[k]);
        if (!key.is_string()) error_at(e.line, "dict keys must be strings here");
        o.set(key.s, eval(*e.args[k + 1]));
      }
      return Value::object(std::move(o));
    }
    case Expr::Kind::kGetAttr: return get_attr(eval(*e.a), e.name, e.line);
    case Expr::Kind::kGetItem: return get_item(eval(*e.a), eval(*e.b), e.line);
    case Expr::Kind::kSlice: {
      Value obj = eval(*e.a);
      Value idx[3];
      const Value* p[3] = {nullptr, nullptr, nullptr};
      for (int k = 0; k < 3; ++k)
        if (e.args[k]) {
          idx[k] = eval(*e.args[k]);
          p[k] = &idx[k];
        }
      if (obj.is_array()) {
        Array r;
        for (int64_t k : slice_indices(int64_t(obj.arr->size()), p[0], p[1], p[2], e.line)) r.push_back((*obj.arr)[k]);
        return Value::array(std::move(r));
      }
      if (obj.is_string()) {
        std::vector<size_t> offs = char_offsets(obj.s);
        std::string r;
        for (int64_t k : slice_indices(int64_t(offs.size()), p[0], p[1], p[2], e.line)) {
          size_t end = size_t(k) + 1 < offs.size() ? offs[size_t(k) + 1] : obj.s.size();
          r.append(obj.s, offs[size_t(k)], end - offs[size_t(k)]);
        }
        return Value::string(r);
      }
      error_at(e.line, "cannot slice a '" + obj.type_name() + "'");
    }
    case Expr::Kind::kCall: {
      Value callee = eval(*e.a);
      CallArgs args;
      args.line = e.line;
      for (const auto& a : e.args) args.pos.push_back(eval(*a));
      for (size_t k = 0; k < e.kw_names.size(); ++k) args.kw.emplace_back(e.kw_names[k], eval(*e.kw_args[k]));
      return call(callee, args, e.line);
    }
    case Expr::Kind::kFilter: {
      Value input = eval(*e.a);
      CallArgs args;
      args.line = e.line;
      for (const auto& a : e.args) args.pos.push_back(eval(*a));
      for (size_t k = 0; k < e.kw_names.size(); ++k) args.kw.emplace_back(e.kw_names[k], eval(*e.kw_args[k]));
      return filter(e.name, input, args, e.line);
    }
    case Expr::Kind::kTest: {
      Value v = eval(*e.a);
      CallArgs args;
      args.line = e.line;
      for (const auto& a : e.args) args.pos.push_back(eval(*a));
      bool r = test(e.name, v, args, e.line);
      return Value::boolean(e.negated ? !r : r);
    }
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos: {
      Value v = eval(*e.a);
      if (v.type == Value::Type::kInt) return Value::integer(e.kind == Expr::Kind::kNeg ? -v.i : v.i);
      if (v.type == Value::Type::kFloat) return Value::number(e.kind == Expr::Kind::kNeg ? -v.f : v.f);
      error_at(e.line, "bad operand type for unary " + std::string(e.kind == Expr::Kind::kNeg ? "-" : "+") + ": '" +
                           v.type_name() + "'");
    }
    case Expr::Kind::kNot: return Value::boolean(!eval(*e.a).truthy());
    case Expr::Kind::kAnd: {
      Value a = eval(*e.a);
      return a.truthy() ? eval(*e.b) : a;
    }
    case Expr::Kind::kOr: {
      Value a = eval(*e.a);
      return a.truthy() ? a : eval(*e.b);
    }
    case Expr::Kind::kBinary: {
      Value a = eval(*e.a);
      Value b = eval(*e.b);
      return binary(e.name, a, b, e.line);
    }
    case Expr::Kind::kCompare: {
      Value left = eval(*e.args[0]);
      for (size_t k = 0; k < e.ops.size(); ++k) {
        Value right = eval(*e.args[k + 1]);
        if (!compare(e.ops[k], left, right, e.line)) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
    case Expr::Kind::kCond: {
      if (eval(*e.a).truthy()) return eval(*e.b);
      return e.c ? eval(*e.c) : Value::undefined("the else branch of an inline if");
    }
  }
  error_at(e.line, "unsupported expression");
}

}  // namespace hyrax::jinja
