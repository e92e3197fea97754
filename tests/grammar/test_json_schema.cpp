// JSON Schema compilation: each schema case accepts its valid documents byte by byte and
// refuses the invalid ones; unsupported keywords are refused naming keyword and path.
#include <doctest/doctest.h>

#include <string>

#include "tests/grammar/grammar_test_util.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using troupe::test::accepts;

namespace {

std::string refusal_of(const std::string& schema) {
  try {
    compile_json_schema(schema, 8);
  } catch (const troupe::error& e) {
    CHECK(e.code() == error_code::invalid_argument);
    return e.what();
  }
  return "(compiled)";
}

}  // namespace

TEST_CASE("every schema case accepts its valid documents and refuses the invalid ones") {
  REQUIRE(test::schema_cases().size() >= 20);
  for (const test::schema_case& c : test::schema_cases()) {
    CAPTURE(c.name);
    const std::shared_ptr<const grammar> g = compile_json_schema(c.schema, 8);
    for (const std::string& doc : c.valid) CHECK_MESSAGE(accepts(g, doc), "should accept: " << doc);
    for (const std::string& doc : c.invalid) CHECK_MESSAGE(!accepts(g, doc), "should refuse: " << doc);
  }
}

TEST_CASE("json_object accepts any object and nothing else") {
  const auto g = compile_json_object(8);
  CHECK(accepts(g, "{}"));
  CHECK(accepts(g, R"({"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00","d":-0.5E+2})"));
  CHECK(accepts(g, "{\n  \"a\": true\n}"));
  CHECK_FALSE(accepts(g, "[]"));
  CHECK_FALSE(accepts(g, R"("s")"));
  CHECK_FALSE(accepts(g, R"({"a":1} )"));  // nothing after the closing brace
  CHECK_FALSE(accepts(g, R"({"a":"\ud800"})"));  // a lone surrogate escape
  CHECK_FALSE(accepts(g, "{\"a\":\"\x01\"}"));    // a raw control character
  CHECK_FALSE(accepts(g, R"({"a":01})"));
}

TEST_CASE("whitespace between tokens is bounded per gap") {
  const auto g = compile_json_object(4);
  CHECK(accepts(g, "{    }"));
  CHECK_FALSE(accepts(g, "{     }"));
  CHECK(accepts(g, "{\"a\":    1}"));
  CHECK_FALSE(accepts(g, "{\"a\":     1}"));
  const auto compact = compile_json_object(0);
  CHECK(accepts(compact, R"({"a":1})"));
  CHECK_FALSE(accepts(compact, R"({"a": 1})"));
}

TEST_CASE("integers stay within int64 and numbers within a double's digits") {
  const auto g = compile_json_schema(R"({"type":"integer"})", 8);
  CHECK(accepts(g, "9223372036854775807"));
  CHECK(accepts(g, "-9223372036854775808"));
  CHECK_FALSE(accepts(g, "9223372036854775808"));
  CHECK_FALSE(accepts(g, "-9223372036854775809"));
  const auto n = compile_json_schema(R"({"type":"number"})", 8);
  CHECK(accepts(n, "1234567890123456.25e-12"));
  CHECK_FALSE(accepts(n, "1e999"));
}

TEST_CASE("unsupported keywords are refused naming the keyword and its path") {
  CHECK(refusal_of(R"({"type":"object","properties":{"a":{"type":"object","patternProperties":{"x":{}}}}})") ==
        R"(unsupported JSON Schema keyword "patternProperties" at $.properties.a)");
  CHECK(refusal_of(R"({"type":"string","format":"date-time"})") == R"(unsupported JSON Schema keyword "format" at $)");
  CHECK(refusal_of(R"({"type":"array","items":{"not":{}}})") == R"(unsupported JSON Schema keyword "not" at $.items)");
  CHECK(refusal_of(R"({"type":"number","multipleOf":2})") == R"(unsupported JSON Schema keyword "multipleOf" at $)");
}

TEST_CASE("schemas troupe cannot honour are refused with the reason") {
  CHECK(refusal_of(R"({"type":"number","minimum":0})").find("minimum/maximum on type number at $") != std::string::npos);
  CHECK(refusal_of(R"({"$ref":"https://example.com/s.json"})").find("not a local reference") != std::string::npos);
  CHECK(refusal_of(R"({"$ref":"#/$defs/missing"})").find("points to nothing") != std::string::npos);
  CHECK(refusal_of(R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})")
            .find("cycle") != std::string::npos);
  CHECK(refusal_of(R"({"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}},"$ref":"#/$defs/a"})")
            .find("left-recursive") != std::string::npos);
  CHECK(refusal_of(R"({"type":"integer","minimum":5,"maximum":4})").find("no integer") != std::string::npos);
  CHECK(refusal_of(R"({"type":"string","maxLength":100000})").find("maxLength at $ is 100000") != std::string::npos);
  CHECK(refusal_of(R"({"type":"array","uniqueItems":true})").find("uniqueItems") != std::string::npos);
  CHECK(refusal_of(R"({"enum":[]})").find("enum at $ is empty") != std::string::npos);
  CHECK(refusal_of(R"({"type":"strng"})") == R"(unknown type "strng" at $)");
  CHECK(refusal_of("{\"type\":") == "the JSON schema is not valid JSON");
  CHECK(refusal_of(R"({"type":"string","pattern":"(a)\\1"})").find("backreference") != std::string::npos);
  CHECK(refusal_of(R"({"type":"object","properties":{"a":{}},"required":["b"]})").find("\"b\"") != std::string::npos);
}
