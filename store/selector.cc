#include "store/selector.h"

#include <algorithm>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/validation.h"

namespace corral::store {
namespace {

using common::InvalidArgument;
using common::Result;
using common::Status;

// JSON string quoting, close to Go's %q in Kubernetes messages; replaces
// invalid UTF-8 instead of throwing.
std::string Quote(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The string form of a JSON value for comparisons: strings as themselves,
// null as "", anything else as compact JSON text.
std::string StringForm(const nlohmann::json& v) {
  if (v.is_string()) return v.get_ref<const std::string&>();
  if (v.is_null()) return "";
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ---- Label selector lexer and parser (after k8s.io/apimachinery/pkg/labels).

enum class TokenKind {
  kEnd,
  kIdentifier,
  kComma,
  kOpenParen,
  kCloseParen,
  kNot,           // !
  kEquals,        // =
  kDoubleEquals,  // ==
  kNotEquals,     // !=
  kGreater,       // >  (Kubernetes' Gt; not supported here)
  kLess,          // <  (Kubernetes' Lt; not supported here)
};

struct Token {
  TokenKind kind;
  std::string_view text;
  std::size_t offset;  // into the selector text
};

bool IsWhitespace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Characters that end an identifier, as in the Kubernetes lexer: anything else
// that is not whitespace belongs to an identifier (and is judged later by the
// key/value checks).
bool IsSpecial(char c) {
  return c == '!' || c == '(' || c == ')' || c == ',' || c == '<' || c == '=' || c == '>';
}

std::vector<Token> Tokenize(std::string_view s) {
  std::vector<Token> tokens;
  std::size_t i = 0;
  while (true) {
    while (i < s.size() && IsWhitespace(s[i])) ++i;
    if (i == s.size()) {
      tokens.push_back({TokenKind::kEnd, s.substr(i), i});
      return tokens;
    }
    std::string_view two = s.substr(i, 2);
    if (two == "==" || two == "!=") {
      tokens.push_back({two == "==" ? TokenKind::kDoubleEquals : TokenKind::kNotEquals, two, i});
      i += 2;
      continue;
    }
    TokenKind single = TokenKind::kIdentifier;
    switch (s[i]) {
      case ',': single = TokenKind::kComma; break;
      case '(': single = TokenKind::kOpenParen; break;
      case ')': single = TokenKind::kCloseParen; break;
      case '!': single = TokenKind::kNot; break;
      case '=': single = TokenKind::kEquals; break;
      case '>': single = TokenKind::kGreater; break;
      case '<': single = TokenKind::kLess; break;
      default: break;
    }
    if (single != TokenKind::kIdentifier) {
      tokens.push_back({single, s.substr(i, 1), i});
      ++i;
      continue;
    }
    std::size_t start = i;
    while (i < s.size() && !IsWhitespace(s[i]) && !IsSpecial(s[i])) ++i;
    tokens.push_back({TokenKind::kIdentifier, s.substr(start, i - start), start});
  }
}

std::string Describe(const Token& t) {
  if (t.kind == TokenKind::kEnd) return "end of selector";
  return "'" + std::string(t.text) + "'";
}

class LabelParser {
 public:
  explicit LabelParser(std::string_view text) : text_(text), tokens_(Tokenize(text)) {}

  Result<std::vector<LabelRequirement>> Parse() {
    std::vector<LabelRequirement> requirements;
    if (Peek().kind == TokenKind::kEnd) return requirements;
    while (true) {
      Result<LabelRequirement> r = ParseRequirement();
      if (!r.ok()) return r.status();
      requirements.push_back(std::move(r).value());
      const Token& t = Peek();
      if (t.kind == TokenKind::kEnd) break;
      if (t.kind != TokenKind::kComma) {
        return Error("unexpected " + Describe(t) + " after " + Quote(Since(requirement_start_)) +
                     "; expected ',' or end of selector");
      }
      Next();
    }
    // Canonical order, as Kubernetes sorts requirements by key.
    std::stable_sort(
        requirements.begin(), requirements.end(),
        [](const LabelRequirement& a, const LabelRequirement& b) { return a.key < b.key; });
    return requirements;
  }

 private:
  const Token& Peek() const { return tokens_[pos_]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (t.kind != TokenKind::kEnd) ++pos_;
    return t;
  }
  // The selector text from `start` to the end of the last consumed token.
  std::string_view Since(std::size_t start) const {
    if (pos_ == 0) return text_.substr(start, 0);
    const Token& last = tokens_[pos_ - 1];
    std::size_t end = last.offset + last.text.size();
    return text_.substr(start, end > start ? end - start : 0);
  }
  Status Error(const std::string& problem) const {
    return InvalidArgument("invalid label selector " + Quote(text_) + ": " + problem);
  }

  Result<LabelRequirement> ParseRequirement() {
    requirement_start_ = Peek().offset;
    LabelRequirement r;
    bool negated = false;
    if (Peek().kind == TokenKind::kNot) {
      Next();
      negated = true;
    }
    const Token& key = Peek();
    if (key.kind != TokenKind::kIdentifier) {
      if (negated) {
        if (key.kind == TokenKind::kEnd || key.kind == TokenKind::kComma) {
          return Error("missing key after '!'");
        }
        return Error("expected a label key after '!', found " + Describe(key));
      }
      if (key.kind == TokenKind::kEnd || key.kind == TokenKind::kComma) {
        return Error(pos_ == 0 ? "empty requirement before ','" : "empty requirement after ','");
      }
      return Error("expected a label key, found " + Describe(key));
    }
    Next();
    r.key = std::string(key.text);
    if (std::string reason = CheckLabelKey(r.key); !reason.empty()) {
      return Error("invalid label key " + Quote(r.key) + ": " + reason);
    }

    const Token& op = Peek();
    if (op.kind == TokenKind::kEnd || op.kind == TokenKind::kComma) {
      r.op = negated ? LabelRequirement::Op::kDoesNotExist : LabelRequirement::Op::kExists;
      return r;
    }
    if (negated) {
      return Error("unexpected " + Describe(op) + " after " + Quote(Since(requirement_start_)) +
                   "; '!' takes no operator or value");
    }
    switch (op.kind) {
      case TokenKind::kEquals:
      case TokenKind::kDoubleEquals: r.op = LabelRequirement::Op::kEquals; break;
      case TokenKind::kNotEquals: r.op = LabelRequirement::Op::kNotEquals; break;
      case TokenKind::kGreater:
      case TokenKind::kLess: return Error("operator " + Describe(op) + " is not supported");
      case TokenKind::kIdentifier:
        if (op.text == "in") {
          r.op = LabelRequirement::Op::kIn;
          break;
        }
        if (op.text == "notin") {
          r.op = LabelRequirement::Op::kNotIn;
          break;
        }
        [[fallthrough]];
      default:
        return Error("expected an operator (=, ==, !=, in, notin) after " +
                     Quote(Since(requirement_start_)) + ", found " + Describe(op));
    }
    Next();

    if (r.op == LabelRequirement::Op::kEquals || r.op == LabelRequirement::Op::kNotEquals) {
      const Token& v = Peek();
      if (v.kind == TokenKind::kIdentifier) {
        Next();
        r.values.emplace_back(v.text);
      } else if (v.kind == TokenKind::kEnd || v.kind == TokenKind::kComma) {
        r.values.emplace_back();  // `k=` selects the empty value, as in Kubernetes
      } else {
        return Error("expected a value after " + Quote(Since(requirement_start_)) + ", found " +
                     Describe(v));
      }
    } else {
      CORRAL_RETURN_IF_ERROR(ParseValueList(r.values));
    }

    for (const std::string& v : r.values) {
      if (std::string reason = CheckLabelValue(v); !reason.empty()) {
        return Error("invalid value " + Quote(v) + " for label key " + Quote(r.key) + ": " +
                     reason);
      }
    }
    return r;
  }

  // `( v1, v2, ... )` after in/notin. An empty item ("()", "(a,)", "(,a)")
  // stands for the value "", as in Kubernetes. Leaves `values` sorted and
  // deduplicated.
  Status ParseValueList(std::vector<std::string>& values) {
    const Token& open = Peek();
    if (open.kind != TokenKind::kOpenParen) {
      if (open.kind == TokenKind::kEnd) {
        return Error("missing '(' after " + Quote(Since(requirement_start_)));
      }
      return Error("expected '(' after " + Quote(Since(requirement_start_)) + ", found " +
                   Describe(open));
    }
    Next();
    bool expect_value = true;  // at the start or right after a ','
    while (true) {
      const Token& t = Peek();
      if (t.kind == TokenKind::kEnd) return Error("missing ')'");
      if (t.kind == TokenKind::kCloseParen || t.kind == TokenKind::kComma) {
        Next();
        if (expect_value) values.emplace_back();
        if (t.kind == TokenKind::kCloseParen) break;
        expect_value = true;
        continue;
      }
      if (t.kind == TokenKind::kIdentifier && expect_value) {
        Next();
        values.emplace_back(t.text);
        expect_value = false;
        continue;
      }
      return Error(
          std::string(expect_value ? "expected a value, ',' or ')'" : "expected ',' or ')'") +
          " after " + Quote(Since(requirement_start_)) + ", found " + Describe(t));
    }
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    return Status::Ok();
  }

  std::string_view text_;
  std::vector<Token> tokens_;  // always ends with kEnd
  std::size_t pos_ = 0;
  std::size_t requirement_start_ = 0;
};

bool RequirementMatches(const LabelRequirement& r, const nlohmann::json& labels) {
  std::optional<std::string> value;
  if (labels.is_object()) {
    if (auto it = labels.find(r.key); it != labels.end()) value = StringForm(*it);
  }
  auto in_values = [&] { return std::binary_search(r.values.begin(), r.values.end(), *value); };
  switch (r.op) {
    case LabelRequirement::Op::kExists: return value.has_value();
    case LabelRequirement::Op::kDoesNotExist: return !value.has_value();
    case LabelRequirement::Op::kEquals:
    case LabelRequirement::Op::kIn: return value.has_value() && in_values();
    case LabelRequirement::Op::kNotEquals:
    case LabelRequirement::Op::kNotIn: return !value.has_value() || !in_values();
  }
  return false;
}

// ---- Field selector helpers (after k8s.io/apimachinery/pkg/fields).

// Splits on commas that are not escaped by a backslash.
std::vector<std::string_view> SplitTerms(std::string_view s) {
  std::vector<std::string_view> terms;
  std::size_t start = 0;
  bool escaped = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (escaped) {
      escaped = false;
    } else if (s[i] == '\\') {
      escaped = true;
    } else if (s[i] == ',') {
      terms.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  terms.push_back(s.substr(start));
  return terms;
}

}  // namespace

// ---- LabelSelector

Result<LabelSelector> LabelSelector::Parse(std::string_view text) {
  LabelParser parser(text);
  Result<std::vector<LabelRequirement>> requirements = parser.Parse();
  if (!requirements.ok()) return requirements.status();
  return LabelSelector(std::move(requirements).value());
}

bool LabelSelector::Matches(const nlohmann::json& labels) const {
  return std::all_of(requirements_.begin(), requirements_.end(),
                     [&](const LabelRequirement& r) { return RequirementMatches(r, labels); });
}

std::string LabelSelector::ToString() const {
  std::string out;
  for (const LabelRequirement& r : requirements_) {
    if (!out.empty()) out += ',';
    switch (r.op) {
      case LabelRequirement::Op::kExists: out += r.key; break;
      case LabelRequirement::Op::kDoesNotExist:
        out += '!';
        out += r.key;
        break;
      case LabelRequirement::Op::kEquals: out += r.key + "=" + r.values.at(0); break;
      case LabelRequirement::Op::kNotEquals: out += r.key + "!=" + r.values.at(0); break;
      case LabelRequirement::Op::kIn:
      case LabelRequirement::Op::kNotIn: {
        out += r.key;
        out += r.op == LabelRequirement::Op::kIn ? " in (" : " notin (";
        for (std::size_t i = 0; i < r.values.size(); ++i) {
          if (i > 0) out += ',';
          out += r.values[i];
        }
        out += ')';
        break;
      }
    }
  }
  return out;
}

// ---- FieldSelector

Result<FieldSelector> FieldSelector::Parse(std::string_view text) {
  auto error = [&](const std::string& problem) {
    return InvalidArgument("invalid field selector " + Quote(text) + ": " + problem);
  };
  std::vector<FieldRequirement> requirements;
  for (std::string_view term : SplitTerms(text)) {
    if (term.empty()) continue;

    // The first unescaped operator splits the term; at each position "!=" and
    // "==" win over "=".
    std::size_t op_pos = std::string_view::npos;
    std::size_t op_len = 0;
    bool equals = true;
    for (std::size_t i = 0; i < term.size(); ++i) {
      if (term[i] == '\\') {
        ++i;
        continue;
      }
      std::string_view rest = term.substr(i);
      if (rest.starts_with("!=") || rest.starts_with("==")) {
        op_pos = i;
        op_len = 2;
        equals = rest[0] == '=';
        break;
      }
      if (rest[0] == '=') {
        op_pos = i;
        op_len = 1;
        break;
      }
    }
    if (op_pos == std::string_view::npos) {
      return error("cannot understand " + Quote(term) +
                   ": expected field=value, field==value or field!=value");
    }
    if (op_pos == 0) return error("missing field name in " + Quote(term));

    FieldRequirement r;
    r.field = std::string(term.substr(0, op_pos));
    r.equals = equals;
    std::string_view raw = term.substr(op_pos + op_len);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      char c = raw[i];
      if (c == '\\') {
        if (i + 1 == raw.size()) {
          return error("value of " + Quote(term) + " ends with an unfinished escape '\\'");
        }
        char next = raw[++i];
        if (next != '\\' && next != ',' && next != '=') {
          return error("invalid escape sequence '\\" + std::string(1, next) + "' in " +
                       Quote(term) + "; only \\\\, \\, and \\= are allowed");
        }
        r.value += next;
      } else if (c == '=' || c == ',') {
        return error("unescaped '" + std::string(1, c) + "' in the value of " + Quote(term) +
                     "; write it as '\\" + std::string(1, c) + "'");
      } else {
        r.value += c;
      }
    }
    requirements.push_back(std::move(r));
  }
  return FieldSelector(std::move(requirements));
}

Status FieldSelector::Validate(const std::vector<std::string>& supported) const {
  for (const FieldRequirement& r : requirements_) {
    if (std::find(supported.begin(), supported.end(), r.field) == supported.end()) {
      return InvalidArgument("field label not supported: " + Quote(r.field));
    }
  }
  return Status::Ok();
}

bool FieldSelector::Matches(const nlohmann::json& object) const {
  for (const FieldRequirement& r : requirements_) {
    // Walk the dotted path; a missing member or a non-object on the way leaves
    // `v` null, which compares as "".
    const nlohmann::json* v = &object;
    std::string_view path = r.field;
    while (v != nullptr) {
      std::size_t dot = path.find('.');
      if (!v->is_object()) {
        v = nullptr;
        break;
      }
      auto it = v->find(std::string(path.substr(0, dot)));
      v = it == v->end() ? nullptr : &*it;
      if (dot == std::string_view::npos) break;
      path.remove_prefix(dot + 1);
    }
    std::string actual = v == nullptr ? std::string() : StringForm(*v);
    if ((actual == r.value) != r.equals) return false;
  }
  return true;
}

std::optional<std::string> FieldSelector::ExactValue(std::string_view field) const {
  for (const FieldRequirement& r : requirements_) {
    if (r.equals && r.field == field) return r.value;
  }
  return std::nullopt;
}

}  // namespace corral::store
