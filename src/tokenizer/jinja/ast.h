// The syntax tree of a parsed template: expressions and statements, each with its source line for errors.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace hyrax::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // args
    kTuple,      // args
    kDict,       // args: key, value, key, value, ...
    kGetAttr,    // a.name
    kGetItem,    // a[b]
    kSlice,      // a[b:c:d]; args = {start, stop, step}, each may be null
    kCall,       // a(args, kwnames/kwargs)
    kFilter,     // a | name(args, kw)
    kTest,       // a is [not] name(args)
    kNeg,        // -a
    kPos,        // +a
    kNot,        // not a
    kBinary,     // a op b: + - * / // % ** ~
    kCompare,    // a op b op c ...: ops, args
    kAnd,
    kOr,
    kCond,       // b if a else c (c may be null)
  };
  Kind kind;
  int line = 0;
  Value value;                  // kLiteral
  std::string name;             // kName, kGetAttr, kFilter, kTest; kBinary: the operator
  ExprPtr a, b, c;              // operands
  std::vector<ExprPtr> args;    // positional arguments / elements
  std::vector<std::string> kw_names;
  std::vector<ExprPtr> kw_args;
  std::vector<std::string> ops;  // kCompare
  bool negated = false;          // kTest: "is not"
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue, kBlock, kFilterBlock };
  Kind kind;
  int line = 0;
  std::string text;                // kText
  ExprPtr expr;                    // kOutput, kFor (iterable), kSet (value)
  std::vector<ExprPtr> conds;      // kIf: one per branch
  std::vector<Body> bodies;        // kIf: one per branch (+ else); kFor: body, else
  std::vector<std::string> targets;  // kFor / kSet / kSetBlock: names; kSet with attribute: {object, attr}
  bool attr_target = false;        // kSet: `set ns.attr = ...`
  ExprPtr filter;                  // kFor: `for x in y if cond`
  std::string name;                // kMacro, kFilterBlock (filter name)
  std::vector<std::string> params;  // kMacro
  std::vector<ExprPtr> defaults;   // kMacro: one per param (null: none)
  ExprPtr filter_call;             // kFilterBlock: the filter applied to the body (a kFilter with a null operand)
};

}  // namespace hyrax::jinja
