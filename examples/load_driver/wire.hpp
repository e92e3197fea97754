// The driver's side of troupe's wire protocols (docs in the project's protocol notes):
// request bodies for the WebSocket and for OpenAI-compatible HTTP, and decoding of what
// comes back (WebSocket frames; Server-Sent Events and their JSON chunks). Pure functions,
// no I/O, so tests can feed them bytes.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plan.hpp"
#include "workload.hpp"

namespace troupe::load {

// {"type":"generate","id":...} for request r. Fields the workload does not set (priority)
// are left out; the workload's sampling block is copied in.
std::string ws_generate_frame(const request_spec& r, const workload& w);
std::string ws_cancel_frame(const std::string& id);

// The body for POST /v1/completions (or /v1/chat/completions when w.api is chat), with
// stream:true and stream_options.include_usage.
std::string http_request_body(const request_spec& r, const workload& w, const std::string& model);
std::string http_target_path(const workload& w);  // "/completions" or "/chat/completions"

// Usage as the server reported it.
struct usage_counts {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// One WebSocket frame from the server.
struct ws_event {
  enum class kind { accepted, delta, done, error, pong, unknown };
  kind type = kind::unknown;
  std::string id;                       // empty when the frame's id is null or missing
  std::string text;                     // delta
  int64_t num_tokens = 0;               // delta: size of "tokens" (1 when absent)
  std::optional<double> server_ms;      // delta
  std::string finish_reason;            // done
  std::optional<usage_counts> usage;    // done
  std::string code;                     // error
  std::string message;                  // error (or done's detail)
};

// Throws std::runtime_error when the frame is not a JSON object with a string "type".
ws_event decode_ws_frame(std::string_view frame);

// Splits a Server-Sent Events byte stream into the data payloads of its events. Bytes may
// arrive cut anywhere; an event ends at a blank line; "data:" lines of one event are
// joined with "\n"; comments and other fields are dropped.
class sse_splitter {
 public:
  std::vector<std::string> feed(std::string_view bytes);

 private:
  void take_line(std::string_view line, std::vector<std::string>& out);
  std::string pending_;   // bytes after the last complete line
  std::string data_;      // data of the event being read
  bool has_data_ = false;
};

// One decoded SSE payload of an OpenAI-compatible stream.
struct sse_chunk {
  bool is_done_marker = false;         // "data: [DONE]"
  std::string text;                    // choices[0].text or choices[0].delta.content
  std::string finish_reason;           // choices[0].finish_reason when not null
  std::optional<usage_counts> usage;
  std::optional<std::string> error;    // {"error": {...}} in the stream
};

// Throws std::runtime_error when the payload is not JSON.
sse_chunk decode_sse_chunk(std::string_view payload);

// The message of an OpenAI error body ({"error":{"message":...}}); the body itself, cut
// to 200 bytes, when it has none.
std::string error_body_message(std::string_view body);

}  // namespace troupe::load
