// Jinja's filters and tests (the subset chat templates use), as Interpreter members.
#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "tokenizer/jinja/interpreter.h"

namespace hyrax::jinja {

namespace {

[[noreturn]] void error_at(int line, const std::string& what) { fail("chat template line ", line, ": ", what); }

// attribute="a.b" lookups of map / selectattr / sort / join / sum.
Value attribute_of(const Value& item, const std::string& path) {
  Value cur = item;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_object()) {
      const Value* v = cur.obj->find(part);
      cur = v ? *v : Value::undefined("no attribute '" + part + "'");
    } else if (cur.is_array() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
      size_t k = std::stoul(part);
      cur = k < cur.arr->size() ? (*cur.arr)[k] : Value::undefined("index out of range");
    } else {
      cur = Value::undefined("no attribute '" + part + "'");
    }
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return cur;
}

int sort_compare(const Value& a, const Value& b, bool case_sensitive, int line) {
  if (a.is_number() && b.is_number()) return a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double();
  if (a.is_string() && b.is_string()) {
    if (case_sensitive) return a.s.compare(b.s);
    std::string x = a.s, y = b.s;
    for (char& c : x) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (char& c : y) c = char(std::tolower(static_cast<unsigned char>(c)));
    return x.compare(y);
  }
  error_at(line, "cannot sort '" + a.type_name() + "' with '" + b.type_name() + "'");
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

Value Interpreter::filter(const std::string& name, const Value& v, const CallArgs& a, int line) {
  auto arg = [&](size_t i, const char* kw) { return a.get(i, kw); };
  if (name == "trim") {
    const Value* chars = arg(0, "chars");
    return Value::string(py_strip(v.str(), chars && !chars->is_none() ? &chars->s : nullptr, true, true));
  }
  if (name == "tojson") {
    // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
    const Value* ascii = arg(0, "ensure_ascii");
    const Value* indent = arg(1, "indent");
    const Value* separators = arg(2, "separators");
    const Value* sort_keys = arg(3, "sort_keys");
    if (ascii && ascii->truthy()) error_at(line, "unsupported construct: tojson(ensure_ascii=True)");
    if (separators && !separators->is_none()) error_at(line, "unsupported construct: tojson(separators=...)");
    if (indent && !indent->is_none() && indent->type != Value::Type::kInt)
      error_at(line, "unsupported construct: tojson(indent=<non-integer>)");
    int ind = indent && !indent->is_none() ? int(indent->i) : -1;
    return Value::string(to_json(v, ind, sort_keys && sort_keys->truthy(), line));
  }
  if (name == "length" || name == "count") {
    switch (v.type) {
      case Value::Type::kUndefined: return Value::integer(0);
      case Value::Type::kString: return Value::integer(int64_t(utf8_length(v.s)));
      case Value::Type::kArray: return Value::integer(int64_t(v.arr->size()));
      case Value::Type::kObject: return Value::integer(int64_t(v.obj->items.size()));
      default: error_at(line, "object of type '" + v.type_name() + "' has no len()");
    }
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::array();
    if (!v.is_object()) error_at(line, "items filter expects a mapping, got " + v.type_name());
    return call(bound_method(v, "items"), CallArgs{{}, {}, line}, line);
  }
  if (name == "list") return Value::array(iterate(v, line));
  if (name == "string") return Value::string(v.str());
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    return call(bound_method(Value::string(v.str()), name), CallArgs{{}, {}, line}, line);
  }
  if (name == "replace") {
    CallArgs b = a;
    return call(bound_method(Value::string(v.str()), "replace"), b, line);
  }
  if (name == "default" || name == "d") {
    const Value* d = arg(0, "default_value");
    const Value* boolean = arg(1, "boolean");
    bool use_default = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use_default ? (d ? *d : Value::string("")) : v;
  }
  if (name == "first" || name == "last") {
    std::vector<Value> items = iterate(v, line);
    if (items.empty()) return Value::undefined("no " + name + " item, sequence was empty");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::vector<Value> cs = iterate(v, line);
      std::string r;
      for (size_t k = cs.size(); k-- > 0;) r += cs[k].s;
      return Value::string(r);
    }
    std::vector<Value> items = iterate(v, line);
    std::reverse(items.begin(), items.end());
    return Value::array(std::move(items));
  }
  if (name == "join") {
    const Value* sep = arg(0, "d");
    const Value* attr = arg(1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(v, line)) {
      if (!first) out += sep ? sep->str() : "";
      out += (attr ? attribute_of(item, attr->str()) : item).str();
      first = false;
    }
    return Value::string(out);
  }
  if (name == "map") {
    Array out;
    const Value* attr = nullptr;
    for (const auto& [k, x] : a.kw)
      if (k == "attribute") attr = &x;
    if (attr) {
      const Value* dflt = nullptr;
      for (const auto& [k, x] : a.kw)
        if (k == "default") dflt = &x;
      for (const Value& item : iterate(v, line)) {
        Value r = attribute_of(item, attr->str());
        out.push_back(r.is_undefined() && dflt ? *dflt : r);
      }
      return Value::array(std::move(out));
    }
    if (a.pos.empty() || !a.pos[0].is_string()) error_at(line, "map() needs a filter name or attribute=");
    CallArgs rest{std::vector<Value>(a.pos.begin() + 1, a.pos.end()), a.kw, line};
    for (const Value& item : iterate(v, line)) out.push_back(filter(a.pos[0].s, item, rest, line));
    return Value::array(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep_if = name == "select" || name == "selectattr";
    size_t first_test_arg = by_attr ? 1 : 0;
    if (by_attr && (a.pos.empty() || !a.pos[0].is_string())) error_at(line, name + "() needs an attribute name");
    std::string test_name = a.pos.size() > first_test_arg ? a.pos[first_test_arg].str() : "";
    CallArgs targs{std::vector<Value>(a.pos.begin() + std::min(a.pos.size(), first_test_arg + 1), a.pos.end()), {}, line};
    Array out;
    for (const Value& item : iterate(v, line)) {
      Value x = by_attr ? attribute_of(item, a.pos[0].s) : item;
      bool r = test_name.empty() ? x.truthy() : test(test_name, x, targs, line);
      if (r == keep_if) out.push_back(item);
    }
    return Value::array(std::move(out));
  }
  if (name == "unique") {
    Array out;
    for (const Value& item : iterate(v, line)) {
      bool seen = false;
      for (const Value& o : out) seen |= equal(o, item);
      if (!seen) out.push_back(item);
    }
    return Value::array(std::move(out));
  }
  if (name == "sort" || name == "dictsort") {
    const Value* rev = arg(name == "sort" ? 0 : 2, "reverse");
    const Value* cs = arg(name == "sort" ? 1 : 0, "case_sensitive");
    const Value* attr = name == "sort" ? arg(2, "attribute") : nullptr;
    std::vector<Value> items;
    if (name == "dictsort") {
      if (!v.is_object()) error_at(line, "dictsort expects a mapping");
      for (const auto& [k, x] : v.obj->items) items.push_back(Value::tuple_of({Value::string(k), x}));
    } else {
      items = iterate(v, line);
    }
    bool case_sensitive = cs && cs->truthy();
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      Value kx = name == "dictsort" ? (*x.arr)[0] : attr ? attribute_of(x, attr->str()) : x;
      Value ky = name == "dictsort" ? (*y.arr)[0] : attr ? attribute_of(y, attr->str()) : y;
      return sort_compare(kx, ky, case_sensitive, line) < 0;
    });
    if (rev && rev->truthy()) std::reverse(items.begin(), items.end());
    return Value::array(std::move(items));
  }
  if (name == "min" || name == "max") {
    std::vector<Value> items = iterate(v, line);
    if (items.empty()) return Value::undefined("no " + name + " item, sequence was empty");
    Value best = items[0];
    for (const Value& x : items) {
      int c = sort_compare(x, best, false, line);
      if (name == "min" ? c < 0 : c > 0) best = x;
    }
    return best;
  }
  if (name == "sum") {
    const Value* attr = arg(0, "attribute");
    const Value* start = arg(1, "start");
    Value total = start ? *start : Value::integer(0);
    for (const Value& x : iterate(v, line))
      total = binary("+", total, attr ? attribute_of(x, attr->str()) : x, line);
    return total;
  }
  if (name == "abs") {
    if (v.type == Value::Type::kInt) return Value::integer(v.i < 0 ? -v.i : v.i);
    if (v.type == Value::Type::kFloat) return Value::number(std::fabs(v.f));
    error_at(line, "bad operand type for abs(): '" + v.type_name() + "'");
  }
  if (name == "int") {
    const Value* dflt = arg(0, "default");
    if (v.type == Value::Type::kInt) return v;
    if (v.type == Value::Type::kBool) return Value::integer(v.b);
    if (v.type == Value::Type::kFloat) return Value::integer(int64_t(v.f));
    if (v.is_string()) {
      try {
        size_t used = 0;
        std::string t = py_strip(v.s, nullptr, true, true);
        int64_t x = std::stoll(t, &used);
        if (used == t.size()) return Value::integer(x);
        return Value::integer(int64_t(std::stod(t)));
      } catch (const std::exception&) {
      }
    }
    return dflt ? *dflt : Value::integer(0);
  }
  if (name == "float") {
    const Value* dflt = arg(0, "default");
    if (v.is_number()) return Value::number(v.as_double());
    if (v.is_string()) {
      try {
        return Value::number(std::stod(v.s));
      } catch (const std::exception&) {
      }
    }
    return dflt ? *dflt : Value::number(0.0);
  }
  if (name == "round") {
    int64_t precision = a.get(0, "precision") ? a.get(0, "precision")->i : 0;
    std::string method = a.get(1, "method") ? a.get(1, "method")->str() : "common";
    double x = v.as_double(), m = std::pow(10.0, double(precision));
    double r = method == "ceil" ? std::ceil(x * m) / m : method == "floor" ? std::floor(x * m) / m : std::round(x * m) / m;
    return Value::number(r);
  }
  if (name == "indent") {
    int64_t width = 4;
    std::string pad;
    const Value* w = arg(0, "width");
    if (w && w->is_string()) pad = w->s;
    else pad = std::string(size_t(w ? w->i : width), ' ');
    const Value* first = arg(1, "first");
    const Value* blank = arg(2, "blank");
    std::string s = v.str(), out;
    size_t pos = 0;
    bool first_line = true;
    while (true) {
      size_t nl = s.find('\n', pos);
      std::string ln = s.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      bool add = first_line ? (first && first->truthy()) : (!ln.empty() || (blank && blank->truthy()));
      if (!first_line) out += '\n';
      if (add) out += pad;
      out += ln;
      first_line = false;
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
    return Value::string(out);
  }
  if (name == "safe") return v;
  if (name == "escape" || name == "e") return Value::string(html_escape(v.str()));
  if (name == "attr") return attribute_of(v, a.pos.empty() ? "" : a.pos[0].str());
  if (name == "wordcount") return Value::integer(int64_t(iterate(call(bound_method(Value::string(v.str()), "split"),
                                                                       CallArgs{{}, {}, line}, line), line).size()));
  error_at(line, "unsupported construct: filter '" + name + "'");
}

bool Interpreter::test(const std::string& name, const Value& v, const CallArgs& a, int line) {
  using T = Value::Type;
  auto arg0 = [&]() -> const Value& {
    if (a.pos.empty()) error_at(line, "test '" + name + "' needs an argument");
    return a.pos[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number() || v.type == T::kBool;
  if (name == "integer") return v.type == T::kInt;
  if (name == "float") return v.type == T::kFloat;
  if (name == "boolean") return v.type == T::kBool;
  if (name == "true") return v.type == T::kBool && v.b;
  if (name == "false") return v.type == T::kBool && !v.b;
  if (name == "mapping") return v.is_object();
  if (name == "iterable") return v.is_array() || v.is_object() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_array() || v.is_object() || v.is_string();
  if (name == "callable") return v.type == T::kFunction;
  if (name == "eq" || name == "equalto" || name == "==") return equal(v, arg0());
  if (name == "ne" || name == "!=") return !equal(v, arg0());
  if (name == "lt" || name == "lessthan" || name == "<") return compare("<", v, arg0(), line);
  if (name == "le" || name == "<=") return compare("<=", v, arg0(), line);
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(">", v, arg0(), line);
  if (name == "ge" || name == ">=") return compare(">=", v, arg0(), line);
  if (name == "in") return compare("in", v, arg0(), line);
  if (name == "sameas") {
    const Value& o = arg0();
    if (v.type != o.type) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.type == T::kBool) return v.b == o.b;
    if (v.is_array()) return v.arr == o.arr;
    if (v.is_object()) return v.obj == o.obj;
    return equal(v, o);
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (v.type != T::kInt) error_at(line, "test '" + name + "' needs an integer");
    if (name == "odd") return v.i % 2 != 0;
    if (name == "even") return v.i % 2 == 0;
    const Value& d = arg0();
    if (d.type != T::kInt || d.i == 0) error_at(line, "divisibleby needs a non-zero integer");
    return v.i % d.i == 0;
  }
  if (name == "lower" || name == "upper") {
    std::string s = v.str();
    for (char c : s)
      if (name == "lower" ? std::isupper(static_cast<unsigned char>(c)) : std::islower(static_cast<unsigned char>(c)))
        return false;
    return true;
  }
  error_at(line, "unsupported construct: test '" + name + "'");
}

}  // namespace hyrax::jinja
