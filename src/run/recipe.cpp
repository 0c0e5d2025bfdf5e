#include "run/recipe.h"

#include <fmt/format.h>
// yaml-cpp 0.7's inline Node accessors trip GCC 12's -Wdangling-pointer (a false positive on its
// m_pMemory temporaries); silence it for this file only.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

#include "base/strings.h"
#include "text/utf8.h"

namespace r1::run {
namespace {

using json = nlohmann::json;

const char* type_name(Recipe::Type t) {
  switch (t) {
    case Recipe::Type::Bool:
      return "a boolean (true/false)";
    case Recipe::Type::Integer:
      return "an integer";
    case Recipe::Type::Number:
      return "a number";
    case Recipe::Type::String:
      return "a string";
    case Recipe::Type::StringList:
      return "a list of strings";
  }
  return "?";
}

std::vector<std::string> split_dotted(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    parts.push_back(s.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// --- Scalar parsing, shared by YAML plain scalars and command-line overrides (YAML 1.2 core schema).

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::optional<double> parse_number(std::string_view s) {
  std::string_view body = s;
  bool neg = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == ".inf" || body == ".Inf" || body == ".INF")
    return neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  // [0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)? with at least one mantissa digit.
  size_t i = 0, digits = 0;
  while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++digits;
  }
  if (digits == 0) return std::nullopt;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != body.size()) return std::nullopt;
  double v = 0;
  auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
  if (ec != std::errc() || ptr != body.data() + body.size()) return std::nullopt;  // out of range too
  return neg ? -v : v;
}

// Decimal, 0x hex or 0o octal integers, or a number that is integral and fits in int64.
std::optional<int64_t> parse_integer(std::string_view s) {
  std::string_view body = s;
  bool neg = false;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  int base = 10;
  if (body.size() > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'o')) {
    base = body[1] == 'x' ? 16 : 8;
    body.remove_prefix(2);
  }
  if (!body.empty() && body[0] != '+' && body[0] != '-') {
    uint64_t mag = 0;
    auto [ptr, ec] = std::from_chars(body.data(), body.data() + body.size(), mag, base);
    if (ec == std::errc() && ptr == body.data() + body.size()) {
      if (!neg && mag <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return static_cast<int64_t>(mag);
      if (neg && mag <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1)
        return static_cast<int64_t>(0 - mag);
      return std::nullopt;  // out of range
    }
    if (base != 10) return std::nullopt;
  }
  auto d = parse_number(s);
  if (!d || !std::isfinite(*d) || std::trunc(*d) != *d) return std::nullopt;
  if (*d < -9.2233720368547758e18 || *d >= 9.2233720368547758e18) return std::nullopt;
  return static_cast<int64_t>(*d);
}

// A scalar parsed for a bool, integer or number leaf; nullopt when it does not fit.
std::optional<json> parse_scalar(Recipe::Type t, std::string_view s) {
  switch (t) {
    case Recipe::Type::Bool:
      if (auto b = parse_bool(s)) return json(*b);
      return std::nullopt;
    case Recipe::Type::Integer:
      if (auto i = parse_integer(s)) return json(*i);
      return std::nullopt;
    case Recipe::Type::Number:
      // .nan is YAML but no setting's value: every comparison with it is false, so a check like
      // `lr >= 0` would let it through (fuzz/yaml_recipe found it). .inf stays: it compares.
      if (auto d = parse_number(s); d && !std::isnan(*d)) return json(*d);
      return std::nullopt;
    case Recipe::Type::String:
      return json(std::string(s));
    case Recipe::Type::StringList:
      return std::nullopt;
  }
  return std::nullopt;
}

bool is_quoted(const YAML::Node& n) { return n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str"; }

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      if (is_quoted(n)) return fmt::format("the quoted string \"{}\"", n.Scalar());
      return n.Scalar();
  }
  return "?";
}

std::string format_double(double d) {
  if (std::isnan(d)) return ".nan";
  if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
  std::string s = fmt::format("{}", d);
  return s;
}

void emit(YAML::Emitter& out, const json& node) {
  switch (node.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [k, v] : node.items()) {
        out << YAML::Key << k << YAML::Value;
        emit(out, v);
      }
      out << YAML::EndMap;
      break;
    case json::value_t::boolean:
      out << (node.get<bool>() ? "true" : "false");
      break;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      out << node.get<int64_t>();
      break;
    case json::value_t::number_float:
      out << format_double(node.get<double>());
      break;
    case json::value_t::string:
      out << YAML::DoubleQuoted << node.get<std::string>();
      break;
    case json::value_t::array:
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& e : node) out << YAML::DoubleQuoted << e.get<std::string>();
      out << YAML::EndSeq;
      break;
    default:
      fail("recipe: cannot write a {} value as YAML", node.type_name());
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Recipe::Recipe(json defaults) : values_(std::move(defaults)) {
  R1_CHECK(values_.is_object(), "recipe schema must be a JSON object, got {}", values_.type_name());
  std::vector<std::string> parts;
  index_schema(values_, "", parts);
}

void Recipe::index_schema(const json& node, const std::string& prefix, std::vector<std::string>& parts) {
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string& key = it.key();
    R1_CHECK(!key.empty() && key.find('.') == std::string::npos,
             "recipe schema: key '{}' under '{}' must be non-empty and contain no '.'", key, prefix);
    std::string path = prefix.empty() ? key : prefix + "." + key;
    parts.push_back(key);
    const json& v = it.value();
    Type t{};
    switch (v.type()) {
      case json::value_t::object:
        sections_.push_back(path);
        index_schema(v, path, parts);
        parts.pop_back();
        continue;
      case json::value_t::boolean:
        t = Type::Bool;
        break;
      case json::value_t::number_integer:
        t = Type::Integer;
        break;
      case json::value_t::number_unsigned:
        R1_CHECK(v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                 "recipe schema: default of '{}' does not fit in a 64-bit integer", path);
        t = Type::Integer;
        break;
      case json::value_t::number_float:
        t = Type::Number;
        break;
      case json::value_t::string:
        t = Type::String;
        break;
      case json::value_t::array:
        for (const auto& e : v)
          R1_CHECK(e.is_string(), "recipe schema: default of '{}' must be an array of strings, has {}", path,
                   e.dump());
        t = Type::StringList;
        break;
      default:
        fail("recipe schema: default of '{}' has unsupported type {}", path, v.type_name());
    }
    order_.push_back(path);
    leaves_.emplace(path, Leaf{parts, t});
    parts.pop_back();
  }
  // Integers are kept as signed so values compare and print the same whatever the source.
  if (prefix.empty())
    for (const auto& path : order_)
      if (leaves_.at(path).type == Type::Integer) {
        json* p = &values_;
        for (const auto& part : leaves_.at(path).parts) p = &(*p)[part];
        *p = p->get<int64_t>();
      }
}

std::vector<std::string> Recipe::keys() const { return order_; }

Recipe::Type Recipe::type_of(const std::string& dotted) const {
  auto it = leaves_.find(dotted);
  if (it == leaves_.end()) fail("recipe: {}", unknown_key_message(dotted));
  return it->second.type;
}

std::string Recipe::unknown_key_message(const std::string& key) const {
  std::string msg = fmt::format("unknown key '{}'", key);
  const std::string* best = nullptr;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto* list : {&order_, &sections_})
    for (const auto& cand : *list) {
      size_t d = r1::edit_distance(key, cand);
      if (d < best_d) best_d = d, best = &cand;
    }
  if (best && best_d > std::max<size_t>(2, key.size() / 3)) {
    // Too far by spelling: a leaf with the same last component (e.g. "lr" for "train.lr") is still a hint.
    best = nullptr;
    std::string last = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
    for (const auto& cand : order_)
      if (cand.substr(cand.rfind('.') == std::string::npos ? 0 : cand.rfind('.') + 1) == last) {
        best = &cand;
        break;
      }
  }
  if (best) msg += fmt::format(" (did you mean '{}'?)", *best);
  return msg;
}

bool Recipe::has(const std::string& dotted) const {
  const json* p = &values_;
  for (const auto& part : split_dotted(dotted)) {
    if (!p->is_object()) return false;
    auto it = p->find(part);
    if (it == p->end()) return false;
    p = &*it;
  }
  return true;
}

const json& Recipe::at(const std::string& dotted) const {
  const json* p = &values_;
  for (const auto& part : split_dotted(dotted)) {
    auto it = p->is_object() ? p->find(part) : p->end();
    if (!p->is_object() || it == p->end()) fail("recipe: {}", unknown_key_message(dotted));
    p = &*it;
  }
  return *p;
}

void Recipe::assign(const std::string& path, json value) {
  json* p = &values_;
  for (const auto& part : leaves_.at(path).parts) p = &(*p)[part];
  *p = std::move(value);
}

void Recipe::load_yaml(const std::string& path) {
  namespace stdfs = std::filesystem;
  std::error_code ec;
  R1_CHECK(!stdfs::is_directory(path, ec), "recipe file '{}' is a directory", path);
  std::ifstream in(path);
  if (!in) fail("cannot open recipe file '{}': {}", path, std::strerror(errno));
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    fail("{} line {}: YAML syntax error: {}", path, e.mark.line + 1, e.msg);
  }
  if (root.IsNull()) return;  // empty file
  R1_CHECK(root.IsMap(), "{} line {}: a recipe must be a mapping of keys to values, got {}", path,
           root.Mark().line + 1, describe(root));

  std::set<std::string> seen;
  auto walk = [&](auto&& self, const YAML::Node& map, const std::string& prefix) -> void {
    for (auto it = map.begin(); it != map.end(); ++it) {
      // Copies (node handles), not references: it-> yields a temporary pair that dies with the
      // statement, so a reference into it dangles (ASan: stack-use-after-scope; fuzz/yaml_recipe).
      const YAML::Node k = it->first;
      const YAML::Node v = it->second;
      int line = k.Mark().line + 1;
      R1_CHECK(k.IsScalar(), "{} line {}: keys must be plain names, got {}", path, line, describe(k));
      std::string key = prefix.empty() ? k.Scalar() : prefix + "." + k.Scalar();
      auto leaf = leaves_.find(key);
      if (leaf == leaves_.end()) {
        if (std::find(sections_.begin(), sections_.end(), key) == sections_.end())
          fail("{} line {}: {}", path, line, unknown_key_message(key));
        if (v.IsNull()) continue;  // an empty section
        R1_CHECK(v.IsMap(), "{} line {}: '{}' is a section and expects a mapping of its keys, got {}", path,
                 line, key, describe(v));
        self(self, v, key);
        continue;
      }
      R1_CHECK(seen.insert(key).second, "{} line {}: key '{}' is set twice", path, line, key);
      Type t = leaf->second.type;
      auto type_error = [&]() {
        fail("{} line {}: key '{}' expects {}, got {}", path, v.Mark().line + 1, key, type_name(t),
             describe(v));
      };
      // Strings must be UTF-8: the resolved recipe is written back as YAML (config.yaml), which
      // could not reproduce other bytes (fuzz/yaml_recipe).
      auto check_utf8 = [&](const YAML::Node& n) {
        R1_CHECK(text::utf8_valid_prefix(n.Scalar()) == n.Scalar().size(), "{} line {}: key '{}' is not valid UTF-8",
                 path, n.Mark().line + 1, key);
      };
      if (t == Type::StringList) {
        if (!v.IsSequence()) type_error();
        json list = json::array();
        for (const auto& e : v) {
          R1_CHECK(e.IsScalar(), "{} line {}: key '{}' expects a list of strings, has item {}", path,
                   e.Mark().line + 1, key, describe(e));
          check_utf8(e);
          list.push_back(e.Scalar());
        }
        assign(key, std::move(list));
        continue;
      }
      if (!v.IsScalar()) type_error();
      if (t == Type::String) {
        check_utf8(v);
        assign(key, v.Scalar());
        continue;
      }
      if (is_quoted(v)) type_error();  // quoted scalars are strings, never coerced
      auto parsed = parse_scalar(t, v.Scalar());
      if (!parsed) type_error();
      assign(key, std::move(*parsed));
    }
  };
  // All or nothing: a file that fails part-way leaves the recipe as it was.
  json before = values_;
  try {
    walk(walk, root, "");
  } catch (...) {
    values_ = std::move(before);
    throw;
  }
}

void Recipe::set(const std::string& assignment) {
  size_t eq = assignment.find('=');
  R1_CHECK(eq != std::string::npos, "override '{}': expected KEY=VALUE", assignment);
  std::string key = trim(std::string_view(assignment).substr(0, eq));
  std::string value = assignment.substr(eq + 1);
  R1_CHECK(!key.empty(), "override '{}': the key is empty", assignment);
  // As in a recipe file: strings must be UTF-8 to be written back (fuzz/regressions/yaml_recipe).
  const size_t valid = text::utf8_valid_prefix(assignment);
  R1_CHECK(valid == assignment.size(), "override of key '{}': not valid UTF-8 (byte {})", key, valid);
  auto leaf = leaves_.find(key);
  if (leaf == leaves_.end()) {
    if (std::find(sections_.begin(), sections_.end(), key) != sections_.end())
      fail("override '{}': '{}' is a section, not a single setting; set its keys one by one", assignment,
           key);
    fail("override '{}': {}", assignment, unknown_key_message(key));
  }
  Type t = leaf->second.type;
  auto type_error = [&](const std::string& why = "") {
    fail("override '{}': key '{}' expects {}, got '{}'{}", assignment, key, type_name(t), value, why);
  };
  if (t == Type::StringList) {
    json list = json::array();
    std::string v = trim(value);
    if (!v.empty() && v[0] == '[') {
      YAML::Node seq;
      try {
        seq = YAML::Load(v);
      } catch (const YAML::Exception& e) {
        type_error(fmt::format(" ({})", e.msg));
      }
      if (!seq.IsSequence()) type_error();
      for (const auto& e : seq) {
        if (!e.IsScalar()) type_error(fmt::format(" (item {} is not a string)", describe(e)));
        list.push_back(e.Scalar());
      }
    } else if (!v.empty()) {
      size_t start = 0;
      while (true) {
        size_t comma = v.find(',', start);
        std::string item =
            trim(std::string_view(v).substr(start, comma == std::string::npos ? v.npos : comma - start));
        if (item.empty()) type_error(" (empty item)");
        list.push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    }
    assign(key, std::move(list));
    return;
  }
  auto parsed = parse_scalar(t, value);
  if (!parsed) type_error();
  assign(key, std::move(*parsed));
}

std::string Recipe::to_yaml() const {
  YAML::Emitter out;
  out.SetIndent(2);
  if (values_.empty()) return "{}\n";
  emit(out, values_);
  R1_CHECK(out.good(), "recipe: YAML emitter failed: {}", out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

void Recipe::apply_args(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a.find('=') == std::string::npos) load_yaml(a);
    else set(a);
  }
}

}  // namespace r1::run
