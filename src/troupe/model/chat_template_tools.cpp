// chat_template::apply_with_tools: conversations with tool definitions, calls and results.
#include <sstream>

#include "troupe/model/chat_template.hpp"
#include "troupe/model/error.hpp"

namespace troupe {
namespace {

[[noreturn]] void reject(const std::string& message) { throw error(error_code::invalid_argument, message); }

void append_json_string(std::ostringstream& ss, std::string_view text) {
  ss << '"';
  for (const char c : text) {
    switch (c) {
      case '"': ss << "\\\""; break;
      case '\\': ss << "\\\\"; break;
      case '\n': ss << "\\n"; break;
      case '\r': ss << "\\r"; break;
      case '\t': ss << "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static const char* hex = "0123456789abcdef";
          ss << "\\u00" << hex[(c >> 4) & 0xf] << hex[c & 0xf];
        } else {
          ss << c;
        }
    }
  }
  ss << '"';
}

// JSON text re-spaced as the chat templates' tojson writes it (Python's json.dumps): no
// whitespace but ", " after a comma and ": " after a colon outside strings.
std::string template_json(std::string_view json) {
  std::string out;
  out.reserve(json.size() + json.size() / 8);
  bool in_string = false;
  bool is_escaped = false;
  for (const char c : json) {
    if (in_string) {
      out += c;
      if (is_escaped) {
        is_escaped = false;
      } else if (c == '\\') {
        is_escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    out += c;
    if (c == '"') in_string = true;
    if (c == ',' || c == ':') out += ' ';
  }
  return out;
}

// {"type": "function", "function": {"name": ..., "description": ..., "parameters": ...}}
void write_tool(std::ostringstream& ss, const tool_definition& t) {
  ss << R"({"type": "function", "function": {"name": )";
  append_json_string(ss, t.name);
  if (!t.description.empty()) {
    ss << R"(, "description": )";
    append_json_string(ss, t.description);
  }
  ss << R"(, "parameters": )" << template_json(t.parameters.empty() ? "{}" : t.parameters) << "}}";
}

// {"name": ..., "<arguments_key>": ...}
void write_call(std::ostringstream& ss, const tool_call& c, std::string_view arguments_key) {
  ss << R"({"name": )";
  append_json_string(ss, c.name);
  ss << ", \"" << arguments_key << "\": " << template_json(c.arguments.empty() ? "{}" : c.arguments) << "}";
}

void check_tool_roles(std::span<const chat_message> messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (m.role != "system" && m.role != "user" && m.role != "assistant" && m.role != "tool") {
      reject("chat message " + std::to_string(i) + " has role \"" + m.role +
             "\"; allowed roles are system, user, assistant and tool");
    }
    if (!m.tool_calls.empty() && m.role != "assistant") {
      reject("chat message " + std::to_string(i) + " has tool_calls but role \"" + m.role + "\" (only assistant)");
    }
  }
}

std::string chatml_with_tools(std::span<const chat_message> messages, std::span<const tool_definition> tools,
                              const std::string& default_system, bool add_generation_prompt) {
  std::ostringstream ss;
  size_t first = 0;
  std::string system = default_system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  if (!tools.empty()) {
    ss << "<|im_start|>system\n";
    if (!system.empty()) ss << system << "\n\n";
    ss << "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
          "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
    for (const auto& t : tools) {
      ss << "\n";
      write_tool(ss, t);
    }
    ss << "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
          "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
          "<args-json-object>}\n</tool_call><|im_end|>\n";
  } else if (!system.empty()) {
    ss << "<|im_start|>system\n" << system << "<|im_end|>\n";
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    if (m.role == "tool") {
      // Consecutive results share one user turn.
      const bool opens = i == first || messages[i - 1].role != "tool";
      const bool closes = i + 1 == messages.size() || messages[i + 1].role != "tool";
      if (opens) ss << "<|im_start|>user";
      ss << "\n<tool_response>\n" << m.content << "\n</tool_response>";
      if (closes) ss << "<|im_end|>\n";
      continue;
    }
    ss << "<|im_start|>" << m.role << "\n" << m.content;
    for (size_t k = 0; k < m.tool_calls.size(); ++k) {
      if (k > 0 || !m.content.empty()) ss << "\n";
      ss << "<tool_call>\n";
      write_call(ss, m.tool_calls[k], "arguments");
      ss << "\n</tool_call>";
    }
    ss << "<|im_end|>\n";
  }
  if (add_generation_prompt) ss << "<|im_start|>assistant\n";
  return ss.str();
}

std::string llama3_with_tools(std::span<const chat_message> messages, std::span<const tool_definition> tools,
                              bool add_generation_prompt) {
  std::ostringstream ss;
  size_t first = 0;
  ss << "<|start_header_id|>system<|end_header_id|>\n\n";
  if (!tools.empty()) ss << "Environment: ipython\n";
  if (!messages.empty() && messages[0].role == "system") {
    ss << (tools.empty() ? "" : "\n") << messages[0].content;
    first = 1;
  }
  ss << "<|eot_id|>";
  bool tools_written = tools.empty();
  for (size_t i = first; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    const std::string role = m.role == "tool" ? "ipython" : m.role;
    ss << "<|start_header_id|>" << role << "<|end_header_id|>\n\n";
    if (m.role == "user" && !tools_written) {
      ss << "Given the following functions, please respond with a JSON for a function call with its proper "
            "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, "
            "\"parameters\": dictionary of argument name and its value}. Do not use variables.\n\n";
      for (const auto& t : tools) {
        write_tool(ss, t);
        ss << "\n\n";
      }
      tools_written = true;
    }
    ss << m.content;
    for (const tool_call& c : m.tool_calls) write_call(ss, c, "parameters");
    ss << "<|eot_id|>";
  }
  if (add_generation_prompt) ss << "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return ss.str();
}

}  // namespace

std::string chat_template::apply_with_tools(std::span<const chat_message> messages,
                                            std::span<const tool_definition> tools, bool add_generation_prompt) const {
  check_tool_roles(messages);
  switch (kind_) {
    case chat_template_kind::chatml: return chatml_with_tools(messages, tools, default_system_, add_generation_prompt);
    case chat_template_kind::llama3: return llama3_with_tools(messages, tools, add_generation_prompt);
    default:
      throw error(error_code::unsupported, std::string("tools need a ChatML or llama-3 chat template; this model's is ") +
                                               std::string(to_string(kind_)));
  }
}

}  // namespace troupe
