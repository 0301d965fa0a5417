// json.h - a small JSON writer for the run's logs (metrics.jsonl, args.json), and a reader for the
// flat objects it writes.
//
// Writing. A JsonObject keeps its members in insertion order; setting a key that is already there
// replaces its value in place. Values:
//   strings    quoted; `"` and `\` escaped, \n \r \t \b \f as short escapes, other control
//              characters (below 0x20) as \u00XX; UTF-8 passes through as it is, and bytes that are
//              not valid UTF-8 become U+FFFD, so the output is always valid JSON whatever the input
//              (file names on disk need not be UTF-8)
//   bool       true / false
//   integers   exactly, in decimal (any integer type)
//   double     the shortest text that reads back as the same double (fmt's "{}": 0.1, 1e-05,
//              6.8123); a float is written as the shortest text that reads back as the same float
//              (6.8123, not 6.812300205230713). JSON has no NaN or infinity: those are written as
//              null, so a diverged loss shows up as null in the log instead of breaking the file.
//   nested     a JsonObject, or an array of strings or of doubles (same rules per element)
// dump(): one line when indent < 0 (`{"step": 1, "loss": 6.81}`, separators as Python's json.dumps),
// else one member per line indented by `indent` spaces per level; arrays stay on one line.
//
// Reading. parse_flat_json_object reads one object whose values are strings, numbers, booleans or
// null (what metrics.jsonl holds); a nested object or array is kept as its raw JSON text, unparsed.
// It is strict (RFC 8259 grammar, no trailing commas, no duplicate keys, nothing after the object)
// and a malformed input is refused with the byte offset of the problem.
#pragma once

#include <concepts>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace engine {

class JsonObject {
 public:
  JsonObject& set(const std::string& key, std::string_view value);
  JsonObject& set(const std::string& key, const char* value) { return set(key, std::string_view(value)); }
  JsonObject& set(const std::string& key, const std::string& value) { return set(key, std::string_view(value)); }
  JsonObject& set(const std::string& key, bool value);
  JsonObject& set(const std::string& key, double value);
  JsonObject& set(const std::string& key, float value);
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  JsonObject& set(const std::string& key, T value) {
    return set_value(key, std::to_string(value));
  }
  JsonObject& set(const std::string& key, JsonObject value);
  JsonObject& set(const std::string& key, const std::vector<std::string>& values);
  JsonObject& set(const std::string& key, const std::vector<double>& values);

  std::string dump(int indent = -1) const;
  size_t size() const { return members_.size(); }
  bool contains(std::string_view key) const;

 private:
  // A value already written as JSON text (scalars and arrays), or a nested object, which is kept
  // as an object so that dump() can indent it.
  using Value = std::variant<std::string, std::shared_ptr<const JsonObject>>;

  JsonObject& set_value(const std::string& key, Value value);
  void dump_to(std::string& out, int indent, int depth) const;

  std::vector<std::pair<std::string, Value>> members_;
};

// `text` as a quoted JSON string (the escaping rules above).
std::string json_quote(std::string_view text);

// One value of a flat object, as read back.
class JsonScalar {
 public:
  enum class Type { null, boolean, number, string, nested };

  JsonScalar(Type type, std::string text) : type_(type), text_(std::move(text)) {}

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  // Each accessor throws engine::Error when the value is of another type.
  bool as_bool() const;
  double as_double() const;
  int64_t as_int64() const;  // the number as written must be an integer that fits int64
  const std::string& as_string() const;  // the string's contents, escapes decoded
  const std::string& raw_nested() const;  // a nested object or array, as its JSON text

 private:
  Type type_;
  // string: the decoded contents; number: the digits as written; boolean: "true"/"false";
  // nested: the raw JSON text; null: empty.
  std::string text_;
};

using FlatJsonObject = std::map<std::string, JsonScalar, std::less<>>;

// Parses one JSON object (surrounding whitespace allowed). `source` names the input in errors:
// "metrics.jsonl line 12: malformed JSON at byte 31: expected ',' or '}', found 'x'".
FlatJsonObject parse_flat_json_object(std::string_view text, std::string_view source = "<memory>");

}  // namespace engine
