// Filters, tests, methods of str / dict / list, and global functions, with Jinja's and Python's semantics.
#include <algorithm>
#include <cmath>
#include <ctime>

#include "core/check.h"
#include "tokenizer/jinja/interpreter.h"

namespace hyrax::jinja {

namespace {

[[noreturn]] void error_at(int line, const std::string& what) { fail("chat template line ", line, ": ", what); }

// Python's str.isspace() characters.
bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// (code point, byte offset, byte length) of each character.
struct Ch {
  uint32_t cp;
  size_t off, len;
};
std::vector<Ch> chars_of(const std::string& s) {
  std::vector<Ch> out;
  for (size_t k = 0; k < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[k]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    len = std::min(len, s.size() - k);
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t j = 1; j < len; ++j) cp = (cp << 6) | (static_cast<unsigned char>(s[k + j]) & 0x3F);
    out.push_back({cp, k, len});
    k += len;
  }
  return out;
}

std::string ascii_map(std::string s, int (*f)(int)) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x80) c = char(f(c));
  return s;
}

std::string title_case(const std::string& s) {
  std::string out = s;
  bool prev_cased = false;
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    bool alpha = u < 0x80 && std::isalpha(u);
    if (alpha) c = char(prev_cased ? std::tolower(u) : std::toupper(u));
    prev_cased = alpha || u >= 0x80;
  }
  return out;
}

std::vector<std::string> py_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> parts;
  if (!sep || sep->is_none()) {
    std::vector<Ch> cs = chars_of(s);
    size_t k = 0;
    while (k < cs.size()) {
      while (k < cs.size() && is_py_space(cs[k].cp)) ++k;
      if (k >= cs.size()) break;
      if (maxsplit >= 0 && int64_t(parts.size()) == maxsplit) {
        size_t end = s.size();
        while (end > cs[k].off && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
        parts.push_back(s.substr(cs[k].off, end - cs[k].off));
        break;
      }
      size_t start = k;
      while (k < cs.size() && !is_py_space(cs[k].cp)) ++k;
      size_t end = k < cs.size() ? cs[k].off : s.size();
      parts.push_back(s.substr(cs[start].off, end - cs[start].off));
    }
    return parts;
  }
  if (sep->s.empty()) fail("empty separator in split()");
  size_t pos = 0, hit;
  while ((maxsplit < 0 || int64_t(parts.size()) < maxsplit) && (hit = s.find(sep->s, pos)) != std::string::npos) {
    parts.push_back(s.substr(pos, hit - pos));
    pos = hit + sep->s.size();
  }
  parts.push_back(s.substr(pos));
  return parts;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) {  // Python inserts `to` between characters
    std::string out;
    std::vector<Ch> cs = chars_of(s);
    int64_t n = 0;
    for (const Ch& c : cs) {
      if (count < 0 || n < count) {
        out += to;
        ++n;
      }
      out.append(s, c.off, c.len);
    }
    if (count < 0 || n < count) out += to;
    return out;
  }
  std::string out;
  size_t pos = 0, hit;
  int64_t n = 0;
  while ((count < 0 || n < count) && (hit = s.find(from, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
    ++n;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

Value strings(const std::vector<std::string>& parts) {
  Array a;
  for (const auto& p : parts) a.push_back(Value::string(p));
  return Value::array(std::move(a));
}

int64_t int_arg(const CallArgs& a, size_t i, const char* name, int64_t dflt) {
  const Value* v = a.get(i, name);
  if (!v || v->is_none()) return dflt;
  if (v->type != Value::Type::kInt) fail("chat template line ", a.line, ": argument '", name, "' must be an integer");
  return v->i;
}

const std::string& str_arg(const CallArgs& a, size_t i, const char* name) {
  const Value* v = a.get(i, name);
  if (!v || !v->is_string()) fail("chat template line ", a.line, ": argument '", name, "' must be a string");
  return v->s;
}

// Python's startswith/endswith with a str or tuple of str.
bool affix(const std::string& s, const Value& arg, bool prefix, int line) {
  auto one = [&](const std::string& p) {
    if (p.size() > s.size()) return false;
    return prefix ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0;
  };
  if (arg.is_string()) return one(arg.s);
  if (arg.is_array()) {
    for (const Value& v : *arg.arr)
      if (v.is_string() && one(v.s)) return true;
    return false;
  }
  error_at(line, std::string(prefix ? "startswith" : "endswith") + " arg must be str or a tuple of str");
}

// A simple str.format: {} and {0} and {name}, no format specs.
std::string py_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t k = 0; k < fmt.size(); ++k) {
    char c = fmt[k];
    if (c == '{' && k + 1 < fmt.size() && fmt[k + 1] == '{') {
      out += '{';
      ++k;
    } else if (c == '}' && k + 1 < fmt.size() && fmt[k + 1] == '}') {
      out += '}';
      ++k;
    } else if (c == '{') {
      size_t end = fmt.find('}', k);
      if (end == std::string::npos) error_at(a.line, "bad format string");
      std::string field = fmt.substr(k + 1, end - k - 1);
      if (field.find(':') != std::string::npos || field.find('!') != std::string::npos)
        error_at(a.line, "unsupported construct: format spec in str.format");
      const Value* v = nullptr;
      if (field.empty()) {
        v = a.get(auto_idx++, nullptr);
      } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
        v = a.get(size_t(std::stoul(field)), nullptr);
      } else {
        for (const auto& [kk, vv] : a.kw)
          if (kk == field) v = &vv;
      }
      if (!v) error_at(a.line, "missing argument for {" + field + "} in str.format");
      out += v->str();
      k = end;
    } else {
      out += c;
    }
  }
  return out;
}

Value string_method(const Value& self, const std::string& name) {
  const std::string s = self.s;
  auto fn = [&](Function f) { return Value::function("str." + name, std::move(f)); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return fn([s, l, r](const CallArgs& a) {
      const Value* c = a.get(0, "chars");
      return Value::string(py_strip(s, c && !c->is_none() ? &c->s : nullptr, l, r));
    });
  }
  if (name == "split" || name == "rsplit") {
    bool right = name == "rsplit";
    return fn([s, right](const CallArgs& a) {
      const Value* sep = a.get(0, "sep");
      int64_t maxsplit = int_arg(a, 1, "maxsplit", -1);
      if (right && maxsplit >= 0) fail("chat template line ", a.line, ": unsupported construct: rsplit with maxsplit");
      return strings(py_split(s, sep, maxsplit));
    });
  }
  if (name == "splitlines") {
    return fn([s](const CallArgs&) {
      std::vector<std::string> parts;
      size_t pos = 0;
      while (pos < s.size()) {
        size_t nl = s.find_first_of("\r\n", pos);
        if (nl == std::string::npos) {
          parts.push_back(s.substr(pos));
          break;
        }
        parts.push_back(s.substr(pos, nl - pos));
        pos = nl + ((s[nl] == '\r' && nl + 1 < s.size() && s[nl + 1] == '\n') ? 2 : 1);
      }
      return strings(parts);
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return fn([s, prefix](const CallArgs& a) {
      if (a.pos.empty()) fail("chat template line ", a.line, ": startswith/endswith needs an argument");
      return Value::boolean(affix(s, a.pos[0], prefix, a.line));
    });
  }
  if (name == "replace") {
    return fn([s](const CallArgs& a) {
      return Value::string(replace_all(s, str_arg(a, 0, "old"), str_arg(a, 1, "new"), int_arg(a, 2, "count", -1)));
    });
  }
  if (name == "upper") return fn([s](const CallArgs&) { return Value::string(ascii_map(s, ::toupper)); });
  if (name == "lower") return fn([s](const CallArgs&) { return Value::string(ascii_map(s, ::tolower)); });
  if (name == "title") return fn([s](const CallArgs&) { return Value::string(title_case(s)); });
  if (name == "capitalize") {
    return fn([s](const CallArgs&) {
      std::string r = ascii_map(s, ::tolower);
      if (!r.empty() && static_cast<unsigned char>(r[0]) < 0x80) r[0] = char(std::toupper(r[0]));
      return Value::string(r);
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    return fn([s, name](const CallArgs& a) {
      const std::string& sub = str_arg(a, 0, "sub");
      auto cp_index = [&](size_t byte) { return int64_t(utf8_length(s.substr(0, byte))); };
      if (name == "count") {
        if (sub.empty()) return Value::integer(int64_t(utf8_length(s)) + 1);
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return Value::integer(n);
      }
      size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
      if (p == std::string::npos) {
        if (name == "index") fail("chat template line ", a.line, ": substring not found");
        return Value::integer(-1);
      }
      return Value::integer(cp_index(p));
    });
  }
  if (name == "join") {
    return fn([s](const CallArgs& a) {
      if (a.pos.empty()) fail("chat template line ", a.line, ": join() needs an argument");
      std::string out;
      bool first = true;
      for (const Value& v : iterate(a.pos[0], a.line)) {
        if (!v.is_string()) fail("chat template line ", a.line, ": join() expects strings, got ", v.type_name());
        if (!first) out += s;
        out += v.s;
        first = false;
      }
      return Value::string(out);
    });
  }
  if (name == "format") return fn([s](const CallArgs& a) { return Value::string(py_format(s, a)); });
  if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
      name == "isupper") {
    return fn([s, name](const CallArgs&) {
      if (s.empty()) return Value::boolean(false);
      bool any_cased = false, ok = true;
      for (const Ch& c : chars_of(s)) {
        bool ascii = c.cp < 0x80;
        int ch = int(c.cp);
        if (name == "isdigit") ok &= ascii && std::isdigit(ch);
        else if (name == "isalpha") ok &= ascii && std::isalpha(ch);
        else if (name == "isalnum") ok &= ascii && std::isalnum(ch);
        else if (name == "isspace") ok &= is_py_space(c.cp);
        else if (name == "islower") {
          ok &= !(ascii && std::isupper(ch));
          any_cased |= ascii && std::islower(ch);
        } else {
          ok &= !(ascii && std::islower(ch));
          any_cased |= ascii && std::isupper(ch);
        }
      }
      return Value::boolean(ok && (name == "islower" || name == "isupper" ? any_cased : true));
    });
  }
  return Value();
}

}  // namespace

std::string py_strip(const std::string& s, const std::string* chars, bool left, bool right) {
  std::vector<Ch> cs = chars_of(s);
  std::vector<uint32_t> set;
  if (chars)
    for (const Ch& c : chars_of(*chars)) set.push_back(c.cp);
  auto strip_it = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : is_py_space(cp);
  };
  size_t a = 0, b = cs.size();
  if (left)
    while (a < b && strip_it(cs[a].cp)) ++a;
  if (right)
    while (b > a && strip_it(cs[b - 1].cp)) --b;
  if (a >= b) return "";
  return s.substr(cs[a].off, cs[b - 1].off + cs[b - 1].len - cs[a].off);
}

Value bound_method(const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj, name);
  if (obj.is_object()) {
    std::shared_ptr<Object> o = obj.obj;
    if (name == "items") {
      return Value::function("dict.items", [o](const CallArgs&) {
        Array a;
        for (const auto& [k, v] : o->items) a.push_back(Value::tuple_of({Value::string(k), v}));
        return Value::array(std::move(a));
      });
    }
    if (name == "keys") {
      return Value::function("dict.keys", [o](const CallArgs&) {
        Array a;
        for (const auto& [k, v] : o->items) a.push_back(Value::string(k));
        return Value::array(std::move(a));
      });
    }
    if (name == "values") {
      return Value::function("dict.values", [o](const CallArgs&) {
        Array a;
        for (const auto& [k, v] : o->items) a.push_back(v);
        return Value::array(std::move(a));
      });
    }
    if (name == "get") {
      return Value::function("dict.get", [o](const CallArgs& a) {
        if (a.pos.empty()) fail("chat template line ", a.line, ": get() needs a key");
        const Value* v = a.pos[0].is_string() ? o->find(a.pos[0].s) : nullptr;
        if (v) return *v;
        const Value* d = a.get(1, "default");
        return d ? *d : Value::none();
      });
    }
    for (const char* m : {"update", "pop", "setdefault", "clear", "popitem"})
      if (name == m)
        return Value::function(name, [name](const CallArgs& a) -> Value {
          fail("chat template line ", a.line, ": unsupported construct: dict.", name,
               " (templates cannot modify data; use namespace())");
        });
    return Value();
  }
  if (obj.is_array()) {
    std::shared_ptr<Array> arr = obj.arr;
    if (name == "index" || name == "count") {
      return Value::function("list." + name, [arr, name](const CallArgs& a) {
        if (a.pos.empty()) fail("chat template line ", a.line, ": ", name, "() needs an argument");
        int64_t n = 0;
        for (size_t k = 0; k < arr->size(); ++k) {
          if (!equal((*arr)[k], a.pos[0])) continue;
          if (name == "index") return Value::integer(int64_t(k));
          ++n;
        }
        if (name == "index") fail("chat template line ", a.line, ": value not in list");
        return Value::integer(n);
      });
    }
    for (const char* m : {"append", "extend", "pop", "insert", "remove", "reverse", "sort", "clear"})
      if (name == m)
        return Value::function(name, [name](const CallArgs& a) -> Value {
          fail("chat template line ", a.line, ": unsupported construct: list.", name,
               " (templates cannot modify data; use namespace())");
        });
  }
  return Value();
}

void add_global_functions(Object& g) {
  g.set("range", Value::function("range", [](const CallArgs& a) {
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) {
      stop = int_arg(a, 0, "stop", 0);
    } else {
      start = int_arg(a, 0, "start", 0);
      stop = int_arg(a, 1, "stop", 0);
      step = int_arg(a, 2, "step", 1);
    }
    if (step == 0) fail("chat template line ", a.line, ": range() step must not be zero");
    Array r;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      r.push_back(Value::integer(k));
      if (r.size() > 1000000) fail("chat template line ", a.line, ": range() too long");
    }
    return Value::array(std::move(r));
  }));
  g.set("namespace", Value::function("namespace", [](const CallArgs& a) {
    Object o;
    o.is_namespace = true;
    for (const Value& p : a.pos) {
      if (!p.is_object()) fail("chat template line ", a.line, ": namespace() takes a dict or keyword arguments");
      for (const auto& [k, v] : p.obj->items) o.set(k, v);
    }
    for (const auto& [k, v] : a.kw) o.set(k, v);
    return Value::object(std::move(o));
  }));
  g.set("dict", Value::function("dict", [](const CallArgs& a) {
    Object o;
    for (const Value& p : a.pos)
      if (p.is_object())
        for (const auto& [k, v] : p.obj->items) o.set(k, v);
    for (const auto& [k, v] : a.kw) o.set(k, v);
    return Value::object(std::move(o));
  }));
  g.set("raise_exception", Value::function("raise_exception", [](const CallArgs& a) -> Value {
    fail("chat template raised an exception (line ", a.line, "): ", a.pos.empty() ? "" : a.pos[0].str());
  }));
  g.set("strftime_now", Value::function("strftime_now", [](const CallArgs& a) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, str_arg(a, 0, "format").c_str(), &tm);
    return Value::string(std::string(buf, n));
  }));
}

}  // namespace hyrax::jinja
