#pragma once
// A Jinja-subset template, parsed once and rendered many times (what chat templates need).
#include <ctime>
#include <optional>
#include <string>

#include "text/jinja_ast.h"
#include "text/jinja_value.h"

namespace r1::text::jinja {

class Template {
 public:
  explicit Template(const std::string& source);  // errors name the construct and line
  // `context` is a dict of variables; globals (range, namespace, raise_exception, strftime_now) are added.
  std::string render(const Value& context) const;

 private:
  Body body_;
};

// Filters, tests and methods (jinja_builtins.cpp). Errors name the construct; the caller adds the line.
Value apply_filter(const std::string& name, Value x, std::vector<Value>& args, Kwargs& kwargs);
bool apply_test(const std::string& name, const Value& x, std::vector<Value>& args);
// x.name for strings, dicts and lists: a bound method or an attribute/item.
Value get_attr(const Value& x, const std::string& name);
Value global_function(const std::string& name);  // Undefined when there is none
// strftime_now(format) formatting local time at `when` (now when empty); a context variable named
// strftime_now shadows the global, as in jinja2, which pins the date for reproducible prompts.
Value strftime_at(std::optional<std::time_t> when);

}  // namespace r1::text::jinja
