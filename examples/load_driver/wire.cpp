// Encoding requests and decoding server events for both wire protocols.
#include "wire.hpp"

#include <simdjson.h>

#include <stdexcept>

#include "json_writer.hpp"

namespace troupe::load {
namespace {

simdjson::dom::parser& parser() {
  static thread_local simdjson::dom::parser p;
  return p;
}

simdjson::dom::element parse(std::string_view text) {
  simdjson::dom::element e;
  if (const auto err = parser().parse(text.data(), text.size()).get(e)) {
    throw std::runtime_error(std::string("not valid JSON: ") + simdjson::error_message(err));
  }
  return e;
}

// The sampling block's members, spliced after the driver's own fields.
void append_sampling(json_writer& j, const workload& w) {
  const std::string& s = w.sampling_json;  // a minified object: "{}" or "{...}"
  if (s.size() > 2) j.raw(std::string_view(s).substr(1, s.size() - 2));
}

void write_prompt(json_writer& j, const request_spec& r, const workload& w) {
  if (w.api == api_kind::chat) {
    j.key("messages").begin_array().begin_object();
    j.key("role").value("user").key("content").value(r.prompt);
    j.end_object().end_array();
  } else {
    j.key("prompt").value(r.prompt);
  }
}

std::string string_or_empty(simdjson::dom::element e, const char* key) {
  std::string_view s;
  if (e[key].get_string().get(s)) return {};
  return std::string(s);
}

std::optional<usage_counts> read_usage(simdjson::dom::element e) {
  simdjson::dom::element u;
  if (e["usage"].get(u) || !u.is_object()) return std::nullopt;
  usage_counts c;
  int64_t v = 0;
  if (!u["prompt_tokens"].get_int64().get(v)) c.prompt_tokens = v;
  if (!u["completion_tokens"].get_int64().get(v)) c.completion_tokens = v;
  return c;
}

}  // namespace

std::string ws_generate_frame(const request_spec& r, const workload& w) {
  json_writer j;
  j.begin_object();
  j.key("type").value("generate").key("id").value(r.id);
  write_prompt(j, r, w);
  j.key("max_tokens").value(r.max_tokens);
  if (r.priority) j.key("priority").value(*r.priority);
  append_sampling(j, w);
  j.end_object();
  return j.str();
}

std::string ws_cancel_frame(const std::string& id) {
  json_writer j;
  j.begin_object().key("type").value("cancel").key("id").value(id).end_object();
  return j.str();
}

std::string http_request_body(const request_spec& r, const workload& w, const std::string& model) {
  json_writer j;
  j.begin_object();
  j.key("model").value(model);
  write_prompt(j, r, w);
  j.key("max_tokens").value(r.max_tokens);
  j.key("stream").value(true);
  j.key("stream_options").begin_object().key("include_usage").value(true).end_object();
  if (r.priority) j.key("priority").value(*r.priority);
  append_sampling(j, w);
  j.end_object();
  return j.str();
}

std::string http_target_path(const workload& w) {
  return w.api == api_kind::chat ? "/chat/completions" : "/completions";
}

ws_event decode_ws_frame(std::string_view frame) {
  const auto e = parse(frame);
  if (!e.is_object()) throw std::runtime_error("frame is not a JSON object");
  std::string_view type;
  if (e["type"].get_string().get(type)) throw std::runtime_error("frame has no string \"type\"");
  ws_event ev;
  ev.id = string_or_empty(e, "id");
  if (type == "accepted") {
    ev.type = ws_event::kind::accepted;
  } else if (type == "delta") {
    ev.type = ws_event::kind::delta;
    ev.text = string_or_empty(e, "text");
    simdjson::dom::array tokens;
    ev.num_tokens = e["tokens"].get_array().get(tokens) ? 1 : static_cast<int64_t>(tokens.size());
    double ms = 0;
    if (!e["server_ms"].get_double().get(ms)) ev.server_ms = ms;
  } else if (type == "done") {
    ev.type = ws_event::kind::done;
    ev.finish_reason = string_or_empty(e, "finish_reason");
    ev.usage = read_usage(e);
    ev.message = string_or_empty(e, "detail");
  } else if (type == "error") {
    ev.type = ws_event::kind::error;
    ev.code = string_or_empty(e, "code");
    ev.message = string_or_empty(e, "message");
  } else if (type == "pong") {
    ev.type = ws_event::kind::pong;
  }
  return ev;
}

std::vector<std::string> sse_splitter::feed(std::string_view bytes) {
  std::vector<std::string> out;
  pending_.append(bytes);
  size_t start = 0;
  for (size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(pending_.data() + start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    take_line(line, out);
  }
  pending_.erase(0, start);
  return out;
}

void sse_splitter::take_line(std::string_view line, std::vector<std::string>& out) {
  if (line.empty()) {
    if (has_data_) out.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.substr(0, 5) != "data:") return;  // comments (":...") and other fields
  line.remove_prefix(5);
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(line);
  has_data_ = true;
}

sse_chunk decode_sse_chunk(std::string_view payload) {
  sse_chunk c;
  if (payload == "[DONE]") {
    c.is_done_marker = true;
    return c;
  }
  const auto e = parse(payload);
  simdjson::dom::element err;
  if (!e["error"].get(err)) {
    std::string_view msg;
    c.error = err["message"].get_string().get(msg) ? std::string("error") : std::string(msg);
    return c;
  }
  c.usage = read_usage(e);
  simdjson::dom::array choices;
  if (!e["choices"].get_array().get(choices) && choices.size() > 0) {
    const simdjson::dom::element choice = choices.at(0);
    c.text = string_or_empty(choice, "text");
    simdjson::dom::element delta;
    if (c.text.empty() && !choice["delta"].get(delta) && delta.is_object()) {
      c.text = string_or_empty(delta, "content");
    }
    c.finish_reason = string_or_empty(choice, "finish_reason");
  }
  return c;
}

std::string error_body_message(std::string_view body) {
  try {
    const auto e = parse(body);
    std::string_view msg;
    if (!e["error"]["message"].get_string().get(msg)) return std::string(msg);
    if (!e["message"].get_string().get(msg)) return std::string(msg);
  } catch (const std::runtime_error&) {
  }
  return std::string(body.substr(0, 200));
}

}  // namespace troupe::load
