// The tree-walking interpreter of the Jinja subset: scopes as Jinja has them (a for-loop iteration and a macro
// call each get their own; if does not), loop variables, macros, namespaces, break/continue, and the filters,
// tests, methods and globals of builtins.cpp. Errors name the construct and its line.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/jinja/ast.h"

namespace hyrax::jinja {

class Interpreter {
 public:
  /// `globals` are the render variables (messages, tools, add_generation_prompt, bos_token, ...).
  Interpreter(const Body& body, const Object& globals);
  std::string render();

  // Used by builtins.cpp.
  Value eval(const Expr& e);
  Value call(const Value& callee, const CallArgs& args, int line);
  Value filter(const std::string& name, const Value& input, const CallArgs& args, int line);
  bool test(const std::string& name, const Value& v, const CallArgs& args, int line);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  using Frame = std::unordered_map<std::string, Value>;

  Flow exec(const Body& body, std::string& out);
  Flow exec_for(const Node& n, std::string& out);
  void define_macro(const Node& n);
  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v) { frames_.back()[name] = std::move(v); }
  Value get_attr(const Value& obj, const std::string& name, int line);
  Value get_item(const Value& obj, const Value& key, int line);
  Value binary(const std::string& op, const Value& a, const Value& b, int line);
  bool compare(const std::string& op, const Value& a, const Value& b, int line);

  const Body& body_;
  std::vector<Frame> frames_;
  int depth_ = 0;  // macro recursion guard
};

/// Iterates a value as Jinja's for does (list items, dict keys, string characters; undefined: nothing).
std::vector<Value> iterate(const Value& v, int line);
/// The builtin method `name` bound to `obj` (str, dict and list methods), or an undefined value.
Value bound_method(const Value& obj, const std::string& name);
/// The global functions (range, namespace, dict, raise_exception, strftime_now).
void add_global_functions(Object& globals);
/// Python's str.strip / lstrip / rstrip with chars (nullptr: Unicode whitespace).
std::string py_strip(const std::string& s, const std::string* chars, bool left, bool right);

}  // namespace hyrax::jinja
