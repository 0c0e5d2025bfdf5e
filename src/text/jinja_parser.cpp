// Recursive-descent parser for the Jinja subset, with Jinja's operator precedence.
#include <charconv>
#include <cstdlib>

#include "base/error.h"
#include "text/jinja_ast.h"
#include "text/jinja_lexer.h"

namespace r1::text::jinja {

namespace {
using K = Token::Kind;

NodePtr make(Node::Kind k, int line) {
  auto n = std::make_shared<Node>();
  n->kind = k;
  n->line = line;
  return n;
}

struct Parser {
  std::vector<Token> toks;
  size_t p = 0;
  int depth = 0;  // recursion of the parser: nested expressions and statements

  // Chat templates nest a few levels; a crafted one nesting thousands would overflow the stack.
  struct Nested {
    Parser& ps;
    explicit Nested(Parser& parser) : ps(parser) {
      if (++ps.depth > kMaxNesting) ps.error(fmt::format("nested more than {} levels deep", kMaxNesting));
    }
    ~Nested() { --ps.depth; }
  };

  const Token& cur() const { return toks[p]; }
  bool is_op(const char* op) const { return cur().kind == K::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().kind == K::Name && cur().text == n; }
  [[noreturn]] void error(const std::string& what) const { fail("chat template line {}: {}", cur().line, what); }
  void expect_op(const char* op) {
    if (!is_op(op)) error(fmt::format("expected '{}' but found '{}'", op, cur().text));
    ++p;
  }
  std::string expect_name() {
    if (cur().kind != K::Name) error(fmt::format("expected a name but found '{}'", cur().text));
    return toks[p++].text;
  }
  void expect_block_end() {
    if (cur().kind != K::BlockEnd) error(fmt::format("unexpected '{}' in a statement", cur().text));
    ++p;
  }

  // ---- expressions ----
  NodePtr expr() {
    Nested guard(*this);
    NodePtr a = or_expr();
    if (is_name("if")) {
      auto n = make(Node::Kind::Cond, cur().line);
      ++p;
      n->args.push_back(a);
      n->args.push_back(or_expr());
      if (is_name("else")) {
        ++p;
        n->args.push_back(expr());
      }
      return n;
    }
    return a;
  }
  // Left-associative chain of one keyword operator: `a or b or c`, `a and b`.
  NodePtr keyword_chain(Node::Kind kind, const char* word, NodePtr (Parser::*next)()) {
    NodePtr a = (this->*next)();
    while (is_name(word)) {
      auto n = make(kind, cur().line);
      ++p;
      n->args = {a, (this->*next)()};
      a = n;
    }
    return a;
  }
  NodePtr or_expr() { return keyword_chain(Node::Kind::Or, "or", &Parser::and_expr); }
  NodePtr and_expr() { return keyword_chain(Node::Kind::And, "and", &Parser::not_expr); }
  NodePtr not_expr() {
    Nested guard(*this);
    if (is_name("not")) {
      auto n = make(Node::Kind::Not, cur().line);
      ++p;
      n->args = {not_expr()};
      return n;
    }
    return compare();
  }
  NodePtr compare() {
    NodePtr a = math1();
    for (;;) {
      int line = cur().line;
      std::string op;
      if (cur().kind == K::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == ">" ||
                                  cur().text == "<=" || cur().text == ">=")) {
        op = toks[p++].text;
      } else if (is_name("in")) {
        ++p;
        op = "in";
      } else if (is_name("not") && toks[p + 1].kind == K::Name && toks[p + 1].text == "in") {
        p += 2;
        op = "not in";
      } else {
        return a;
      }
      auto n = make(Node::Kind::Binary, line);
      n->name = op;
      n->args = {a, math1()};
      a = n;
    }
  }
  NodePtr binary_chain(NodePtr (Parser::*next)(), std::initializer_list<const char*> ops) {
    NodePtr a = (this->*next)();
    for (;;) {
      const char* hit = nullptr;
      for (const char* op : ops)
        if (is_op(op)) hit = op;
      if (!hit) return a;
      auto n = make(Node::Kind::Binary, cur().line);
      ++p;
      n->name = hit;
      n->args = {a, (this->*next)()};
      a = n;
    }
  }
  NodePtr math1() { return binary_chain(&Parser::concat, {"+", "-"}); }
  NodePtr concat() { return binary_chain(&Parser::math2, {"~"}); }
  NodePtr math2() { return binary_chain(&Parser::pow, {"*", "/", "//", "%"}); }
  NodePtr pow() { return binary_chain(&Parser::unary_filtered, {"**"}); }
  NodePtr unary_filtered() { return unary(true); }
  NodePtr unary(bool with_filter) {
    Nested guard(*this);
    NodePtr n;
    if (is_op("-") || is_op("+")) {
      n = make(Node::Kind::Unary, cur().line);
      n->name = toks[p++].text;
      n->args = {unary(false)};
    } else {
      n = primary();
    }
    n = postfix(n);
    if (with_filter) n = filter_expr(n);
    return n;
  }
  NodePtr primary() {
    const Token& t = cur();
    int line = t.line;
    switch (t.kind) {
      case K::Name: {
        ++p;
        if (t.text == "true" || t.text == "True") return literal(Value(true), line);
        if (t.text == "false" || t.text == "False") return literal(Value(false), line);
        if (t.text == "none" || t.text == "None") return literal(Value::none(), line);
        auto n = make(Node::Kind::Name, line);
        n->name = t.text;
        return n;
      }
      case K::String: {
        std::string s;
        while (cur().kind == K::String) s += toks[p++].text;  // adjacent literals concatenate
        return literal(Value(s), line);
      }
      case K::Int: {
        int64_t v = 0;
        auto [end, ec] = std::from_chars(t.text.data(), t.text.data() + t.text.size(), v);
        if (ec != std::errc() || end != t.text.data() + t.text.size())
          error(fmt::format("integer {} does not fit in 64 bits", t.text));
        ++p;
        return literal(Value(v), line);
      }
      case K::Float: ++p; return literal(Value(std::strtod(t.text.c_str(), nullptr)), line);  // 1e999: inf
      case K::Op:
        if (t.text == "(") {
          ++p;
          if (is_op(")")) {
            ++p;
            return make(Node::Kind::ListLit, line);
          }
          NodePtr e = expr();
          if (is_op(",")) {  // a tuple: behaves as a list here
            auto l = make(Node::Kind::ListLit, line);
            l->args.push_back(e);
            while (is_op(",")) {
              ++p;
              if (is_op(")")) break;
              l->args.push_back(expr());
            }
            e = l;
          }
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          ++p;
          auto l = make(Node::Kind::ListLit, line);
          while (!is_op("]")) {
            l->args.push_back(expr());
            if (!is_op(",")) break;
            ++p;
          }
          expect_op("]");
          return l;
        }
        if (t.text == "{") {
          ++p;
          auto d = make(Node::Kind::DictLit, line);
          while (!is_op("}")) {
            d->args.push_back(expr());
            expect_op(":");
            d->args.push_back(expr());
            if (!is_op(",")) break;
            ++p;
          }
          expect_op("}");
          return d;
        }
        break;
      default: break;
    }
    error(fmt::format("unexpected '{}' in an expression", t.text.empty() ? "end of tag" : t.text));
  }
  NodePtr literal(Value v, int line) {
    auto n = make(Node::Kind::Literal, line);
    n->value = std::move(v);
    return n;
  }
  void call_args(Node& n) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().kind == K::Name && toks[p + 1].kind == K::Op && toks[p + 1].text == "=") {
        std::string k = toks[p].text;
        p += 2;
        n.kwargs.emplace_back(k, expr());
      } else {
        n.args.push_back(expr());
      }
      if (!is_op(",")) break;
      ++p;
    }
    expect_op(")");
  }
  NodePtr postfix(NodePtr n) {
    for (;;) {
      int line = cur().line;
      if (is_op(".")) {
        ++p;
        auto a = make(Node::Kind::Attr, line);
        if (cur().kind == K::Int) a->name = toks[p++].text;  // x.0 is x[0]
        else a->name = expect_name();
        a->args = {n};
        n = a;
      } else if (is_op("[")) {
        ++p;
        NodePtr parts[3];
        int colons = 0;
        while (!is_op("]")) {
          if (is_op(":")) {
            ++p;
            if (++colons > 2) error("too many ':' in a slice");
            continue;
          }
          if (parts[colons]) error("expected ']' or ':' in a subscript");
          parts[colons] = expr();
        }
        expect_op("]");
        if (colons == 0 && !parts[0]) error("an empty subscript '[]'");  // jinja2 raises too
        if (colons == 0) {
          auto it = make(Node::Kind::Item, line);
          it->args = {n, parts[0]};
          n = it;
        } else {
          auto s = make(Node::Kind::Slice, line);
          s->args = {n, parts[0], parts[1], parts[2]};
          n = s;
        }
      } else if (is_op("(")) {
        auto c = make(Node::Kind::Call, line);
        c->args.push_back(n);
        call_args(*c);
        n = c;
      } else {
        return n;
      }
    }
  }
  NodePtr filter_expr(NodePtr n) {
    for (;;) {
      int line = cur().line;
      if (is_op("|")) {
        ++p;
        auto f = make(Node::Kind::Filter, line);
        f->name = expect_name();
        f->args.push_back(n);
        if (is_op("(")) call_args(*f);
        n = f;
      } else if (is_name("is")) {
        ++p;
        auto t = make(Node::Kind::Test, line);
        if (is_name("not")) {
          ++p;
          t->negated = true;
        }
        t->name = expect_name();
        t->args.push_back(n);
        if (is_op("(")) {
          call_args(*t);
        } else if ((cur().kind == K::Name || cur().kind == K::String || cur().kind == K::Int ||
                    cur().kind == K::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and") && !is_name("if") && !is_name("in") &&
                   !is_name("not") && !is_name("is")) {
          t->args.push_back(postfix(primary()));
        }
        n = t;
      } else if (is_op("(")) {
        auto c = make(Node::Kind::Call, line);
        c->args.push_back(n);
        call_args(*c);
        n = c;
      } else {
        return n;
      }
    }
  }

  // ---- statements ----
  // Parses until a block tag whose keyword is in `ends`; leaves p on that keyword.
  Body body(std::initializer_list<const char*> ends, std::string* found) {
    Body out;
    for (;;) {
      const Token& t = cur();
      if (t.kind == K::Eof) {
        if (ends.size() == 0) return out;
        fail("chat template: missing '{{% {} %}}' before the end of the template", *ends.begin());
      }
      if (t.kind == K::Text) {
        auto n = make(Node::Kind::Text, t.line);
        n->value = Value(t.text);
        out.push_back(n);
        ++p;
      } else if (t.kind == K::VarBegin) {
        ++p;
        auto n = make(Node::Kind::Emit, t.line);
        n->args = {expr()};
        if (cur().kind != K::VarEnd) error(fmt::format("unexpected '{}' in an expression", cur().text));
        ++p;
        out.push_back(n);
      } else if (t.kind == K::BlockBegin) {
        const Token& kw = toks[p + 1];
        for (const char* e : ends)
          if (kw.kind == K::Name && kw.text == e) {
            *found = e;
            p += 2;
            return out;
          }
        ++p;
        if (NodePtr s = statement()) out.push_back(s);
      } else {
        error(fmt::format("unexpected '{}'", t.text));
      }
    }
  }

  NodePtr statement() {
    Nested guard(*this);
    int line = cur().line;
    std::string kw = expect_name();
    std::string found;
    if (kw == "if") {
      auto n = make(Node::Kind::If, line);
      n->conds.push_back(expr());
      expect_block_end();
      for (;;) {
        n->bodies.push_back(body({"elif", "else", "endif"}, &found));
        if (found == "elif") {
          n->conds.push_back(expr());
          expect_block_end();
        } else if (found == "else") {
          expect_block_end();
          n->else_body = body({"endif"}, &found);
          expect_block_end();
          return n;
        } else {
          expect_block_end();
          return n;
        }
      }
    }
    if (kw == "for") {
      auto n = make(Node::Kind::For, line);
      n->targets.push_back(expect_name());
      while (is_op(",")) {
        ++p;
        n->targets.push_back(expect_name());
      }
      if (!is_name("in")) error("expected 'in' in a for statement");
      ++p;
      n->args.push_back(or_expr());  // 'if' after the iterable filters items, so no conditional here
      if (is_name("if")) {
        ++p;
        n->conds.push_back(expr());
      }
      if (is_name("recursive")) error("unsupported Jinja construct 'recursive' loop");
      expect_block_end();
      n->bodies.push_back(body({"else", "endfor"}, &found));
      expect_block_end();
      if (found == "else") {
        n->else_body = body({"endfor"}, &found);
        expect_block_end();
      }
      return n;
    }
    if (kw == "set") {
      std::string target = expect_name();
      std::string attr;
      if (is_op(".")) {
        ++p;
        attr = expect_name();
      }
      if (is_op(",")) error("unsupported Jinja construct 'set' with several targets");
      if (cur().kind == K::BlockEnd) {  // {% set x %}...{% endset %}
        auto n = make(Node::Kind::SetBlock, line);
        n->name = target;
        n->attr = attr;
        ++p;
        n->bodies.push_back(body({"endset"}, &found));
        expect_block_end();
        return n;
      }
      auto n = make(Node::Kind::Set, line);
      n->name = target;
      n->attr = attr;
      expect_op("=");
      n->args.push_back(expr());
      expect_block_end();
      return n;
    }
    if (kw == "macro") {
      auto n = make(Node::Kind::Macro, line);
      n->name = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        std::string param = expect_name();
        if (is_op("=")) {
          ++p;
          n->kwargs.emplace_back(param, expr());
        } else {
          n->kwargs.emplace_back(param, nullptr);
        }
        if (!is_op(",")) break;
        ++p;
      }
      expect_op(")");
      expect_block_end();
      n->bodies.push_back(body({"endmacro"}, &found));
      expect_block_end();
      return n;
    }
    if (kw == "filter") {  // {% filter name(args)|name2 %}...{% endfilter %}
      auto n = make(Node::Kind::FilterBlock, line);
      auto chain = make(Node::Kind::Name, line);
      chain->name = kFilterBlockInput;
      for (;;) {
        auto f = make(Node::Kind::Filter, cur().line);
        f->name = expect_name();
        f->args.push_back(chain);
        if (is_op("(")) call_args(*f);
        chain = f;
        if (!is_op("|")) break;
        ++p;
      }
      n->args.push_back(chain);
      expect_block_end();
      n->bodies.push_back(body({"endfilter"}, &found));
      expect_block_end();
      return n;
    }
    if (kw == "break" || kw == "continue") {
      expect_block_end();
      return make(kw == "break" ? Node::Kind::Break : Node::Kind::Continue, line);
    }
    if (kw == "generation") {  // transformers' assistant-mask marker: renders its body unchanged
      expect_block_end();
      auto n = make(Node::Kind::If, line);
      n->conds.push_back(literal(Value(true), line));
      n->bodies.push_back(body({"endgeneration"}, &found));
      expect_block_end();
      return n;
    }
    fail("chat template line {}: unsupported Jinja statement '{}'", line, kw);
  }
};
}  // namespace

Body parse(const std::string& source) {
  Parser ps{lex(source)};
  std::string found;
  return ps.body({}, &found);
}

}  // namespace r1::text::jinja
