// request::validate: each field against what the engine and the OpenAI API accept, with a
// message that names the field, what is allowed and what was received.
#include "troupe/engine/request.hpp"

#include <algorithm>

#include "troupe/engine/beam_search.hpp"

#include "troupe/model/error.hpp"
#include "troupe/model/unicode.hpp"

namespace troupe {
namespace {

[[noreturn]] void reject(const std::string& message) { throw error(error_code::invalid_argument, message); }

std::string indexed(const char* field, size_t i) {
  return std::string(field).append("[").append(std::to_string(i)).append("]");
}

void check_id(const std::string& id) {
  if (id.empty()) reject("id must not be empty");
  if (id.size() > max_request_id_bytes) {
    reject("id must be at most " + std::to_string(max_request_id_bytes) + " bytes, got " +
           std::to_string(id.size()));
  }
}

void check_input(const request& r, int32_t vocab_size) {
  const int num_inputs = int(!r.prompt.empty()) + int(!r.prompt_token_ids.empty()) + int(!r.messages.empty());
  if (num_inputs == 0) reject("prompt must not be empty (or give messages instead)");
  if (num_inputs > 1) reject("prompt and messages: give one of them, not both");
  for (size_t i = 0; i < r.prompt_token_ids.size(); ++i) {
    const int32_t id = r.prompt_token_ids[i];
    if (id < 0 || id >= vocab_size) {
      reject(indexed("prompt", i) + " must be a token id in [0, " + std::to_string(vocab_size) + "), got " +
             std::to_string(id));
    }
  }
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const std::string& role = r.messages[i].role;
    if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
      reject(indexed("messages", i) + ".role must be system, user, assistant or tool, got \"" + role + "\"");
    }
    if (!r.messages[i].tool_calls.empty() && role != "assistant") {
      reject(indexed("messages", i) + ".tool_calls is only for assistant messages");
    }
  }
  if (!r.tools.empty() && !r.is_chat()) reject("tools need messages (a chat), not a prompt");
  for (size_t i = 0; i < r.tools.size(); ++i) {
    if (r.tools[i].name.empty()) reject(indexed("tools", i) + ".function.name must not be empty");
    for (size_t k = 0; k < i; ++k) {
      if (r.tools[k].name == r.tools[i].name) reject("tools: the function name \"" + r.tools[i].name + "\" is given twice");
    }
  }
  const auto& choice = r.tool_use;
  if ((choice.mode == tool_choice_mode::required || choice.mode == tool_choice_mode::named) && r.tools.empty()) {
    reject("tool_choice asks for a tool call, but no tools are given");
  }
  if (choice.mode == tool_choice_mode::named &&
      std::none_of(r.tools.begin(), r.tools.end(), [&](const tool_definition& t) { return t.name == choice.name; })) {
    reject("tool_choice names the function \"" + choice.name + "\", which tools does not have");
  }
  if (r.echo && r.is_chat()) reject("echo is only for prompt (completion) requests, not messages");
  if (r.echo && !r.prompt_token_ids.empty()) reject("echo needs a text prompt, not token ids");
}

void check_stop_strings(const std::vector<std::string>& stop) {
  if (stop.size() > max_num_stop_strings) {
    reject("stop must have at most " + std::to_string(max_num_stop_strings) + " strings, got " +
           std::to_string(stop.size()));
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty()) reject(indexed("stop", i) + " must not be empty");
    if (stop[i].size() > max_stop_string_bytes) {
      reject(indexed("stop", i) + " must be at most " + std::to_string(max_stop_string_bytes) + " bytes, got " +
             std::to_string(stop[i].size()));
    }
    if (unicode::sanitize_utf8(stop[i]) != stop[i]) reject(indexed("stop", i) + " must be valid UTF-8");
  }
}

}  // namespace

void request::validate(int32_t vocab_size, int32_t max_model_len) const {
  check_id(id);
  check_input(*this, vocab_size);
  check_stop_strings(stop);
  if (priority < min_request_priority || priority > max_request_priority) {
    reject("priority must be in [" + std::to_string(min_request_priority) + ", " +
           std::to_string(max_request_priority) + "] (lower runs first), got " + std::to_string(priority));
  }
  if (timeout_ms < 0 || timeout_ms > max_timeout_ms) {
    reject("timeout_ms must be in [0, " + std::to_string(max_timeout_ms) + "] (0 = none), got " +
           std::to_string(timeout_ms));
  }
  if (n < 1 || n > max_num_choices) {
    reject("n must be in [1, " + std::to_string(max_num_choices) + "], got " + std::to_string(n));
  }
  if (best_of != 0 && (best_of < n || best_of > max_num_choices)) {
    reject("best_of must be in [n, " + std::to_string(max_num_choices) + "] (n = " + std::to_string(n) + "), got " +
           std::to_string(best_of));
  }
  if (beam_width < 0 || beam_width > max_beam_width) {
    reject("beam_width must be in [0, " + std::to_string(max_beam_width) + "] (0 = no beam search), got " +
           std::to_string(beam_width));
  }
  if (beam_width > 0) {
    if (n > beam_width) {
      reject("n must be at most beam_width (" + std::to_string(beam_width) + ") with beam search, got " + std::to_string(n));
    }
    if (best_of != 0 && best_of != beam_width) {
      reject("best_of must be unset or equal to beam_width with beam search, got " + std::to_string(best_of));
    }
    if (params.num_logprobs > 0) {
      reject("top_logprobs (num_logprobs) must be 0 with beam search: a beam's tokens carry their own logprob only");
    }
  }
  const bool constrains_calls =
      tool_use.mode == tool_choice_mode::required || tool_use.mode == tool_choice_mode::named;
  if (constrains_calls && guided) reject("tool_choice required or a named function cannot be combined with response_format or guided_*");
  if (constrains_calls && beam_width > 0) reject("beam_width cannot be combined with tool_choice required or a named function");
  if (guided && beam_width > 0) reject("beam_width cannot be combined with structured output (response_format, guided_*)");
  if (!(length_penalty >= -10.0f && length_penalty <= 10.0f)) {
    reject("length_penalty must be in [-10, 10], got " + std::to_string(length_penalty));
  }
  params.validate(vocab_size);
  // A max_tokens beyond what fits beside the prompt is not refused (the default may exceed a
  // small model's context): the output then ends by length at max_model_len, as in llama.cpp.
  // One past the whole context can only be a mistake.
  if (params.max_tokens > max_model_len) {
    reject("max_tokens must be in [1, " + std::to_string(max_model_len) + "] (max_model_len), got " +
           std::to_string(params.max_tokens));
  }
  if (params.num_logprobs > 0 && !logprobs) {
    reject("num_logprobs (top_logprobs) is " + std::to_string(params.num_logprobs) +
           " but logprobs is off; set logprobs to get alternatives");
  }
}

}  // namespace troupe
