// ws_protocol: the WebSocket wire (docs/protocol.md): client frames parsed into messages, and
// the server's frames (accepted, delta, choice_done, done, error, pong) written as JSON text.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "troupe/engine/request.hpp"
#include "troupe/engine/request_events.hpp"
#include "troupe/net/api_error.hpp"
#include "troupe/net/parse_limits.hpp"

namespace troupe::net {

struct ws_generate {
  request req;  // req.id = the client's id
};

struct ws_cancel {
  std::string id;
};

struct ws_ping {
  std::string data_json;  // the JSON of "data", re-serialized; "" when absent
};

using ws_client_message = std::variant<ws_generate, ws_cancel, ws_ping>;

struct ws_parse_result {
  std::optional<ws_client_message> message;  // set on success
  std::optional<api_error> error;            // set on failure
  std::string id;                            // the frame's id when it could be read
};

// Never throws. A generate is checked with request::validate(limits.vocab_size,
// limits.max_model_len); unknown fields, wrong types and duplicate keys are refused.
ws_parse_result parse_ws_message(std::string_view frame, const parse_limits& limits);

// Any thread may call these; each returns one complete text frame.
std::string ws_accepted(std::string_view id);
// server_ms: unix epoch milliseconds when the server took the event from the engine.
std::string ws_delta(std::string_view id, const delta_event& d, double server_ms);
// n > 1: one choice ended (its deltas carry the same index); the request's done follows the last.
std::string ws_choice_done(std::string_view id, const choice_done_event& d);
std::string ws_done(std::string_view id, const done_event& d, std::string_view detail = {});
std::string ws_error(std::string_view id, const api_error& e);  // an empty id is written as null
std::string ws_pong(std::string_view data_json);                 // data_json as parsed from the ping

}  // namespace troupe::net
