// One generation request as a client states it (a prompt or a chat, sampling, priority,
// stop strings, deadline) and its validation against the model, before any work is done.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "troupe/engine/proposer.hpp"
#include "troupe/grammar/compile.hpp"
#include "troupe/model/chat_template.hpp"
#include "troupe/model/sampling_params.hpp"

namespace troupe {

inline constexpr int32_t min_request_priority = -1000;
inline constexpr int32_t max_request_priority = 1000;
inline constexpr size_t max_num_stop_strings = 16;
inline constexpr size_t max_stop_string_bytes = 256;  // bounds the text a request holds back
inline constexpr size_t max_request_id_bytes = 256;   // echoed in every event on the wire
inline constexpr int64_t max_timeout_ms = 24LL * 60 * 60 * 1000;
inline constexpr int32_t max_num_choices = 32;  // n and best_of

// OpenAI's tool_choice: auto (the model decides), none (no tool is offered), required (a
// call to some tool), or a named function. required and named constrain the output to a
// call with valid arguments (a grammar from the tools' parameter schemas).
enum class tool_choice_mode { automatic, none, required, named };

struct tool_choice {
  tool_choice_mode mode = tool_choice_mode::automatic;
  std::string name;  // named
  bool operator==(const tool_choice&) const = default;
};

struct request {
  std::string id;                      // client-chosen; the WebSocket multiplexes on it
  std::string prompt;                  // a raw completion prompt, or
  std::vector<int32_t> prompt_token_ids;  // one as token ids, fed as given (no BOS added), or
  std::vector<chat_message> messages;  // a chat conversation: exactly one of the three is given
  sampling_params params;              // max_tokens caps the output; so does max_model_len
  int32_t priority = 0;                // lower runs first, in [min_request_priority, max_request_priority]
  std::vector<std::string> stop;       // stop strings; the matched one is not emitted
  int64_t timeout_ms = 0;              // deadline counted from arrival; 0 = none
  bool logprobs = false;               // return each token's logprob (and params.num_logprobs alternatives)
  bool echo = false;                   // completions only: the prompt text precedes the output
  bool include_usage = false;          // streaming: the client asked for usage in the stream
  std::optional<speculative_method> speculative;  // speculative decoding; none: the server's choice
  // Parallel sampling: n choices returned, from best_of sampled (0: n) of which the n with
  // the highest summed log-probability are kept. The prompt is prefilled once and shared.
  int32_t n = 1;
  int32_t best_of = 0;
  // Beam search instead of sampling: width w (0 = off), the n best of its hypotheses
  // returned at the end (beams are not final until then), length_penalty and
  // early_stopping as in beam_search_params.
  int32_t beam_width = 0;
  float length_penalty = 1.0f;
  bool early_stopping = false;
  // Structured output: the grammar the output must follow (response_format json_object or
  // json_schema, guided_json, guided_regex, guided_choice); compiled when the request starts.
  // Tool use (chat only): the functions the model may call, and how it may.
  std::vector<tool_definition> tools;
  tool_choice tool_use;
  std::optional<grammar_spec> guided;
  std::string guided_field;  // the field it came in, for messages ("response_format", "guided_json", ...)

  bool operator==(const request&) const = default;
  bool is_chat() const { return !messages.empty(); }
  // Tools are offered to the model (listed in its prompt, calls parsed from its output).
  bool offers_tools() const { return !tools.empty() && tool_use.mode != tool_choice_mode::none; }
  // The sequences the request runs at most: its choices, best_of's candidates, or its beams.
  int32_t num_sequences() const {
    const int32_t sampled = best_of > n ? best_of : n;
    return beam_width > sampled ? beam_width : sampled;
  }

  // Throws troupe::error(invalid_argument) with a message naming the first field at fault
  // and what is allowed. Checks what can be checked before tokenizing; prompt length
  // against max_model_len is checked by prompt_tokens (request_state.hpp).
  void validate(int32_t vocab_size, int32_t max_model_len) const;
};

}  // namespace troupe
