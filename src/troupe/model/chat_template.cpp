// Chat template families rendered natively, following llama.cpp's llm_chat_apply_template
// for each variant; ChatML additionally honours a template's built-in default system prompt
// the way the model's own Jinja template does.
#include "troupe/model/chat_template.hpp"

#include <array>
#include <cctype>
#include <sstream>

#include "troupe/model/error.hpp"

namespace troupe {
namespace {

bool contains(std::string_view text, std::string_view needle) { return text.find(needle) != std::string_view::npos; }

std::string trim(std::string_view s) {
  size_t begin = 0, end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return std::string(s.substr(begin, end - begin));
}

[[noreturn]] void reject(const std::string& message) { throw error(error_code::invalid_argument, message); }

void check_roles(std::span<const chat_message> messages, bool is_system_first_only, std::string_view family) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      reject("chat message " + std::to_string(i) + " has role \"" + role +
             "\"; allowed roles are system, user and assistant");
    }
    if (is_system_first_only && role == "system" && i != 0) {
      reject("chat message " + std::to_string(i) + " is a system message after the first turn, which the " +
             std::string(family) + " template cannot express");
    }
  }
}

// The literal system text a ChatML Jinja template emits when messages[0] is not a system
// message: the first "<|im_start|>system\n...<|im_end|>" whose body is plain text (no
// quotes or Jinja expressions), found only in templates that test for a missing system turn.
std::string find_default_system(std::string_view jinja) {
  if (!contains(jinja, "!= 'system'") && !contains(jinja, "!= \"system\"") && !contains(jinja, "else")) return {};
  for (const std::string_view open : {std::string_view("<|im_start|>system\n"), std::string_view("<|im_start|>system\\n")}) {
    for (size_t pos = jinja.find(open); pos != std::string_view::npos; pos = jinja.find(open, pos + 1)) {
      const size_t begin = pos + open.size();
      const size_t end = jinja.find("<|im_end|>", begin);
      if (end == std::string_view::npos) break;
      const std::string_view body = jinja.substr(begin, end - begin);
      if (body.empty() || body.find_first_of("'\"") != std::string_view::npos || contains(body, "{{") ||
          contains(body, "{%")) {
        continue;
      }
      std::string text;
      for (size_t i = 0; i < body.size(); ++i) {  // the escaped form spells newlines as \n
        if (open.back() == 'n' && open[open.size() - 2] == '\\' && body[i] == '\\' && i + 1 < body.size() &&
            body[i + 1] == 'n') {
          text += '\n';
          ++i;
        } else {
          text += body[i];
        }
      }
      return text;
    }
  }
  return {};
}

}  // namespace

std::string_view to_string(chat_template_kind kind) {
  switch (kind) {
    case chat_template_kind::chatml: return "chatml";
    case chat_template_kind::llama3: return "llama3";
    case chat_template_kind::llama2: return "llama2";
    case chat_template_kind::mistral: return "mistral";
    case chat_template_kind::gemma: return "gemma";
  }
  return "unknown";
}

chat_template chat_template::from_gguf(const gguf::file& file) {
  const std::optional<std::string> jinja = file.get_string("tokenizer.chat_template");
  if (!jinja) return from_name("chatml");
  return from_jinja(*jinja);
}

chat_template chat_template::from_name(std::string_view name) {
  using k = chat_template_kind;
  struct entry {
    std::string_view name;
    chat_template_kind kind;
    variant v;
  };
  static constexpr std::array k_entries = {
      entry{"chatml", k::chatml, variant::chatml},
      entry{"llama3", k::llama3, variant::llama3},
      entry{"gemma", k::gemma, variant::gemma},
      entry{"llama2", k::llama2, variant::llama2},
      entry{"llama2-sys", k::llama2, variant::llama2_sys},
      entry{"llama2-sys-bos", k::llama2, variant::llama2_sys_bos},
      entry{"llama2-sys-strip", k::llama2, variant::llama2_sys_strip},
      entry{"mistral", k::mistral, variant::mistral_v3},
      entry{"mistral-v1", k::mistral, variant::mistral_v1},
      entry{"mistral-v3", k::mistral, variant::mistral_v3},
      entry{"mistral-v3-tekken", k::mistral, variant::mistral_v3_tekken},
      entry{"mistral-v7", k::mistral, variant::mistral_v7},
      entry{"mistral-v7-tekken", k::mistral, variant::mistral_v7_tekken},
  };
  for (const entry& e : k_entries) {
    if (e.name == name) {
      chat_template t;
      t.kind_ = e.kind;
      t.variant_ = e.v;
      return t;
    }
  }
  throw error(error_code::invalid_argument,
              "unknown chat template \"" + std::string(name) + "\"; known: chatml, llama3, llama2, mistral, gemma");
}

chat_template chat_template::from_jinja(std::string_view jinja) {
  if (contains(jinja, "<|im_start|>")) {
    chat_template t = from_name("chatml");
    t.default_system_ = find_default_system(jinja);
    return t;
  }
  if (contains(jinja, "[INST]")) {
    if (contains(jinja, "[SYSTEM_PROMPT]")) return from_name("mistral-v7");
    if (contains(jinja, "' [INST] ' + system_message") || contains(jinja, "[AVAILABLE_TOOLS]")) {
      if (contains(jinja, " [INST]")) return from_name("mistral-v1");
      if (contains(jinja, "\"[INST]\"")) return from_name("mistral-v3-tekken");
      return from_name("mistral-v3");
    }
    if (contains(jinja, "content.strip()")) return from_name("llama2-sys-strip");
    if (contains(jinja, "bos_token + '[INST]")) return from_name("llama2-sys-bos");
    if (contains(jinja, "<<SYS>>")) return from_name("llama2-sys");
    return from_name("llama2");
  }
  if (contains(jinja, "<start_of_turn>")) return from_name("gemma");
  if (contains(jinja, "<|start_header_id|>") && contains(jinja, "<|end_header_id|>")) return from_name("llama3");
  throw error(error_code::unsupported, "chat template of an unknown family (troupe renders chatml, llama3, "
                                       "llama2, mistral and gemma natively)");
}

std::string chat_template::apply(std::span<const chat_message> messages, bool add_generation_prompt) const {
  std::ostringstream ss;
  switch (variant_) {
    case variant::chatml:
      check_roles(messages, false, "chatml");
      if (!default_system_.empty() && !messages.empty() && messages[0].role != "system") {
        ss << "<|im_start|>system\n" << default_system_ << "<|im_end|>\n";
      }
      for (const chat_message& m : messages) ss << "<|im_start|>" << m.role << "\n" << m.content << "<|im_end|>\n";
      if (add_generation_prompt) ss << "<|im_start|>assistant\n";
      break;
    case variant::llama3:
      check_roles(messages, false, "llama3");
      for (const chat_message& m : messages) {
        ss << "<|start_header_id|>" << m.role << "<|end_header_id|>\n\n" << trim(m.content) << "<|eot_id|>";
      }
      if (add_generation_prompt) ss << "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case variant::gemma: {
      check_roles(messages, true, "gemma");
      std::string system;  // gemma has no system turn: it is folded into the first user turn
      for (const chat_message& m : messages) {
        if (m.role == "system") {
          system += trim(m.content);
          continue;
        }
        const std::string role = m.role == "assistant" ? "model" : m.role;
        ss << "<start_of_turn>" << role << "\n";
        if (!system.empty() && role != "model") {
          ss << system << "\n\n";
          system.clear();
        }
        ss << trim(m.content) << "<end_of_turn>\n";
      }
      if (add_generation_prompt) ss << "<start_of_turn>model\n";
      break;
    }
    case variant::llama2:
    case variant::llama2_sys:
    case variant::llama2_sys_bos:
    case variant::llama2_sys_strip: {
      check_roles(messages, true, "llama2");
      const bool has_system = variant_ != variant::llama2;
      const bool has_bos_in_history = variant_ == variant::llama2_sys_bos;
      const bool is_stripped = variant_ == variant::llama2_sys_strip;
      bool is_inside_turn = true;
      ss << "[INST] ";
      for (const chat_message& m : messages) {
        const std::string content = is_stripped ? trim(m.content) : m.content;
        if (!is_inside_turn) {
          is_inside_turn = true;
          ss << (has_bos_in_history ? "<s>[INST] " : "[INST] ");
        }
        if (m.role == "system") {
          ss << (has_system ? "<<SYS>>\n" + content + "\n<</SYS>>\n\n" : content + "\n");
        } else if (m.role == "user") {
          ss << content << " [/INST]";
        } else {
          ss << content << "</s>";
          is_inside_turn = false;
        }
      }
      break;
    }
    case variant::mistral_v7:
    case variant::mistral_v7_tekken: {
      check_roles(messages, true, "mistral");
      const char* space = variant_ == variant::mistral_v7 ? " " : "";
      for (const chat_message& m : messages) {
        if (m.role == "system") {
          ss << "[SYSTEM_PROMPT]" << space << m.content << "[/SYSTEM_PROMPT]";
        } else if (m.role == "user") {
          ss << "[INST]" << space << m.content << "[/INST]";
        } else {
          ss << space << m.content << "</s>";
        }
      }
      break;
    }
    case variant::mistral_v1:
    case variant::mistral_v3:
    case variant::mistral_v3_tekken: {
      check_roles(messages, true, "mistral");
      const std::string leading = variant_ == variant::mistral_v1 ? " " : "";
      const std::string trailing = variant_ == variant::mistral_v3_tekken ? "" : " ";
      const bool is_trimmed = variant_ == variant::mistral_v3;
      bool is_inside_turn = false;
      for (const chat_message& m : messages) {
        if (!is_inside_turn) {
          ss << leading << "[INST]" << trailing;
          is_inside_turn = true;
        }
        if (m.role == "system") {
          ss << m.content << "\n\n";
        } else if (m.role == "user") {
          ss << m.content << leading << "[/INST]";
        } else {
          ss << trailing << (is_trimmed ? trim(m.content) : m.content) << "</s>";
          is_inside_turn = false;
        }
      }
      break;
    }
  }
  return ss.str();
}

std::vector<std::string> chat_template::stop_strings() const {
  switch (kind_) {
    case chat_template_kind::chatml: return {"<|im_end|>"};
    case chat_template_kind::llama3: return {"<|eot_id|>"};
    case chat_template_kind::gemma: return {"<end_of_turn>"};
    case chat_template_kind::llama2:
    case chat_template_kind::mistral: return {"</s>"};
  }
  return {};
}

}  // namespace troupe
