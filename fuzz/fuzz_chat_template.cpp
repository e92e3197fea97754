// libFuzzer target for the chat templates: a template (one of the built-in names, or a
// template recognised from fuzzed Jinja text) renders a fuzzed conversation. Roles are
// mostly the three valid ones; contents are any bytes (invalid UTF-8, marker text, empty).
// What must hold:
//   - apply refuses (invalid_argument, nothing else) exactly when a role is unknown or a
//     family that has no system turn after the first sees one;
//   - otherwise every message's content, less the surrounding whitespace that some
//     families trim, appears in the output in order, and so does the template's default
//     system prompt when it applies;
//   - with add_generation_prompt the output ends with the family's assistant header.
// The one exception is llama.cpp's Gemma rule, kept on purpose: system text is folded into
// the next user turn, so a system message with no user turn after it is not rendered.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/model/chat_template.hpp"
#include "troupe/model/error.hpp"

namespace {

constexpr std::array<std::string_view, 13> k_names = {
    "chatml",     "llama3",     "gemma",      "llama2",            "llama2-sys",  "llama2-sys-bos",   "llama2-sys-strip",
    "mistral",    "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7",  "mistral-v7-tekken",
};

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string_view generation_prompt(troupe::chat_template_kind kind) {
  switch (kind) {
    case troupe::chat_template_kind::chatml: return "<|im_start|>assistant\n";
    case troupe::chat_template_kind::llama3: return "<|start_header_id|>assistant<|end_header_id|>\n\n";
    case troupe::chat_template_kind::gemma: return "<start_of_turn>model\n";
    default: return "";  // llama2 and mistral end a user turn with [/INST] either way
  }
}

// Finds each piece at or after the end of the previous one; the greedy earliest match never
// passes the real position, so this fails only when the pieces are not there in order.
bool contains_in_order(std::string_view text, const std::vector<std::string_view>& pieces) {
  size_t pos = 0;
  for (const std::string_view piece : pieces) {
    const size_t at = text.find(piece, pos);
    if (at == std::string_view::npos) return false;
    pos = at + piece.size();
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const size_t choice = in.ConsumeIntegralInRange<size_t>(0, k_names.size());
  const bool add_generation_prompt = in.ConsumeBool();
  std::optional<troupe::chat_template> tmpl;
  try {
    tmpl = choice < k_names.size() ? troupe::chat_template::from_name(k_names[choice])
                                   : troupe::chat_template::from_jinja(in.ConsumeRandomLengthString(256));
  } catch (const troupe::error& e) {
    if (e.code() != troupe::error_code::unsupported) std::abort();  // Jinja of no known family
    return 0;
  }

  std::vector<troupe::chat_message> messages;
  bool is_refused = false;
  while (in.remaining_bytes() > 0 && messages.size() < 16) {
    troupe::chat_message m;
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 0: m.role = "system"; break;
      case 1: m.role = "user"; break;
      case 2: m.role = "assistant"; break;
      default: m.role = in.ConsumeRandomLengthString(16); break;
    }
    m.content = in.ConsumeRandomLengthString(128);
    const bool is_system_first_only = tmpl->kind() != troupe::chat_template_kind::chatml &&
                                      tmpl->kind() != troupe::chat_template_kind::llama3;
    if (m.role != "system" && m.role != "user" && m.role != "assistant") is_refused = true;
    if (is_system_first_only && m.role == "system" && !messages.empty()) is_refused = true;
    messages.push_back(std::move(m));
  }

  std::string out;
  try {
    out = tmpl->apply(messages, add_generation_prompt);
  } catch (const troupe::error& e) {
    if (!is_refused || e.code() != troupe::error_code::invalid_argument) std::abort();
    return 0;
  }
  if (is_refused) std::abort();

  std::vector<std::string_view> expected;
  const bool is_gemma = tmpl->kind() == troupe::chat_template_kind::gemma;
  if (!tmpl->default_system_prompt().empty() && !messages.empty() && messages[0].role != "system") {
    expected.push_back(tmpl->default_system_prompt());
  }
  std::string_view held;  // Gemma's system text, waiting for the next user turn
  for (const troupe::chat_message& m : messages) {
    if (is_gemma && m.role == "system") {
      held = trimmed(m.content);
      continue;
    }
    if (is_gemma && m.role == "user" && !held.empty()) {
      expected.push_back(held);
      held = {};
    }
    expected.push_back(trimmed(m.content));
  }
  if (!contains_in_order(out, expected)) std::abort();
  if (add_generation_prompt && !std::string_view(out).ends_with(generation_prompt(tmpl->kind()))) std::abort();
  return 0;
}
