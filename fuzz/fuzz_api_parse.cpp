// libFuzzer target for the front door's request parsers: any bytes go through
// parse_ws_message, parse_openai_request (both endpoints) and the /tokenize and /detokenize
// parsers. Each must return exactly one of
// a value or an error, never throw or crash, and every frame or body written from what they
// return (error frames, error bodies, pongs, validated requests) must be valid JSON.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <variant>

#include "troupe/net/openai_protocol.hpp"
#include "troupe/net/tokenize_protocol.hpp"
#include "troupe/net/ws_protocol.hpp"

namespace {

void require_valid_json(std::string_view json) {
  static simdjson::dom::parser parser;
  simdjson::dom::element element;
  if (parser.parse(simdjson::padded_string(json)).get(element)) std::abort();
}

void check_openai(troupe::net::openai_endpoint ep, std::string_view text, const troupe::net::parse_limits& limits) {
  const auto result = troupe::net::parse_openai_request(ep, text, limits);
  if (result.value.has_value() == result.error.has_value()) std::abort();
  if (result.error) {
    if (result.error->status != 400) std::abort();  // input alone can only be a client error
    require_valid_json(troupe::net::openai_error_body(*result.error));
  }
}

// A parse result of the tokenizer routes: a value or a client error, never both or neither.
template <typename result_type>
void check_tokenizer_route(const result_type& result) {
  if (result.value.has_value() == result.error.has_value()) std::abort();
  if (result.error) {
    if (result.error->status != 400) std::abort();
    require_valid_json(troupe::net::openai_error_body(*result.error));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace troupe::net;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const parse_limits limits{1000, 512};

  const ws_parse_result ws = parse_ws_message(text, limits);
  if (ws.message.has_value() == ws.error.has_value()) std::abort();
  if (ws.error) {
    if (ws.error->status != 400) std::abort();
    require_valid_json(ws_error(ws.id, *ws.error));
  } else if (const auto* ping = std::get_if<ws_ping>(&*ws.message)) {
    require_valid_json(ws_pong(ping->data_json));
  } else if (const auto* generate = std::get_if<ws_generate>(&*ws.message)) {
    if (generate->req.id != ws.id) std::abort();
    require_valid_json(ws_accepted(ws.id));
  }

  check_openai(openai_endpoint::completions, text, limits);
  check_openai(openai_endpoint::chat_completions, text, limits);
  check_tokenizer_route(parse_tokenize_request(text));
  check_tokenizer_route(parse_detokenize_request(text, limits));
  return 0;
}
