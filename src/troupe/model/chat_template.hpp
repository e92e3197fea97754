// Chat templates: renders a conversation into the prompt text the model was trained on.
// The family is recognised from tokenizer.chat_template in the GGUF (ChatML, llama-3,
// llama-2/mistral, gemma, ...); troupe renders each family natively, without a Jinja engine.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/model/gguf.hpp"

namespace troupe {

// A function call the assistant made (OpenAI's tool_calls entry).
struct tool_call {
  std::string id;         // the call's id, echoed by the tool message that answers it
  std::string name;
  std::string arguments;  // a JSON object, as text
  bool operator==(const tool_call&) const = default;
};

struct chat_message {
  std::string role;     // "system", "user", "assistant", or "tool" (a function's result)
  std::string content;
  std::vector<tool_call> tool_calls;  // assistant: the calls it made
  std::string tool_call_id;           // tool: the call this answers
  bool operator==(const chat_message&) const = default;
};

// A function the model may call (OpenAI's tools entry of type "function").
struct tool_definition {
  std::string name;
  std::string description;
  std::string parameters = "{}";  // its arguments' JSON Schema, as text
  bool operator==(const tool_definition&) const = default;
};

enum class chat_template_kind { chatml, llama3, llama2, mistral, gemma };

std::string_view to_string(chat_template_kind kind);

class chat_template {
 public:
  // From tokenizer.chat_template (ChatML when the model has none; see from_jinja).
  static chat_template from_gguf(const gguf::file& file);
  // By name: "chatml", "llama3", "llama2", "mistral", "gemma", or one of llama.cpp's
  // variant names ("llama2-sys", "llama2-sys-bos", "llama2-sys-strip", "mistral-v1",
  // "mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken"). "llama2" is
  // llama.cpp's llama2 (system text folded into the first [INST] without <<SYS>>);
  // "mistral" is mistral-v3. Throws invalid_argument.
  static chat_template from_name(std::string_view name);
  // Recognises the family of a Jinja template text with llama.cpp's rules: "<|im_start|>"
  // ChatML, "<|start_header_id|>" llama3, "[SYSTEM_PROMPT]" or Mistral's official markers
  // mistral, any other "[INST]" llama2 (with <<SYS>> support when the template has it),
  // "<start_of_turn>" gemma. A ChatML template's built-in default system prompt (used when
  // the conversation does not start with a system message) is kept. Throws unsupported for
  // a template of no known family.
  static chat_template from_jinja(std::string_view jinja);

  // Throws troupe::error(invalid_argument) for an unknown role or a conversation the
  // family cannot express (e.g. a system message after the first turn in gemma).
  std::string apply(std::span<const chat_message> messages, bool add_generation_prompt) const;
  // Tool use: the tools listed where the family's models expect them, assistant calls and
  // tool results in the family's format. ChatML (Qwen2.5, Hermes-style models): the tools
  // as JSON lines in <tools></tools> in the system turn, each call a {"name", "arguments"}
  // object inside <tool_call></tool_call>, results inside <tool_response></tool_response>
  // in a user turn. llama-3.x: the tools as JSON in the first user turn with the
  // instruction to answer with {"name", "parameters"}, results in an ipython turn. Throws
  // unsupported for the other families.
  std::string apply_with_tools(std::span<const chat_message> messages, std::span<const tool_definition> tools,
                               bool add_generation_prompt) const;

  chat_template_kind kind() const { return kind_; }
  const std::string& default_system_prompt() const { return default_system_; }
  // Strings that end an assistant turn in this family (besides the EOG tokens).
  std::vector<std::string> stop_strings() const;

 private:
  // llama.cpp's variant within a family (spacing, <<SYS>> support, trimming).
  enum class variant : uint8_t {
    chatml, llama3, gemma, llama2, llama2_sys, llama2_sys_bos, llama2_sys_strip,
    mistral_v1, mistral_v3, mistral_v3_tekken, mistral_v7, mistral_v7_tekken,
  };

  chat_template_kind kind_ = chat_template_kind::chatml;
  variant variant_ = variant::chatml;
  std::string default_system_;
};

}  // namespace troupe
