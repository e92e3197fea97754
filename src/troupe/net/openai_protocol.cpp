// openai_protocol: parsing the bodies of /v1/completions and /v1/chat/completions. The fields
// both endpoints share with the WebSocket come from request_fields; this file maps the
// OpenAI-only ones (n, stream, stream_options, model, user, echo, the two logprobs styles).
#include "troupe/net/openai_protocol.hpp"

#include <algorithm>
#include <iterator>

#include "troupe/net/json_read.hpp"
#include "troupe/net/request_fields.hpp"

namespace troupe::net {
namespace {

using json_read::value;
using simdjson::ondemand::json_type;

// What the body said beyond the request itself; applied once every member is read.
struct openai_extras {
  bool has_input = false;  // prompt or messages
  bool has_stream_options = false;
  std::optional<int32_t> max_completion_tokens;
};

// prompt, in OpenAI's forms holding one prompt: a string, token ids, or a batch of one of
// either ([string] or [[ids]]).
void read_prompt(value& v, request& req) {
  if (json_read::type_of(v, "prompt") != json_type::array) {
    req.prompt = json_read::read_string(v, "prompt");
    return;
  }
  size_t num_prompts = 0;
  bool is_token_ids = false;
  json_read::for_each_element(json_read::read_array(v, "prompt"), "prompt", [&](size_t i, value& element) {
    const std::string where = json_read::indexed("prompt", i);
    const json_type type = json_read::type_of(element, where);
    if (type == json_type::number && (num_prompts == 0 || is_token_ids)) {
      is_token_ids = true;
      num_prompts = 1;
      req.prompt_token_ids.push_back(json_read::read_int32(element, where));
      return;
    }
    if (is_token_ids) json_read::fail_request("prompt: token ids must all be integers", "prompt");
    if (++num_prompts > 1) {
      json_read::fail_request("prompt must be one prompt (troupe takes one prompt per request)", "prompt");
    }
    if (type == json_type::string) {
      req.prompt = json_read::read_string(element, where);
    } else if (type == json_type::array) {
      request_fields::read_token_ids(element, where, req.prompt_token_ids);
    } else {
      json_read::fail_request("prompt must be a string, token ids, or a list holding one of them", "prompt");
    }
  });
  if (num_prompts != 1) json_read::fail_request("prompt must not be an empty list", "prompt");
}

void read_stream_options(value& v, openai_request& out) {
  out.req.include_usage = false;
  json_read::for_each_field(json_read::read_object(v, "stream_options"), "stream_options",
                            [&](std::string_view key, value& member) {
                              if (key != "include_usage") {
                                std::string message = "unknown field stream_options.";
                                json_read::fail_request(message.append(key).append(" (allowed: include_usage)"),
                                                        "stream_options");
                              }
                              if (!json_read::is_null(member, "stream_options.include_usage")) {
                                out.req.include_usage = json_read::read_bool(member, "stream_options.include_usage");
                              }
                            });
}

// The fields of one endpoint only (is_endpoint_field names them).
void read_endpoint_field(openai_endpoint ep, std::string_view key, value& v, openai_request& out, openai_extras& extras) {
  request& req = out.req;
  if (ep == openai_endpoint::completions) {
    if (key == "prompt") {
      read_prompt(v, req);
      extras.has_input = true;
    } else if (key == "echo") {
      req.echo = json_read::read_bool(v, key);
    } else if (key == "logprobs") {  // completions: the number of alternatives; 0 = the sampled token only
      req.logprobs = true;
      req.params.num_logprobs = json_read::read_int32(v, key);
    }
    return;
  }
  if (key == "messages") {
    req.messages = request_fields::read_messages(v);
    extras.has_input = true;
  } else if (key == "max_completion_tokens") {
    extras.max_completion_tokens = json_read::read_int32(v, key);
  } else if (key == "logprobs") {
    req.logprobs = json_read::read_bool(v, key);
  } else if (key == "top_logprobs") {
    req.params.num_logprobs = json_read::read_int32(v, key);
  }
}

bool is_endpoint_field(openai_endpoint ep, std::string_view key) {
  static constexpr std::string_view common[] = {"model", "stream", "stream_options", "user"};
  static constexpr std::string_view completions[] = {"prompt", "echo", "logprobs"};
  static constexpr std::string_view chat[] = {"messages", "max_completion_tokens", "logprobs", "top_logprobs"};
  auto contains = [key](const auto& names) {
    return std::find(std::begin(names), std::end(names), key) != std::end(names);
  };
  return contains(common) || (ep == openai_endpoint::completions ? contains(completions) : contains(chat));
}

void read_field(openai_endpoint ep, std::string_view key, value& v, openai_request& out, openai_extras& extras,
                const parse_limits& limits) {
  if (request_fields::read_shared_field(key, v, out.req, limits)) return;
  if (!is_endpoint_field(ep, key)) {
    std::string message = "unknown field \"";
    json_read::fail_request(message.append(key).append("\""), key);
  }
  if (json_read::is_null(v, key)) return;  // OpenAI clients send null for "not set"
  if (key == "model") {
    out.model = json_read::read_string(v, key);
  } else if (key == "stream") {
    out.stream = json_read::read_bool(v, key);
  } else if (key == "stream_options") {
    read_stream_options(v, out);
    extras.has_stream_options = true;
  } else if (key == "user") {
    json_read::read_string_view(v, key);  // accepted and ignored, as the API allows
  } else {
    read_endpoint_field(ep, key, v, out, extras);
  }
}

void check_and_apply(openai_endpoint ep, openai_request& out, const openai_extras& extras, const parse_limits& limits) {
  const bool is_chat = ep == openai_endpoint::chat_completions;
  if (!extras.has_input) {
    json_read::fail_request(is_chat ? "messages is required" : "prompt is required", is_chat ? "messages" : "prompt");
  }
  if (out.stream && out.req.best_of > out.req.n) {
    // As OpenAI: the kept choices are known only once every candidate has ended.
    json_read::fail_request("best_of greater than n cannot be streamed (stream must be false)", "best_of");
  }
  if (extras.has_stream_options && !out.stream) {
    json_read::fail_request("stream_options is only allowed when stream is true", "stream_options");
  }
  if (extras.max_completion_tokens) out.req.params.max_tokens = *extras.max_completion_tokens;
  // validate wants an id; the server gives the request its own after parsing.
  out.req.id.assign(1, '-');  // not = "-": GCC 12 warns falsely (-Wrestrict, PR105651)
  request_fields::validate(out.req, limits, is_chat ? "top_logprobs" : "logprobs");
  out.req.id.clear();
}

}  // namespace

openai_parse_result parse_openai_request(openai_endpoint ep, std::string_view body, const parse_limits& limits) {
  openai_parse_result result;
  try {
    openai_request out;
    openai_extras extras;
    json_read::document_reader& reader = json_read::thread_document_reader();
    json_read::for_each_field(reader.open_object(body, "the request body"), {}, [&](std::string_view key, value& v) {
      read_field(ep, key, v, out, extras, limits);
    });
    reader.expect_end();
    check_and_apply(ep, out, extras, limits);
    result.value = std::move(out);
  } catch (const json_read::parse_failure& failure) {
    result.error = failure.error;
  } catch (const std::exception& e) {
    result.error = api_error{500, "internal", std::string("parsing the request failed: ").append(e.what()), {}};
  } catch (...) {
    result.error = api_error{500, "internal", "parsing the request failed", {}};
  }
  return result;
}

}  // namespace troupe::net
