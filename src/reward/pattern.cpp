#include "reward/pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cctype>
#include <memory>

#include "base/error.h"

namespace r1::reward {
namespace {

pcre2_code* code_of(void* p) { return static_cast<pcre2_code*>(p); }

// Match limits shared by every pattern: one context, made once.
pcre2_match_context* limits() {
  static pcre2_match_context* ctx = [] {
    pcre2_match_context* c = pcre2_match_context_create(nullptr);
    pcre2_set_match_limit(c, Pattern::kMatchLimit);
    pcre2_set_heap_limit(c, Pattern::kHeapLimitKiB);
    return c;
  }();
  return ctx;
}

struct MatchDataFree {
  void operator()(pcre2_match_data* d) const { pcre2_match_data_free(d); }
};

}  // namespace

std::string Pattern::Match::group(size_t i) const {
  if (i >= spans.size() || spans[i].first == PCRE2_UNSET) return "";
  return std::string(subject.substr(spans[i].first, spans[i].second - spans[i].first));
}

Pattern::Pattern(std::string_view regex) {
  int err = 0;
  PCRE2_SIZE at = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(), PCRE2_DOLLAR_ENDONLY, &err, &at,
                        nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("regular expression /{}/ does not compile at offset {}: {}", regex, at, reinterpret_cast<char*>(msg));
  }
}

Pattern::~Pattern() { pcre2_code_free(code_of(code_)); }

std::optional<Pattern::Match> Pattern::run(std::string_view s, size_t from, uint32_t options) const {
  if (from > s.size()) return std::nullopt;
  std::unique_ptr<pcre2_match_data, MatchDataFree> data(pcre2_match_data_create_from_pattern(code_of(code_), nullptr));
  R1_CHECK(data, "out of memory for a regular-expression match");
  int rc = pcre2_match(code_of(code_), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), from, options, data.get(),
                       limits());
  // No match, or over the limits (PCRE2_ERROR_MATCHLIMIT, _HEAPLIMIT, _DEPTHLIMIT): not a match.
  if (rc < 0) return std::nullopt;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
  Match m{s, {}};
  for (uint32_t i = 0, n = pcre2_get_ovector_count(data.get()); i < n; ++i) m.spans.emplace_back(ov[2 * i], ov[2 * i + 1]);
  return m;
}

std::optional<Pattern::Match> Pattern::match_whole(std::string_view s) const {
  return run(s, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED);
}

std::optional<Pattern::Match> Pattern::find(std::string_view s, size_t from) const { return run(s, from, 0); }

std::string Pattern::replace_all(std::string_view s, std::string_view with) const {
  std::string out;
  size_t done = 0;  // s[0, done) is in `out`
  for (size_t from = 0; from <= s.size();) {
    std::optional<Match> m = find(s, from);
    if (!m) break;
    out.append(s, done, m->begin() - done);
    for (size_t i = 0; i < with.size(); ++i) {
      if (with[i] == '$' && i + 1 < with.size() && std::isdigit(static_cast<unsigned char>(with[i + 1]))) {
        out += m->group(size_t(with[++i] - '0'));
      } else {
        out += with[i];
      }
    }
    done = m->end();
    // An empty match moves on by one character, which stays as it was.
    from = m->end() > m->begin() ? m->end() : m->end() + 1;
  }
  out.append(s, std::min(done, s.size()));
  return out;
}

}  // namespace r1::reward
