#pragma once
// The parsed template: one Node type for expressions and statements (plain data, no hierarchy).
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "text/jinja_value.h"

namespace r1::text::jinja {

struct Node;
using NodePtr = std::shared_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    // expressions
    Literal, Name, Attr, Item, Slice, Call, Filter, Test, Unary, Binary, And, Or, Not, Cond, ListLit, DictLit,
    // statements
    Text, Emit, If, For, Set, SetBlock, FilterBlock, Macro, Break, Continue
  } kind;
  int line = 0;
  std::string name;  // Name/Attr/Filter/Test/Macro name, operator of Unary/Binary, Set target
  std::string attr;  // Set target attribute (set ns.attr = ...)
  Value value;       // Literal, Text
  std::vector<NodePtr> args;  // operands, call/filter/test arguments, list items, dict keys/values pairs
  std::vector<std::pair<std::string, NodePtr>> kwargs;
  std::vector<std::string> targets;  // For loop variables, Macro parameters
  bool negated = false;              // Test: "is not"
  // If: conds[k] guards bodies[k], else_body last; For: bodies[0] body, else_body; Macro/SetBlock: bodies[0]
  std::vector<NodePtr> conds;
  std::vector<Body> bodies;
  Body else_body;
};

// The variable a {% filter %} block's chain reads its rendered body from (args[0] of FilterBlock is
// the chain over a Name of this); a space keeps it out of reach of template code.
inline constexpr const char* kFilterBlockInput = " filter block input";

// Limits that keep a crafted template from exhausting the stack, the memory or the time; real chat
// templates stay far below them. Breaking one is an r1::Error naming the limit.
inline constexpr int kMaxNesting = 100;              // parser recursion; evaluation depth is 3x this
inline constexpr long kMaxSteps = 1'000'000;         // expressions and statements evaluated per render
inline constexpr size_t kMaxString = size_t(1) << 26;  // bytes of a string a template builds, its output
inline constexpr size_t kMaxRenderBytes = size_t(1) << 30;  // bytes of all the strings one render builds
inline constexpr size_t kMaxItems = size_t(1) << 20;   // items of a list a template builds (jinja2's sandbox
                                                       // caps range() at 100000)
void check_string_size(size_t bytes);  // throws past kMaxString
void check_item_count(size_t items);   // throws past kMaxItems

// Parses a template; errors name the construct and the template line.
Body parse(const std::string& source);

}  // namespace r1::text::jinja
