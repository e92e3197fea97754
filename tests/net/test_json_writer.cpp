// json_writer: every output parses as JSON and reads back to what was written; control
// characters, quotes and backslashes are escaped; invalid UTF-8 becomes U+FFFD; misuse throws.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "troupe/model/error.hpp"
#include "troupe/model/unicode.hpp"
#include "troupe/net/json_writer.hpp"
#include "codec_test_util.hpp"

using namespace troupe;
using namespace troupe::net;
using troupe::test::parse_back;

namespace {

const std::string replacement = "\xEF\xBF\xBD";

std::string written_string(std::string_view s) {
  json_writer w;
  w.value(s);
  return w.take();
}

// What a JSON parser reads back from the string literal the writer made of s.
std::string round_trip(std::string_view s) {
  simdjson::dom::parser parser;
  return test::string_of(parse_back(parser, written_string(s)));
}

}  // namespace

TEST_CASE("json_writer: objects and arrays nest with commas only between members") {
  json_writer w;
  w.begin_object();
  w.key("a").value(1);
  w.key("b").begin_array().value("x").begin_object().end_object().begin_array().end_array().null().end_array();
  w.key("c").begin_object().key("d").value(true).key("e").value(false).end_object();
  w.end_object();
  CHECK(w.str() == R"({"a":1,"b":["x",{},[],null],"c":{"d":true,"e":false}})");
}

TEST_CASE("json_writer: every control character is escaped and reads back as itself") {
  for (int c = 0; c < 0x20; ++c) {
    const std::string s = std::string("a") + static_cast<char>(c) + "b";
    const std::string json = written_string(s);
    for (char byte : json) CHECK(static_cast<unsigned char>(byte) >= 0x20);
    CHECK(round_trip(s) == s);
  }
  CHECK(written_string("\n\t\r\b\f") == R"("\n\t\r\b\f")");
  CHECK(written_string(std::string(1, '\0')) == R"("\u0000")");
  CHECK(written_string("\x1f") == R"("\u001f")");
}

TEST_CASE("json_writer: quotes and backslashes are escaped") {
  CHECK(written_string(R"(say "hi" \o/)") == R"("say \"hi\" \\o/")");
  CHECK(round_trip(R"("\"\\)") == R"("\"\\)");
}

TEST_CASE("json_writer: DEL, U+2028, U+2029 and valid multibyte text pass through raw") {
  const std::string s = "\x7f \xE2\x80\xA8 \xE2\x80\xA9 caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80";
  CHECK(written_string(s) == "\"" + s + "\"");
  CHECK(round_trip(s) == s);
}

TEST_CASE("json_writer: a lone continuation byte becomes U+FFFD") {
  CHECK(round_trip("a\x80z") == "a" + replacement + "z");
  CHECK(round_trip("\xBF\xBF") == replacement + replacement);
}

TEST_CASE("json_writer: a truncated sequence becomes one U+FFFD, in the middle or at the end") {
  CHECK(round_trip("a\xE2\x82z") == "a" + replacement + "z");
  CHECK(round_trip("euro \xE2\x82") == "euro " + replacement);
  CHECK(round_trip("\xF0\x9F\x98") == replacement);
  CHECK(round_trip("\xC3") == replacement);
}

TEST_CASE("json_writer: overlong encodings are refused byte by byte") {
  CHECK(round_trip("\xC0\xAF") == replacement + replacement);  // '/' in two bytes
  CHECK(round_trip("\xE0\x80\xAF") == replacement + replacement + replacement);
  CHECK(round_trip("\xF0\x80\x80\xAF") == replacement + replacement + replacement + replacement);
}

TEST_CASE("json_writer: UTF-8 encoded surrogates and code points past U+10FFFF become U+FFFD") {
  CHECK(round_trip("\xED\xA0\x80") == replacement + replacement + replacement);  // U+D800
  CHECK(round_trip("\xED\xBF\xBF") == replacement + replacement + replacement);  // U+DFFF
  CHECK(round_trip("\xF4\x90\x80\x80") == replacement + replacement + replacement + replacement);
  CHECK(round_trip("\xF5\xFF") == replacement + replacement);
  CHECK(round_trip("\xED\x9F\xBF") == "\xED\x9F\xBF");  // U+D7FF, just below, is fine
}

TEST_CASE("json_writer: random bytes always make valid JSON that reads back as the sanitized text") {
  std::mt19937 rng(20251121);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> length(0, 40);
  simdjson::dom::parser parser;
  for (int i = 0; i < 3000; ++i) {
    std::string s(static_cast<size_t>(length(rng)), '\0');
    for (char& c : s) c = static_cast<char>(byte(rng));
    json_writer w;
    w.begin_object().key(s).value(s).end_object();
    simdjson::dom::object obj = parse_back(parser, w.str());
    const std::string sanitized = unicode::sanitize_utf8(s);
    REQUIRE(obj.size() == 1);
    CHECK(test::string_of(obj[sanitized]) == sanitized);
  }
}

TEST_CASE("json_writer: keys are escaped like values") {
  json_writer w;
  w.begin_object().key("a\"b\n").value(1).end_object();
  CHECK(w.str() == R"({"a\"b\n":1})");
}

TEST_CASE("json_writer: integers keep their full range") {
  json_writer w;
  w.begin_array();
  w.value(std::numeric_limits<int64_t>::min()).value(std::numeric_limits<int64_t>::max());
  w.value(std::numeric_limits<uint64_t>::max()).value(int32_t{-7}).value(uint32_t{7});
  w.end_array();
  CHECK(w.str() == "[-9223372036854775808,9223372036854775807,18446744073709551615,-7,7]");
}

TEST_CASE("json_writer: non-finite numbers become null") {
  json_writer w;
  w.begin_array();
  w.value(std::numeric_limits<double>::infinity()).value(-std::numeric_limits<double>::infinity());
  w.value(std::nan("")).value(std::numeric_limits<float>::quiet_NaN()).value(-std::numeric_limits<float>::infinity());
  w.end_array();
  CHECK(w.str() == "[null,null,null,null,null]");
}

TEST_CASE("json_writer: doubles and floats are written in their shortest exact form") {
  json_writer w;
  w.begin_array().value(-0.12f).value(0.1).value(1763769600123.456).value(1e300).value(2.0).value(-0.0).end_array();
  CHECK(w.str() == "[-0.12,0.1,1763769600123.456,1e+300,2,-0]");
  simdjson::dom::parser parser;
  simdjson::dom::array a = parse_back(parser, w.str());
  CHECK(static_cast<float>(double(a.at(0))) == -0.12f);
  CHECK(double(a.at(2)) == 1763769600123.456);
  CHECK(double(a.at(3)) == 1e300);
}

TEST_CASE("json_writer: raw splices a value in place") {
  json_writer w;
  w.begin_object().key("data").raw(R"({"x":[1,2]})").key("n").value(1).end_object();
  CHECK(w.str() == R"({"data":{"x":[1,2]},"n":1})");
}

TEST_CASE("json_writer: deep nesting stays balanced") {
  constexpr int depth = 500;
  json_writer w;
  for (int i = 0; i < depth; ++i) w.begin_object().key("a").begin_array();
  w.value("leaf");
  for (int i = 0; i < depth; ++i) w.end_array().end_object();
  simdjson::dom::parser parser;
  simdjson::dom::element e = parse_back(parser, w.str());
  for (int i = 0; i < depth; ++i) e = e["a"].at(0);
  CHECK(test::string_of(e) == "leaf");
}

TEST_CASE("json_writer: misuse throws instead of writing broken JSON") {
  auto is_refused = [](auto&& act) {
    json_writer w;
    try {
      act(w);
    } catch (const error& e) {
      return e.code() == error_code::internal;
    }
    return false;
  };
  CHECK(is_refused([](json_writer& w) { w.key("a"); }));
  CHECK(is_refused([](json_writer& w) { w.begin_object().value(1); }));
  CHECK(is_refused([](json_writer& w) { w.begin_object().key("a").key("b"); }));
  CHECK(is_refused([](json_writer& w) { w.begin_object().key("a").end_object(); }));
  CHECK(is_refused([](json_writer& w) { w.begin_object().end_array(); }));
  CHECK(is_refused([](json_writer& w) { w.end_object(); }));
  CHECK(is_refused([](json_writer& w) { w.value(1).value(2); }));
  CHECK(is_refused([](json_writer& w) { w.begin_array().str(); }));
  CHECK(is_refused([](json_writer& w) { w.take(); }));
}

TEST_CASE("json_writer: take returns the document and leaves an empty writer") {
  json_writer w;
  w.begin_array().value(1).end_array();
  CHECK(w.take() == "[1]");
  CHECK_FALSE(w.is_complete());
  w.value("again");
  CHECK(w.str() == R"("again")");
}
