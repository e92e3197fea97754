// api_error: a refusal as the front door reports it (HTTP status, error code, message, field),
// and its OpenAI error body. The WebSocket sends the same code and message in an error frame.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "troupe/engine/request_events.hpp"
#include "troupe/net/parse_limits.hpp"

namespace troupe::net {

// How long a client should wait before sending again a request refused because the queue
// was full (429) or the server was starting, draining or out of memory (503): HTTP's
// Retry-After (in seconds) and the WebSocket error frame's retry_after_ms.
inline constexpr int64_t retry_after_ms = 1000;

struct api_error {
  int status = 400;      // 400, 401, 404, 405, 413, 429, 500, 501, 502, 503
  std::string code;      // invalid_json, invalid_request, unknown_type, duplicate_id, ...
  std::string message;   // names the field and what is allowed
  std::string param;     // the offending field, when there is one
};

// 400 invalid_request naming param.
api_error invalid_request(std::string message, std::string param = {});
// 400 invalid_json.
api_error invalid_json(std::string message);

// An engine refusal: invalid_request and context_overflow 400, queue_full 429, internal 500,
// unavailable, cancelled and timeout 503 (the server could not serve it; retrying may help).
api_error to_api_error(const error_event& e);

// The field a validation message is about, when it starts with a wire field name
// ("temperature must be in [0, 2], got 5" -> "temperature"); "" otherwise.
std::string param_of_message(std::string_view message);

// {"error":{"message":...,"type":...,"param":...|null,"code":...}}; type is
// authentication_error for 401, server_error for 5xx, invalid_request_error otherwise.
std::string openai_error_body(const api_error& e);

}  // namespace troupe::net
