// json.cpp - the JSON writer and the flat-object reader (rules in json.h).
#include "engine/json.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>

#include "engine/check.h"

namespace engine {

namespace {

// The length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not one
// (a stray continuation byte, an overlong form, a surrogate, a code point above U+10FFFF, or a
// sequence cut short). The ranges are those of the Unicode standard's table of well-formed UTF-8.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  size_t length = 0;
  unsigned char second_low = 0x80, second_high = 0xBF;
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) second_low = 0xA0;   // below: overlong
    if (b0 == 0xED) second_high = 0x9F;  // above: UTF-16 surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) second_low = 0x90;   // below: overlong
    if (b0 == 0xF4) second_high = 0x8F;  // above: beyond U+10FFFF
  } else {
    return 0;
  }
  if (i + length > s.size()) return 0;
  if (byte(i + 1) < second_low || byte(i + 1) > second_high) return 0;
  for (size_t k = 2; k < length; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return length;
}

void append_utf8(std::string& out, uint32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

template <typename Float>
std::string float_text(Float value) {
  if (!std::isfinite(value)) return "null";
  return fmt::format("{}", value);
}

const char* type_name(JsonScalar::Type type) {
  switch (type) {
    case JsonScalar::Type::null: return "null";
    case JsonScalar::Type::boolean: return "a boolean";
    case JsonScalar::Type::number: return "a number";
    case JsonScalar::Type::string: return "a string";
    case JsonScalar::Type::nested: return "a nested object or array";
  }
  return "?";
}

// Deeper input is refused rather than risking the stack on a hostile file.
constexpr int kMaxNesting = 256;

class FlatObjectParser {
 public:
  FlatObjectParser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  FlatJsonObject parse() {
    FlatJsonObject object;
    skip_whitespace();
    expect('{', "'{' (a JSON object)");
    skip_whitespace();
    if (peek() == '}') {
      ++pos_;
    } else {
      while (true) {
        skip_whitespace();
        const size_t key_offset = pos_;
        if (peek() != '"') fail("a string key");
        std::string key = parse_string();
        skip_whitespace();
        expect(':', "':'");
        skip_whitespace();
        JsonScalar value = parse_value();
        if (object.contains(key)) {
          pos_ = key_offset;
          fail_with(fmt::format("the key \"{}\" only once", key), "it a second time");
        }
        object.emplace(std::move(key), std::move(value));
        skip_whitespace();
        if (peek() == ',') {
          ++pos_;
          continue;
        }
        expect('}', "',' or '}'");
        break;
      }
    }
    skip_whitespace();
    if (pos_ != text_.size()) fail("the end of the input after the object");
    return object;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }

  [[noreturn]] void fail_with(const std::string& expected, const std::string& found) const {
    ENGINE_THROW("{}: malformed JSON at byte {}: expected {}, found {}", source_, pos_, expected, found);
  }
  [[noreturn]] void fail(const std::string& expected) const {
    if (at_end()) fail_with(expected, "the end of the input");
    const auto c = static_cast<unsigned char>(text_[pos_]);
    if (c >= 0x20 && c < 0x7F) fail_with(expected, fmt::format("'{}'", static_cast<char>(c)));
    fail_with(expected, fmt::format("the byte 0x{:02X}", c));
  }

  void expect(char c, const char* what) {
    if (at_end() || text_[pos_] != c) fail(what);
    ++pos_;
  }

  void skip_whitespace() {
    while (!at_end() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  JsonScalar parse_value() {
    const char c = peek();
    if (c == '"') return {JsonScalar::Type::string, parse_string()};
    if (c == '{' || c == '[') {
      const size_t begin = pos_;
      skip_value(0);
      return {JsonScalar::Type::nested, std::string(text_.substr(begin, pos_ - begin))};
    }
    if (c == 't' || c == 'f') {
      const std::string word = c == 't' ? "true" : "false";
      parse_literal(word);
      return {JsonScalar::Type::boolean, word};
    }
    if (c == 'n') {
      parse_literal("null");
      return {JsonScalar::Type::null, ""};
    }
    if (c == '-' || (c >= '0' && c <= '9')) return {JsonScalar::Type::number, parse_number()};
    fail("a value (string, number, true, false, null, object or array)");
  }

  void parse_literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) fail(fmt::format("'{}'", word));
    pos_ += word.size();
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; returns the text as written.
  std::string parse_number() {
    const size_t begin = pos_;
    const auto digits = [&] {
      if (at_end() || !std::isdigit(static_cast<unsigned char>(text_[pos_]))) fail("a digit");
      while (!at_end() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else {
      digits();
    }
    if (peek() == '.') {
      ++pos_;
      digits();
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      digits();
    }
    return std::string(text_.substr(begin, pos_ - begin));
  }

  uint32_t parse_hex4() {
    uint32_t value = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = peek();
      int digit = -1;
      if (c >= '0' && c <= '9') digit = c - '0';
      if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
      if (digit < 0) fail("a hexadecimal digit of a \\u escape");
      value = value * 16 + static_cast<uint32_t>(digit);
      ++pos_;
    }
    return value;
  }

  // At the opening quote; returns the contents with escapes decoded (bytes are taken as they are).
  std::string parse_string() {
    ++pos_;
    std::string out;
    while (true) {
      if (at_end()) fail("a closing '\"'");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("a string character (control characters must be escaped)");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) fail("an escape character after '\\'");
      const char e = text_[pos_];
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t code_point = parse_hex4();
          if (code_point >= 0xDC00 && code_point <= 0xDFFF) {
            pos_ -= 6;
            fail("a high surrogate before a low one (\\uD800-\\uDBFF, then \\uDC00-\\uDFFF)");
          }
          if (code_point >= 0xD800 && code_point <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") fail("a \\u escape with the low surrogate of a pair");
            pos_ += 2;
            const uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) {
              pos_ -= 6;
              fail("a low surrogate (\\uDC00-\\uDFFF) after a high one");
            }
            code_point = 0x10000 + ((code_point - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, code_point);
          break;
        }
        default:
          --pos_;
          fail("one of \" \\ / b f n r t u after '\\'");
      }
    }
  }

  // Steps over any value, checking its grammar; nested objects and arrays are not kept.
  void skip_value(int depth) {
    const char c = peek();
    if (c != '{' && c != '[') {
      parse_value();
      return;
    }
    if (depth >= kMaxNesting) fail(fmt::format("at most {} levels of nesting", kMaxNesting));
    const bool is_object = c == '{';
    const char close = is_object ? '}' : ']';
    ++pos_;
    skip_whitespace();
    if (peek() == close) {
      ++pos_;
      return;
    }
    while (true) {
      skip_whitespace();
      if (is_object) {
        if (peek() != '"') fail("a string key");
        parse_string();
        skip_whitespace();
        expect(':', "':'");
        skip_whitespace();
      }
      skip_value(depth + 1);
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(close, is_object ? "',' or '}'" : "',' or ']'");
      return;
    }
  }

  std::string_view text_;
  std::string_view source_;
  size_t pos_ = 0;
};

}  // namespace

std::string json_quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const size_t length = utf8_sequence_length(text, i);
      if (length == 0) {
        out += "\xEF\xBF\xBD";  // U+FFFD, the replacement character
        ++i;
      } else {
        out.append(text.substr(i, length));
        i += length;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
  return out;
}

JsonObject& JsonObject::set_value(const std::string& key, Value value) {
  for (auto& [name, existing] : members_) {
    if (name == key) {
      existing = std::move(value);
      return *this;
    }
  }
  members_.emplace_back(key, std::move(value));
  return *this;
}

JsonObject& JsonObject::set(const std::string& key, std::string_view value) { return set_value(key, json_quote(value)); }
JsonObject& JsonObject::set(const std::string& key, bool value) { return set_value(key, std::string(value ? "true" : "false")); }
JsonObject& JsonObject::set(const std::string& key, double value) { return set_value(key, float_text(value)); }
JsonObject& JsonObject::set(const std::string& key, float value) { return set_value(key, float_text(value)); }

JsonObject& JsonObject::set(const std::string& key, JsonObject value) {
  return set_value(key, std::make_shared<const JsonObject>(std::move(value)));
}

JsonObject& JsonObject::set(const std::string& key, const std::vector<std::string>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text.append(i ? ", " : "").append(json_quote(values[i]));
  return set_value(key, text + "]");
}

JsonObject& JsonObject::set(const std::string& key, const std::vector<double>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text.append(i ? ", " : "").append(float_text(values[i]));
  return set_value(key, text + "]");
}

bool JsonObject::contains(std::string_view key) const {
  for (const auto& member : members_)
    if (member.first == key) return true;
  return false;
}

void JsonObject::dump_to(std::string& out, int indent, int depth) const {
  if (members_.empty()) {
    out += "{}";
    return;
  }
  const bool one_line = indent < 0;
  std::string inner;
  if (!one_line) inner.append("\n").append(static_cast<size_t>(indent * (depth + 1)), ' ');
  out += '{';
  for (size_t i = 0; i < members_.size(); ++i) {
    if (i > 0) out += one_line ? ", " : ",";
    out += inner;
    out += json_quote(members_[i].first);
    out += ": ";
    if (const auto* text = std::get_if<std::string>(&members_[i].second)) {
      out += *text;
    } else {
      std::get<std::shared_ptr<const JsonObject>>(members_[i].second)->dump_to(out, indent, depth + 1);
    }
  }
  if (!one_line) out.append("\n").append(static_cast<size_t>(indent * depth), ' ');
  out += '}';
}

std::string JsonObject::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

bool JsonScalar::as_bool() const {
  ENGINE_CHECK(type_ == Type::boolean, "expected a JSON boolean, found {}", type_name(type_));
  return text_ == "true";
}

double JsonScalar::as_double() const {
  ENGINE_CHECK(type_ == Type::number, "expected a JSON number, found {}", type_name(type_));
  double value = 0;
  const auto [end, error] = std::from_chars(text_.data(), text_.data() + text_.size(), value);
  // Out of range means beyond double's exponent (1e999): the reader reports it rather than guess.
  ENGINE_CHECK(error == std::errc() && end == text_.data() + text_.size(),
               "the JSON number {} does not fit a double", text_);
  return value;
}

int64_t JsonScalar::as_int64() const {
  ENGINE_CHECK(type_ == Type::number, "expected a JSON number, found {}", type_name(type_));
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text_.data(), text_.data() + text_.size(), value);
  ENGINE_CHECK(error == std::errc() && end == text_.data() + text_.size(),
               "expected an integer that fits 64 bits, found the JSON number {}", text_);
  return value;
}

const std::string& JsonScalar::as_string() const {
  ENGINE_CHECK(type_ == Type::string, "expected a JSON string, found {}", type_name(type_));
  return text_;
}

const std::string& JsonScalar::raw_nested() const {
  ENGINE_CHECK(type_ == Type::nested, "expected a nested JSON object or array, found {}", type_name(type_));
  return text_;
}

FlatJsonObject parse_flat_json_object(std::string_view text, std::string_view source) {
  return FlatObjectParser(text, source).parse();
}

}  // namespace engine
