// test_json.cpp - the JSON writer's text (escaping, numbers, order, indentation) and the flat-object
// reader: round trips of every value type and the refusal of malformed input, with the offset.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/check.h"
#include "engine/json.h"

namespace engine::testing {
namespace {

// The message of the error `text` is refused with ("" and a failure when it is accepted).
std::string refusal(std::string_view text) {
  try {
    parse_flat_json_object(text, "test.json");
  } catch (const Error& e) {
    return e.message();
  }
  ADD_FAILURE() << "malformed JSON was accepted: " << text;
  return "";
}

TEST(Json, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(json_quote("plain"), R"("plain")");
  EXPECT_EQ(json_quote("say \"hi\" \\ bye"), R"("say \"hi\" \\ bye")");
  EXPECT_EQ(json_quote("a\nb\tc\rd\be\ff"), R"("a\nb\tc\rd\be\ff")");
  EXPECT_EQ(json_quote(std::string("\x01\x1f\x00", 3)), R"("\u0001\u001f\u0000")");
  EXPECT_EQ(json_quote("/ and \x7f stay"), "\"/ and \x7f stay\"");
}

TEST(Json, PassesUtf8ThroughAndReplacesInvalidBytes) {
  EXPECT_EQ(json_quote("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(json_quote("a\xff" "b"), "\"a" + fffd + "b\"");                 // not a UTF-8 byte
  EXPECT_EQ(json_quote("\x80"), "\"" + fffd + "\"");                         // a stray continuation byte
  EXPECT_EQ(json_quote("\xe2\x82"), "\"" + fffd + fffd + "\"");              // cut short
  EXPECT_EQ(json_quote("\xc0\xaf"), "\"" + fffd + fffd + "\"");              // overlong '/'
  EXPECT_EQ(json_quote("\xed\xa0\x80"), "\"" + fffd + fffd + fffd + "\"");   // a UTF-16 surrogate
  EXPECT_EQ(json_quote("\xf4\x90\x80\x80"), "\"" + fffd + fffd + fffd + fffd + "\"");  // above U+10FFFF
}

TEST(Json, WritesOneLineInInsertionOrder) {
  JsonObject entry;
  entry.set("step", int64_t{412}).set("loss", 6.8123).set("name", "run 1").set("ok", true).set("bad", false);
  EXPECT_EQ(entry.dump(), R"({"step": 412, "loss": 6.8123, "name": "run 1", "ok": true, "bad": false})");
  entry.set("loss", 5.5);  // replaced where it was
  EXPECT_EQ(entry.dump(), R"({"step": 412, "loss": 5.5, "name": "run 1", "ok": true, "bad": false})");
  EXPECT_EQ(entry.size(), 5u);
  EXPECT_TRUE(entry.contains("ok"));
  EXPECT_FALSE(entry.contains("acc1"));
  EXPECT_EQ(JsonObject().dump(), "{}");
  EXPECT_EQ(JsonObject().dump(2), "{}");
}

TEST(Json, WritesNumbersInTheirShortestExactFormAndNonFiniteAsNull) {
  JsonObject o;
  o.set("int", -5)
      .set("u64", std::numeric_limits<uint64_t>::max())
      .set("i64", std::numeric_limits<int64_t>::min())
      .set("tenth", 0.1)
      .set("tenth_f", 0.1f)
      .set("third", 1.0 / 3.0)
      .set("small", 1e-5)
      .set("big", 1e300)
      .set("whole", 2.0)
      .set("nan", std::nan(""))
      .set("inf", std::numeric_limits<double>::infinity())
      .set("ninf_f", -std::numeric_limits<float>::infinity());
  EXPECT_EQ(o.dump(),
            R"({"int": -5, "u64": 18446744073709551615, "i64": -9223372036854775808, "tenth": 0.1, )"
            R"("tenth_f": 0.1, "third": 0.3333333333333333, "small": 1e-05, "big": 1e+300, "whole": 2, )"
            R"("nan": null, "inf": null, "ninf_f": null})");
}

TEST(Json, WritesNestedObjectsAndArraysIndented) {
  JsonObject args;
  args.set("arch", "resnet50")
      .set("lr", 0.03)
      .set("schedule", std::vector<double>{120, 160})
      .set("paths", std::vector<std::string>{"a/b.jpg", "c\"d"})
      .set("empty", std::vector<double>{})
      .set("moco", JsonObject().set("k", 65536).set("m", 0.999).set("inner", JsonObject().set("t", 0.2)));
  EXPECT_EQ(args.dump(),
            R"({"arch": "resnet50", "lr": 0.03, "schedule": [120, 160], "paths": ["a/b.jpg", "c\"d"], )"
            R"("empty": [], "moco": {"k": 65536, "m": 0.999, "inner": {"t": 0.2}}})");
  EXPECT_EQ(args.dump(2),
            "{\n"
            "  \"arch\": \"resnet50\",\n"
            "  \"lr\": 0.03,\n"
            "  \"schedule\": [120, 160],\n"
            "  \"paths\": [\"a/b.jpg\", \"c\\\"d\"],\n"
            "  \"empty\": [],\n"
            "  \"moco\": {\n"
            "    \"k\": 65536,\n"
            "    \"m\": 0.999,\n"
            "    \"inner\": {\n"
            "      \"t\": 0.2\n"
            "    }\n"
            "  }\n"
            "}");
}

TEST(Json, RoundTripsEveryScalarExactly) {
  const std::vector<double> doubles = {0.0, -0.0, 1.0 / 3.0, 6.8123, -2.5e-300, 5e-324, 1.7976931348623157e308,
                                       0.1 + 0.2};
  std::string all_bytes;
  for (int c = 1; c < 128; ++c) all_bytes += static_cast<char>(c);
  all_bytes += "\xc3\xa9\xf0\x9f\x98\x80";
  JsonObject o;
  for (size_t i = 0; i < doubles.size(); ++i) o.set("d" + std::to_string(i), doubles[i]);
  o.set("f", 6.8123f)
      .set("max", std::numeric_limits<int64_t>::max())
      .set("min", std::numeric_limits<int64_t>::min())
      .set("text", all_bytes)
      .set("yes", true)
      .set("nan", std::nan(""))
      .set("list", std::vector<double>{1, 2})
      .set("nested", JsonObject().set("a", 1));

  for (const int indent : {-1, 4}) {
    const FlatJsonObject back = parse_flat_json_object(o.dump(indent));
    ASSERT_EQ(back.size(), o.size());
    for (size_t i = 0; i < doubles.size(); ++i) {
      const double d = back.at("d" + std::to_string(i)).as_double();
      EXPECT_EQ(std::signbit(d), std::signbit(doubles[i])) << i;
      EXPECT_EQ(d, doubles[i]) << i;
    }
    EXPECT_EQ(static_cast<float>(back.at("f").as_double()), 6.8123f);
    EXPECT_EQ(back.at("max").as_int64(), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(back.at("min").as_int64(), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(back.at("text").as_string(), all_bytes);
    EXPECT_TRUE(back.at("yes").as_bool());
    EXPECT_TRUE(back.at("nan").is_null());
    EXPECT_EQ(back.at("list").raw_nested(), "[1, 2]");
    EXPECT_EQ(back.at("nested").type(), JsonScalar::Type::nested);
  }
}

TEST(Json, ReaderDecodesEscapesAndKeepsNestedValuesRaw) {
  const FlatJsonObject o = parse_flat_json_object(
      " {\"s\":\"\\u00e9\\ud83d\\ude00\\/\\\"\",\"n\" : -1.5E+3 ,\"deep\":{\"a\":[1,{\"b\":null}]},\"z\":0}\n");
  EXPECT_EQ(o.at("s").as_string(), "\xc3\xa9\xf0\x9f\x98\x80/\"");
  EXPECT_EQ(o.at("n").as_double(), -1500.0);
  EXPECT_EQ(o.at("deep").raw_nested(), R"({"a":[1,{"b":null}]})");
  EXPECT_EQ(o.at("z").as_int64(), 0);
  EXPECT_TRUE(parse_flat_json_object("{}").empty());
}

TEST(Json, AccessorsRefuseTheWrongType) {
  const FlatJsonObject o = parse_flat_json_object(R"({"s": "1", "x": 1.5, "e": 1e3, "huge": 1e999, "big": 9223372036854775808})");
  EXPECT_THROW(o.at("s").as_double(), Error);
  EXPECT_THROW(o.at("x").as_string(), Error);
  EXPECT_THROW(o.at("x").as_bool(), Error);
  EXPECT_THROW(o.at("x").as_int64(), Error);  // not an integer
  EXPECT_THROW(o.at("e").as_int64(), Error);  // an integer's value, not written as one
  EXPECT_THROW(o.at("huge").as_double(), Error);
  EXPECT_THROW(o.at("big").as_int64(), Error);  // one past int64's maximum
  try {
    o.at("s").as_double();
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "expected a JSON number, found a string");
  }
}

TEST(Json, RefusesMalformedInputNamingTheOffset) {
  EXPECT_EQ(refusal(""), "test.json: malformed JSON at byte 0: expected '{' (a JSON object), found the end of the input");
  EXPECT_EQ(refusal("[1]"), "test.json: malformed JSON at byte 0: expected '{' (a JSON object), found '['");
  EXPECT_EQ(refusal(R"({"a": 1,})"), "test.json: malformed JSON at byte 8: expected a string key, found '}'");
  EXPECT_EQ(refusal(R"({"a" 1})"), "test.json: malformed JSON at byte 5: expected ':', found '1'");
  EXPECT_EQ(refusal(R"({"a": 01})"), "test.json: malformed JSON at byte 7: expected ',' or '}', found '1'");
  EXPECT_EQ(refusal(R"({"a": tru})"), "test.json: malformed JSON at byte 6: expected 'true', found 't'");
  EXPECT_EQ(refusal(R"({"a": 1.})"), "test.json: malformed JSON at byte 8: expected a digit, found '}'");
  EXPECT_EQ(refusal(R"({"a": -})"), "test.json: malformed JSON at byte 7: expected a digit, found '}'");
  EXPECT_EQ(refusal(R"({"a": +1})"),
            "test.json: malformed JSON at byte 6: expected a value (string, number, true, false, null, object or "
            "array), found '+'");
  EXPECT_EQ(refusal(R"({"a": "x)"), "test.json: malformed JSON at byte 8: expected a closing '\"', found the end of the input");
  EXPECT_EQ(refusal("{\"a\": \"\x01\"}"),
            "test.json: malformed JSON at byte 7: expected a string character (control characters must be "
            "escaped), found the byte 0x01");
  EXPECT_EQ(refusal(R"({"a": "\q"})"),
            "test.json: malformed JSON at byte 8: expected one of \" \\ / b f n r t u after '\\', found 'q'");
  EXPECT_EQ(refusal(R"({"a": "\u12G4"})"),
            "test.json: malformed JSON at byte 11: expected a hexadecimal digit of a \\u escape, found 'G'");
  EXPECT_EQ(refusal(R"({"a": "\ude00"})"),
            "test.json: malformed JSON at byte 7: expected a high surrogate before a low one (\\uD800-\\uDBFF, then "
            "\\uDC00-\\uDFFF), found '\\'");
  EXPECT_EQ(refusal(R"({"a": "\ud83dx"})"),
            "test.json: malformed JSON at byte 13: expected a \\u escape with the low surrogate of a pair, found 'x'");
  EXPECT_EQ(refusal(R"({"a": 1, "a": 2})"),
            "test.json: malformed JSON at byte 9: expected the key \"a\" only once, found it a second time");
  EXPECT_EQ(refusal(R"({"a": [1, 2}})"), "test.json: malformed JSON at byte 11: expected ',' or ']', found '}'");
  EXPECT_EQ(refusal(R"({"a": 1} x)"), "test.json: malformed JSON at byte 9: expected the end of the input after the object, found 'x'");
  EXPECT_EQ(refusal(R"({"a": 1)"), "test.json: malformed JSON at byte 7: expected ',' or '}', found the end of the input");
  const std::string deep = "{\"a\": " + std::string(300, '[') + std::string(300, ']') + "}";
  EXPECT_EQ(refusal(deep), "test.json: malformed JSON at byte 262: expected at most 256 levels of nesting, found '['");
}

}  // namespace
}  // namespace engine::testing
