// openai_protocol: the OpenAI-compatible HTTP API (docs/protocol.md): /v1/completions and
// /v1/chat/completions bodies parsed into troupe::request, and their responses written as one
// JSON object or as server-sent-event chunks; the /v1/models list.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/engine/request.hpp"
#include "troupe/engine/request_events.hpp"
#include "troupe/net/api_error.hpp"
#include "troupe/net/parse_limits.hpp"
#include "troupe/net/tool_call_parse.hpp"

namespace troupe::net {

class json_writer;

enum class openai_endpoint { completions, chat_completions };

struct openai_request {
  request req;  // req.include_usage = stream_options.include_usage; req.id is left empty
  bool stream = false;
  std::string model;
};

struct openai_parse_result {
  std::optional<openai_request> value;
  std::optional<api_error> error;
};

// Never throws. Checks like parse_ws_message; also best_of > n (not with stream),
// stream_options (only with stream), max_completion_tokens (overrides max_tokens).
openai_parse_result parse_openai_request(openai_endpoint ep, std::string_view body, const parse_limits& limits);

// One per request, used from the thread that delivers its events: builds the SSE chunks, or
// accumulates the deltas for the whole response body.
class openai_response {
 public:
  openai_response(openai_endpoint ep, std::string id, std::string model, int64_t created_unix_s,
                  const request& req);

  std::string sse_start();                      // chat: the chunk that opens the assistant message; "" for completions
  std::string sse_delta(const delta_event& d);  // "data: {...}\n\n", or "" when d carries nothing to show
  // n > 1: the chunk with one choice's finish_reason.
  std::string sse_choice_finish(const choice_done_event& d);
  // The chunk with finish_reason (one choice; with several, sse_choice_finish sent theirs),
  // the usage chunk when the client asked for it, "data: [DONE]".
  std::string sse_finish(const done_event& d);
  std::string sse_error(const api_error& e);    // the error object as a data line, then "data: [DONE]"

  void add(const delta_event& d);               // non-streaming: accumulate
  std::string body(const done_event& d) const;  // non-streaming: the whole response object

 private:
  // {"id":..., "object":..., "created":..., "model":..., "choices":[{"index":index,
  void begin_chunk(json_writer& w, int32_t index) const;
  void end_chunk(json_writer& w) const;       // ]} plus "usage":null when a usage chunk follows
  void write_completion_logprobs(json_writer& w, const std::vector<token_logprobs>& logprobs,
                                 const std::vector<int64_t>& text_offsets) const;
  void write_chat_logprobs(json_writer& w, const std::vector<token_logprobs>& logprobs) const;
  void write_head(json_writer& w, const char* object) const;
  void write_finish_chunk(json_writer& w, int32_t index, request_finish_reason reason) const;

  // One choice's output so far: completions' text_offset of its next token (bytes before
  // it), and for a non-streaming response everything add() gathered.
  struct choice_output {
    int64_t next_text_offset = 0;
    std::string text;
    std::vector<token_logprobs> logprobs;
    std::vector<int64_t> text_offsets;
    // A chat stream offering tools: everything the choice wrote, and how much of it has
    // been shown as content (the rest may be a call).
    std::string tool_text;
    size_t num_shown = 0;
  };
  // A chat stream with tools: the choice's content not shown yet, its calls as tool_calls
  // deltas, and its finish chunk ("tool_calls" when it called).
  std::string finish_with_tools(int32_t index, request_finish_reason reason);
  // A chat chunk whose delta is `text` of content.
  std::string content_chunk(int32_t index, std::string_view text) const;
  void write_tool_calls(json_writer& w, const std::vector<parsed_tool_call>& calls, bool with_index) const;
  choice_output& output(int32_t index);

  openai_endpoint endpoint_;
  std::string id_;
  std::string model_;
  int64_t created_unix_s_;
  bool wants_logprobs_;
  bool wants_usage_chunk_;
  bool offers_tools_;   // chat with tools: calls are parsed out of the answer
  bool is_forced_call_; // tool_choice required or named: the whole answer is a call
  int64_t first_text_offset_;  // where a choice's first token starts: after the echoed prompt
  std::vector<choice_output> outputs_;  // by choice index
};

// GET /v1/models: the one model served.
std::string models_list_body(std::string_view model_id, int64_t created_unix_s, int32_t max_model_len);

}  // namespace troupe::net
