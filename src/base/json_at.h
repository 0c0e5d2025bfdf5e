#pragma once
// A JSON value together with where it is: the file and the key path from the document's root.
// Every accessor checks the type before it reads, so a bad file gets
// "<file>: <key.path>: expected a string, got number 5", never a bare nlohmann message such as
// "[json.exception.invalid_iterator.207] cannot use key() for non-object iterators".
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace r1 {

// "number 5", "string \"abc\"", "an object", "an array", "null": what a value is, for messages.
template <typename Json>
std::string json_describe(const Json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return "an array";
  if (v.is_null()) return "null";
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return std::string(v.type_name()) + " " + s;
}

template <typename Json>
class BasicJsonAt {
 public:
  // `path` is the key path of `v` in `file` ("" for the root).
  BasicJsonAt(const Json& v, std::string file, std::string path = {})
      : v_(&v), file_(std::move(file)), path_(std::move(path)) {}

  const Json& raw() const { return *v_; }
  const std::string& file() const { return file_; }
  const std::string& path() const { return path_; }
  // "file: key.path", or "file" at the root.
  std::string where() const { return path_.empty() ? file_ : file_ + ": " + path_; }

  [[noreturn]] void fail(std::string_view what) const { r1::fail("{}: {}", where(), what); }
  [[noreturn]] void expected(std::string_view what) const {
    r1::fail("{}: expected {}, got {}", where(), what, json_describe(*v_));
  }

  bool is_null() const { return v_->is_null(); }
  bool is_object() const { return v_->is_object(); }
  bool is_array() const { return v_->is_array(); }
  bool is_string() const { return v_->is_string(); }

  const BasicJsonAt& object() const {
    if (!v_->is_object()) expected("an object");
    return *this;
  }
  const BasicJsonAt& array() const {
    if (!v_->is_array()) expected("an array");
    return *this;
  }

  // A member of an object that may be absent; absent and null both give nullopt.
  std::optional<BasicJsonAt> find(std::string_view key) const {
    object();
    auto it = v_->find(key);
    if (it == v_->end() || it->is_null()) return std::nullopt;
    return BasicJsonAt(*it, file_, child_path(key));
  }
  bool has(std::string_view key) const { return find(key).has_value(); }
  // A member that must be there.
  BasicJsonAt at(std::string_view key) const {
    object();
    auto it = v_->find(key);
    if (it == v_->end()) r1::fail("{}: missing key '{}'", where(), key);
    return BasicJsonAt(*it, file_, child_path(key));
  }
  BasicJsonAt at(size_t i) const {
    array();
    if (i >= v_->size()) r1::fail("{}: has {} elements, no [{}]", where(), v_->size(), i);
    return BasicJsonAt((*v_)[i], file_, path_ + "[" + std::to_string(i) + "]");
  }
  size_t size() const { return v_->size(); }

  std::string str() const {
    if (!v_->is_string()) expected("a string");
    return v_->template get<std::string>();
  }
  const std::string& str_ref() const {
    if (!v_->is_string()) expected("a string");
    return v_->template get_ref<const std::string&>();
  }
  int64_t int64() const {
    if (v_->is_number_unsigned()) {
      uint64_t u = v_->template get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) expected("an integer in range");
      return int64_t(u);
    }
    if (!v_->is_number_integer()) expected("an integer");
    return v_->template get<int64_t>();
  }
  int32_t int32() const {
    int64_t x = int64();
    if (x < INT32_MIN || x > INT32_MAX) expected("a 32-bit integer");
    return int32_t(x);
  }
  double number() const {
    if (!v_->is_number()) expected("a number");
    return v_->template get<double>();
  }
  bool boolean() const {
    if (!v_->is_boolean()) expected("true or false");
    return v_->template get<bool>();
  }

  // The member's value, or `fallback` when the key is absent or null; a present value of another
  // type is an error (nlohmann's value() would throw a bare type_error).
  std::string str_or(std::string_view key, std::string fallback) const {
    auto m = find(key);
    return m ? m->str() : fallback;
  }
  bool bool_or(std::string_view key, bool fallback) const {
    auto m = find(key);
    return m ? m->boolean() : fallback;
  }

  // f(BasicJsonAt element) for each element of an array.
  template <typename F>
  void each(F&& f) const {
    array();
    for (size_t i = 0; i < v_->size(); ++i) f(BasicJsonAt((*v_)[i], file_, path_ + "[" + std::to_string(i) + "]"));
  }
  // f(const std::string& key, BasicJsonAt value) for each member of an object, in the object's order.
  template <typename F>
  void each_member(F&& f) const {
    object();
    for (auto it = v_->begin(); it != v_->end(); ++it) f(it.key(), BasicJsonAt(it.value(), file_, child_path(it.key())));
  }

 private:
  std::string child_path(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  const Json* v_;
  std::string file_, path_;
};

using JsonAt = BasicJsonAt<nlohmann::json>;
using OrderedJsonAt = BasicJsonAt<nlohmann::ordered_json>;

}  // namespace r1
