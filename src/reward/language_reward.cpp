#include "reward/language_reward.h"

#include <cctype>
#include <set>

#include "base/error.h"

namespace r1::reward {
namespace {

enum class Script { None, Latin, Han, Kana, Hangul, Cyrillic, Arabic, Devanagari, Greek, Other };

// Decodes one UTF-8 code point at s[i], advancing i; invalid bytes decode as U+FFFD.
char32_t next_code_point(const std::string& s, size_t& i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || i + size_t(len) > s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = len == 1 ? c : c & (0xFF >> (len + 1));
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (b(i + size_t(k)) & 0x3F);
  i += size_t(len);
  return cp;
}

Script script_of(char32_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7))
    return Script::Latin;
  if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF))
    return Script::Han;
  if (c >= 0x3040 && c <= 0x30FF) return Script::Kana;
  if ((c >= 0xAC00 && c <= 0xD7AF) || (c >= 0x1100 && c <= 0x11FF)) return Script::Hangul;
  if (c >= 0x0400 && c <= 0x04FF) return Script::Cyrillic;
  if (c >= 0x0600 && c <= 0x06FF) return Script::Arabic;
  if (c >= 0x0900 && c <= 0x097F) return Script::Devanagari;
  if (c >= 0x0370 && c <= 0x03FF) return Script::Greek;
  if (c < 0x80) return Script::None;  // digits, punctuation, math symbols: not words
  if ((c >= 0x3000 && c <= 0x303F) || (c >= 0xFF00 && c <= 0xFFEF) || (c >= 0x2000 && c <= 0x2BFF))
    return Script::None;  // CJK and general punctuation, arrows, math operators
  return Script::Other;
}

std::set<Script> target_scripts(const std::string& lang) {
  static const std::set<std::string> latin = {"en", "fr", "de", "es", "it", "pt", "nl", "sv", "da", "no", "fi",
                                              "pl", "cs", "tr", "id", "vi", "ro", "hu", "ca", "ms", "sw"};
  if (latin.count(lang)) return {Script::Latin};
  if (lang == "zh") return {Script::Han};
  if (lang == "ja") return {Script::Han, Script::Kana};
  if (lang == "ko") return {Script::Hangul, Script::Han};
  if (lang == "ru" || lang == "uk" || lang == "bg" || lang == "sr") return {Script::Cyrillic};
  if (lang == "ar" || lang == "fa" || lang == "ur") return {Script::Arabic};
  if (lang == "hi" || lang == "mr" || lang == "ne") return {Script::Devanagari};
  if (lang == "el") return {Script::Greek};
  fail("language reward: unknown target language '{}'", lang);
}

}  // namespace

LanguageShare language_share(const std::string& text, const std::string& target) {
  std::set<Script> want = target_scripts(target);
  LanguageShare r;
  auto count = [&](Script s) {
    ++r.words;
    r.target_words += want.count(s) ? 1 : 0;
  };
  // Words: runs of one alphabetic script. Han and Kana have no spaces, so each character is a word.
  // LaTeX commands (\frac) and one-letter Latin runs (math variables) are not words.
  Script run = Script::None;
  size_t run_len = 0;
  auto end_run = [&] {
    if (run != Script::None && !(run == Script::Latin && run_len < 2)) count(run);
    run = Script::None;
    run_len = 0;
  };
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '\\') {
      end_run();
      for (++i; i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]));) ++i;
      continue;
    }
    Script s = script_of(next_code_point(text, i));
    if (s == Script::Han || s == Script::Kana) {
      end_run();
      count(s);
      continue;
    }
    if (s != run) end_run(), run = s;
    if (s != Script::None) ++run_len;
  }
  end_run();
  r.share = r.words ? double(r.target_words) / r.words : 0.0;
  return r;
}

LanguageReward::LanguageReward(LanguageOptions o) : o_(std::move(o)) { target_scripts(o_.target); }

Result LanguageReward::score(const Sample& s) const {
  LanguageShare sh = language_share(think_text(s.completion, o_.format), o_.target);
  Result r{sh.share, {{"language", o_.target}, {"words", sh.words}, {"target_words", sh.target_words}}};
  if (sh.words == 0) r.details["reason"] = "no words in the chain of thought";
  return r;
}

}  // namespace r1::reward
