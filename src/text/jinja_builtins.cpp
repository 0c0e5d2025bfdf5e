// Filters, tests, string/dict methods and globals of the Jinja subset, with Python's semantics.
#include <algorithm>
#include <cctype>
#include <ctime>

#include "base/error.h"
#include "text/jinja.h"
#include "text/utf8.h"

namespace r1::text::jinja {

void check_string_size(size_t bytes) {
  if (bytes > kMaxString) fail("a string of more than {} bytes", kMaxString);
}
void check_item_count(size_t items) {
  if (items > kMaxItems) fail("a list of more than {} items", kMaxItems);
}

namespace {
bool py_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

std::vector<char32_t> code_points(const std::string& s) {
  std::vector<char32_t> out;
  for (size_t i = 0; i < s.size();) out.push_back(utf8_next(s, i));
  return out;
}

// str.strip / lstrip / rstrip: `chars` none means whitespace.
std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  std::vector<char32_t> set;
  bool ws = !chars || chars->is_none() || chars->is_undefined();
  if (!ws) set = code_points(chars->s());
  auto strip_cp = [&](char32_t c) { return ws ? py_space(c) : std::find(set.begin(), set.end(), c) != set.end(); };
  std::vector<size_t> starts;
  std::vector<char32_t> cps;
  for (size_t i = 0; i < s.size();) {
    starts.push_back(i);
    cps.push_back(utf8_next(s, i));
  }
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_cp(cps[b])) ++b;
  if (right)
    while (e > b && strip_cp(cps[e - 1])) --e;
  size_t bb = b < starts.size() ? starts[b] : s.size(), ee = e < starts.size() ? starts[e] : s.size();
  return s.substr(bb, ee - bb);
}

Value split(const std::string& s, const Value* sep, int64_t maxsplit) {
  List out;
  if (!sep || sep->is_none()) {  // whitespace runs, no empty strings
    std::vector<char32_t> cps = code_points(s);
    std::string curr;
    bool in_word = false;
    int64_t splits = 0;
    size_t i = 0;
    for (size_t k = 0; k < cps.size(); ++k) {
      size_t b = i;
      utf8_next(s, i);
      if (py_space(cps[k]) && (maxsplit < 0 || splits < maxsplit)) {
        if (in_word) {
          out.push_back(Value(curr));
          curr.clear();
          in_word = false;
          ++splits;
        }
      } else {
        if (!in_word && maxsplit >= 0 && splits >= maxsplit) {
          std::string rest = strip(s.substr(b), nullptr, false, true);
          out.push_back(Value(rest));
          return Value::make_list(std::move(out));
        }
        curr += s.substr(b, i - b);
        in_word = true;
      }
    }
    if (in_word) out.push_back(Value(curr));
    return Value::make_list(std::move(out));
  }
  if (sep->s().empty()) fail("str.split: empty separator");
  size_t pos = 0;
  int64_t n = 0;
  for (;;) {
    size_t f = s.find(sep->s(), pos);
    if (f == std::string::npos || (maxsplit >= 0 && n >= maxsplit)) break;
    out.push_back(Value(s.substr(pos, f - pos)));
    pos = f + sep->s().size();
    ++n;
  }
  out.push_back(Value(s.substr(pos)));
  return Value::make_list(std::move(out));
}

std::string replace_all(std::string s, const std::string& a, const std::string& b, int64_t count) {
  if (a.empty()) return s;
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    size_t f = s.find(a, pos);
    if (f == std::string::npos) break;
    s.replace(f, a.size(), b);
    check_string_size(s.size());
    pos = f + b.size();
  }
  return s;
}

std::string ascii_case(std::string s, bool upper) {
  for (char& c : s) c = char(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string title(const std::string& s) {
  std::string out;
  bool prev_alpha = false;
  for (char c : s) {
    bool alpha = std::isalpha(static_cast<unsigned char>(c));
    out += char(alpha ? (prev_alpha ? std::tolower(c) : std::toupper(c)) : c);
    prev_alpha = alpha;
  }
  return out;
}

const Value* arg(std::vector<Value>& args, Kwargs& kw, size_t pos, const char* name) {
  for (auto& [k, v] : kw)
    if (k == name) return &v;
  return pos < args.size() ? &args[pos] : nullptr;
}

int64_t length(const Value& x) {
  if (x.is_string()) return int64_t(code_points(x.s()).size());
  if (x.is_list()) return int64_t(x.list->size());
  if (x.is_dict()) return int64_t(x.dict->size());
  if (x.is_undefined()) return 0;
  fail("object of type {} has no length", x.type_name());
}

// The items of an iterable, as Python's iter() gives them; undefined iterates as empty (jinja2's
// Undefined), anything else is not iterable.
List as_list(const Value& x) {
  if (x.is_list()) return *x.list;
  if (!x.is_dict() && !x.is_string() && !x.is_undefined()) fail("'{}' object is not iterable", x.type_name());
  if (x.is_string()) check_item_count(x.s().size() / 4);
  List l;
  if (x.is_dict())
    for (const auto& [k, v] : *x.dict) l.push_back(Value(k));
  if (x.is_string())
    for (size_t i = 0; i < x.s().size();) {
      size_t b = i;
      utf8_next(x.s(), i);
      l.push_back(Value(x.s().substr(b, i - b)));
    }
  return l;
}

Value attribute_path(const Value& x, const std::string& path) {
  Value v = x;
  size_t b = 0;
  while (b <= path.size()) {
    size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    const Value* f = v.find(part);
    v = f ? *f : Value();
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return v;
}

Value bound(std::function<Value(std::vector<Value>&, Kwargs&)> f) { return Value::make_func(std::move(f)); }

// Python's str.splitlines(): \r\n, \n, \r, \v, \f, \x1c-\x1e, U+0085, U+2028 and U+2029 end a line.
std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t b = 0, k = 0;
  while (k < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[k]);
    size_t len = 0;  // of the line break at k
    if (c == '\r')
      len = k + 1 < s.size() && s[k + 1] == '\n' ? 2 : 1;
    else if (c == '\n' || c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e))
      len = 1;
    else if (s.compare(k, 2, "\xC2\x85") == 0)
      len = 2;
    else if (s.compare(k, 3, "\xE2\x80\xA8") == 0 || s.compare(k, 3, "\xE2\x80\xA9") == 0)
      len = 3;
    if (len == 0) {
      ++k;
      continue;
    }
    lines.push_back(s.substr(b, k - b));
    b = k += len;
  }
  if (b < s.size()) lines.push_back(s.substr(b));
  return lines;
}

// jinja2's indent(width=4, first=False, blank=False): width is a count of spaces or the indent text;
// blank lines stay empty unless `blank`; the first line only with `first`.
Value indent(const Value& x, std::vector<Value>& args, Kwargs& kw) {
  const Value* w = arg(args, kw, 0, "width");
  std::string pad;
  if (w && w->is_string()) {
    pad = w->s();
  } else {
    const int64_t width = w ? w->i : 4;  // Python's " " * n: nothing for n <= 0
    check_string_size(size_t(std::clamp<int64_t>(width, 0, int64_t(kMaxString) + 1)));
    pad.assign(size_t(std::max<int64_t>(width, 0)), ' ');
  }
  const Value* first = arg(args, kw, 1, "first");
  const Value* blank = arg(args, kw, 2, "blank");
  const std::vector<std::string> lines = split_lines(x.str() + "\n");
  std::string out = first && first->truthy() ? pad : "";
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k > 0) out += '\n';
    if (k > 0 && (!lines[k].empty() || (blank && blank->truthy()))) out += pad;
    out += lines[k];
    check_string_size(out.size());
  }
  return Value(out);
}
}  // namespace

Value get_attr(const Value& x, const std::string& name) {
  if (x.is_string()) {
    std::string s = x.s();
    if (name == "startswith" || name == "endswith") {
      bool starts = name == "startswith";
      return bound([s, starts](std::vector<Value>& a, Kwargs&) {
        if (a.empty()) fail("str.{}: missing argument", starts ? "startswith" : "endswith");
        List cands = a[0].is_list() ? *a[0].list : List{a[0]};
        for (const Value& c : cands) {
          const std::string& p = c.s();
          if (p.size() <= s.size() && (starts ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0))
            return Value(true);
        }
        return Value(false);
      });
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      bool l = name != "rstrip", r = name != "lstrip";
      return bound([s, l, r](std::vector<Value>& a, Kwargs&) { return Value(strip(s, a.empty() ? nullptr : &a[0], l, r)); });
    }
    if (name == "split")
      return bound([s](std::vector<Value>& a, Kwargs& kw) {
        const Value* sep = arg(a, kw, 0, "sep");
        const Value* m = arg(a, kw, 1, "maxsplit");
        return split(s, sep, m ? m->i : -1);
      });
    if (name == "upper" || name == "lower") {
      bool up = name == "upper";
      return bound([s, up](std::vector<Value>&, Kwargs&) { return Value(ascii_case(s, up)); });
    }
    if (name == "title") return bound([s](std::vector<Value>&, Kwargs&) { return Value(title(s)); });
    if (name == "capitalize")
      return bound([s](std::vector<Value>&, Kwargs&) {
        std::string r = ascii_case(s, false);
        if (!r.empty()) r[0] = char(std::toupper(static_cast<unsigned char>(r[0])));
        return Value(r);
      });
    if (name == "replace")
      return bound([s](std::vector<Value>& a, Kwargs&) {
        if (a.size() < 2) fail("str.replace: needs two arguments");
        return Value(replace_all(s, a[0].s(), a[1].s(), a.size() > 2 ? a[2].i : -1));
      });
    if (name == "find" || name == "rfind" || name == "count") {
      std::string m = name;
      return bound([s, m](std::vector<Value>& a, Kwargs&) {
        if (a.empty()) fail("str.{}: missing argument", m);
        if (m == "count") {
          int64_t n = 0;
          for (size_t p = s.find(a[0].s()); p != std::string::npos && !a[0].s().empty(); p = s.find(a[0].s(), p + a[0].s().size())) ++n;
          return Value(n);
        }
        size_t p = m == "find" ? s.find(a[0].s()) : s.rfind(a[0].s());
        return Value(p == std::string::npos ? int64_t(-1) : int64_t(code_points(s.substr(0, p)).size()));
      });
    }
    if (name == "join")
      return bound([s](std::vector<Value>& a, Kwargs&) {
        std::string out;
        List l = a.empty() ? List{} : as_list(a[0]);
        for (size_t k = 0; k < l.size(); ++k) {
          out += (k ? s : "") + l[k].str();
          check_string_size(out.size());
        }
        return Value(out);
      });
    if (name == "isdigit" || name == "isspace" || name == "isalpha" || name == "isalnum") {
      std::string m = name;
      return bound([s, m](std::vector<Value>&, Kwargs&) {
        if (s.empty()) return Value(false);
        for (unsigned char c : s) {
          bool ok = m == "isdigit" ? std::isdigit(c) : m == "isspace" ? std::isspace(c) : m == "isalpha" ? std::isalpha(c) : std::isalnum(c);
          if (!ok) return Value(false);
        }
        return Value(true);
      });
    }
    if (name == "splitlines")
      return bound([s](std::vector<Value>&, Kwargs&) {
        List l;
        for (std::string& line : split_lines(s)) l.push_back(Value(std::move(line)));
        return Value::make_list(std::move(l));
      });
    // A str method this subset lacks is an error; any other name is undefined, as in jinja2
    // (getattr fails, then "abc"["name"] fails), so `content.type is defined` works on a string.
    static const char* const kOtherStrMethods[] = {
        "format", "format_map", "zfill", "center", "ljust", "rjust", "partition", "rpartition", "casefold",
        "swapcase", "index", "rindex", "encode", "expandtabs", "isdecimal", "isnumeric", "isidentifier", "islower",
        "isupper", "istitle", "isprintable", "isascii", "removeprefix", "removesuffix", "rsplit", "translate"};
    for (const char* m : kOtherStrMethods)
      if (name == m) fail("unsupported string method '{}'", name);
    return Value();
  }
  if (x.is_dict()) {
    if (!x.is_namespace) {
      Value d = x;
      if (name == "items")
        return bound([d](std::vector<Value>&, Kwargs&) {
          List l;
          for (const auto& [k, v] : *d.dict) l.push_back(Value::make_list({Value(k), v}));
          return Value::make_list(std::move(l));
        });
      if (name == "keys" || name == "values") {
        bool keys = name == "keys";
        return bound([d, keys](std::vector<Value>&, Kwargs&) {
          List l;
          for (const auto& [k, v] : *d.dict) l.push_back(keys ? Value(k) : v);
          return Value::make_list(std::move(l));
        });
      }
      if (name == "get")
        return bound([d](std::vector<Value>& a, Kwargs&) {
          if (a.empty()) fail("dict.get: missing key");
          const Value* v = a[0].is_string() ? d.find(a[0].s()) : nullptr;
          return v ? *v : (a.size() > 1 ? a[1] : Value::none());
        });
    }
    const Value* v = x.find(name);
    return v ? *v : Value();
  }
  return Value();  // Jinja: a missing attribute is undefined
}

Value apply_filter(const std::string& name, Value x, std::vector<Value>& args, Kwargs& kw) {
  if (name == "trim") return Value(strip(x.str(), arg(args, kw, 0, "chars"), true, true));
  if (name == "tojson") {
    const Value* ind = arg(args, kw, 0, "indent");
    return Value(to_json(x, ind && ind->type == Value::Type::Int ? int(ind->i) : -1));
  }
  if (name == "length" || name == "count") return Value(length(x));
  if (name == "upper" || name == "lower") return Value(ascii_case(x.str(), name == "upper"));
  if (name == "title") return Value(title(x.str()));
  if (name == "capitalize") {
    std::string r = ascii_case(x.str(), false);
    if (!r.empty()) r[0] = char(std::toupper(static_cast<unsigned char>(r[0])));
    return Value(r);
  }
  if (name == "string") return Value(x.str());
  if (name == "safe" || name == "e" || name == "escape") return x;  // chat templates render without autoescape
  if (name == "int") {
    if (x.is_number()) return Value(int64_t(x.as_double()));
    try {
      return Value(int64_t(std::stoll(x.str())));
    } catch (...) {
      return args.empty() ? Value(int64_t(0)) : args[0];
    }
  }
  if (name == "float") {
    if (x.is_number()) return Value(x.as_double());
    try {
      return Value(std::stod(x.str()));
    } catch (...) {
      return Value(0.0);
    }
  }
  if (name == "abs") return x.type == Value::Type::Int ? Value(x.i < 0 ? -x.i : x.i) : Value(std::fabs(x.as_double()));
  if (name == "first" || name == "last") {
    List l = as_list(x);
    if (l.empty()) return Value();
    return name == "first" ? l.front() : l.back();
  }
  if (name == "list") return Value::make_list(as_list(x));
  if (name == "reverse") {
    if (x.is_string()) {
      std::vector<char32_t> cps = code_points(x.s());
      std::string r;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) utf8_append(r, *it);
      return Value(r);
    }
    List l = as_list(x);
    std::reverse(l.begin(), l.end());
    return Value::make_list(std::move(l));
  }
  if (name == "join") {
    const Value* sep = arg(args, kw, 0, "d");
    const Value* attr = arg(args, kw, 1, "attribute");
    std::string out;
    List l = as_list(x);
    for (size_t k = 0; k < l.size(); ++k) {
      out += (k && sep ? sep->str() : "") + (attr ? attribute_path(l[k], attr->str()) : l[k]).str();
      check_string_size(out.size());
    }
    return Value(out);
  }
  if (name == "default" || name == "d") {
    const Value* dflt = arg(args, kw, 0, "default_value");
    const Value* boolean = arg(args, kw, 1, "boolean");
    bool use = x.is_undefined() || (boolean && boolean->truthy() && !x.truthy());
    return use ? (dflt ? *dflt : Value("")) : x;
  }
  if (name == "replace") {
    if (args.size() < 2) fail("filter 'replace' needs two arguments");
    return Value(replace_all(x.str(), args[0].str(), args[1].str(), args.size() > 2 ? args[2].i : -1));
  }
  if (name == "items" || name == "dictsort") {  // jinja2 raises on anything but a mapping (or undefined)
    if (!x.is_dict() && !(name == "items" && x.is_undefined()))
      fail("filter '{}': can only get item pairs from a mapping, not a {}", name, x.type_name());
  }
  if (name == "items") {
    List l;
    if (x.is_dict())
      for (const auto& [k, v] : *x.dict) l.push_back(Value::make_list({Value(k), v}));
    return Value::make_list(std::move(l));
  }
  if (name == "dictsort") {
    List l;
    if (x.is_dict())
      for (const auto& [k, v] : *x.dict) l.push_back(Value::make_list({Value(k), v}));
    std::stable_sort(l.begin(), l.end(), [](const Value& a, const Value& b) {
      return ascii_case((*a.list)[0].s(), false) < ascii_case((*b.list)[0].s(), false);
    });
    return Value::make_list(std::move(l));
  }
  if (name == "unique") {
    List out;
    for (const Value& v : as_list(x))
      if (std::none_of(out.begin(), out.end(), [&](const Value& o) { return equal(o, v); })) out.push_back(v);
    return Value::make_list(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    bool attr_form = name == "selectattr" || name == "rejectattr";
    bool keep_if = name == "selectattr" || name == "select";
    size_t base = attr_form ? 1 : 0;
    if (attr_form && args.empty()) fail("filter '{}' needs an attribute name", name);
    List out;
    for (const Value& v : as_list(x)) {
      Value subject = attr_form ? attribute_path(v, args[0].str()) : v;
      bool pass;
      if (args.size() > base) {
        std::vector<Value> targs(args.begin() + long(base) + 1, args.end());
        pass = apply_test(args[base].str(), subject, targs);
      } else {
        pass = subject.truthy();
      }
      if (pass == keep_if) out.push_back(v);
    }
    return Value::make_list(std::move(out));
  }
  if (name == "map") {
    const Value* attr = arg(args, kw, 99, "attribute");
    List out;
    for (const Value& v : as_list(x)) {
      if (attr) {
        out.push_back(attribute_path(v, attr->str()));
      } else {
        if (args.empty()) fail("filter 'map' needs a filter name or attribute=");
        std::vector<Value> fargs(args.begin() + 1, args.end());
        Kwargs none;
        out.push_back(apply_filter(args[0].str(), v, fargs, none));
      }
    }
    return Value::make_list(std::move(out));
  }
  if (name == "sum") {
    Value total(int64_t(0));
    for (const Value& v : as_list(x)) total = total.type == Value::Type::Int && v.type == Value::Type::Int ? Value(total.i + v.i) : Value(total.as_double() + v.as_double());
    return total;
  }
  if (name == "indent") return indent(x, args, kw);
  fail("unsupported Jinja filter '{}'", name);
}

bool apply_test(const std::string& name, const Value& x, std::vector<Value>& args) {
  using T = Value::Type;
  if (name == "defined") return !x.is_undefined();
  if (name == "undefined") return x.is_undefined();
  if (name == "none") return x.is_none();
  if (name == "string") return x.is_string();
  if (name == "mapping") return x.is_dict();
  // jinja2's Undefined has a length and iterates as empty: it is a sequence, iterable and callable
  // (calling it raises); Python's bool is a number.
  if (name == "sequence") return x.is_list() || x.is_string() || x.is_dict() || x.is_undefined();
  if (name == "iterable") return x.is_list() || x.is_string() || x.is_dict() || x.is_undefined();
  if (name == "number") return x.is_number() || x.type == T::Bool;
  if (name == "integer") return x.type == T::Int;
  if (name == "float") return x.type == T::Float;
  if (name == "boolean") return x.type == T::Bool;
  if (name == "true") return x.type == T::Bool && x.b;
  if (name == "false") return x.type == T::Bool && !x.b;
  if (name == "callable") return x.type == T::Func || x.is_undefined();
  if (name == "even" || name == "odd") return x.type == T::Int && (x.i % 2 == 0) == (name == "even");
  if (name == "divisibleby") return !args.empty() && args[0].i != 0 && x.i % args[0].i == 0;
  if (name == "lower") return x.is_string() && ascii_case(x.s(), false) == x.s();
  if (name == "upper") return x.is_string() && ascii_case(x.s(), true) == x.s();
  if (args.empty() && (name == "eq" || name == "equalto" || name == "ne" || name == "in"))
    fail("test '{}' needs an argument", name);
  if (name == "eq" || name == "equalto" || name == "==" || name == "sameas") return equal(x, args[0]);
  if (name == "ne" || name == "!=") return !equal(x, args[0]);
  if (name == "in") {
    const Value& h = args[0];
    if (h.is_string()) {
      if (!x.is_string()) fail("test 'in <string>' needs a string, not {}", x.type_name());
      return h.s().find(x.s()) != std::string::npos;
    }
    if (h.is_list()) return std::any_of(h.list->begin(), h.list->end(), [&](const Value& v) { return equal(v, x); });
    if (h.is_dict()) return x.is_string() && h.find(x.s());
    if (h.is_undefined()) return false;  // Undefined iterates as empty
    fail("test 'in' needs a string, list or dict, not {}", h.type_name());
  }
  fail("unsupported Jinja test '{}'", name);
}

Value global_function(const std::string& name) {
  if (name == "range")
    return bound([](std::vector<Value>& a, Kwargs&) {
      if (a.empty() || a.size() > 3) fail("range() takes 1 to 3 arguments");
      int64_t start = a.size() == 1 ? 0 : a[0].i, stop = a.size() == 1 ? a[0].i : a[1].i, step = a.size() == 3 ? a[2].i : 1;
      if (step == 0) fail("range() step must not be zero");
      // Counted before it is built; jinja2's sandbox refuses ranges over 100000 items.
      const __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
      const __int128 count = span <= 0 ? 0 : (span + (step > 0 ? step : -__int128(step)) - 1) / (step > 0 ? step : -__int128(step));
      if (count > 100000) fail("range() of {} items: more than the sandbox's 100000", int64_t(count));
      List l;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) l.push_back(Value(i));
      return Value::make_list(std::move(l));
    });
  if (name == "namespace")
    return bound([](std::vector<Value>& a, Kwargs& kw) {
      Value ns = Value::make_dict();
      ns.is_namespace = true;
      for (const Value& d : a)
        if (d.is_dict())
          for (const auto& [k, v] : *d.dict) ns.set(k, v);
      for (const auto& [k, v] : kw) ns.set(k, v);
      return ns;
    });
  if (name == "dict")
    return bound([](std::vector<Value>&, Kwargs& kw) {
      Value d = Value::make_dict();
      for (const auto& [k, v] : kw) d.set(k, v);
      return d;
    });
  if (name == "raise_exception")
    return bound([](std::vector<Value>& a, Kwargs&) -> Value {
      fail("raise_exception: {}", a.empty() ? std::string("(no message)") : a[0].str());
    });
  if (name == "strftime_now") return strftime_at(std::nullopt);
  return Value();
}

Value strftime_at(std::optional<std::time_t> when) {
  return bound([when](std::vector<Value>& a, Kwargs&) {
    if (a.empty() || !a[0].is_string()) fail("strftime_now() needs a format string");
    std::time_t t = when ? *when : std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, a[0].s().c_str(), &tm);
    return Value(std::string(buf, n));
  });
}

}  // namespace r1::text::jinja
