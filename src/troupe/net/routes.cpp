// http_session's routes: the table of paths, the small GET answers, and the completion
// endpoints (whole answers and server-sent events).
#include <boost/asio/post.hpp>

#include <chrono>

#include "troupe/net/chat_page.hpp"
#include "troupe/net/http_session.hpp"
#include "troupe/net/json_writer.hpp"
#include "troupe/net/metrics_text.hpp"

namespace troupe::net {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// Posts a completion's events to its connection; drops them once the connection is gone
// (its request was cancelled when it closed) or the server has stopped.
class http_sink : public event_sink {
 public:
  http_sink(std::weak_ptr<http_session> session, std::shared_ptr<session_gate> gate)
      : session_(std::move(session)), gate_(std::move(gate)) {}
  void on_event(const std::string&, const request_event& event) override {
    gate_->if_open([&] {
      if (auto s = session_.lock()) s->post_event(ticket(), event);
    });
  }
  void set_ticket(engine_bridge::ticket t) { ticket_.store(t); }
  engine_bridge::ticket ticket() const { return ticket_.load(); }

 private:
  std::weak_ptr<http_session> session_;
  std::shared_ptr<session_gate> gate_;
  std::atomic<engine_bridge::ticket> ticket_{0};
};

std::string unix_seconds_id() {
  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now).count()) + "-" +
         std::to_string(counter.fetch_add(1));
}

api_error timeout_error() {
  return api_error{503, "timeout", "the request's deadline (timeout_ms) passed before its first token", ""};
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void http_session::route(request_type req) {
  const std::string_view target = req.target();
  const std::string path(target.substr(0, target.find('?')));
  const auto method = req.method();
  const bool is_tokenizer_route = path == "/tokenize" || path == "/detokenize";
  const bool needs_key = path.rfind("/v1/", 0) == 0 || is_tokenizer_route;
  // The metrics label: the known routes by name, everything else as one value.
  for (std::string_view known : {"/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions",
                                 "/v1/ws", "/tokenize", "/detokenize", "/v1/diagnosis"}) {
    if (path == known) route_ = known;
  }
  // ?api_key= opens only the WebSocket (browsers cannot set its headers): a key in the URL
  // of an HTTP request ends up in access logs and proxies' histories.
  if (needs_key && !is_authorized(state_->options, req[http::field::authorization], target, false)) {
    std::string message = "missing or wrong API key (Authorization: Bearer KEY)";
    if (has_api_key_in_query(target)) message += "; ?api_key= is accepted on the WebSocket upgrade (/v1/ws) only";
    return respond_error(api_error{401, "invalid_api_key", std::move(message), ""});
  }
  auto only = [&](http::verb verb, const char* allow) {
    if (method == verb) return true;
    respond(http::status::method_not_allowed, "application/json",
            openai_error_body(api_error{405, "method_not_allowed",
                                        std::string(req.method_string()) + " is not allowed on " + path +
                                            " (allowed: " + allow + ")",
                                        ""}),
            true, allow);
    return false;
  };
  auto& bridge = state_->bridge;
  if (path == "/" || path == "/index.html") {
    if (only(http::verb::get, "GET")) respond(http::status::ok, "text/html; charset=utf-8", std::string(chat_page_html()));
  } else if (path == "/health") {
    if (!only(http::verb::get, "GET")) return;
    if (auto failure = bridge.engine_failure()) {
      json_writer w;
      w.begin_object().key("status").value("failed").key("error").value(*failure).end_object();
      return respond(http::status::service_unavailable, "application/json", w.take());
    }
    if (bridge.is_ready()) return respond(http::status::ok, "application/json", R"({"status":"ok"})");
    respond(http::status::service_unavailable, "application/json",
            bridge.is_draining() ? R"({"status":"draining"})" : R"({"status":"starting"})");
  } else if (path == "/metrics") {
    if (only(http::verb::get, "GET")) {
      respond(http::status::ok, "text/plain; version=0.0.4; charset=utf-8", render_metrics(*state_));
    }
  } else if (path == "/v1/diagnosis") {
    if (only(http::verb::get, "GET")) respond_diagnosis(target);
  } else if (path == "/v1/models") {
    if (only(http::verb::get, "GET")) {
      respond(http::status::ok, "application/json",
              models_list_body(bridge.model_id(), bridge.created_unix_s(), bridge.max_model_len()));
    }
  } else if (path == "/v1/completions") {
    if (only(http::verb::post, "POST")) start_completion(req, openai_endpoint::completions);
  } else if (path == "/v1/chat/completions") {
    if (only(http::verb::post, "POST")) start_completion(req, openai_endpoint::chat_completions);
  } else if (is_tokenizer_route) {
    if (only(http::verb::post, "POST")) start_tokenizer_call(req, path);
  } else if (path == "/v1/ws") {
    respond_error(api_error{400, "invalid_request", "/v1/ws takes a WebSocket upgrade (GET with Upgrade: websocket)", ""});
  } else {
    respond_error(api_error{404, "not_found", "no route " + std::string(req.method_string()) + " " + path, ""});
  }
}

void http_session::start_completion(const request_type& req, openai_endpoint endpoint) {
  auto& bridge = state_->bridge;
  auto parsed = parse_openai_request(endpoint, req.body(), parse_limits{bridge.vocab_size(), bridge.max_model_len()});
  if (!parsed.value) return respond_error(*parsed.error);
  if (!bridge.is_ready()) {
    return respond_error(
        api_error{503, "unavailable", bridge.is_draining() ? "server is shutting down" : "server is not ready", ""});
  }
  auto& call = *parsed.value;
  const bool is_chat = endpoint == openai_endpoint::chat_completions;
  const std::string id = (is_chat ? "chatcmpl-" : "cmpl-") + unix_seconds_id();
  call.req.id = id;
  openai_response response(endpoint, id, bridge.model_id(), unix_seconds(), call.req);
  // Until the engine answers, nothing but a disconnect can end this request.
  stream_.expires_never();
  auto sink = std::make_shared<http_sink>(weak_from_this(), state_->gate);
  active_.emplace(completion{0, std::move(response), call.stream});
  const auto ticket = bridge.submit(std::move(call.req), sink);
  sink->set_ticket(ticket);
  if (active_) active_->ticket = ticket;
  hold_.expires_at(boost::asio::steady_timer::time_point::max());
  hold_.async_wait([self = shared_from_this()](beast::error_code) {});
  read_ahead();
}

void http_session::post_event(engine_bridge::ticket ticket, const request_event& event) {
  boost::asio::post(stream_.get_executor(),
                    [self = shared_from_this(), ticket, event] { self->on_event(ticket, event); });
}

void http_session::on_event(engine_bridge::ticket ticket, const request_event& event) {
  // Events can arrive before submit() returned the ticket; the active one is the only one.
  if (!active_ || active_->is_ended || (ticket != 0 && active_->ticket != 0 && ticket != active_->ticket)) return;
  if (active_->is_stream) return on_stream_event(event);
  if (const auto* d = std::get_if<delta_event>(&event)) return active_->response.add(*d);
  if (const auto* done = std::get_if<done_event>(&event)) {
    active_->is_ended = true;
    if (active_->is_client_gone) return close();
    if (is_timeout_without_output(*done)) return respond_error(timeout_error());
    return respond(http::status::ok, "application/json", active_->response.body(*done));
  }
  if (const auto* e = std::get_if<error_event>(&event)) {
    active_->is_ended = true;
    if (active_->is_client_gone) return close();
    respond_error(to_api_error(*e));
  }
}

// timeout_ms passed before the first token: nothing was made, so the answer is an error a
// client may retry (503, Retry-After), not an empty 200. With output before the deadline the
// answer is that output, ending with finish_reason "timeout".
bool http_session::is_timeout_without_output(const done_event& done) const {
  return done.reason == request_finish_reason::timeout && done.usage.completion_tokens == 0 &&
         !active_->is_header_sent;
}

// The header waits for the first output, so that a refusal (queue full, prompt too long)
// still gets its own HTTP status instead of an error inside a 200 stream.
void http_session::on_stream_event(const request_event& event) {
  auto& call = *active_;
  if (const auto* d = std::get_if<delta_event>(&event)) {
    if (call.is_slow) return;
    if (!call.is_header_sent) {
      send_stream_header();
      send_chunk(call.response.sse_start(), false);
    }
    return send_chunk(call.response.sse_delta(*d), true);
  }
  if (const auto* choice = std::get_if<choice_done_event>(&event)) {
    if (call.is_slow) return;
    if (!call.is_header_sent) {
      send_stream_header();
      send_chunk(call.response.sse_start(), false);
    }
    return send_chunk(call.response.sse_choice_finish(*choice), true);
  }
  if (const auto* done = std::get_if<done_event>(&event)) {
    call.is_ended = true;
    if (call.is_client_gone) return close();
    if (is_timeout_without_output(*done)) return respond_error(timeout_error());
    if (!call.is_header_sent) {
      send_stream_header();
      send_chunk(call.response.sse_start(), false);
    }
    if (call.is_slow) {
      send_chunk(call.response.sse_error(api_error{503, "slow_consumer",
                                                   "the client read too slowly: more than " +
                                                       std::to_string(state_->options.max_buffered_bytes) +
                                                       " bytes waited (--max-buffered-bytes)",
                                                   ""}),
                 false);
    } else {
      send_chunk(call.response.sse_finish(*done), false);
    }
    return end_stream();
  }
  if (const auto* e = std::get_if<error_event>(&event)) {
    call.is_ended = true;
    if (call.is_client_gone) return close();
    if (!call.is_header_sent) return respond_error(to_api_error(*e));
    send_chunk(call.response.sse_error(to_api_error(*e)), false);
    end_stream();
  }
}

}  // namespace troupe::net
