// Values of the Jinja-subset interpreter, with Python's semantics where templates can see them: str() and repr()
// of lists and dicts, truthiness, == across int and float, insertion-ordered dicts, and json.dumps for tojson.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace hyrax::jinja {

struct Value;
using Array = std::vector<Value>;

/// A dict in insertion order (Python's dict). A namespace() is a dict whose attributes can be assigned.
struct Object {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  Value* find(const std::string& key);
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

/// Arguments of a call: positional, then keyword.
struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  int line = 0;
  /// Positional i, else keyword `name`, else nullptr.
  const Value* get(size_t i, const char* name) const;
};

using Function = std::function<Value(const CallArgs&)>;

struct Value {
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kArray, kObject, kFunction };
  Type type = Type::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                  // kString; for kUndefined: what was missing, for error messages
  std::shared_ptr<Array> arr;     // kArray (lists and tuples alike)
  std::shared_ptr<Object> obj;    // kObject
  std::shared_ptr<Function> fn;   // kFunction
  std::string fn_name;            // kFunction
  bool tuple = false;             // kArray made as a tuple: repr() prints (a, b)

  Value() = default;
  static Value undefined(std::string hint = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(int64_t v);
  static Value number(double v);
  static Value string(std::string v);
  static Value array(Array v = {});
  static Value tuple_of(Array v);
  static Value object(Object v = {});
  static Value function(std::string name, Function f);

  bool is_undefined() const { return type == Type::kUndefined; }
  bool is_none() const { return type == Type::kNone; }
  bool is_string() const { return type == Type::kString; }
  bool is_number() const { return type == Type::kInt || type == Type::kFloat; }
  bool is_array() const { return type == Type::kArray; }
  bool is_object() const { return type == Type::kObject; }
  bool is_function() const { return type == Type::kFunction; }
  double as_double() const { return type == Type::kInt ? double(i) : type == Type::kBool ? double(b) : f; }

  /// Python truthiness (undefined is false).
  bool truthy() const;
  /// Python str(): what {{ value }} prints (undefined prints nothing).
  std::string str() const;
  /// Python repr().
  std::string repr() const;
  /// The type name Python would report ("str", "int", "list", "dict", ...).
  std::string type_name() const;
};

/// Python ==.
bool equal(const Value& a, const Value& b);

/// JSON -> Value (objects keep their key order as nlohmann::ordered_json does; plain json sorts keys).
Value from_json(const nlohmann::ordered_json& j);

/// Python's json.dumps(v, ensure_ascii=False, indent=indent, sort_keys=sort_keys) with the default separators
/// (", " and ": ", or "," and ": " when indented); indent < 0 means None.
std::string to_json(const Value& v, int indent = -1, bool sort_keys = false, int line = 0);

/// Python repr() of a float ("1.0", "0.1", "1e-05", "1e+16").
std::string python_float(double d);

/// Number of code points of a UTF-8 string (Python len()).
size_t utf8_length(const std::string& s);

}  // namespace hyrax::jinja
