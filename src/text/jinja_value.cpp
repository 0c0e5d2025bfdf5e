#include "text/jinja_value.h"

#include <charconv>
#include <cmath>

#include "base/error.h"
#include "text/jinja_ast.h"
#include "text/utf8.h"

namespace r1::text::jinja {

namespace {
thread_local StringBudget* t_budget = nullptr;
}  // namespace

StringBudget::StringBudget() : outer_(t_budget) { t_budget = this; }
StringBudget::~StringBudget() { t_budget = outer_; }

void StringBudget::charge(size_t bytes) {
  StringBudget* b = t_budget;
  if (!b) return;
  b->used_ += bytes;
  if (b->used_ > kMaxRenderBytes)
    fail("chat template: rendering built more than {} bytes of strings (a runaway template?)", kMaxRenderBytes);
}

Value::Value(std::string v) : type(Type::String) {
  StringBudget::charge(v.size());
  text = std::make_shared<const std::string>(std::move(v));
}

Value Value::none() {
  Value v;
  v.type = Type::None;
  return v;
}
Value Value::make_list(List l) {
  Value v;
  v.type = Type::List;
  v.list = std::make_shared<List>(std::move(l));
  return v;
}
Value Value::make_dict(Dict d) {
  Value v;
  v.type = Type::Dict;
  v.dict = std::make_shared<Dict>(std::move(d));
  return v;
}
Value Value::make_func(Func f) {
  Value v;
  v.type = Type::Func;
  v.func = std::make_shared<Func>(std::move(f));
  return v;
}

const std::string& Value::s() const {
  static const std::string empty;
  return text ? *text : empty;
}

bool Value::truthy() const {
  switch (type) {
    case Type::Undefined:
    case Type::None: return false;
    case Type::Bool: return b;
    case Type::Int: return i != 0;
    case Type::Float: return f != 0;
    case Type::String: return !s().empty();
    case Type::List: return !list->empty();
    case Type::Dict: return is_namespace || !dict->empty();
    case Type::Func: return true;
  }
  return false;
}

const Value* Value::find(const std::string& key) const {
  if (type != Type::Dict) return nullptr;
  for (const auto& [k, v] : *dict)
    if (k == key) return &v;
  return nullptr;
}

void Value::set(const std::string& key, Value v) {
  for (auto& [k, x] : *dict)
    if (k == key) {
      x = std::move(v);
      return;
    }
  dict->emplace_back(key, std::move(v));
}

std::string python_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  double a = std::fabs(d);
  // Python's repr: shortest round-trip digits, positional for 1e-4 <= |d| < 1e16.
  if (a != 0 && (a < 1e-4 || a >= 1e16)) {
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string s(buf, r.ptr);
    return s;
  }
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::fixed);
  std::string s(buf, r.ptr);
  if (s.find('.') == std::string::npos) s += ".0";
  return s;
}

static std::string repr_string(const std::string& s) {
  char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == q) out += '\\';
        out += c;
    }
  }
  return out + q;
}

std::string Value::str() const {
  switch (type) {
    case Type::Undefined: return "";
    case Type::String: return s();
    default: return repr();
  }
}

std::string Value::repr() const {
  switch (type) {
    case Type::Undefined: return "";
    case Type::None: return "None";
    case Type::Bool: return b ? "True" : "False";
    case Type::Int: return std::to_string(i);
    case Type::Float: return python_float(f);
    case Type::String: return repr_string(s());
    case Type::List: {
      std::string out = "[";
      for (size_t k = 0; k < list->size(); ++k) {
        if (k) out += ", ";
        out += (*list)[k].repr();
      }
      return out + "]";
    }
    case Type::Dict: {
      std::string out = is_namespace ? "<Namespace {" : "{";
      size_t k = 0;
      for (const auto& [key, v] : *dict) {
        if (k++) out += ", ";
        out += repr_string(key);
        out += ": ";
        out += v.repr();
      }
      return out + (is_namespace ? "}>" : "}");
    }
    case Type::Func: return "<function>";
  }
  return "";
}

std::string Value::type_name() const {
  switch (type) {
    case Type::Undefined: return "undefined";
    case Type::None: return "none";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::String: return "string";
    case Type::List: return "list";
    case Type::Dict: return is_namespace ? "namespace" : "dict";
    case Type::Func: return "function";
  }
  return "?";
}

bool equal(const Value& a, const Value& b) {
  using T = Value::Type;
  if ((a.is_number() || a.type == T::Bool) && (b.is_number() || b.type == T::Bool)) {
    double x = a.type == T::Bool ? a.b : a.as_double();
    double y = b.type == T::Bool ? b.b : b.as_double();
    return x == y;
  }
  if (a.type != b.type) return false;
  switch (a.type) {
    case T::Undefined:
    case T::None: return true;
    case T::String: return a.s() == b.s();
    case T::List:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case T::Dict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, v] : *a.dict) {
        const Value* w = b.find(k);
        if (!w || !equal(v, *w)) return false;
      }
      return true;
    case T::Func: return a.func == b.func;
    default: return false;
  }
}

static void json_string(std::string& out, const std::string& s) {
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
        if (c < 0x20 || c == 0x7F) out += fmt::format("\\u{:04x}", c);
        else out += char(c);
    }
  }
  out += '"';
}

static void json_dump(std::string& out, const Value& v, int indent, int depth) {
  using T = Value::Type;
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent * d), ' ');
  };
  const char* item_sep = indent >= 0 ? "," : ", ";
  switch (v.type) {
    case T::Undefined: fail("tojson: cannot serialise an undefined value");
    case T::None: out += "null"; break;
    case T::Bool: out += v.b ? "true" : "false"; break;
    case T::Int: out += std::to_string(v.i); break;
    case T::Float: out += std::isfinite(v.f) ? python_float(v.f) : (std::isnan(v.f) ? "NaN" : v.f > 0 ? "Infinity" : "-Infinity"); break;
    case T::String: json_string(out, v.s()); break;
    case T::List:
      if (v.list->empty()) {
        out += "[]";
        break;
      }
      out += '[';
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += item_sep;
        newline(depth + 1);
        json_dump(out, (*v.list)[k], indent, depth + 1);
      }
      newline(depth);
      out += ']';
      break;
    case T::Dict: {
      if (v.dict->empty()) {
        out += "{}";
        break;
      }
      out += '{';
      size_t k = 0;
      for (const auto& [key, x] : *v.dict) {
        if (k++) out += item_sep;
        newline(depth + 1);
        json_string(out, key);
        out += ": ";
        json_dump(out, x, indent, depth + 1);
      }
      newline(depth);
      out += '}';
      break;
    }
    case T::Func: fail("tojson: cannot serialise a function");
  }
}

std::string to_json(const Value& v, int indent) {
  std::string out;
  json_dump(out, v, indent, 0);
  return out;
}

Value from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      List l;
      for (const auto& x : j) l.push_back(from_json(x));
      return Value::make_list(std::move(l));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
      return Value::make_dict(std::move(d));
    }
    default: return Value();
  }
}

}  // namespace r1::text::jinja
