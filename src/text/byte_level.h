#pragma once
// GPT-2's byte-to-unicode map: every byte becomes a printable code point so that byte-level BPE
// vocabularies are valid text (e.g. ' ' -> 'Ġ' U+0120, '\n' -> 'Ċ' U+010A).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace r1::text {

// UTF-8 of the code point byte b maps to.
const std::array<std::string, 256>& byte_to_unicode();

// The byte a code point maps back from, or -1 when it is not in the map.
int unicode_to_byte(char32_t cp);

// Byte-level string -> raw bytes; nullopt-like: returns false when some character is not in the map.
bool byte_level_decode(std::string_view token, std::string& out);

}  // namespace r1::text
