#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace hyrax::jinja {

Value* Object::find(const std::string& key) {
  for (auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

const Value* Object::find(const std::string& key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Object::set(const std::string& key, Value v) {
  if (Value* e = find(key))
    *e = std::move(v);
  else
    items.emplace_back(key, std::move(v));
}

const Value* CallArgs::get(size_t idx, const char* name) const {
  if (idx < pos.size()) return &pos[idx];
  if (name)
    for (const auto& [k, v] : kw)
      if (k == name) return &v;
  return nullptr;
}

Value Value::undefined(std::string hint) {
  Value v;
  v.s = std::move(hint);
  return v;
}
Value Value::none() {
  Value v;
  v.type = Type::kNone;
  return v;
}
Value Value::boolean(bool x) {
  Value v;
  v.type = Type::kBool;
  v.b = x;
  return v;
}
Value Value::integer(int64_t x) {
  Value v;
  v.type = Type::kInt;
  v.i = x;
  return v;
}
Value Value::number(double x) {
  Value v;
  v.type = Type::kFloat;
  v.f = x;
  return v;
}
Value Value::string(std::string x) {
  Value v;
  v.type = Type::kString;
  v.s = std::move(x);
  return v;
}
Value Value::array(Array x) {
  Value v;
  v.type = Type::kArray;
  v.arr = std::make_shared<Array>(std::move(x));
  return v;
}
Value Value::tuple_of(Array x) {
  Value v = array(std::move(x));
  v.tuple = true;
  return v;
}
Value Value::object(Object x) {
  Value v;
  v.type = Type::kObject;
  v.obj = std::make_shared<Object>(std::move(x));
  return v;
}
Value Value::function(std::string name, Function f) {
  Value v;
  v.type = Type::kFunction;
  v.fn = std::make_shared<Function>(std::move(f));
  v.fn_name = std::move(name);
  return v;
}

bool Value::truthy() const {
  switch (type) {
    case Type::kUndefined:
    case Type::kNone: return false;
    case Type::kBool: return b;
    case Type::kInt: return i != 0;
    case Type::kFloat: return f != 0.0;
    case Type::kString: return !s.empty();
    case Type::kArray: return !arr->empty();
    case Type::kObject: return !obj->items.empty();
    case Type::kFunction: return true;
  }
  return false;
}

std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  // Shortest round-trip digits, then Python's layout: scientific below 1e-4 or from 1e16 on.
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  size_t e = sci.find('e');
  std::string mant = sci.substr(0, e);
  int exp = std::stoi(sci.substr(e + 1));
  bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (exp < 0) {
    out = "0." + std::string(size_t(-exp - 1), '0') + digits;
  } else {
    if (digits.size() <= size_t(exp) + 1) {
      out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
  }
  return neg ? "-" + out : out;
}

namespace {

std::string repr_string(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char q = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == q) out += std::string("\\") + char(q);
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += char(c);
    }
  }
  out += q;
  return out;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

void dump(std::string& out, const Value& v, int indent, bool sort_keys, int depth, int line) {
  auto newline = [&](int d) {
    out += '\n';
    out.append(size_t(indent) * size_t(d), ' ');
  };
  switch (v.type) {
    case Value::Type::kUndefined:
      fail("chat template line ", line, ": tojson of an undefined value", v.s.empty() ? "" : " (" + v.s + ")");
    case Value::Type::kNone: out += "null"; return;
    case Value::Type::kBool: out += v.b ? "true" : "false"; return;
    case Value::Type::kInt: out += std::to_string(v.i); return;
    case Value::Type::kFloat: {
      if (std::isnan(v.f)) out += "NaN";
      else if (std::isinf(v.f)) out += v.f > 0 ? "Infinity" : "-Infinity";
      else out += python_float(v.f);
      return;
    }
    case Value::Type::kString: json_string(out, v.s); return;
    case Value::Type::kArray: {
      if (v.arr->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.arr->size(); ++k) {
        if (k) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        dump(out, (*v.arr)[k], indent, sort_keys, depth + 1, line);
      }
      if (indent >= 0) newline(depth);
      out += ']';
      return;
    }
    case Value::Type::kObject: {
      if (v.obj->items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.obj->items) items.push_back(&kv);
      if (sort_keys) std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        json_string(out, items[k]->first);
        out += ": ";
        dump(out, items[k]->second, indent, sort_keys, depth + 1, line);
      }
      if (indent >= 0) newline(depth);
      out += '}';
      return;
    }
    case Value::Type::kFunction: fail("chat template line ", line, ": tojson of a function");
  }
}

}  // namespace

std::string Value::repr() const {
  switch (type) {
    case Type::kString: return repr_string(s);
    case Type::kArray: {
      std::string out = tuple ? "(" : "[";
      for (size_t k = 0; k < arr->size(); ++k) {
        if (k) out += ", ";
        out += (*arr)[k].repr();
      }
      if (tuple && arr->size() == 1) out += ",";
      return out + (tuple ? ")" : "]");
    }
    case Type::kObject: {
      std::string out = "{";
      for (size_t k = 0; k < obj->items.size(); ++k) {
        if (k) out += ", ";
        out += repr_string(obj->items[k].first) + ": " + obj->items[k].second.repr();
      }
      return out + "}";
    }
    default: return str();
  }
}

std::string Value::str() const {
  switch (type) {
    case Type::kUndefined: return "";
    case Type::kNone: return "None";
    case Type::kBool: return b ? "True" : "False";
    case Type::kInt: return std::to_string(i);
    case Type::kFloat: return python_float(f);
    case Type::kString: return s;
    case Type::kArray:
    case Type::kObject: return repr();
    case Type::kFunction: return "<function " + fn_name + ">";
  }
  return "";
}

std::string Value::type_name() const {
  switch (type) {
    case Type::kUndefined: return "Undefined";
    case Type::kNone: return "NoneType";
    case Type::kBool: return "bool";
    case Type::kInt: return "int";
    case Type::kFloat: return "float";
    case Type::kString: return "str";
    case Type::kArray: return "list";
    case Type::kObject: return obj->is_namespace ? "Namespace" : "dict";
    case Type::kFunction: return "function";
  }
  return "?";
}

bool equal(const Value& a, const Value& b) {
  using T = Value::Type;
  auto numeric = [](const Value& v) { return v.type == T::kInt || v.type == T::kFloat || v.type == T::kBool; };
  if (numeric(a) && numeric(b)) {
    if (a.type != T::kFloat && b.type != T::kFloat) {
      int64_t x = a.type == T::kBool ? a.b : a.i, y = b.type == T::kBool ? b.b : b.i;
      return x == y;
    }
    return a.as_double() == b.as_double();
  }
  if (a.type != b.type) return false;
  switch (a.type) {
    case T::kUndefined:
    case T::kNone: return true;
    case T::kString: return a.s == b.s;
    case T::kArray: {
      if (a.arr->size() != b.arr->size()) return false;
      for (size_t k = 0; k < a.arr->size(); ++k)
        if (!equal((*a.arr)[k], (*b.arr)[k])) return false;
      return true;
    }
    case T::kObject: {
      if (a.obj->items.size() != b.obj->items.size()) return false;
      for (const auto& [k, v] : a.obj->items) {
        const Value* o = b.obj->find(k);
        if (!o || !equal(v, *o)) return false;
      }
      return true;
    }
    case T::kFunction: return a.fn == b.fn;
    default: return false;
  }
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: return Value::integer(int64_t(j.get<uint64_t>()));
    case nlohmann::ordered_json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array a;
      a.reserve(j.size());
      for (const auto& e : j) a.push_back(from_json(e));
      return Value::array(std::move(a));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object o;
      for (auto it = j.begin(); it != j.end(); ++it) o.items.emplace_back(it.key(), from_json(it.value()));
      return Value::object(std::move(o));
    }
    default: return Value::none();
  }
}

std::string to_json(const Value& v, int indent, bool sort_keys, int line) {
  std::string out;
  dump(out, v, indent, sort_keys, 0, line);
  return out;
}

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace hyrax::jinja
