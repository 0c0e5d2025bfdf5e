#include "text/utf8.h"

#include <utf8proc.h>

#include <cstdlib>

#include "base/error.h"

namespace r1::text {

int utf8_seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Length of the valid sequence at s[i], or 0 if invalid; `*maximal` receives the length of the
// maximal invalid subpart (how many bytes one U+FFFD replaces).
static size_t valid_seq_at(std::string_view s, size_t i, size_t* maximal) {
  auto b = [&](size_t k) { return (unsigned char)s[k]; };
  unsigned char c = b(i);
  int n = utf8_seq_len(c);
  if (n == 0) {
    *maximal = 1;
    return 0;
  }
  // Second-byte ranges per lead byte exclude overlongs and surrogates (Unicode table 3-7).
  unsigned char lo = 0x80, hi = 0xBF;
  if (c == 0xE0) lo = 0xA0;
  if (c == 0xED) hi = 0x9F;
  if (c == 0xF0) lo = 0x90;
  if (c == 0xF4) hi = 0x8F;
  for (int k = 1; k < n; ++k) {
    if (i + k >= s.size()) {
      *maximal = size_t(k);
      return 0;
    }
    unsigned char x = b(i + k);
    bool ok = k == 1 ? (x >= lo && x <= hi) : (x >= 0x80 && x <= 0xBF);
    if (!ok) {
      *maximal = size_t(k);
      return 0;
    }
  }
  return size_t(n);
}

size_t utf8_valid_prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if ((unsigned char)s[i] < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    size_t n = valid_seq_at(s, i, &bad);
    if (n == 0) return i;
    i += n;
  }
  return i;
}

size_t utf8_incomplete_tail(std::string_view s) {
  for (size_t k = 1; k <= 3 && k <= s.size(); ++k) {
    size_t i = s.size() - k;
    if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
    size_t bad = 0;
    bool incomplete = valid_seq_at(s, i, &bad) == 0 && bad == k && utf8_seq_len(static_cast<unsigned char>(s[i])) > int(k);
    return incomplete ? k : 0;
  }
  return 0;
}

char32_t utf8_next(std::string_view s, size_t& i) {
  unsigned char c = (unsigned char)s[i];
  if (c < 0x80) {
    ++i;
    return c;
  }
  size_t bad = 0;
  const size_t n = valid_seq_at(s, i, &bad);
  if (n == 0) {  // as utf8_lossy: the maximal invalid subpart is one U+FFFD, never read past the end
    i += bad;
    return 0xFFFD;
  }
  char32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
  i += size_t(n);
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if ((unsigned char)s[i] < 0x80) {
      out += s[i++];
      continue;
    }
    size_t bad = 0;
    size_t n = valid_seq_at(s, i, &bad);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

static std::string normalize(std::string_view s, utf8proc_option_t opts, const char* form) {
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), utf8proc_ssize_t(s.size()), &out, opts);
  R1_CHECK(n >= 0, "{} normalisation failed: {}", form, utf8proc_errmsg(n));
  std::string r(reinterpret_cast<char*>(out), size_t(n));
  std::free(out);
  return r;
}

std::string nfc(std::string_view s) {
  return normalize(s, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE), "NFC");
}
std::string nfkc(std::string_view s) {
  return normalize(s, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT), "NFKC");
}
std::string nfd(std::string_view s) {
  return normalize(s, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE), "NFD");
}
std::string nfkd(std::string_view s) {
  return normalize(s, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT), "NFKD");
}

}  // namespace r1::text
