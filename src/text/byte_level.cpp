#include "text/byte_level.h"

#include "text/utf8.h"

namespace r1::text {

namespace {
// Printable Latin-1 bytes map to themselves; the other 68 bytes take U+0100.. in byte order.
struct Tables {
  std::array<std::string, 256> to_unicode;
  std::array<int16_t, 324> from_unicode;  // code points < 0x144 cover the whole image
  Tables() {
    from_unicode.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      char32_t cp = printable ? char32_t(b) : char32_t(256 + extra++);
      utf8_append(to_unicode[size_t(b)], cp);
      from_unicode[cp] = int16_t(b);
    }
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}
}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return tables().to_unicode; }

int unicode_to_byte(char32_t cp) { return cp < 324 ? tables().from_unicode[cp] : -1; }

bool byte_level_decode(std::string_view token, std::string& out) {
  size_t start = out.size();
  size_t i = 0;
  while (i < token.size()) {
    int b = unicode_to_byte(utf8_next(token, i));
    if (b < 0) {
      out.resize(start);
      return false;
    }
    out += char(b);
  }
  return true;
}

}  // namespace r1::text
