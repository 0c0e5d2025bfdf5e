#include "text/normalizer.h"

#include <algorithm>

#include "base/error.h"
#include "text/utf8.h"

namespace r1::text {

std::string Normalizer::apply(std::string_view s) const {
  std::string out(s);
  // ASCII is invariant under all four forms: skip utf8proc's allocation and table walk.
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; })) return out;
  for (Form f : steps) {
    switch (f) {
      case Form::NFC: out = nfc(out); break;
      case Form::NFKC: out = nfkc(out); break;
      case Form::NFD: out = nfd(out); break;
      case Form::NFKD: out = nfkd(out); break;
    }
  }
  return out;
}

static void add(Normalizer& n, const JsonAt& j) {
  if (j.is_null()) return;
  std::string type = j.str_or("type", "");
  if (type == "Sequence") {
    j.at("normalizers").each([&](const JsonAt& s) { add(n, s); });
  } else if (type == "NFC") {
    n.steps.push_back(Normalizer::Form::NFC);
  } else if (type == "NFKC") {
    n.steps.push_back(Normalizer::Form::NFKC);
  } else if (type == "NFD") {
    n.steps.push_back(Normalizer::Form::NFD);
  } else if (type == "NFKD") {
    n.steps.push_back(Normalizer::Form::NFKD);
  } else {
    fail("{}: normalizer type '{}' is not supported (supported: NFC, NFKC, NFD, NFKD, Sequence)", j.where(), type);
  }
}

Normalizer parse_normalizer(const JsonAt& j) {
  Normalizer n;
  add(n, j);
  return n;
}

}  // namespace r1::text
