// Reads, checks, writes and sets config.json keys for every row of the key table alike
// (config_keys.cpp holds the rows; this file knows no key by name except model_type, which is
// read first because which keys apply depends on it).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>
#include <utility>

#include "base/error.h"
#include "base/strings.h"
#include "model/config_keys.h"

namespace r1::model {

using nlohmann::json;

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;  // clang before 17 deduces no aggregate template arguments

bool has_word(std::string_view words, std::string_view w) {
  size_t start = 0;
  while (start < words.size()) {
    size_t end = words.find(' ', start);
    if (end == std::string_view::npos) end = words.size();
    if (words.substr(start, end - start) == w) return true;
    start = end + 1;
  }
  return false;
}

bool is_member(const ConfigKey& k) { return k.name.find('.') != std::string_view::npos; }
std::string_view parent_name(const ConfigKey& k) { return k.name.substr(0, k.name.find('.')); }
std::string_view member_name(const ConfigKey& k) { return k.name.substr(k.name.find('.') + 1); }

std::string shown(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string choices_text(const ConfigKey& k) { return fmt::format("{}", fmt::join(k.choices, ", ")); }

// --- JSON values to C++ values, errors naming the file and the key ---------------------------

int as_int(const json& v, const std::string& key, const std::string& source) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    R1_CHECK(u <= uint64_t(INT32_MAX), "{}: key '{}' = {} is out of range", source, key, u);
    return int(u);
  }
  if (v.is_number_integer()) {
    int64_t x = v.get<int64_t>();
    R1_CHECK(x >= INT32_MIN && x <= INT32_MAX, "{}: key '{}' = {} is out of range", source, key, x);
    return int(x);
  }
  if (v.is_number_float()) {  // 32768.0 is accepted; 1.5 is not
    double d = v.get<double>();
    R1_CHECK(std::floor(d) == d && std::fabs(d) <= double(INT32_MAX),
             "{}: key '{}' must be an integer (got {})", source, key, shown(v));
    return int(d);
  }
  fail("{}: key '{}' must be an integer (got {})", source, key, shown(v));
}

void from_json_value(const json& v, int& out, const ConfigKey&, const std::string& key,
                     const std::string& source) {
  out = as_int(v, key, source);
}
void from_json_value(const json& v, double& out, const ConfigKey&, const std::string& key,
                     const std::string& source) {
  R1_CHECK(v.is_number(), "{}: key '{}' must be a number (got {})", source, key, shown(v));
  out = v.get<double>();
}
void from_json_value(const json& v, bool& out, const ConfigKey&, const std::string& key,
                     const std::string& source) {
  R1_CHECK(v.is_boolean(), "{}: key '{}' must be true or false (got {})", source, key, shown(v));
  out = v.get<bool>();
}
void from_json_value(const json& v, std::string& out, const ConfigKey&, const std::string& key,
                     const std::string& source) {
  R1_CHECK(v.is_string(), "{}: key '{}' must be a string (got {})", source, key, shown(v));
  out = v.get<std::string>();
}
void from_json_value(const json& v, std::vector<int>& out, const ConfigKey& k, const std::string& key,
                     const std::string& source) {
  out.clear();
  if (k.one_or_many && !v.is_array()) {
    out.push_back(as_int(v, key, source));
    return;
  }
  R1_CHECK(v.is_array(), "{}: key '{}' must be a list of integers (got {})", source, key, shown(v));
  for (size_t i = 0; i < v.size(); ++i) out.push_back(as_int(v[i], fmt::format("{}[{}]", key, i), source));
}

// --- --set strings to C++ values --------------------------------------------------------------

void from_text(const std::string& s, int& out, const ConfigKey& k) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  R1_CHECK(ec == std::errc() && p == s.data() + s.size() && !s.empty(),
           "config key '{}': '{}' is not an integer", k.name, s);
}
void from_text(const std::string& s, double& out, const ConfigKey& k) {
  char* end = nullptr;
  out = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
  R1_CHECK(!s.empty() && end == s.c_str() + s.size() && std::isfinite(out),
           "config key '{}': '{}' is not a number", k.name, s);
}
void from_text(const std::string& s, bool& out, const ConfigKey& k) {
  R1_CHECK(s == "true" || s == "false" || s == "1" || s == "0",
           "config key '{}': '{}' is not a boolean (use true or false)", k.name, s);
  out = s == "true" || s == "1";
}
void from_text(const std::string& s, std::string& out, const ConfigKey&) { out = s; }
void from_text(const std::string& s, std::vector<int>& out, const ConfigKey& k) {  // "5,7"
  out.clear();
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(',', start);
    int v = 0;
    from_text(s.substr(start, comma - start), v, k);
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
}

void check_choice(const ConfigKey& k, const std::string& v, const std::string& path,
                  const std::string& source) {
  if (k.choices.empty() || std::find(k.choices.begin(), k.choices.end(), v) != k.choices.end()) return;
  const std::string noun(k.noun.empty() ? k.name : k.noun);
  fail("{}: unsupported {} '{}'{} (supported: {})", source, noun, v, noun == path ? "" : " in '" + path + "'",
       choices_text(k));
}

// --- finding a key in a config.json -----------------------------------------------------------

const json* child(const json& j, std::string_view key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(std::string(key));
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

// `path` may descend into objects ("rope_parameters.rope_theta"); a step through a non-object is absent.
const json* at_path(const json& j, std::string_view path) {
  const json* cur = &j;
  size_t start = 0;
  while (cur) {
    const size_t dot = path.find('.', start);
    cur =
        child(*cur, path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return cur;
}

struct Found {
  const json* value = nullptr;
  std::string path;  // the name it was found under, for messages
};

Found locate_top(const json& j, const ConfigKey& k) {
  if (k.read_as.empty()) return {child(j, k.name), std::string(k.name)};
  for (std::string_view name : k.read_as)
    if (const json* v = at_path(j, name)) return {v, std::string(name)};
  return {nullptr, std::string(k.name)};
}

Found locate(const json& j, const ConfigKey& k) {
  if (!is_member(k)) return locate_top(j, k);
  const ConfigKey* parent = find_config_key(parent_name(k));
  R1_CHECK(parent, "config key table: '{}' has no object row", k.name);
  Found obj = locate_top(j, *parent);
  if (!obj.value || !obj.value->is_object()) return {nullptr, std::string(k.name)};
  std::vector<std::string_view> names = k.read_as;
  if (names.empty()) names.push_back(member_name(k));
  for (std::string_view name : names)
    if (const json* v = child(*obj.value, name)) return {v, fmt::format("{}.{}", obj.path, name)};
  return {nullptr, fmt::format("{}.{}", obj.path, member_name(k))};
}

std::string missing_detail(const ConfigKey& k) {
  if (!k.when.key.empty()) return fmt::format(" (required when {} is {})", k.when.key, k.when.values);
  if (!k.choices.empty()) return fmt::format(" (supported: {})", choices_text(k));
  return "";
}

// Reads one key into c; returns whether config.json gave it.
bool read_key(const json& j, const ConfigKey& k, ModelConfig& c, const std::string& source) {
  if (!key_applies(k, c)) return false;
  if (k.read) {
    k.read(j, c, source);
    return true;
  }
  const Found f = locate(j, k);
  return std::visit(
      Overloaded{[&](const Fixed& fixed) {
                   R1_CHECK(!k.must_match || !f.value || *f.value == fixed.value,
                            "{}: '{}' {} is not supported ({})", source, f.path, shown(*f.value), k.doc);
                   return false;
                 },
                 [&](const Computed&) { return false; },
                 [&](const Object&) {
                   R1_CHECK(!f.value || f.value->is_object(),
                            "{}: key '{}' must be an object or null (got {})", source, f.path,
                            shown(*f.value));
                   return f.value != nullptr;
                 },
                 [&](auto member) {
                   if (!f.value) {
                     R1_CHECK(!k.required, "{}: missing key '{}'{}", source, f.path, missing_detail(k));
                     return false;
                   }
                   auto& out = *member(c);
                   from_json_value(*f.value, out, k, f.path, source);
                   if constexpr (std::is_same_v<std::decay_t<decltype(out)>, std::string>)
                     check_choice(k, out, f.path, source);
                   return true;
                 }},
      k.field);
}

void check_value(const ConfigKey& k, const ModelConfig& c, const std::string& source) {
  const json v = key_value(k, c);
  const std::string name(k.name);
  if (k.check == Check::Positive && v.is_number())
    R1_CHECK(v.get<double>() > 0 && std::isfinite(v.get<double>()), "{}: '{}' must be > 0 (got {})", source,
             name, v.dump());
  if (k.check == Check::NonNegative && v.is_number())
    R1_CHECK(v.get<double>() >= 0, "{}: '{}' must be >= 0 (got {})", source, name, v.dump());
  if (v.is_string()) check_choice(k, v.get<std::string>(), name, source);
}

// An object's value: null when every member that applies is at its default.
json object_value(const ConfigKey& obj, const ModelConfig& c) {
  json o = json::object();
  bool any_set = false;
  for (const ConfigKey& m : config_keys()) {
    if (!is_member(m) || parent_name(m) != obj.name || !key_applies(m, c)) continue;
    const json v = key_value(m, c);
    const bool at_default = v == key_default(m, c);
    any_set |= !at_default;
    if (m.write == Write::UnlessDefault && at_default) continue;  // "not given" (yarn's mscale)
    o[std::string(member_name(m))] = v;
  }
  return any_set ? o : json(nullptr);
}

bool is_subsequence(std::string_view small, std::string_view big) {
  size_t j = 0;
  for (char ch : big)
    if (j < small.size() && small[j] == ch) ++j;
  return j == small.size();
}

const ConfigKey& settable_key(const std::string& key, const std::string& source) {
  const ConfigKey* k = find_config_key(key);
  if (k && key_settable(*k)) return *k;
  std::vector<std::string_view> known;
  std::string_view best;
  size_t best_d = SIZE_MAX, limit = 0;
  bool best_abbrev = false;
  for (const ConfigKey& row : config_keys()) {
    if (!key_settable(row)) continue;
    known.push_back(row.name);
    // An abbreviation (the key's letters in order within the name: num_layers, num_hidden_layers)
    // ranks before any name that merely has a smaller edit distance (num_experts).
    const bool abbrev = is_subsequence(key, row.name);
    const size_t d = edit_distance(key, row.name);
    if (std::pair(!abbrev, d) < std::pair(!best_abbrev, best_d))
      best_abbrev = abbrev, best_d = d, best = row.name, limit = std::max<size_t>(3, std::max(key.size(), row.name.size()) / 2);
  }
  if (k) fail("{}: config key '{}' is not set this way ({})", source, key, k->doc);
  if (best_d <= limit)  // close enough to be a typo or an abbreviation
    fail("{}: unknown config key '{}' (did you mean '{}'?)", source, key, best);
  fail("{}: unknown config key '{}' (known: {})", source, key, fmt::join(known, ", "));
}

void set_from_text(const ConfigKey& k, ModelConfig& c, const std::string& value, const std::string& source) {
  std::visit(Overloaded{[](const Fixed&) {}, [](const Computed&) {}, [](const Object&) {},
                        [&](auto member) {
                          auto& out = *member(c);
                          from_text(value, out, k);
                          if constexpr (std::is_same_v<std::decay_t<decltype(out)>, std::string>)
                            check_choice(k, out, std::string(k.name), source);
                        }},
             k.field);
}

}  // namespace

std::string key_type_name(const ConfigKey& k) {
  return std::visit(
      Overloaded{[](Member<int>) { return "int"; }, [](Member<double>) { return "float"; },
                 [](Member<bool>) { return "bool"; }, [](Member<std::string>) { return "string"; },
                 [&](Member<std::vector<int>>) { return k.one_or_many ? "int or int list" : "int list"; },
                 [](const Fixed&) { return "fixed"; }, [](const Computed&) { return "computed"; },
                 [](const Object&) { return "object or null"; }},
      k.field);
}

bool key_applies(const ConfigKey& k, const ModelConfig& c) {
  if (!k.types.empty() && !has_word(k.types, c.model_type)) return false;
  if (k.when.key.empty()) return true;
  const ConfigKey* on = find_config_key(k.when.key);
  R1_CHECK(on, "config key table: '{}' depends on unknown key '{}'", k.name, k.when.key);
  const json v = key_value(*on, c);
  return v.is_string() && has_word(k.when.values, v.get<std::string>());
}

bool key_settable(const ConfigKey& k) {
  const bool member =
      std::visit(Overloaded{[](const Fixed&) { return false; }, [](const Computed&) { return false; },
                            [](const Object&) { return false; }, [](auto) { return true; }},
                 k.field);
  return member && !k.read;
}

json key_value(const ConfigKey& k, const ModelConfig& c) {
  return std::visit(
      Overloaded{[](const Fixed& f) { return f.value; }, [&](const Computed& f) { return f.value(c); },
                 [](const Object&) { return json(nullptr); },
                 [&](auto member) { return json(*member(const_cast<ModelConfig&>(c))); }},
      k.field);
}

json key_default(const ConfigKey& k, const ModelConfig& c) {
  static const ModelConfig defaults;
  if (!k.derive) return key_value(k, defaults);
  ModelConfig d = c;
  k.derive(d, "default");
  return key_value(k, d);
}

void validate_config(const ModelConfig& c, const std::string& source) {
  for (const ConfigKey& k : config_keys())
    if (key_applies(k, c)) check_value(k, c, source);
  check_key_relations(c, source);
}

ModelConfig config_from_json(const json& j, const std::string& source) {
  R1_CHECK(j.is_object(), "{}: a config must be a JSON object (got {})", source, shown(j));
  const std::vector<ConfigKey>& keys = config_keys();
  ModelConfig c;
  // model_type first: which keys apply depends on it.
  const ConfigKey* type = find_config_key("model_type");
  read_key(j, *type, c, source);
  std::vector<bool> given(keys.size(), false);
  for (size_t i = 0; i < keys.size(); ++i)
    if (&keys[i] != type) given[i] = read_key(j, keys[i], c, source);
  for (size_t i = 0; i < keys.size(); ++i)
    if (!given[i] && keys[i].derive) keys[i].derive(c, source);
  validate_config(c, source);
  return c;
}

json config_to_json(const ModelConfig& c) {
  json j = json::object();
  for (const ConfigKey& k : config_keys()) {
    if (is_member(k) || !key_applies(k, c)) continue;  // members are written inside their object
    if (k.write_to) {
      k.write_to(c, j);
      continue;
    }
    json v = std::holds_alternative<Object>(k.field) ? object_value(k, c) : key_value(k, c);
    const std::string name(k.name);
    if (k.write != Write::Always && v == key_default(k, c)) {
      if (k.write == Write::NullIfDefault) j[name] = nullptr;
      continue;
    }
    j[name] = k.one_or_many && v.is_array() && v.size() == 1 ? v[0] : v;
  }
  return j;
}

void apply_config_settings(ModelConfig& c, const std::vector<std::string>& settings,
                           const std::string& source) {
  const std::string where = fmt::format("{} {}", source, fmt::join(settings, " "));
  ModelConfig n = c;
  std::set<std::string_view> set_keys;
  for (const std::string& kv : settings) {
    const size_t eq = kv.find('=');
    R1_CHECK(eq != std::string::npos, "{}: '{}' is not KEY=VALUE", source, kv);
    const ConfigKey& k = settable_key(kv.substr(0, eq), source);
    set_from_text(k, n, kv.substr(eq + 1), where);
    set_keys.insert(k.name);
  }
  // A derived key follows the keys it comes from, unless it was set itself.
  for (const ConfigKey& k : config_keys()) {
    if (!k.derive || set_keys.count(k.name)) continue;
    bool follows = false;
    for (std::string_view s : set_keys) follows |= has_word(k.follows, s);
    if (follows) k.derive(n, where);
  }
  for (std::string_view name : set_keys) {
    const ConfigKey& k = *find_config_key(name);
    R1_CHECK(key_applies(k, n), "{}: config key '{}' does not apply to this model ({}{}{})", where, name,
             k.types.empty() ? "" : fmt::format("model_type {}; ", k.types),
             k.when.key.empty() ? "" : fmt::format("only when {} is {}; ", k.when.key, k.when.values), k.doc);
  }
  validate_config(n, where);
  c = std::move(n);
}

void override_config(ModelConfig& c, const std::string& key, const std::string& value) {
  apply_config_settings(c, {key + "=" + value}, "config override");
}

}  // namespace r1::model
