#include "text/jinja_lexer.h"

#include <cctype>

#include "base/error.h"

namespace r1::text::jinja {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

struct Lexer {
  const std::string& src;
  size_t pos = 0;
  int line = 1;
  std::vector<Token> out;

  void advance(size_t n) {
    for (size_t k = 0; k < n && pos < src.size(); ++k, ++pos)
      if (src[pos] == '\n') ++line;
  }
  bool at(const char* s) const { return src.compare(pos, std::char_traits<char>::length(s), s) == 0; }

  // Tokens inside {{ }} or {% %} until the closing delimiter `close` ("}}" or "%}").
  void tag_body(const std::string& close, Token::Kind end_kind, bool* strip_after, bool* plus_after) {
    int open_line = line;
    for (;;) {
      while (pos < src.size() && is_space(src[pos])) advance(1);
      if (pos >= src.size()) fail("chat template line {}: unclosed tag (missing '{}')", open_line, close);
      if ((src[pos] == '-' || src[pos] == '+') && src.compare(pos + 1, close.size(), close) == 0) {
        *strip_after = src[pos] == '-';
        *plus_after = src[pos] == '+';
        advance(1 + close.size());
        out.push_back({end_kind, "", line});
        return;
      }
      if (src.compare(pos, close.size(), close) == 0) {
        advance(close.size());
        out.push_back({end_kind, "", line});
        return;
      }
      char c = src[pos];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = pos;
        while (pos < src.size() && (std::isalnum(static_cast<unsigned char>(src[pos])) || src[pos] == '_')) ++pos;
        out.push_back({Token::Kind::Name, src.substr(b, pos - b), line});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t b = pos;
        bool is_float = false;
        while (pos < src.size() && (std::isdigit(static_cast<unsigned char>(src[pos])) || src[pos] == '_')) ++pos;
        if (pos + 1 < src.size() && src[pos] == '.' && std::isdigit(static_cast<unsigned char>(src[pos + 1]))) {
          is_float = true;
          ++pos;
          while (pos < src.size() && std::isdigit(static_cast<unsigned char>(src[pos]))) ++pos;
        }
        if (pos < src.size() && (src[pos] == 'e' || src[pos] == 'E')) {
          is_float = true;
          ++pos;
          if (pos < src.size() && (src[pos] == '+' || src[pos] == '-')) ++pos;
          while (pos < src.size() && std::isdigit(static_cast<unsigned char>(src[pos]))) ++pos;
        }
        std::string num = src.substr(b, pos - b);
        std::erase(num, '_');
        out.push_back({is_float ? Token::Kind::Float : Token::Kind::Int, num, line});
      } else if (c == '\'' || c == '"') {
        out.push_back({Token::Kind::String, string_literal(c), line});
      } else {
        static const char* ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(",
                                    ")", "[", "]", "{", "}", ",", ".", ":", "|", "=", ";"};
        bool found = false;
        for (const char* op : ops)
          if (at(op)) {
            out.push_back({Token::Kind::Op, op, line});
            advance(std::char_traits<char>::length(op));
            found = true;
            break;
          }
        if (!found) fail("chat template line {}: unexpected character '{}' in a tag", line, c);
      }
    }
  }

  // Past "%}" of a `{% raw %}` tag whose name starts at p (after "{%" and its marker), or npos when the
  // tag is not one: jinja2 takes "raw" between spaces, then "%}" or "-%}", and nothing else.
  size_t raw_begin_end(size_t p, bool* strip_body_front) const {
    while (p < src.size() && is_space(src[p])) ++p;
    if (src.compare(p, 3, "raw") != 0) return std::string::npos;
    p += 3;
    while (p < src.size() && is_space(src[p])) ++p;
    *strip_body_front = src.compare(p, 3, "-%}") == 0;
    if (*strip_body_front) return p + 3;
    return src.compare(p, 2, "%}") == 0 ? p + 2 : std::string::npos;
  }

  // The first `{% endraw %}` at or after `from`, as jinja2 finds it: "{%", an optional '-' or '+',
  // "endraw" between spaces, then "%}", "-%}" or "+%}". Sets open_marker and close_marker ('-', '+'
  // or 0) and end (past "%}"); returns where its "{%" starts, or npos.
  size_t find_endraw(size_t from, char* open_marker, char* close_marker, size_t* end) const {
    for (size_t at = src.find("{%", from); at != std::string::npos; at = src.find("{%", at + 1)) {
      size_t p = at + 2;
      *open_marker = p < src.size() && (src[p] == '-' || src[p] == '+') ? src[p++] : 0;
      while (p < src.size() && is_space(src[p])) ++p;
      if (src.compare(p, 6, "endraw") != 0) continue;
      p += 6;
      while (p < src.size() && is_space(src[p])) ++p;
      *close_marker = p < src.size() && (src[p] == '-' || src[p] == '+') ? src[p++] : 0;
      if (src.compare(p, 2, "%}") != 0) continue;
      *end = p + 2;
      return at;
    }
    return std::string::npos;
  }

  // {% raw %} ... {% endraw %} at pos (just after "{%" and its marker): the body becomes one text
  // token, untouched but for the whitespace control of the two tags. False when the tag is not raw.
  bool raw_block(bool* strip_next, bool* trim_next) {
    bool strip_front = false;
    const size_t body_start = raw_begin_end(pos, &strip_front);
    if (body_start == std::string::npos) return false;
    const int open_line = line;
    char open_marker = 0, close_marker = 0;
    size_t end = 0;
    const size_t body_end = find_endraw(body_start, &open_marker, &close_marker, &end);
    if (body_end == std::string::npos)
      fail("chat template line {}: unclosed {{% raw %}} (no {{% endraw %}})", open_line);
    out.pop_back();  // the BlockBegin of the raw tag
    std::string body = src.substr(body_start, body_end - body_start);
    if (strip_front) {
      size_t k = 0;
      while (k < body.size() && is_space(body[k])) ++k;
      body.erase(0, k);
    }
    if (open_marker == '-') {
      while (!body.empty() && is_space(body.back())) body.pop_back();
    } else if (open_marker != '+') {  // lstrip_blocks before {% endraw %}
      size_t k = body.size();
      while (k > 0 && (body[k - 1] == ' ' || body[k - 1] == '\t')) --k;
      const size_t run_start = body_end - (body.size() - k);
      if (k > 0 ? body[k - 1] == '\n' : src[run_start - 1] == '\n') body.erase(k);
    }
    if (!body.empty()) out.push_back({Token::Kind::Text, body, open_line});
    *strip_next = close_marker == '-';
    *trim_next = close_marker == 0;
    advance(end - pos);
    return true;
  }

  std::string string_literal(char q) {
    int start_line = line;
    advance(1);
    std::string s;
    while (pos < src.size() && src[pos] != q) {
      char c = src[pos];
      if (c == '\\' && pos + 1 < src.size()) {
        char e = src[pos + 1];
        switch (e) {
          case 'n': s += '\n'; break;
          case 't': s += '\t'; break;
          case 'r': s += '\r'; break;
          case '\\': s += '\\'; break;
          case '\'': s += '\''; break;
          case '"': s += '"'; break;
          default: s += '\\'; s += e;
        }
        advance(2);
        continue;
      }
      s += c;
      advance(1);
    }
    if (pos >= src.size()) fail("chat template line {}: unterminated string literal", start_line);
    advance(1);
    return s;
  }

  void run() {
    bool strip_next = false;  // previous tag ended with '-'
    bool trim_next = false;   // previous block tag ended plainly: drop one newline (trim_blocks)
    while (pos <= src.size()) {
      size_t next = src.find('{', pos);
      while (next != std::string::npos && next + 1 < src.size() && src[next + 1] != '{' && src[next + 1] != '%' &&
             src[next + 1] != '#')
        next = src.find('{', next + 1);
      if (next != std::string::npos && next + 1 >= src.size()) next = std::string::npos;
      size_t text_end = next == std::string::npos ? src.size() : next;
      std::string text = src.substr(pos, text_end - pos);
      int text_line = line;
      advance(text_end - pos);

      char kind = next == std::string::npos ? 0 : src[next + 1];
      char marker = next != std::string::npos && next + 2 < src.size() ? src[next + 2] : 0;
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
      } else if (trim_next && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      } else if (trim_next && text.size() >= 2 && text[0] == '\r' && text[1] == '\n') {
        text.erase(0, 2);
      }
      if (kind && marker == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if ((kind == '%' || kind == '#') && marker != '+') {
        // lstrip_blocks: spaces and tabs between the line start and a block tag go.
        size_t k = text.size();
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
        // The run is at a line start when a newline precedes it, in the text or in the source (the
        // text only ever loses characters at its front).
        size_t run_start = text_end - (text.size() - k);
        bool line_start = k > 0 ? text[k - 1] == '\n' : (run_start == 0 || src[run_start - 1] == '\n');
        if (line_start) text.erase(k);
      }
      if (!text.empty()) out.push_back({Token::Kind::Text, text, text_line});
      strip_next = trim_next = false;
      if (!kind) break;

      advance(2 + ((marker == '-' || marker == '+') ? 1 : 0));
      bool strip_after = false, plus_after = false;
      if (kind == '{') {
        out.push_back({Token::Kind::VarBegin, "", line});
        tag_body("}}", Token::Kind::VarEnd, &strip_after, &plus_after);
      } else if (kind == '%') {
        out.push_back({Token::Kind::BlockBegin, "", line});
        if (raw_block(&strip_next, &trim_next)) continue;
        tag_body("%}", Token::Kind::BlockEnd, &strip_after, &plus_after);
        trim_next = !strip_after && !plus_after;
      } else {  // comment
        size_t close = src.find("#}", pos);
        if (close == std::string::npos) fail("chat template line {}: unclosed comment", line);
        strip_after = close > 0 && src[close - 1] == '-';
        trim_next = !strip_after && !(close > 0 && src[close - 1] == '+');
        advance(close + 2 - pos);
      }
      strip_next = strip_after;
    }
    out.push_back({Token::Kind::Eof, "", line});
  }
};
}  // namespace

std::vector<Token> lex(const std::string& source) {
  std::string src = source;
  if (!src.empty() && src.back() == '\n') {  // keep_trailing_newline=False
    src.pop_back();
    if (!src.empty() && src.back() == '\r') src.pop_back();
  }
  Lexer l{src, 0, 1, {}};
  l.run();
  return std::move(l.out);
}

}  // namespace r1::text::jinja
