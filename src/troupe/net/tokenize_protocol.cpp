// tokenize_protocol: the /tokenize and /detokenize bodies read field by field (one reader per
// name, as request_fields). Their answers, which need the tokenizer, are in tokenize_answer.cpp.
#include "troupe/net/tokenize_protocol.hpp"

#include <exception>

#include "troupe/net/json_read.hpp"
#include "troupe/net/request_fields.hpp"

namespace troupe::net {
namespace {

using json_read::value;

// The fields as given; null leaves one unset, so that the defaults can follow the input's form.
struct tokenize_fields {
  std::optional<std::string> prompt, content;
  std::vector<chat_message> messages;
  std::optional<bool> add_special_tokens, add_special, parse_special, add_generation_prompt;
  bool with_pieces = false;
  bool return_token_strs = false;
};

std::optional<bool> read_optional_bool(value& v, std::string_view key) {
  if (json_read::is_null(v, key)) return std::nullopt;
  return json_read::read_bool(v, key);
}

void read_tokenize_field(std::string_view key, value& v, tokenize_fields& f) {
  if (key == "model") {
    if (!json_read::is_null(v, key)) json_read::read_string_view(v, key);  // one model is served
  } else if (key == "prompt") {
    if (!json_read::is_null(v, key)) f.prompt = json_read::read_string(v, key);
  } else if (key == "content") {
    if (!json_read::is_null(v, key)) f.content = json_read::read_string(v, key);
  } else if (key == "messages") {
    if (!json_read::is_null(v, key)) f.messages = request_fields::read_messages(v);
  } else if (key == "add_special_tokens") {
    f.add_special_tokens = read_optional_bool(v, key);
  } else if (key == "add_special") {
    f.add_special = read_optional_bool(v, key);
  } else if (key == "parse_special") {
    f.parse_special = read_optional_bool(v, key);
  } else if (key == "add_generation_prompt") {
    f.add_generation_prompt = read_optional_bool(v, key);
  } else if (key == "with_pieces") {
    f.with_pieces = read_optional_bool(v, key).value_or(false);
  } else if (key == "return_token_strs") {
    f.return_token_strs = read_optional_bool(v, key).value_or(false);
  } else {
    std::string message = "unknown field \"";
    json_read::fail_request(message.append(key).append("\""), key);
  }
}

// Exactly one input, and only the options that apply to its form.
tokenize_request check_and_apply(tokenize_fields&& f) {
  std::vector<std::string_view> inputs;
  if (f.prompt) inputs.push_back("prompt");
  if (f.content) inputs.push_back("content");
  if (!f.messages.empty()) inputs.push_back("messages");
  if (inputs.empty()) json_read::fail_request("prompt, content or messages is required", "prompt");
  if (inputs.size() > 1) {
    std::string message(inputs[0]);
    message.append(" and ").append(inputs[1]).append(": give one of them, not both");
    json_read::fail_request(std::move(message), inputs[1]);
  }
  if (f.add_special_tokens && f.add_special) {
    json_read::fail_request("add_special_tokens and add_special are one option (vLLM's and llama.cpp's name): give one",
                            "add_special");
  }
  tokenize_request r;
  r.with_pieces = f.with_pieces;
  r.return_token_strs = f.return_token_strs;
  const std::optional<bool> add_special = f.add_special_tokens ? f.add_special_tokens : f.add_special;
  if (!f.messages.empty()) {
    for (size_t i = 0; i < f.messages.size(); ++i) {
      const std::string& role = f.messages[i].role;
      if (role != "system" && role != "user" && role != "assistant") {
        json_read::fail_request(json_read::indexed("messages", i) + ".role must be system, user or assistant, got \"" +
                                    role + "\"",
                                "messages");
      }
    }
    if (f.parse_special) {
      json_read::fail_request("parse_special is not for messages: the rendered chat is always read with its special "
                              "tokens, as chat completions read it",
                              "parse_special");
    }
    r.messages = std::move(f.messages);
    r.add_special = add_special.value_or(true);
    r.parse_special = true;
    r.add_generation_prompt = f.add_generation_prompt.value_or(true);
    return r;
  }
  if (f.add_generation_prompt) {
    json_read::fail_request("add_generation_prompt is only for messages", "add_generation_prompt");
  }
  const bool is_llama_cpp = f.content.has_value();
  r.text = std::move(is_llama_cpp ? *f.content : *f.prompt);
  r.add_special = add_special.value_or(!is_llama_cpp);
  r.parse_special = f.parse_special.value_or(is_llama_cpp);
  return r;
}

void read_tokens(value& v, const parse_limits& limits, std::vector<int32_t>& tokens) {
  json_read::for_each_element(json_read::read_array(v, "tokens"), "tokens", [&](size_t i, value& element) {
    const std::string where = json_read::indexed("tokens", i);
    if (json_read::type_of(element, where) != simdjson::ondemand::json_type::number) {
      json_read::fail_request(where + " must be a token id (an integer)", "tokens");
    }
    int32_t id = -1;
    try {
      id = json_read::read_int32(element, where);
    } catch (json_read::parse_failure& failure) {
      failure.error.param = "tokens";  // the field, as every other refusal of it names it
      throw;
    }
    if (id < 0 || id >= limits.vocab_size) {
      json_read::fail_request(where + " must be a token id in [0, " + std::to_string(limits.vocab_size) + "), got " +
                                  std::to_string(id),
                              "tokens");
    }
    tokens.push_back(id);
  });
}

// Runs parse over the body, turning every failure into the api_error it carries.
template <typename result_type, typename parse_fn>
result_type parse_body(std::string_view body, parse_fn&& parse) {
  result_type result;
  try {
    json_read::document_reader& reader = json_read::thread_document_reader();
    auto object = reader.open_object(body, "the request body");
    result.value = parse(object);
    reader.expect_end();
  } catch (const json_read::parse_failure& failure) {
    result.value.reset();
    result.error = failure.error;
  } catch (const std::exception& e) {
    result.value.reset();
    result.error = api_error{500, "internal", std::string("parsing the request failed: ").append(e.what()), {}};
  }
  return result;
}

}  // namespace

tokenize_parse_result parse_tokenize_request(std::string_view body) {
  return parse_body<tokenize_parse_result>(body, [](json_read::object& object) {
    tokenize_fields fields;
    json_read::for_each_field(object, {}, [&](std::string_view key, value& v) { read_tokenize_field(key, v, fields); });
    return check_and_apply(std::move(fields));
  });
}

detokenize_parse_result parse_detokenize_request(std::string_view body, const parse_limits& limits) {
  return parse_body<detokenize_parse_result>(body, [&](json_read::object& object) {
    detokenize_request r;
    bool has_tokens = false;
    json_read::for_each_field(object, {}, [&](std::string_view key, value& v) {
      if (key == "model") {
        if (!json_read::is_null(v, key)) json_read::read_string_view(v, key);
      } else if (key == "tokens") {
        read_tokens(v, limits, r.tokens);
        has_tokens = true;
      } else {
        std::string message = "unknown field \"";
        json_read::fail_request(message.append(key).append("\" (allowed: tokens, model)"), key);
      }
    });
    if (!has_tokens) json_read::fail_request("tokens is required", "tokens");
    return r;
  });
}

}  // namespace troupe::net
