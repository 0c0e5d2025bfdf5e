#pragma once
// UTF-8 helpers shared by the tokenizer and the template engine.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace r1::text {

// Length of the valid UTF-8 prefix of s (s.size() when all of s is valid).
size_t utf8_valid_prefix(std::string_view s);

// Decodes one code point at s[i] and advances i. Invalid UTF-8 (a truncated sequence at the end, a
// stray byte) decodes as U+FFFD in place of its maximal invalid subpart, as utf8_lossy does.
char32_t utf8_next(std::string_view s, size_t& i);

void utf8_append(std::string& out, char32_t cp);

// Bytes of the lead byte's sequence: 1..4, or 0 for a continuation/invalid lead byte.
int utf8_seq_len(unsigned char lead);

// Length (1..3) of a trailing sequence that is not yet complete but could still become valid UTF-8
// with more bytes; 0 when s ends on a character boundary or on bytes that are already invalid.
size_t utf8_incomplete_tail(std::string_view s);

// Replaces every invalid sequence with U+FFFD, as Rust's String::from_utf8_lossy does
// (one U+FFFD per maximal invalid subpart).
std::string utf8_lossy(std::string_view s);

// Unicode normalisation forms via utf8proc; input must be valid UTF-8.
std::string nfc(std::string_view s);
std::string nfkc(std::string_view s);
std::string nfd(std::string_view s);
std::string nfkd(std::string_view s);

}  // namespace r1::text
