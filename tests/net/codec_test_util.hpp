// Helpers for the codec tests: parse what a codec wrote with simdjson's DOM parser (which
// checks the whole text, UTF-8 included) and read fields back for comparison.
#pragma once
#include <simdjson.h>

#include <string>
#include <string_view>

#include "troupe/net/parse_limits.hpp"

namespace troupe::test {

// The limits the parser tests run under: a small vocabulary, a short context.
inline constexpr net::parse_limits test_limits{1000, 512};

// Parses json (throws simdjson::simdjson_error when it is not valid JSON). The element lives
// as long as the parser.
inline simdjson::dom::element parse_back(simdjson::dom::parser& parser, std::string_view json) {
  return parser.parse(simdjson::padded_string(json));
}

inline bool is_valid_json(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element element;
  return !parser.parse(simdjson::padded_string(json)).get(element);
}

inline std::string string_of(simdjson::dom::element e) { return std::string(std::string_view(e)); }

}  // namespace troupe::test
