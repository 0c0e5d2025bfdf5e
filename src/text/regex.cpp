// PCRE2 with UTF + UCP stands in for the Oniguruma engine HF tokenizers uses.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/error.h"
#include "text/pretokenizer.h"

namespace r1::text {

namespace {
// Oniguruma's Unicode \s also matches U+0085 (NEL); PCRE2's UCP \s does not. Rewrite \s and \S so the
// two engines agree on whitespace.
std::string onig_compatible(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      ++i;
      if (n == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (n == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct MatchData {
  pcre2_match_data* md = nullptr;
  ~MatchData() { pcre2_match_data_free(md); }
};
}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) {
  std::string p = onig_compatible(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF | PCRE2_UCP, &err,
                                   &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: cannot compile regex /{}/ at offset {}: {}", where, pattern, off, reinterpret_cast<char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is unavailable
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view s, uint32_t begin, uint32_t end,
                     std::vector<std::pair<uint32_t, uint32_t>>& out) const {
  auto* code = static_cast<pcre2_code*>(code_);
  thread_local MatchData data;
  if (!data.md) data.md = pcre2_match_data_create(4, nullptr);
  auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  PCRE2_SIZE pos = begin;
  while (pos < end) {
    // The subject ends at `end`: lookaheads such as \s+(?!\S) must not see past the piece.
    int rc = pcre2_match(code, subject, end, pos, PCRE2_NO_UTF_CHECK, data.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    R1_CHECK(rc >= 0, "regex match failed (PCRE2 error {})", rc);
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    if (ov[1] == ov[0]) {  // empty match: step over one character
      pos = ov[0] + 1;
      while (pos < end && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    out.emplace_back(uint32_t(ov[0]), uint32_t(ov[1]));
    pos = ov[1];
  }
}

}  // namespace r1::text
