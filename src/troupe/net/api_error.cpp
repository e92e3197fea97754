// api_error: engine error codes to HTTP statuses, and the OpenAI error object.
#include "troupe/net/api_error.hpp"

#include <algorithm>
#include <iterator>

#include "troupe/net/json_writer.hpp"

namespace troupe::net {
namespace {

int status_of(request_error_code code) {
  switch (code) {
    case request_error_code::invalid_request:
    case request_error_code::context_overflow: return 400;
    case request_error_code::queue_full: return 429;
    case request_error_code::internal: return 500;
    case request_error_code::replica_lost: return 502;
    case request_error_code::unavailable:
    case request_error_code::out_of_memory:
    case request_error_code::cancelled:
    case request_error_code::timeout: return 503;
  }
  return 500;
}

const char* openai_type_of(int status) {
  if (status == 401) return "authentication_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

// Every field name a request may carry on either wire, for param_of_message.
constexpr std::string_view wire_fields[] = {
    "type", "id", "prompt", "messages", "model", "max_tokens", "max_completion_tokens", "temperature",
    "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty",
    "penalty_last_n", "seed", "stop", "stop_token_ids", "logit_bias", "ignore_eos", "logprobs",
    "top_logprobs", "num_logprobs", "priority", "timeout_ms", "echo", "n", "best_of", "stream",
    "stream_options", "user", "data", "suffix", "include_usage", "max_model_len", "content", "role", "text",
    "min_tokens", "speculative", "beam_width", "length_penalty", "early_stopping", "use_beam_search", "response_format",
    "guided_json", "guided_regex", "guided_choice", "tools", "tool_choice", "parallel_tool_calls"};

}  // namespace

api_error invalid_request(std::string message, std::string param) {
  return {400, "invalid_request", std::move(message), std::move(param)};
}

api_error invalid_json(std::string message) { return {400, "invalid_json", std::move(message), {}}; }

std::string param_of_message(std::string_view message) {
  const size_t end = message.find_first_of(" [.:(");
  const std::string_view word = message.substr(0, end);
  if (word.empty() || std::find(std::begin(wire_fields), std::end(wire_fields), word) == std::end(wire_fields)) {
    return {};
  }
  return std::string(word);
}

api_error to_api_error(const error_event& e) {
  api_error out{status_of(e.code), to_string(e.code), e.message, {}};
  if (e.code == request_error_code::invalid_request) out.param = param_of_message(e.message);
  return out;
}

std::string openai_error_body(const api_error& e) {
  json_writer w;
  w.begin_object().key("error").begin_object();
  w.key("message").value(e.message);
  w.key("type").value(openai_type_of(e.status));
  w.key("param");
  if (e.param.empty()) {
    w.null();
  } else {
    w.value(e.param);
  }
  w.key("code").value(e.code);
  w.end_object().end_object();
  return w.take();
}

}  // namespace troupe::net
