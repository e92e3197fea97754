// Chat template specs: family recognition from Jinja text, ChatML's default system prompt
// matching SmolLM2's and Qwen2.5's real Jinja renderings (goldens), the native llama3 /
// llama2 / mistral / gemma formats, and rejection of conversations a family cannot express.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "troupe/model/chat_template.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/tokenizer.hpp"
#include "tests/model/golden_json.hpp"
#include "util/require_model.hpp"

using namespace troupe;

namespace {

const std::string k_golden_path = std::string(TROUPE_TEST_DATA_DIR) + "/tokenizer_golden.json";
const std::string k_qwen_golden_path = std::string(TROUPE_TEST_DATA_DIR) + "/qwen2.5-coder-0.5b/tokenizer_golden.json";

std::vector<chat_message> conversation() {
  return {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", " Hello! "}, {"user", "Bye"}};
}

error_code code_of_apply(const chat_template& t, const std::vector<chat_message>& messages) {
  try {
    t.apply(messages, true);
  } catch (const error& e) {
    return e.code();
  }
  FAIL("apply did not throw");
  return error_code::internal;
}

}  // namespace

TEST_CASE("SmolLM2's template is ChatML with its built-in default system prompt") {
  const auto golden = troupe::test::json::load(k_golden_path)["bpe"];
  const chat_template t = chat_template::from_jinja(golden["chat_template"].str);
  CHECK(t.kind() == chat_template_kind::chatml);
  CHECK(t.default_system_prompt() == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  CHECK(t.stop_strings() == std::vector<std::string>{"<|im_end|>"});
}

TEST_CASE("ChatML rendering equals SmolLM2's Jinja template for every golden conversation") {
  const auto golden = troupe::test::json::load(k_golden_path)["bpe"];
  const chat_template t = chat_template::from_jinja(golden["chat_template"].str);
  for (const auto& chat : golden["chats"].items) {
    std::vector<chat_message> messages;
    for (const auto& m : chat["messages"].items) messages.push_back({m["role"].str, m["content"].str});
    CAPTURE(chat["rendered"].str);
    CHECK(t.apply(messages, chat["add_generation_prompt"].b) == chat["rendered"].str);
  }
}

TEST_CASE("rendered SmolLM2 prompts tokenize like llama.cpp with parse_special") {
  TROUPE_REQUIRE_MODEL();
  const auto golden = troupe::test::json::load(k_golden_path)["bpe"];
  const gguf::file file = gguf::file::open(TROUPE_TEST_MODEL);
  const tokenizer tok = tokenizer::from_gguf(file);
  const chat_template t = chat_template::from_gguf(file);
  CHECK(t.default_system_prompt() == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  for (const auto& chat : golden["chats"].items) {
    CHECK(tok.encode(chat["rendered"].str, false, true) == chat["ids"].ints());
  }
}

TEST_CASE("Qwen2.5's template is ChatML with its default system prompt") {
  const auto golden = troupe::test::json::load(k_qwen_golden_path);
  const chat_template t = chat_template::from_jinja(golden["chat_template"].str);
  CHECK(t.kind() == chat_template_kind::chatml);
  CHECK(t.default_system_prompt() == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  CHECK(t.stop_strings() == std::vector<std::string>{"<|im_end|>"});
}

TEST_CASE("ChatML rendering equals Qwen2.5's Jinja template for every golden conversation") {
  const auto golden = troupe::test::json::load(k_qwen_golden_path);
  const chat_template t = chat_template::from_jinja(golden["chat_template"].str);
  for (const auto& chat : golden["chats"].items) {
    std::vector<chat_message> messages;
    for (const auto& m : chat["messages"].items) messages.push_back({m["role"].str, m["content"].str});
    CAPTURE(chat["rendered"].str);
    CHECK(t.apply(messages, chat["add_generation_prompt"].b) == chat["rendered"].str);
  }
}

TEST_CASE("qwen2.5-coder-0.5b: rendered prompts tokenize like llama.cpp with parse_special") {
  TROUPE_REQUIRE_QWEN_MODEL();
  const auto golden = troupe::test::json::load(k_qwen_golden_path);
  const gguf::file file = gguf::file::open(TROUPE_TEST_QWEN_MODEL);
  const tokenizer tok = tokenizer::from_gguf(file);
  const chat_template t = chat_template::from_gguf(file);
  CHECK(t.default_system_prompt() == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  for (const auto& chat : golden["chats"].items) {
    CHECK(tok.encode(chat["rendered"].str, false, true) == chat["ids"].ints());
  }
}

TEST_CASE("a ChatML template without a default system prompt adds none") {
  const chat_template t = chat_template::from_jinja(
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}");
  CHECK(t.default_system_prompt().empty());
  const std::vector<chat_message> messages = {{"user", "hi"}};
  CHECK(t.apply(messages, true) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("an escaped default system prompt (Qwen style) is found and unescaped") {
  const chat_template t = chat_template::from_jinja(
      "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
      "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen.\\nBe kind.<|im_end|>\\n' }}{%- endif %}");
  CHECK(t.default_system_prompt() == "You are Qwen.\nBe kind.");
}

TEST_CASE("llama3 renders header blocks with trimmed content") {
  const chat_template t = chat_template::from_jinja("{{ '<|start_header_id|>' + role + '<|end_header_id|>' }}");
  CHECK(t.kind() == chat_template_kind::llama3);
  CHECK(t.apply(conversation(), true) ==
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_CASE("llama2 with <<SYS>> folds the system prompt into the first INST turn") {
  const chat_template t = chat_template::from_jinja("[INST] <<SYS>>\\n{{ system }}\\n<</SYS>>");
  CHECK(t.kind() == chat_template_kind::llama2);
  CHECK(t.apply(conversation(), true) ==
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>[INST] Bye [/INST]");
}

TEST_CASE("mistral v3 renders INST turns with trimmed answers") {
  const chat_template t = chat_template::from_name("mistral");
  CHECK(t.kind() == chat_template_kind::mistral);
  CHECK(t.apply(conversation(), true) == "[INST] Be brief.\n\nHi[/INST] Hello!</s>[INST] Bye[/INST]");
}

TEST_CASE("mistral variants are told apart by their official markers") {
  const std::vector<chat_message> messages = {{"user", "Hi"}, {"assistant", "Yo"}};
  const chat_template v1 = chat_template::from_jinja("{{ ' [INST] ' + system_message }}");
  CHECK(v1.apply(messages, true) == " [INST] Hi [/INST] Yo</s>");
  const chat_template tekken = chat_template::from_jinja("[AVAILABLE_TOOLS] {{ \"[INST]\" }}");
  CHECK(tekken.apply(messages, true) == "[INST]Hi[/INST]Yo</s>");
  const chat_template v7 = chat_template::from_jinja("[SYSTEM_PROMPT] [INST]");
  CHECK(v7.apply(messages, true) == "[INST] Hi[/INST] Yo</s>");
}

TEST_CASE("gemma renames assistant to model and merges the system prompt into the first user turn") {
  const chat_template t = chat_template::from_jinja("{{ '<start_of_turn>' + role }}");
  CHECK(t.kind() == chat_template_kind::gemma);
  CHECK(t.apply(conversation(), true) ==
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n");
  CHECK(t.stop_strings() == std::vector<std::string>{"<end_of_turn>"});
}

TEST_CASE("an unknown role is an invalid argument") {
  const std::vector<chat_message> messages = {{"robot", "beep"}};
  CHECK(code_of_apply(chat_template::from_name("chatml"), messages) == error_code::invalid_argument);
  CHECK(code_of_apply(chat_template::from_name("llama3"), messages) == error_code::invalid_argument);
}

TEST_CASE("a system message after the first turn is rejected where the family cannot express it") {
  const std::vector<chat_message> messages = {{"user", "Hi"}, {"system", "late"}};
  CHECK(code_of_apply(chat_template::from_name("gemma"), messages) == error_code::invalid_argument);
  CHECK(code_of_apply(chat_template::from_name("llama2-sys"), messages) == error_code::invalid_argument);
  CHECK_NOTHROW(chat_template::from_name("chatml").apply(messages, true));
}

TEST_CASE("unknown template names and families are refused") {
  try {
    chat_template::from_name("vicuna");
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == error_code::invalid_argument);
  }
  try {
    chat_template::from_jinja("{{ messages }}");
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == error_code::unsupported);
  }
}

TEST_CASE("tool-use rendering equals Qwen2.5's own Jinja template: tools, calls, grouped results") {
  const auto golden = troupe::test::json::load(std::string(TROUPE_TEST_DATA_DIR) +
                                               "/qwen2.5-coder-0.5b/tool_template_golden.json");
  const chat_template t = chat_template::from_jinja(golden["chat_template"].str);
  REQUIRE(t.kind() == chat_template_kind::chatml);
  for (const auto& c : golden["cases"].items) {
    std::vector<chat_message> messages;
    for (const auto& m : c["messages"].items) {
      chat_message message{m["role"].str, m["content"].str, {}, m["tool_call_id"].str};
      for (const auto& call : m["tool_calls"].items) {
        message.tool_calls.push_back({call["id"].str, call["name"].str, call["arguments"].str});
      }
      messages.push_back(std::move(message));
    }
    std::vector<tool_definition> tools;
    for (const auto& tool : c["tools"].items) {
      tools.push_back({tool["name"].str, tool["description"].str, tool["parameters"].str});
    }
    CAPTURE(c["rendered"].str);
    CHECK(t.apply_with_tools(messages, tools, true) == c["rendered"].str);
  }
}

TEST_CASE("tool-use rendering: llama-3 lists the tools in the first user turn and answers come as ipython") {
  const chat_template t = chat_template::from_name("llama3");
  std::vector<chat_message> messages = {{"user", "2 + 3?"}};
  messages.push_back({"assistant", "", {{"c", "add", R"({"a":2,"b":3})"}}, ""});
  messages.push_back({"tool", "5", {}, "c"});
  const std::vector<tool_definition> tools = {{"add", "Adds", R"({"type":"object"})"}};
  const std::string text = t.apply_with_tools(messages, tools, true);
  CHECK(text.find("Environment: ipython") != std::string::npos);
  CHECK(text.find(R"({"type": "function", "function": {"name": "add", "description": "Adds", "parameters": {"type": "object"}}})") !=
        std::string::npos);
  CHECK(text.find(R"(<|start_header_id|>assistant<|end_header_id|>

{"name": "add", "parameters": {"a": 2, "b": 3}}<|eot_id|>)") != std::string::npos);
  CHECK(text.find("<|start_header_id|>ipython<|end_header_id|>\n\n5<|eot_id|>") != std::string::npos);
  CHECK(text.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
  // Families without a tool format refuse, naming theirs.
  CHECK_THROWS_WITH_AS(chat_template::from_name("gemma").apply_with_tools(messages, tools, true),
                       "tools need a ChatML or llama-3 chat template; this model's is gemma", error);
  std::vector<chat_message> bad = {{"tool_user", "x"}};
  CHECK_THROWS_AS(t.apply_with_tools(bad, tools, true), error);
}
