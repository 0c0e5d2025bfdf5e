// Tree-walking interpreter: Jinja scoping (a for loop's body is its own scope, if is not), loop.*,
// namespaces, macros, break/continue.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "base/error.h"
#include "text/jinja.h"
#include "text/utf8.h"

namespace r1::text::jinja {

namespace {
enum class Flow { Normal, Break, Continue };

// Whether `name` is read anywhere in a node or below it.
bool reads(const Node& n, const std::string& name);
bool reads(const Body& b, const std::string& name) {
  for (const NodePtr& n : b)
    if (n && reads(*n, name)) return true;
  return false;
}
bool reads(const Node& n, const std::string& name) {
  if (n.kind == Node::Kind::Name && n.name == name) return true;
  for (const NodePtr& a : n.args)
    if (a && reads(*a, name)) return true;
  for (const auto& [k, a] : n.kwargs)
    if (a && reads(*a, name)) return true;
  for (const NodePtr& c : n.conds)
    if (c && reads(*c, name)) return true;
  for (const Body& b : n.bodies)
    if (reads(b, name)) return true;
  return reads(n.else_body, name);
}

struct Interp {
  std::vector<std::unordered_map<std::string, Value>> scopes;
  long steps = 0;
  int depth = 0;
  std::unordered_map<const Node*, bool> body_reads_loop;  // per for loop: does its body read `loop`?

  // Each evaluated node is a step, and nested evaluation (macros calling macros, long operator
  // chains) is bounded, so a runaway template ends in an error, not a hang or a stack overflow.
  struct Step {
    Interp& in;
    Step(Interp& interp, int line) : in(interp) {
      if (++in.steps > kMaxSteps) fail("chat template line {}: rendering took more than {} steps", line, kMaxSteps);
      if (++in.depth > 3 * kMaxNesting)
        fail("chat template line {}: evaluation nested more than {} levels deep (runaway recursion?)", line,
             3 * kMaxNesting);
    }
    ~Step() { --in.depth; }
  };

  Value lookup(const std::string& name) const {
    for (auto it = scopes.rbegin(); it != scopes.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return global_function(name);
  }

  static int64_t py_index(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

  Value slice(const Value& x, const Value& a, const Value& b, const Value& c, int line) {
    int64_t step = c.is_undefined() || c.is_none() ? 1 : c.i;
    if (step == 0) fail("chat template line {}: slice step cannot be zero", line);
    std::vector<size_t> cps;  // code point starts for strings
    int64_t n;
    if (x.is_string()) {
      for (size_t i = 0; i < x.s().size();) {
        cps.push_back(i);
        utf8_next(x.s(), i);
      }
      n = int64_t(cps.size());
    } else if (x.is_list()) {
      n = int64_t(x.list->size());
    } else {
      fail("chat template line {}: cannot slice a {}", line, x.type_name());
    }
    auto bound = [&](const Value& v, int64_t dflt) {
      if (v.is_undefined() || v.is_none()) return dflt;
      int64_t i = v.i < 0 ? v.i + n : v.i;
      return step > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
    };
    int64_t lo = bound(a, step > 0 ? 0 : n - 1), hi = bound(b, step > 0 ? n : -1);
    std::vector<int64_t> idx;
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) idx.push_back(i);
    if (x.is_string()) {
      std::string s;
      for (int64_t i : idx) {
        size_t e = size_t(i) + 1 < cps.size() ? cps[size_t(i) + 1] : x.s().size();
        s += x.s().substr(cps[size_t(i)], e - cps[size_t(i)]);
      }
      return Value(s);
    }
    List l;
    for (int64_t i : idx) l.push_back((*x.list)[size_t(i)]);
    return Value::make_list(std::move(l));
  }

  Value item(const Value& x, const Value& k, int line) {
    if (x.is_dict()) {
      if (!k.is_string()) return Value();
      const Value* v = x.find(k.s());
      return v ? *v : Value();
    }
    if (x.is_list() || x.is_string()) {
      if (k.is_string()) return get_attr(x, k.s());
      if (k.type != Value::Type::Int) fail("chat template line {}: index must be an integer", line);
      if (x.is_list()) {
        int64_t i = py_index(k.i, int64_t(x.list->size()));
        return i >= 0 && i < int64_t(x.list->size()) ? (*x.list)[size_t(i)] : Value();
      }
      Value one = slice(x, k, Value(k.i == -1 ? int64_t(x.s().size()) + 1 : k.i + 1), Value(), line);
      return one.s().empty() ? Value() : one;
    }
    if (x.is_undefined()) fail("chat template line {}: cannot index an undefined value", line);
    return Value();
  }

  Value arith(const std::string& op, const Value& a, const Value& b, int line) {
    using T = Value::Type;
    if (op == "~") return Value(a.str() + b.str());
    if (op == "+" && a.is_string() && b.is_string()) return Value(a.s() + b.s());
    if (op == "+" && a.is_list() && b.is_list()) {
      check_item_count(a.list->size() + b.list->size());
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      return Value::make_list(std::move(l));
    }
    if (op == "*" && a.is_string() && b.type == T::Int) {
      // Nothing for n <= 0 or an empty string, without looping n times ("" * 10**11 would spin).
      if (b.i <= 0 || a.s().empty()) return Value(std::string());
      check_string_size(uint64_t(b.i) > kMaxString ? kMaxString + 1 : a.s().size() * size_t(b.i));
      const size_t n = a.s().size() * size_t(b.i);
      std::string s;
      s.reserve(n);
      s = a.s();
      while (s.size() < n) s.append(s, 0, std::min(s.size(), n - s.size()));  // doubling: log n appends
      return Value(std::move(s));
    }
    auto num = [](const Value& v) { return v.is_number() || v.type == T::Bool; };
    if (!num(a) || !num(b))
      fail("chat template line {}: unsupported operand types for {}: {} and {}", line, op, a.type_name(),
           b.type_name());
    auto iv = [](const Value& v) { return v.type == T::Bool ? int64_t(v.b) : v.i; };
    bool ints = a.type != T::Float && b.type != T::Float;
    double x = a.type == T::Bool ? a.b : a.as_double(), y = b.type == T::Bool ? b.b : b.as_double();
    if ((op == "/" || op == "//" || op == "%") && y == 0) fail("chat template line {}: division by zero", line);
    // Python's integers do not overflow; these are 64-bit, so an overflow is an error, not a wrap.
    int64_t r = 0;
    auto checked = [&](bool overflowed) {  // r is read after the builtin has written it
      if (overflowed) fail("chat template line {}: integer overflow in {}", line, op);
      return Value(r);
    };
    if (op == "+") return ints ? checked(__builtin_add_overflow(iv(a), iv(b), &r)) : Value(x + y);
    if (op == "-") return ints ? checked(__builtin_sub_overflow(iv(a), iv(b), &r)) : Value(x - y);
    if (op == "*") return ints ? checked(__builtin_mul_overflow(iv(a), iv(b), &r)) : Value(x * y);
    if (op == "/") return Value(x / y);
    if (op == "//") {
      if (ints) {
        int64_t q = iv(a) / iv(b);
        if ((iv(a) % iv(b) != 0) && ((iv(a) < 0) != (iv(b) < 0))) --q;
        return Value(q);
      }
      return Value(std::floor(x / y));
    }
    if (op == "%") {
      if (ints) {
        int64_t r = iv(a) % iv(b);
        if (r != 0 && ((r < 0) != (iv(b) < 0))) r += iv(b);
        return Value(r);
      }
      return Value(x - y * std::floor(x / y));
    }
    if (op == "**") return ints && iv(b) >= 0 ? Value(int64_t(std::llround(std::pow(x, y)))) : Value(std::pow(x, y));
    fail("chat template line {}: unknown operator '{}'", line, op);
  }

  bool contains(const Value& hay, const Value& needle, int line) {
    if (hay.is_undefined()) return false;  // jinja2's Undefined iterates as empty: `x in undefined` is false
    if (hay.is_string()) {
      if (!needle.is_string()) fail("chat template line {}: 'in <string>' needs a string on the left", line);
      return hay.s().find(needle.s()) != std::string::npos;
    }
    if (hay.is_list()) {
      for (const Value& v : *hay.list)
        if (equal(v, needle)) return true;
      return false;
    }
    if (hay.is_dict()) return needle.is_string() && hay.find(needle.s());
    fail("chat template line {}: 'in' needs a string, list or dict on the right, not {}", line, hay.type_name());
  }

  int compare(const Value& a, const Value& b, int line) {
    if (a.is_number() && b.is_number()) return a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double();
    if (a.is_string() && b.is_string()) return a.s().compare(b.s()) < 0 ? -1 : a.s() != b.s();
    fail("chat template line {}: cannot compare {} with {}", line, a.type_name(), b.type_name());
  }

  Value eval(const Node& n) {
    Step step(*this, n.line);
    Value v = eval_node(n);
    if (v.is_string() && v.s().size() > kMaxString)
      fail("chat template line {}: a string of more than {} bytes", n.line, kMaxString);
    return v;
  }

  // As jinja2 words it: a method the object lacks, or a name nothing defines (the error path only
  // re-evaluates the callee's object to name its type).
  [[noreturn]] void not_callable(const Node& callee, const Value& f, int line) {
    if (f.is_undefined() && callee.kind == Node::Kind::Attr)
      fail("chat template line {}: '{}' object has no attribute '{}'", line,
           eval(*callee.args[0]).type_name(), callee.name);
    if (f.is_undefined() && callee.kind == Node::Kind::Name)
      fail("chat template line {}: '{}' is undefined", line, callee.name);
    fail("chat template line {}: {} is not callable", line, f.type_name());
  }

  Value eval_node(const Node& n) {
    using NK = Node::Kind;
    switch (n.kind) {
      case NK::Literal: return n.value;
      case NK::Name: return lookup(n.name);
      case NK::Attr: {
        Value x = eval(*n.args[0]);
        if (x.is_undefined()) fail("chat template line {}: '{}' of an undefined value", n.line, n.name);
        if (!n.name.empty() && std::isdigit(static_cast<unsigned char>(n.name[0]))) {
          int64_t i = 0;
          auto [end, ec] = std::from_chars(n.name.data(), n.name.data() + n.name.size(), i);
          if (ec != std::errc() || end != n.name.data() + n.name.size())
            fail("chat template line {}: bad index '.{}'", n.line, n.name);
          return item(x, Value(i), n.line);
        }
        return get_attr(x, n.name);
      }
      case NK::Item: return item(eval(*n.args[0]), eval(*n.args[1]), n.line);
      case NK::Slice: {
        auto opt = [&](const NodePtr& p) { return p ? eval(*p) : Value(); };
        return slice(eval(*n.args[0]), opt(n.args[1]), opt(n.args[2]), opt(n.args[3]), n.line);
      }
      case NK::Call: {
        Value f = eval(*n.args[0]);
        if (f.type != Value::Type::Func) not_callable(*n.args[0], f, n.line);
        std::vector<Value> args;
        for (size_t k = 1; k < n.args.size(); ++k) args.push_back(eval(*n.args[k]));
        Kwargs kw;
        for (const auto& [k, v] : n.kwargs) kw.emplace_back(k, eval(*v));
        try {
          return (*f.func)(args, kw);
        } catch (const Error& e) {
          std::string what = e.what();
          if (what.rfind("chat template", 0) == 0) throw;
          fail("chat template line {}: {}", n.line, what);
        }
      }
      case NK::Filter:
      case NK::Test: {
        Value x = eval(*n.args[0]);
        std::vector<Value> args;
        for (size_t k = 1; k < n.args.size(); ++k) args.push_back(eval(*n.args[k]));
        Kwargs kw;
        for (const auto& [k, v] : n.kwargs) kw.emplace_back(k, eval(*v));
        try {
          if (n.kind == NK::Filter) return apply_filter(n.name, std::move(x), args, kw);
          return Value(apply_test(n.name, x, args) != n.negated);
        } catch (const Error& e) {
          fail("chat template line {}: {}", n.line, e.what());
        }
      }
      case NK::Unary: {
        Value x = eval(*n.args[0]);
        if (!x.is_number()) fail("chat template line {}: bad operand for unary {}: {}", n.line, n.name, x.type_name());
        if (n.name == "+") return x;
        return x.type == Value::Type::Int ? Value(-x.i) : Value(-x.f);
      }
      case NK::Binary: {
        Value a = eval(*n.args[0]);
        Value b = eval(*n.args[1]);
        const std::string& op = n.name;
        if (op == "==") return Value(equal(a, b));
        if (op == "!=") return Value(!equal(a, b));
        if (op == "in") return Value(contains(b, a, n.line));
        if (op == "not in") return Value(!contains(b, a, n.line));
        if (op == "<") return Value(compare(a, b, n.line) < 0);
        if (op == ">") return Value(compare(a, b, n.line) > 0);
        if (op == "<=") return Value(compare(a, b, n.line) <= 0);
        if (op == ">=") return Value(compare(a, b, n.line) >= 0);
        return arith(op, a, b, n.line);
      }
      case NK::And: {
        Value a = eval(*n.args[0]);
        return a.truthy() ? eval(*n.args[1]) : a;
      }
      case NK::Or: {
        Value a = eval(*n.args[0]);
        return a.truthy() ? a : eval(*n.args[1]);
      }
      case NK::Not: return Value(!eval(*n.args[0]).truthy());
      case NK::Cond:
        if (eval(*n.args[1]).truthy()) return eval(*n.args[0]);
        return n.args.size() > 2 ? eval(*n.args[2]) : Value();
      case NK::ListLit: {
        List l;
        for (const auto& a : n.args) l.push_back(eval(*a));
        return Value::make_list(std::move(l));
      }
      case NK::DictLit: {
        Value d = Value::make_dict();
        for (size_t k = 0; k + 1 < n.args.size(); k += 2) {
          Value key = eval(*n.args[k]);
          if (!key.is_string()) fail("chat template line {}: dict keys must be strings", n.line);
          d.set(key.s(), eval(*n.args[k + 1]));
        }
        return d;
      }
      default: fail("chat template line {}: statement used as an expression", n.line);
    }
  }

  void assign(const Node& n, Value v) {
    if (n.attr.empty()) {
      scopes.back()[n.name] = std::move(v);
      return;
    }
    Value ns = lookup(n.name);
    if (!ns.is_dict() || !ns.is_namespace)
      fail("chat template line {}: cannot set '{}.{}': '{}' is not a namespace", n.line, n.name, n.attr, n.name);
    ns.set(n.attr, std::move(v));
  }

  Flow exec(const Body& body, std::string& out) {
    for (const NodePtr& s : body) {
      Flow f = exec_one(*s, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec_one(const Node& n, std::string& out) {
    Step step(*this, n.line);
    Flow f = exec_node(n, out);
    check_string_size(out.size());
    return f;
  }

  Flow exec_node(const Node& n, std::string& out) {
    using NK = Node::Kind;
    switch (n.kind) {
      case NK::Text: out += n.value.s(); return Flow::Normal;
      case NK::Emit: out += eval(*n.args[0]).str(); return Flow::Normal;
      case NK::If:
        for (size_t k = 0; k < n.conds.size(); ++k)
          if (eval(*n.conds[k]).truthy()) return exec(n.bodies[k], out);
        return exec(n.else_body, out);
      case NK::For: return exec_for(n, out);
      case NK::Set: assign(n, eval(*n.args[0])); return Flow::Normal;
      case NK::SetBlock: {
        std::string captured;
        exec(n.bodies[0], captured);
        assign(n, Value(captured));
        return Flow::Normal;
      }
      case NK::FilterBlock: {  // {% filter f %}body{% endfilter %}: the chain's input is the rendered body
        std::string captured;
        exec(n.bodies[0], captured);
        scopes.push_back({{kFilterBlockInput, Value(captured)}});
        Value filtered = eval(*n.args[0]);
        scopes.pop_back();
        out += filtered.str();
        return Flow::Normal;
      }
      case NK::Macro: define_macro(n); return Flow::Normal;
      case NK::Break: return Flow::Break;
      case NK::Continue: return Flow::Continue;
      default: out += eval(n).str(); return Flow::Normal;
    }
  }

  Flow exec_for(const Node& n, std::string& out) {
    Value seq = eval(*n.args[0]);
    List items;
    if (seq.is_list()) {
      items = *seq.list;
    } else if (seq.is_dict()) {
      for (const auto& [k, v] : *seq.dict) items.push_back(Value(k));
    } else if (seq.is_string()) {
      check_item_count(seq.s().size() / 4);  // at least this many characters
      for (size_t i = 0; i < seq.s().size();) {
        size_t b = i;
        utf8_next(seq.s(), i);
        items.push_back(Value(seq.s().substr(b, i - b)));
      }
    } else if (!seq.is_undefined() && !seq.is_none()) {
      fail("chat template line {}: cannot loop over a {}", n.line, seq.type_name());
    } else if (seq.is_none()) {
      fail("chat template line {}: cannot loop over none", n.line);
    }
    auto bind = [&](auto& scope, const Value& v) {
      if (n.targets.size() == 1) {
        scope[n.targets[0]] = v;
        return;
      }
      if (!v.is_list() || v.list->size() != n.targets.size())
        fail("chat template line {}: cannot unpack {} into {} loop variables", n.line, v.repr(), n.targets.size());
      for (size_t k = 0; k < n.targets.size(); ++k) scope[n.targets[k]] = (*v.list)[k];
    };
    if (!n.conds.empty()) {  // for x in xs if cond: the filter runs before the loop sees the items
      List kept;
      for (const Value& v : items) {
        scopes.emplace_back();
        bind(scopes.back(), v);
        bool keep = eval(*n.conds[0]).truthy();
        scopes.pop_back();
        if (keep) kept.push_back(v);
      }
      items.swap(kept);
    }
    if (items.empty()) return exec(n.else_body, out);
    int64_t len = int64_t(items.size());
    // The loop object (nine entries and a function) is built only for a body that reads it: most
    // bodies do not, and building it was most of an iteration's cost.
    auto cached = body_reads_loop.find(&n);
    if (cached == body_reads_loop.end()) cached = body_reads_loop.emplace(&n, reads(n.bodies[0], "loop")).first;
    const bool with_loop = cached->second;
    for (int64_t k = 0; k < len; ++k) {
      Step step(*this, n.line);  // an empty body still costs each iteration
      scopes.emplace_back();
      auto& scope = scopes.back();
      bind(scope, items[size_t(k)]);
      if (!with_loop) {
        const Flow f = exec(n.bodies[0], out);
        scopes.pop_back();
        if (f == Flow::Break) break;
        continue;
      }
      Value loop = Value::make_dict({{"index", Value(k + 1)},
                                     {"index0", Value(k)},
                                     {"revindex", Value(len - k)},
                                     {"revindex0", Value(len - k - 1)},
                                     {"first", Value(k == 0)},
                                     {"last", Value(k == len - 1)},
                                     {"length", Value(len)},
                                     {"previtem", k > 0 ? items[size_t(k - 1)] : Value()},
                                     {"nextitem", k + 1 < len ? items[size_t(k + 1)] : Value()}});
      loop.set("cycle", Value::make_func([k](std::vector<Value>& args, Kwargs&) {
        if (args.empty()) fail("loop.cycle needs at least one argument");
        return args[size_t(k) % args.size()];
      }));
      scope["loop"] = loop;
      Flow f = exec(n.bodies[0], out);
      scopes.pop_back();
      if (f == Flow::Break) break;
    }
    return Flow::Normal;
  }

  void define_macro(const Node& n) {
    const Node* def = &n;
    Interp* self = this;
    scopes.back()[n.name] = Value::make_func([def, self](std::vector<Value>& args, Kwargs& kw) {
      std::unordered_map<std::string, Value> frame;
      for (size_t k = 0; k < def->kwargs.size(); ++k) {
        const auto& [param, dflt] = def->kwargs[k];
        Value v;
        if (k < args.size()) v = args[k];
        else if (dflt) v = self->eval(*dflt);
        for (const auto& [kn, kv] : kw)
          if (kn == param) v = kv;
        frame[param] = v;
      }
      self->scopes.push_back(std::move(frame));
      std::string out;
      self->exec(def->bodies[0], out);
      self->scopes.pop_back();
      return Value(out);
    });
  }
};
}  // namespace

Template::Template(const std::string& source) : body_(parse(source)) {}

std::string Template::render(const Value& context) const {
  StringBudget budget;
  Interp in;
  in.scopes.emplace_back();
  if (context.is_dict())
    for (const auto& [k, v] : *context.dict) in.scopes.back()[k] = v;
  in.scopes.emplace_back();  // the template's own top-level assignments
  std::string out;
  in.exec(body_, out);
  return out;
}

}  // namespace r1::text::jinja
