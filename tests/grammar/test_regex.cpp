// Regex compilation: what the supported constructs match (whole text, UTF-8 bytes), and
// the constructs that are refused by name.
#include <doctest/doctest.h>

#include <string>

#include "tests/grammar/grammar_test_util.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using troupe::test::accepts;

namespace {

bool matches(const char* pattern, const std::string& text) { return accepts(compile_regex(pattern), text); }

std::string refusal_of(const char* pattern) {
  try {
    compile_regex(pattern);
  } catch (const troupe::error& e) {
    CHECK(e.code() == error_code::invalid_argument);
    return e.what();
  }
  return "(compiled)";
}

}  // namespace

TEST_CASE("regex literals, classes and escapes match the whole text") {
  CHECK(matches("abc", "abc"));
  CHECK_FALSE(matches("abc", "abcd"));
  CHECK_FALSE(matches("abc", "ab"));
  CHECK(matches("[a-c]x", "bx"));
  CHECK_FALSE(matches("[a-c]x", "dx"));
  CHECK(matches("\\d\\d-\\w+", "42-ab_9"));
  CHECK_FALSE(matches("\\d", "a"));
  CHECK(matches("\\s\\S", " x"));
  CHECK(matches("a\\.b", "a.b"));
  CHECK_FALSE(matches("a\\.b", "axb"));
  CHECK(matches("[^0-9]", "x"));
  CHECK_FALSE(matches("[^0-9]", "5"));
  CHECK(matches("[\\d.]+", "3.14"));
  CHECK(matches("\\x41\\u0042\\u{43}", "ABC"));
  CHECK(matches("[-a]+", "-a-"));
  CHECK(matches("\\(\\)\\[\\]\\{\\}\\*\\+\\?\\|\\^\\$\\\\\\/", "()[]{}*+?|^$\\/"));
}

TEST_CASE("regex groups, alternation and quantifiers") {
  CHECK(matches("(ab)+", "ababab"));
  CHECK_FALSE(matches("(ab)+", ""));
  CHECK(matches("(?:a|bc)*d", "abcad"));
  CHECK(matches("(?<year>\\d{4})-(\\d{2})", "2024-05"));
  CHECK(matches("a?b", "b"));
  CHECK(matches("x{3}", "xxx"));
  CHECK_FALSE(matches("x{3}", "xx"));
  CHECK(matches("x{2,}", "xxxxx"));
  CHECK_FALSE(matches("x{2,}", "x"));
  CHECK(matches("x{1,3}y", "xxxy"));
  CHECK_FALSE(matches("x{1,3}y", "xxxxy"));
  CHECK(matches("a+?b*?", "aab"));
  CHECK(matches("^yes|no$", "no"));
  CHECK(matches("", ""));
  CHECK(matches("a{,2}", "a{,2}"));  // not a quantifier: literal braces
}

TEST_CASE("regex works on UTF-8: dot and negated classes take whole characters") {
  CHECK(matches(".", "\xC3\xA9"));               // é, two bytes
  CHECK(matches(".", "\xF0\x9F\x98\x80"));       // 😀, four bytes
  CHECK_FALSE(matches(".", "\xC3\xA9\xC3\xA9"));
  CHECK_FALSE(matches(".", "\n"));
  CHECK_FALSE(matches(".", "\xC3"));             // half a character
  CHECK_FALSE(matches(".", "\xED\xA0\x80"));     // an encoded surrogate is not UTF-8
  CHECK(matches("[^a]", "\xE6\x9D\xB1"));        // 東
  CHECK(matches("[é-ë]+", "\xC3\xA9\xC3\xAB"));
  CHECK_FALSE(matches("[é-ë]", "\xC3\xAC"));
  CHECK(matches("東京|Zürich", "\xE6\x9D\xB1\xE4\xBA\xAC"));
  CHECK(matches(".{3}", "a\xC3\xA9\xF0\x9F\x98\x80"));
}

TEST_CASE("regex constructs outside the subset are refused by name") {
  CHECK(refusal_of("(a)\\1").find("backreference") != std::string::npos);
  CHECK(refusal_of("(?<n>a)\\k<n>").find("backreference") != std::string::npos);
  CHECK(refusal_of("a(?=b)").find("lookaround") != std::string::npos);
  CHECK(refusal_of("a(?!b)").find("lookaround") != std::string::npos);
  CHECK(refusal_of("(?<=a)b").find("lookaround") != std::string::npos);
  CHECK(refusal_of("\\bword").find("word-boundary") != std::string::npos);
  CHECK(refusal_of("(?i)abc").find("inline flag") != std::string::npos);
  CHECK(refusal_of("a^b").find("anchor") != std::string::npos);
  CHECK(refusal_of("\\p{L}").find("property") != std::string::npos);
  CHECK(refusal_of("x{2000}").find("over 1000") != std::string::npos);
  CHECK(refusal_of("(ab").find("unclosed '('") != std::string::npos);
  CHECK(refusal_of("ab)").find("unmatched ')'") != std::string::npos);
  CHECK(refusal_of("[ab").find("unclosed '['") != std::string::npos);
  CHECK(refusal_of("*a").find("nothing to repeat") != std::string::npos);
  CHECK(refusal_of("[z-a]").find("out of order") != std::string::npos);
  CHECK(refusal_of("a++").find("possessive") != std::string::npos);
  CHECK(refusal_of("abc").find("compiled") != std::string::npos);
  CHECK(refusal_of("(?<n>a)\\k<n>").rfind("regex at guided_regex", 0) == 0);
}

TEST_CASE("guided_choice outputs exactly one of the choices") {
  const auto g = compile_choice({"yes", "no", "maybe", "ye"});
  CHECK(accepts(g, "yes"));
  CHECK(accepts(g, "ye"));
  CHECK(accepts(g, "maybe"));
  CHECK_FALSE(accepts(g, "y"));
  CHECK_FALSE(accepts(g, "yesno"));
  CHECK_THROWS_AS(compile_choice({}), troupe::error);
}
