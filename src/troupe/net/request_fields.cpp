// request_fields: one reader per shared field, found by name in a table; ranges are left to
// request::validate and sampling_params::validate so that both wires refuse alike.
#include "troupe/net/request_fields.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <unordered_map>

#include "troupe/model/error.hpp"

namespace troupe::net::request_fields {
namespace {

using json_read::value;
using simdjson::ondemand::json_type;

std::vector<std::string> read_stop(value& v) {
  if (json_read::is_null(v, "stop")) return {};
  // A single string is one stop string, as OpenAI allows.
  if (json_read::type_of(v, "stop") == json_type::string) return {json_read::read_string(v, "stop")};
  std::vector<std::string> stop;
  json_read::for_each_element(json_read::read_array(v, "stop"), "stop", [&](size_t i, value& element) {
    if (i >= max_num_stop_strings) {
      std::string message = "stop must have at most ";
      json_read::fail_request(message.append(std::to_string(max_num_stop_strings)).append(" strings"), "stop");
    }
    stop.push_back(json_read::read_string(element, json_read::indexed("stop", i)));
  });
  return stop;
}

std::vector<int32_t> read_token_ids(value& v, std::string_view field) {
  std::vector<int32_t> ids;
  json_read::for_each_element(json_read::read_array(v, field), field, [&](size_t i, value& element) {
    ids.push_back(json_read::read_int32(element, json_read::indexed(field, i)));
  });
  return ids;
}

// {"123": -100}: keys are token ids written as decimal strings, as OpenAI sends them. A
// token can be biased once, so there are at most as many entries as the vocabulary has
// tokens; the count is checked as the entries are read, so that a body of 100,000 keys is
// refused at the first one too many instead of being read to its end. (vLLM allows the
// same; OpenAI's own API stops at 300, which would refuse requests that local servers take.)
std::vector<std::pair<int32_t, float>> read_logit_bias(value& v, const parse_limits& limits) {
  std::vector<std::pair<int32_t, float>> bias;
  const size_t max_entries = static_cast<size_t>(std::max(limits.vocab_size, 0));
  std::unordered_map<int32_t, std::string_view> keys;  // token id -> the key that named it
  json_read::for_each_field(json_read::read_object(v, "logit_bias"), "logit_bias", [&](std::string_view key, value& b) {
    if (bias.size() == max_entries) {
      json_read::fail_request("logit_bias must have at most " + std::to_string(max_entries) +
                                  " entries (one per token of the vocabulary)",
                              "logit_bias");
    }
    int32_t token = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), token);
    if (key.empty() || ec != std::errc() || end != key.data() + key.size()) {
      std::string message = "logit_bias keys must be token ids (decimal integers), got \"";
      json_read::fail_request(message.append(key).append("\""), "logit_bias");
    }
    // "7" and "007" are different keys for the duplicate check but the same token.
    if (const auto [at, is_new] = keys.emplace(token, key); !is_new) {
      json_read::fail_request("logit_bias gives token id " + std::to_string(token) + " more than once (\"" +
                                  std::string(at->second) + "\" and \"" + std::string(key) + "\")",
                              "logit_bias");
    }
    bias.emplace_back(token, json_read::read_float(b, std::string("logit_bias[").append(key).append("]")));
  });
  return bias;
}

// "ngram", "draft" or "off": this request's speculative decoding, whatever the server's
// default ("draft" on a server without a draft model decodes without speculation).
speculative_method read_speculative(value& v) {
  const std::string text = json_read::read_string(v, "speculative");
  if (text == "ngram") return speculative_method::ngram;
  if (text == "draft") return speculative_method::draft;
  if (text != "off") {
    json_read::fail_request("speculative must be \"ngram\", \"draft\" or \"off\", got \"" + text + "\"",
                            "speculative");
  }
  return speculative_method::off;
}

// beam_width while use_beam_search waits for n and best_of (validate resolves it).
constexpr int32_t use_beam_search_width = -1;

// How deep a JSON Schema may nest (its text is re-serialized for the grammar compiler).
constexpr int max_schema_depth = 64;

// Structured output comes in one of four fields; a second is refused.
void set_guided(request& r, grammar_spec spec, std::string_view field) {
  if (r.guided) {
    json_read::fail_request(std::string("give one of response_format, guided_json, guided_regex and guided_choice, not ")
                                .append(field)
                                .append(" too"),
                            field);
  }
  r.guided = std::move(spec);
  r.guided_field = field;
}

// A schema as an object (re-serialized) or, as vLLM also takes it, a string holding JSON.
std::string read_schema(value& v, std::string_view field) {
  if (json_read::type_of(v, field) == json_type::string) return json_read::read_string(v, field);
  if (json_read::type_of(v, field) != json_type::object) {
    json_read::fail_request(std::string(field).append(" must be a JSON Schema (an object)"), field);
  }
  json_writer w;
  json_read::copy_value(v, field, w, max_schema_depth);
  return w.take();
}

// OpenAI's response_format: {"type":"text"}, {"type":"json_object"}, or {"type":"json_schema",
// "json_schema":{"name","schema","strict","description"}}.
void read_response_format(value& v, request& r) {
  constexpr std::string_view field = "response_format";
  std::string type;
  std::optional<std::string> schema;
  bool has_json_schema = false;
  json_read::for_each_field(json_read::read_object(v, field), field, [&](std::string_view key, value& member) {
    if (key == "type") {
      type = json_read::read_string(member, "response_format.type");
    } else if (key == "json_schema") {
      has_json_schema = true;
      json_read::for_each_field(json_read::read_object(member, "response_format.json_schema"),
                                "response_format.json_schema", [&](std::string_view k, value& m) {
                                  if (k == "schema") {
                                    schema = read_schema(m, "response_format.json_schema.schema");
                                  } else if (k == "name" || k == "description") {
                                    json_read::read_string_view(m, std::string("response_format.json_schema.").append(k));
                                  } else if (k == "strict") {
                                    if (!json_read::is_null(m, "response_format.json_schema.strict")) {
                                      json_read::read_bool(m, "response_format.json_schema.strict");
                                    }
                                  } else {
                                    json_read::fail_request("unknown field response_format.json_schema." + std::string(k) +
                                                                " (allowed: name, schema, strict, description)",
                                                            field);
                                  }
                                });
    } else {
      json_read::fail_request("unknown field response_format." + std::string(key) + " (allowed: type, json_schema)",
                              field);
    }
  });
  if (type == "text") {
    if (has_json_schema) json_read::fail_request("response_format.json_schema needs type \"json_schema\"", field);
    return;
  }
  if (type == "json_object") {
    if (has_json_schema) json_read::fail_request("response_format.json_schema needs type \"json_schema\"", field);
    return set_guided(r, {grammar_kind::json_object, {}, {}}, field);
  }
  if (type == "json_schema") {
    if (!schema) json_read::fail_request("response_format.json_schema.schema is required", field);
    return set_guided(r, {grammar_kind::json_schema, std::move(*schema), {}}, field);
  }
  json_read::fail_request("response_format.type must be \"text\", \"json_object\" or \"json_schema\", got \"" + type + "\"",
                          field);
}

// tools: [{"type": "function", "function": {"name", "description", "parameters", "strict"}}].
std::vector<tool_definition> read_tools(value& v) {
  constexpr std::string_view field = "tools";
  std::vector<tool_definition> tools;
  json_read::for_each_element(json_read::read_array(v, field), field, [&](size_t i, value& element) {
    const std::string where = json_read::indexed(field, i);
    tool_definition tool;
    bool has_function = false;
    json_read::for_each_field(json_read::read_object(element, where), where, [&](std::string_view key, value& m) {
      if (key == "type") {
        if (json_read::read_string(m, where + ".type") != "function") {
          json_read::fail_request(where + ".type must be \"function\"", field);
        }
      } else if (key == "function") {
        has_function = true;
        json_read::for_each_field(json_read::read_object(m, where + ".function"), where + ".function",
                                  [&](std::string_view k, value& f) {
                                    const std::string name = where + ".function." + std::string(k);
                                    if (k == "name") {
                                      tool.name = json_read::read_string(f, name);
                                    } else if (k == "description") {
                                      if (!json_read::is_null(f, name)) tool.description = json_read::read_string(f, name);
                                    } else if (k == "parameters") {
                                      if (!json_read::is_null(f, name)) tool.parameters = read_schema(f, name);
                                    } else if (k == "strict") {
                                      if (!json_read::is_null(f, name)) json_read::read_bool(f, name);
                                    } else {
                                      json_read::fail_request("unknown field " + name +
                                                                  " (allowed: name, description, parameters, strict)",
                                                              field);
                                    }
                                  });
      } else {
        json_read::fail_request("unknown field " + where + "." + std::string(key) + " (allowed: type, function)", field);
      }
    });
    if (!has_function || tool.name.empty()) json_read::fail_request(where + ".function.name is required", field);
    tools.push_back(std::move(tool));
  });
  return tools;
}

// tool_choice: "auto", "none", "required", or {"type": "function", "function": {"name": ...}}.
tool_choice read_tool_choice(value& v) {
  constexpr std::string_view field = "tool_choice";
  tool_choice choice;
  if (json_read::type_of(v, field) == json_type::string) {
    const std::string mode = json_read::read_string(v, field);
    if (mode == "auto") return choice;
    if (mode == "none") choice.mode = tool_choice_mode::none;
    else if (mode == "required") choice.mode = tool_choice_mode::required;
    else json_read::fail_request("tool_choice must be \"auto\", \"none\", \"required\" or a function, got \"" + mode + "\"", field);
    return choice;
  }
  choice.mode = tool_choice_mode::named;
  json_read::for_each_field(json_read::read_object(v, field), field, [&](std::string_view key, value& m) {
    if (key == "type") {
      if (json_read::read_string(m, "tool_choice.type") != "function") {
        json_read::fail_request("tool_choice.type must be \"function\"", field);
      }
    } else if (key == "function") {
      json_read::for_each_field(json_read::read_object(m, "tool_choice.function"), "tool_choice.function",
                                [&](std::string_view k, value& f) {
                                  if (k != "name") json_read::fail_request("unknown field tool_choice.function." + std::string(k), field);
                                  choice.name = json_read::read_string(f, "tool_choice.function.name");
                                });
    } else {
      json_read::fail_request("unknown field tool_choice." + std::string(key) + " (allowed: type, function)", field);
    }
  });
  if (choice.name.empty()) json_read::fail_request("tool_choice.function.name is required", field);
  return choice;
}

std::vector<std::string> read_choices(value& v) {
  constexpr std::string_view field = "guided_choice";
  std::vector<std::string> choices;
  json_read::for_each_element(json_read::read_array(v, field), field, [&](size_t i, value& element) {
    choices.push_back(json_read::read_string(element, json_read::indexed(field, i)));
  });
  if (choices.empty()) json_read::fail_request("guided_choice must not be empty", field);
  return choices;
}

using field_reader = void (*)(value&, request&, const parse_limits&);

struct shared_field {
  std::string_view name;
  field_reader read;
};

// Every field both wires accept under the same name and meaning.
const shared_field shared_fields[] = {
    {"max_tokens", [](value& v, request& r, const parse_limits&) { r.params.max_tokens = json_read::read_int32(v, "max_tokens"); }},
    {"min_tokens", [](value& v, request& r, const parse_limits&) { r.params.min_tokens = json_read::read_int32(v, "min_tokens"); }},
    {"temperature", [](value& v, request& r, const parse_limits&) { r.params.temperature = json_read::read_float(v, "temperature"); }},
    {"top_k", [](value& v, request& r, const parse_limits&) { r.params.top_k = json_read::read_int32(v, "top_k"); }},
    {"top_p", [](value& v, request& r, const parse_limits&) { r.params.top_p = json_read::read_float(v, "top_p"); }},
    {"min_p", [](value& v, request& r, const parse_limits&) { r.params.min_p = json_read::read_float(v, "min_p"); }},
    {"repetition_penalty",
     [](value& v, request& r, const parse_limits&) { r.params.repetition_penalty = json_read::read_float(v, "repetition_penalty"); }},
    {"presence_penalty",
     [](value& v, request& r, const parse_limits&) { r.params.presence_penalty = json_read::read_float(v, "presence_penalty"); }},
    {"frequency_penalty",
     [](value& v, request& r, const parse_limits&) { r.params.frequency_penalty = json_read::read_float(v, "frequency_penalty"); }},
    {"penalty_last_n", [](value& v, request& r, const parse_limits&) { r.params.penalty_last_n = json_read::read_int32(v, "penalty_last_n"); }},
    {"seed", [](value& v, request& r, const parse_limits&) { r.params.seed = json_read::read_uint64(v, "seed"); }},
    {"logit_bias", [](value& v, request& r, const parse_limits& l) { r.params.logit_bias = read_logit_bias(v, l); }},
    {"stop_token_ids", [](value& v, request& r, const parse_limits&) { r.params.stop_token_ids = read_token_ids(v, "stop_token_ids"); }},
    {"ignore_eos", [](value& v, request& r, const parse_limits&) { r.params.ignore_eos = json_read::read_bool(v, "ignore_eos"); }},
    {"stop", [](value& v, request& r, const parse_limits&) { r.stop = read_stop(v); }},
    {"priority", [](value& v, request& r, const parse_limits&) { r.priority = json_read::read_int32(v, "priority"); }},
    {"timeout_ms", [](value& v, request& r, const parse_limits&) { r.timeout_ms = json_read::read_int64(v, "timeout_ms"); }},
    {"speculative", [](value& v, request& r, const parse_limits&) { r.speculative = read_speculative(v); }},
    {"n", [](value& v, request& r, const parse_limits&) { r.n = json_read::read_int32(v, "n"); }},
    {"beam_width", [](value& v, request& r, const parse_limits&) { r.beam_width = json_read::read_int32(v, "beam_width"); }},
    // vLLM's older switch: a beam search as wide as best_of (or n); beam_width says it directly.
    {"use_beam_search",
     [](value& v, request& r, const parse_limits&) {
       if (json_read::read_bool(v, "use_beam_search") && r.beam_width == 0) r.beam_width = use_beam_search_width;
     }},
    {"length_penalty", [](value& v, request& r, const parse_limits&) { r.length_penalty = json_read::read_float(v, "length_penalty"); }},
    {"early_stopping", [](value& v, request& r, const parse_limits&) { r.early_stopping = json_read::read_bool(v, "early_stopping"); }},
    {"response_format", [](value& v, request& r, const parse_limits&) { read_response_format(v, r); }},
    {"tools", [](value& v, request& r, const parse_limits&) { r.tools = read_tools(v); }},
    {"tool_choice", [](value& v, request& r, const parse_limits&) { r.tool_use = read_tool_choice(v); }},
    // Accepted as OpenAI clients send it: a model may make several calls in one answer
    // (tool_choice required or named makes exactly one).
    {"parallel_tool_calls", [](value& v, request&, const parse_limits&) { json_read::read_bool(v, "parallel_tool_calls"); }},
    {"guided_json",
     [](value& v, request& r, const parse_limits&) {
       set_guided(r, {grammar_kind::json_schema, read_schema(v, "guided_json"), {}}, "guided_json");
     }},
    {"guided_regex",
     [](value& v, request& r, const parse_limits&) {
       set_guided(r, {grammar_kind::regex, json_read::read_string(v, "guided_regex"), {}}, "guided_regex");
     }},
    {"guided_choice",
     [](value& v, request& r, const parse_limits&) {
       set_guided(r, {grammar_kind::choice, {}, read_choices(v)}, "guided_choice");
     }},
    {"best_of", [](value& v, request& r, const parse_limits&) { r.best_of = json_read::read_int32(v, "best_of"); }},
};

// content: a string, or OpenAI's array of parts of which troupe serves the text ones.
std::string read_content(value& v, const std::string& field) {
  const json_type type = json_read::type_of(v, field);
  if (type == json_type::string) return json_read::read_string(v, field);
  if (type != json_type::array) {
    json_read::fail_request(field + " must be a string or an array of text parts", field);
  }
  std::string text;
  json_read::for_each_element(json_read::read_array(v, field), field, [&](size_t i, value& part_value) {
    const std::string part = json_read::indexed(field, i);
    std::string type;
    std::string_view unknown_key;
    bool has_text = false;
    json_read::for_each_field(json_read::read_object(part_value, part), part, [&](std::string_view key, value& member) {
      if (key == "type") {
        type = json_read::read_string(member, part + ".type");
      } else if (key == "text") {
        text += json_read::read_string_view(member, part + ".text");
        has_text = true;
      } else if (unknown_key.empty()) {
        unknown_key = key;
      }
    });
    if (type != "text") {
      json_read::fail_request(part + ".type must be \"text\" (troupe serves text only), got \"" + type + "\"", part + ".type");
    }
    if (!unknown_key.empty()) json_read::fail_request("unknown field " + part + "." + std::string(unknown_key), part);
    if (!has_text) json_read::fail_request(part + ".text is required", part + ".text");
  });
  return text;
}

// An assistant message's tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}].
std::vector<tool_call> read_tool_calls(value& v, const std::string& field) {
  std::vector<tool_call> calls;
  json_read::for_each_element(json_read::read_array(v, field), field, [&](size_t i, value& element) {
    const std::string where = json_read::indexed(field, i);
    tool_call call;
    json_read::for_each_field(json_read::read_object(element, where), where, [&](std::string_view key, value& m) {
      if (key == "id") {
        call.id = json_read::read_string(m, where + ".id");
      } else if (key == "type") {
        if (json_read::read_string(m, where + ".type") != "function") {
          json_read::fail_request(where + ".type must be \"function\"", field);
        }
      } else if (key == "function") {
        json_read::for_each_field(json_read::read_object(m, where + ".function"), where + ".function",
                                  [&](std::string_view k, value& f) {
                                    if (k == "name") {
                                      call.name = json_read::read_string(f, where + ".function.name");
                                    } else if (k == "arguments") {
                                      call.arguments = json_read::read_string(f, where + ".function.arguments");
                                    } else {
                                      json_read::fail_request("unknown field " + where + ".function." + std::string(k), field);
                                    }
                                  });
      } else {
        json_read::fail_request("unknown field " + where + "." + std::string(key) + " (allowed: id, type, function)", field);
      }
    });
    if (call.name.empty()) json_read::fail_request(where + ".function.name is required", field);
    calls.push_back(std::move(call));
  });
  return calls;
}

chat_message read_message(value& v, const std::string& field) {
  chat_message message;
  bool has_role = false;
  bool has_content = false;
  bool is_content_null = false;
  json_read::for_each_field(json_read::read_object(v, field), field, [&](std::string_view key, value& member) {
    if (key == "role") {
      message.role = json_read::read_string(member, field + ".role");
      has_role = true;
    } else if (key == "content") {
      // null: an assistant message that only calls tools
      is_content_null = json_read::is_null(member, field + ".content");
      if (!is_content_null) message.content = read_content(member, field + ".content");
      has_content = true;
    } else if (key == "name") {
      json_read::read_string_view(member, field + ".name");  // accepted for OpenAI clients; templates have no use for it
    } else if (key == "tool_calls") {
      if (!json_read::is_null(member, field + ".tool_calls")) message.tool_calls = read_tool_calls(member, field + ".tool_calls");
    } else if (key == "tool_call_id") {
      message.tool_call_id = json_read::read_string(member, field + ".tool_call_id");
    } else {
      json_read::fail_request("unknown field " + field + "." + std::string(key) +
                                  " (allowed: role, content, name, tool_calls, tool_call_id)",
                              field);
    }
  });
  if (!has_role) json_read::fail_request(field + ".role is required", field + ".role");
  if (!has_content && message.tool_calls.empty()) json_read::fail_request(field + ".content is required", field + ".content");
  if (is_content_null && message.tool_calls.empty()) {
    json_read::fail_request(field + ".content must be a string or an array of text parts (null only beside tool_calls)",
                            field + ".content");
  }
  if (message.role == "developer") message.role = "system";  // OpenAI's newer name for it
  return message;
}

}  // namespace

bool read_shared_field(std::string_view key, value& v, request& req, const parse_limits& limits) {
  for (const shared_field& field : shared_fields) {
    if (field.name != key) continue;
    if (!json_read::is_null(v, key)) field.read(v, req, limits);
    return true;
  }
  return false;
}

std::vector<chat_message> read_messages(value& v) {
  std::vector<chat_message> messages;
  json_read::for_each_element(json_read::read_array(v, "messages"), "messages", [&](size_t i, value& element) {
    messages.push_back(read_message(element, json_read::indexed("messages", i)));
  });
  if (messages.empty()) json_read::fail_request("messages must not be empty", "messages");
  return messages;
}

void read_token_ids(value& v, std::string_view field, std::vector<int32_t>& ids) {
  const std::string_view param = field.substr(0, field.find('['));
  json_read::for_each_element(json_read::read_array(v, field), field, [&](size_t i, value& element) {
    const std::string where = json_read::indexed(field, i);
    if (json_read::type_of(element, where) != simdjson::ondemand::json_type::number) {
      json_read::fail_request(std::string(where).append(" must be a token id (an integer)"), param);
    }
    ids.push_back(json_read::read_int32(element, where));
  });
  if (ids.empty()) json_read::fail_request(std::string(field).append(" must not be empty"), param);
}

void validate(request& req, const parse_limits& limits, std::string_view num_logprobs_name) {
  if (req.beam_width == use_beam_search_width) req.beam_width = std::max(req.n, req.best_of);
  try {
    req.validate(limits.vocab_size, limits.max_model_len);
  } catch (const error& e) {
    // sampling_params calls it num_logprobs; the client sent top_logprobs (or logprobs).
    std::string message = e.what();
    constexpr std::string_view internal_name = "num_logprobs";
    if (message.rfind(std::string(internal_name).append(" must"), 0) == 0) {
      message.replace(0, internal_name.size(), num_logprobs_name);
    }
    std::string param = param_of_message(message);
    if (param == internal_name) param = num_logprobs_name;
    json_read::fail(invalid_request(std::move(message), std::move(param)));
  }
}

}  // namespace troupe::net::request_fields
