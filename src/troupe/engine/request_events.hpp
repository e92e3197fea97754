// The events a request's sink receives, in order: accepted, then deltas, then exactly one of
// done or error. A request with several choices (n > 1) interleaves its choices' deltas (each
// carries its choice's index) and ends each choice with a choice_done before the one done. Plain values; the wire codecs (WebSocket, SSE) and the embedding API map them.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "troupe/model/error.hpp"

namespace troupe {

// OpenAI's finish_reason, plus cancelled / error / timeout for requests that did not run out.
enum class request_finish_reason { stop, length, cancelled, error, timeout };

enum class request_error_code {
  invalid_request,   // HTTP 400: a field out of range, a malformed message
  queue_full,        // HTTP 429: the waiting room is at max_queue_len
  context_overflow,  // HTTP 400: the prompt does not fit max_model_len or the KV pool
  cancelled,         // the client cancelled before any output
  timeout,           // the deadline passed before any output
  internal,          // HTTP 500: a bug or a worker failure
  unavailable,       // HTTP 503: not ready, draining, or the engine stopped
  out_of_memory,     // HTTP 503: the backend ran out of memory for a step
  replica_lost,      // HTTP 502: the replica running the request (troupe serve --replica) was lost
};

inline const char* to_string(request_finish_reason reason) {
  switch (reason) {
    case request_finish_reason::stop: return "stop";
    case request_finish_reason::length: return "length";
    case request_finish_reason::cancelled: return "cancelled";
    case request_finish_reason::error: return "error";
    case request_finish_reason::timeout: return "timeout";
  }
  return "unknown";
}

inline const char* to_string(request_error_code code) {
  switch (code) {
    case request_error_code::invalid_request: return "invalid_request";
    case request_error_code::queue_full: return "queue_full";
    case request_error_code::context_overflow: return "context_overflow";
    case request_error_code::cancelled: return "cancelled";
    case request_error_code::timeout: return "timeout";
    case request_error_code::internal: return "internal";
    case request_error_code::unavailable: return "unavailable";
    case request_error_code::out_of_memory: return "out_of_memory";
    case request_error_code::replica_lost: return "replica_lost";
  }
  return "unknown";
}

// One candidate token with its text, so that the wire codecs need no tokenizer.
struct logprob_entry {
  int32_t token = -1;
  std::string text;       // the token's bytes; may be part of a UTF-8 character
  float logprob = 0.0f;
  bool operator==(const logprob_entry&) const = default;
};

struct token_logprobs {
  logprob_entry sampled;
  std::vector<logprob_entry> top;  // the num_logprobs most likely, most likely first
  bool operator==(const token_logprobs&) const = default;
};

struct accepted_event {
  std::string request_id;
  bool operator==(const accepted_event&) const = default;
};

// Text and tokens since the previous delta. Text may be empty while bytes are held back
// (half a UTF-8 character, or what could be the start of a stop string).
struct delta_event {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<token_logprobs> logprobs;  // one per token id when the request asked, else empty
  int32_t index = 0;                     // the choice (0 unless the request asked for n > 1)

  bool is_empty() const { return text.empty() && token_ids.empty(); }
  bool operator==(const delta_event&) const = default;
};

struct request_usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // prompt tokens whose KV came from the prefix cache

  int32_t total_tokens() const { return prompt_tokens + completion_tokens; }
  bool operator==(const request_usage&) const = default;
};

struct request_timings {
  double queue_ms = 0.0;                // queued until first scheduled (or until it ended, if never)
  double time_to_first_token_ms = 0.0;  // arrival to first output token; 0 without output
  double per_output_token_ms = 0.0;     // mean gap between output tokens; 0 with fewer than two
  double total_ms = 0.0;                // arrival to finish
  // Speculative decoding: tokens proposed for this request, and how many of them the
  // model accepted (each accepted one is an output token that cost no step of its own).
  int32_t num_draft_tokens = 0;
  int32_t num_accepted_tokens = 0;
  bool operator==(const request_timings&) const = default;
};

// The end of one choice of a request with n > 1 (or best_of > 1): how it finished, its
// output tokens and their summed log-probability (the best_of ranking).
struct choice_done_event {
  int32_t index = 0;
  request_finish_reason reason = request_finish_reason::stop;
  std::optional<std::string> stop_string;
  std::optional<int32_t> stop_token;
  int32_t completion_tokens = 0;
  double cumulative_logprob = 0.0;
  bool operator==(const choice_done_event&) const = default;
};

// The request's end. With several choices: reason, stop_string and stop_token are choice
// 0's, usage counts the prompt once and every generated token (best_of's discarded choices
// too, as OpenAI bills them), the timings span all choices, and choices repeats each
// returned choice's end in index order. With one choice, choices is empty.
struct done_event {
  request_finish_reason reason = request_finish_reason::stop;
  std::optional<std::string> stop_string;  // the stop string that ended the output
  std::optional<int32_t> stop_token;       // or the end-of-generation / stop token id
  request_usage usage;
  request_timings timings;
  std::vector<choice_done_event> choices;
  bool operator==(const done_event&) const = default;
};

struct error_event {
  request_error_code code = request_error_code::internal;
  std::string message;
  bool operator==(const error_event&) const = default;
};

using request_event = std::variant<accepted_event, delta_event, done_event, error_event, choice_done_event>;

// The event for a troupe::error thrown while serving a request.
// What a client is told for each troupe::error_code: its own mistakes are invalid_request,
// a bad plan or a model problem is troupe's (internal), memory and a stuck worker (its
// step past the watchdog's deadline) are unavailable for now.
inline request_error_code request_code_of(error_code code) {
  switch (code) {
    case error_code::invalid_argument:
    case error_code::unsupported: return request_error_code::invalid_request;
    case error_code::context_overflow: return request_error_code::context_overflow;
    case error_code::out_of_memory: return request_error_code::out_of_memory;
    case error_code::step_timeout: return request_error_code::unavailable;
    case error_code::bad_plan:
    case error_code::invalid_model:
    case error_code::io_error:
    case error_code::internal: break;
  }
  return request_error_code::internal;
}

inline error_event to_error_event(const error& e) { return {request_code_of(e.code()), e.what()}; }

// Where a request's events go. Called from actor threads, one event at a time per request:
// an implementation that touches other threads' state posts the event there. Declared
// here, free of CAF, so that the front door can implement it without the actor headers.
class event_sink {
 public:
  virtual ~event_sink() = default;
  virtual void on_event(const std::string& request_id, const request_event& event) = 0;
};
using event_sink_ptr = std::shared_ptr<event_sink>;

}  // namespace troupe
