#pragma once
// Values of the Jinja subset: Python-like none/bool/int/float/str/list/dict plus callables, with
// Python's printing (str/repr), truthiness and equality, and json.dumps for tojson.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace r1::text::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python dicts keep it
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Func = std::function<Value(std::vector<Value>& args, Kwargs& kwargs)>;

struct Value {
  enum class Type { Undefined, None, Bool, Int, Float, String, List, Dict, Func };
  Type type = Type::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  // A string's text, shared and immutable: copying a value (binding a loop variable, `set`, passing
  // an argument) never copies the text, so a template cannot make each of its steps copy megabytes.
  std::shared_ptr<const std::string> text;
  std::shared_ptr<List> list;  // shared: a namespace or list is mutated through every reference
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Func> func;
  bool is_namespace = false;

  Value() = default;
  static Value none();
  Value(bool v) : type(Type::Bool), b(v) {}
  Value(int v) : type(Type::Int), i(v) {}
  Value(int64_t v) : type(Type::Int), i(v) {}
  Value(double v) : type(Type::Float), f(v) {}
  Value(std::string v);
  Value(const char* v) : Value(std::string(v)) {}
  static Value make_list(List l = {});
  static Value make_dict(Dict d = {});
  static Value make_func(Func f);

  bool is_undefined() const { return type == Type::Undefined; }
  bool is_none() const { return type == Type::None; }
  bool is_string() const { return type == Type::String; }
  bool is_number() const { return type == Type::Int || type == Type::Float; }
  bool is_list() const { return type == Type::List; }
  bool is_dict() const { return type == Type::Dict; }

  const std::string& s() const;  // the text of a string ("" for other types)
  bool truthy() const;
  double as_double() const { return type == Type::Float ? f : double(i); }
  const Value* find(const std::string& key) const;  // dict lookup, nullptr if absent
  void set(const std::string& key, Value v);        // dict insert or replace

  std::string str() const;   // Python str()
  std::string repr() const;  // Python repr()
  std::string type_name() const;
};

// While a render runs on this thread, the bytes of every string it builds add up, and past
// kMaxRenderBytes the render fails: each step may build a string of up to kMaxString bytes, and a
// million steps of that would be hours of copying. Copies of a value share its text and cost
// nothing. Renders nest (a guard per render; the innermost counts).
class StringBudget {
 public:
  StringBudget();
  ~StringBudget();
  StringBudget(const StringBudget&) = delete;
  StringBudget& operator=(const StringBudget&) = delete;
  static void charge(size_t bytes);  // throws past the limit; nothing when no render runs

 private:
  size_t used_ = 0;
  StringBudget* outer_;
};

bool equal(const Value& a, const Value& b);
// json.dumps(v, ensure_ascii=False, indent=indent (<0: None), sort_keys=False)
std::string to_json(const Value& v, int indent = -1);
Value from_json(const nlohmann::ordered_json& j);
std::string python_float(double d);

}  // namespace r1::text::jinja
