// Chat templates: renders a conversation into the prompt text the model was trained on.
// The family is recognised from tokenizer.chat_template in the GGUF (ChatML, llama-3,
// llama-2/mistral, gemma, ...); troupe renders each family natively, without a Jinja engine.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/gguf.hpp"

namespace troupe {

struct chat_message {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

enum class chat_template_kind { chatml, llama3, llama2, mistral, gemma };

std::string_view to_string(chat_template_kind kind);

class chat_template {
 public:
  // From tokenizer.chat_template (ChatML when the model has none).
  static chat_template from_gguf(const gguf::file& file);
  // By name: "chatml", "llama3", "llama2", "mistral", "gemma". Throws invalid_argument.
  static chat_template from_name(std::string_view name);
  // Recognises the family of a Jinja template text; a ChatML template's built-in default
  // system prompt (used when the conversation has none) is kept.
  static chat_template from_jinja(std::string_view jinja);

  // Throws troupe::error(invalid_argument) for an unknown role or a conversation the
  // family cannot express (e.g. a system message after the first turn in gemma).
  std::string apply(std::span<const chat_message> messages, bool add_generation_prompt) const;

  chat_template_kind kind() const { return kind_; }
  const std::string& default_system_prompt() const { return default_system_; }
  // Strings that end an assistant turn in this family (besides the EOG tokens).
  std::vector<std::string> stop_strings() const;

 private:
  chat_template_kind kind_ = chat_template_kind::chatml;
  std::string default_system_;
};

}  // namespace troupe
