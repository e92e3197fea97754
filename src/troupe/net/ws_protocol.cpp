// ws_protocol: one pass over a client frame's members (type may come last), then the checks
// for the message type found; the server's frames through json_writer.
#include "troupe/net/ws_protocol.hpp"

#include "troupe/net/json_read.hpp"
#include "troupe/net/json_writer.hpp"
#include "troupe/net/request_fields.hpp"

namespace troupe::net {
namespace {

using json_read::value;

constexpr int max_ping_data_depth = 64;

// What one pass over the frame found; which parts are allowed depends on type.
struct frame_fields {
  std::optional<std::string> type;
  std::optional<std::string> id;
  std::optional<std::string> data_json;
  request req;
  std::string first_generate_field;  // a generate-only field, refused in cancel and ping
  std::string first_unknown_field;
};

// The generate fields that are not shared with the OpenAI endpoints.
bool read_generate_field(std::string_view key, value& v, request& req, const parse_limits& limits) {
  if (key == "prompt") {
    if (json_read::is_null(v, key)) return true;
    // Text, or token ids fed as given (as on /v1/completions).
    if (json_read::type_of(v, key) == simdjson::ondemand::json_type::array) {
      request_fields::read_token_ids(v, key, req.prompt_token_ids);
    } else {
      req.prompt = json_read::read_string(v, key);
    }
  } else if (key == "messages") {
    if (!json_read::is_null(v, key)) req.messages = request_fields::read_messages(v);
  } else if (key == "logprobs") {
    if (!json_read::is_null(v, key)) req.logprobs = json_read::read_bool(v, key);
  } else if (key == "top_logprobs") {
    if (!json_read::is_null(v, key)) req.params.num_logprobs = json_read::read_int32(v, key);
  } else if (key == "echo") {
    if (!json_read::is_null(v, key)) req.echo = json_read::read_bool(v, key);
  } else {
    return request_fields::read_shared_field(key, v, req, limits);
  }
  return true;
}

frame_fields read_frame(std::string_view frame, const parse_limits& limits) {
  frame_fields f;
  json_read::document_reader& reader = json_read::thread_document_reader();
  json_read::for_each_field(reader.open_object(frame, "a message"), {}, [&](std::string_view key, value& v) {
    if (key == "type") {
      f.type = json_read::read_string(v, key);
    } else if (key == "id") {
      f.id = json_read::read_string(v, key);
    } else if (key == "data") {
      json_writer w;
      json_read::copy_value(v, key, w, max_ping_data_depth);
      f.data_json = w.take();
    } else if (read_generate_field(key, v, f.req, limits)) {
      if (f.first_generate_field.empty()) f.first_generate_field = key;
    } else if (f.first_unknown_field.empty()) {
      f.first_unknown_field = key;
    }
  });
  reader.expect_end();
  return f;
}

[[noreturn]] void fail_unknown_field(std::string_view key, std::string_view type) {
  std::string message = "unknown field \"";
  message.append(key).append("\" in a ").append(type).append(" message");
  json_read::fail_request(std::move(message), key);
}

void require_id(const frame_fields& f) {
  if (!f.id) json_read::fail_request("id is required (a non-empty string naming the request)", "id");
}

ws_client_message to_message(frame_fields& f, const parse_limits& limits) {
  if (!f.type) json_read::fail_request("type is required: generate, cancel or ping", "type");
  const std::string& type = *f.type;
  if (type != "generate" && type != "cancel" && type != "ping") {
    json_read::fail({400, "unknown_type", "type must be generate, cancel or ping, got \"" + type + "\"", "type"});
  }
  if (!f.first_unknown_field.empty()) fail_unknown_field(f.first_unknown_field, type);
  if (type == "generate") {
    if (f.data_json) fail_unknown_field("data", type);
    require_id(f);
    f.req.id = *f.id;
    request_fields::validate(f.req, limits, "top_logprobs");
    return ws_generate{std::move(f.req)};
  }
  if (!f.first_generate_field.empty()) fail_unknown_field(f.first_generate_field, type);
  if (type == "cancel") {
    if (f.data_json) fail_unknown_field("data", type);
    require_id(f);
    if (f.id->empty() || f.id->size() > max_request_id_bytes) {
      json_read::fail_request("id must be a non-empty string of at most 256 bytes", "id");
    }
    return ws_cancel{*f.id};
  }
  if (f.id) fail_unknown_field("id", type);
  return ws_ping{f.data_json.value_or(std::string())};
}

// Best effort after a failure: the frame's top-level "id" if it is a string, so that the error
// frame reaches the right request. Stops at the first thing it cannot read.
std::string recover_id(std::string_view frame) {
  try {
    std::string id;
    json_read::document_reader& reader = json_read::thread_document_reader();
    for (auto field : reader.open_object(frame, "a message")) {
      std::string_view key;
      if (field.unescaped_key().get(key)) break;
      if (key != "id") continue;
      std::string_view text;
      if (!field.value().get_string().get(text)) id = text;
      break;
    }
    return id.size() <= max_request_id_bytes ? id : std::string();
  } catch (...) {
    return {};  // the error being reported is the first one
  }
}

void write_usage(json_writer& w, const request_usage& u) {
  w.key("usage").begin_object();
  w.key("prompt_tokens").value(u.prompt_tokens);
  w.key("completion_tokens").value(u.completion_tokens);
  w.key("total_tokens").value(u.total_tokens());
  w.key("cached_prompt_tokens").value(u.cached_prompt_tokens);
  w.end_object();
}

void write_timings(json_writer& w, const request_timings& t) {
  w.key("timings").begin_object();
  w.key("queue_ms").value(t.queue_ms);
  w.key("ttft_ms").value(t.time_to_first_token_ms);
  w.key("tpot_ms").value(t.per_output_token_ms);
  w.key("total_ms").value(t.total_ms);
  if (t.num_draft_tokens > 0) {
    w.key("draft_tokens").value(t.num_draft_tokens);
    w.key("accepted_tokens").value(t.num_accepted_tokens);
    w.key("acceptance_rate").value(static_cast<double>(t.num_accepted_tokens) / t.num_draft_tokens);
  }
  w.end_object();
}

void write_logprob_entry(json_writer& w, const logprob_entry& e) {
  w.key("token").value(e.token);
  w.key("text").value(e.text);
  w.key("logprob").value(e.logprob);
}

json_writer& begin_frame(json_writer& w, const char* type, std::string_view id) {
  w.begin_object().key("type").value(type).key("id");
  return id.empty() ? w.null() : w.value(id);
}

}  // namespace

ws_parse_result parse_ws_message(std::string_view frame, const parse_limits& limits) {
  ws_parse_result result;
  try {
    frame_fields fields = read_frame(frame, limits);
    if (fields.id && fields.id->size() <= max_request_id_bytes) result.id = *fields.id;
    result.message = to_message(fields, limits);
    return result;
  } catch (const json_read::parse_failure& failure) {
    result.error = failure.error;
  } catch (const std::exception& e) {
    result.error = api_error{500, "internal", std::string("parsing the message failed: ").append(e.what()), {}};
  } catch (...) {
    result.error = api_error{500, "internal", "parsing the message failed", {}};
  }
  if (result.id.empty()) result.id = recover_id(frame);
  return result;
}

std::string ws_accepted(std::string_view id) {
  json_writer w;
  begin_frame(w, "accepted", id).end_object();
  return w.take();
}

std::string ws_delta(std::string_view id, const delta_event& d, double server_ms) {
  json_writer w;
  begin_frame(w, "delta", id);
  w.key("index").value(d.index);
  w.key("text").value(d.text);
  w.key("tokens").begin_array();
  for (int32_t token : d.token_ids) w.value(token);
  w.end_array();
  w.key("server_ms").value(server_ms);
  if (!d.logprobs.empty()) {
    w.key("logprobs").begin_array();
    for (const token_logprobs& t : d.logprobs) {
      w.begin_object();
      write_logprob_entry(w, t.sampled);
      w.key("top").begin_array();
      for (const logprob_entry& alt : t.top) {
        w.begin_object();
        write_logprob_entry(w, alt);
        w.end_object();
      }
      w.end_array().end_object();
    }
    w.end_array();
  }
  w.end_object();
  return w.take();
}

namespace {

void write_choice_end(json_writer& w, const choice_done_event& d) {
  w.key("index").value(d.index);
  w.key("finish_reason").value(to_string(d.reason));
  if (d.stop_string) w.key("stop").value(*d.stop_string);
  if (d.stop_token) w.key("stop_token").value(*d.stop_token);
  w.key("completion_tokens").value(d.completion_tokens);
  w.key("cumulative_logprob").value(d.cumulative_logprob);
}

}  // namespace

std::string ws_choice_done(std::string_view id, const choice_done_event& d) {
  json_writer w;
  begin_frame(w, "choice_done", id);
  write_choice_end(w, d);
  w.end_object();
  return w.take();
}

std::string ws_done(std::string_view id, const done_event& d, std::string_view detail) {
  json_writer w;
  begin_frame(w, "done", id);
  w.key("finish_reason").value(to_string(d.reason));
  if (d.stop_string) w.key("stop").value(*d.stop_string);
  if (d.stop_token) w.key("stop_token").value(*d.stop_token);
  write_usage(w, d.usage);
  write_timings(w, d.timings);
  if (!d.choices.empty()) {
    w.key("choices").begin_array();
    for (const choice_done_event& c : d.choices) {
      w.begin_object();
      write_choice_end(w, c);
      w.end_object();
    }
    w.end_array();
  }
  if (!detail.empty()) w.key("detail").value(detail);
  w.end_object();
  return w.take();
}

std::string ws_error(std::string_view id, const api_error& e) {
  json_writer w;
  begin_frame(w, "error", id);
  w.key("code").value(e.code);
  w.key("message").value(e.message);
  if (!e.param.empty()) w.key("param").value(e.param);
  // What HTTP says with Retry-After: a full queue, a server starting or draining, are over
  // in moments; a client may send the request again after this long.
  if (e.status == 429 || e.status == 503) w.key("retry_after_ms").value(retry_after_ms);
  w.end_object();
  return w.take();
}

std::string ws_pong(std::string_view data_json) {
  json_writer w;
  w.begin_object().key("type").value("pong");
  if (!data_json.empty()) w.key("data").raw(data_json);
  w.end_object();
  return w.take();
}

}  // namespace troupe::net
