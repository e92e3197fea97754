// tool_call_parse: the calls a chat model wrote in its answer, as OpenAI's tool_calls.
// Recognised: Hermes / Qwen2.5 blocks `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
// (several in one answer; a last block the model ended without its closing tag counts),
// and an answer that is one JSON object {"name": ..., "arguments" | "parameters": {...}}
// (llama-3.x's format, and what tool_choice required or named constrains the output to).
// A block whose JSON does not read as a call stays text.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::net {

struct parsed_tool_call {
  std::string name;
  std::string arguments;  // the arguments object, as compact JSON text
};

struct parsed_answer {
  std::string content;  // the text outside the calls
  std::vector<parsed_tool_call> calls;
};

parsed_answer parse_tool_calls(std::string_view text);

// How much of a streamed answer may be shown before it is known not to be a call: the text
// before a "<tool_call>" (or before what may be the start of one at the end), and nothing
// when the answer opens with '{' (it may be a call in JSON).
size_t showable_prefix(std::string_view text);

// A fresh id for a call: "call_" and 24 hex digits.
std::string new_tool_call_id();

}  // namespace troupe::net
