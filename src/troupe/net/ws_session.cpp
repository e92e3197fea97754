// ws_session: frames in → parse → submit / cancel / pong; engine events → frames out.
#include "troupe/net/ws_session.hpp"

#include <boost/asio/post.hpp>

#include "troupe/net/api_error.hpp"
#include "troupe/net/ws_protocol.hpp"

namespace troupe::net {

namespace beast = boost::beast;
namespace websocket = beast::websocket;

namespace {

constexpr std::size_t read_chunk_bytes = 64 * 1024;

// Posts a request's events to its session; drops them once the session is gone (its
// requests were cancelled when it closed) or the server has stopped.
class ws_sink : public event_sink {
 public:
  ws_sink(std::weak_ptr<ws_session> session, std::shared_ptr<session_gate> gate)
      : session_(std::move(session)), gate_(std::move(gate)) {}
  void on_event(const std::string& id, const request_event& event) override {
    gate_->if_open([&] {
      if (auto s = session_.lock()) s->post_event(id, event, unix_time_ms());
    });
  }

 private:
  std::weak_ptr<ws_session> session_;
  std::shared_ptr<session_gate> gate_;
};

bool is_terminal(const request_event& e) {
  return std::holds_alternative<done_event>(e) || std::holds_alternative<error_event>(e);
}

}  // namespace

ws_session::ws_session(beast::tcp_stream&& stream, std::shared_ptr<server_state> state)
    : ws_(std::move(stream)), state_(std::move(state)), write_timer_(ws_.get_executor()) {
  // The HTTP session that upgraded gives its count back when it ends; this one keeps it.
  state_->num_connections.fetch_add(1);
  state_->num_ws_sessions.fetch_add(1);
}

ws_session::~ws_session() {
  state_->num_ws_sessions.fetch_sub(1);
  state_->num_connections.fetch_sub(1);
}

void ws_session::run(beast::http::request<beast::http::string_body> upgrade) {
  beast::get_lowest_layer(ws_).expires_never();
  // Pings an idle peer and drops one that stops answering.
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(beast::http::field::server, "troupe"); }));
  ws_.read_message_max(0);  // the session bounds messages itself, without closing
  // A close frame ends the client's interest at once, but the read that saw it completes
  // only after the closing handshake, which waits for the client to close TCP as well: a
  // client that keeps its socket open would keep its requests generating until then.
  ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::close) close_requests();
  });
  ws_.async_accept(upgrade, beast::bind_front_handler(&ws_session::on_accept, shared_from_this()));
}

void ws_session::on_accept(beast::error_code ec) {
  if (ec) return;
  do_read();
}

void ws_session::do_read() {
  ws_.async_read_some(buffer_, read_chunk_bytes,
                      beast::bind_front_handler(&ws_session::on_read, shared_from_this()));
}

void ws_session::on_read(beast::error_code ec, std::size_t) {
  if (ec) return close_requests();
  if (static_cast<int64_t>(buffer_.size()) > state_->options.max_body_bytes) {
    is_discarding_ = true;
    buffer_.clear();
  }
  if (!ws_.is_message_done()) return do_read();
  if (is_discarding_) {
    is_discarding_ = false;
    send(ws_error({}, api_error{413, "frame_too_large",
                                "message is over the limit of " + std::to_string(state_->options.max_body_bytes) +
                                    " bytes (--max-body-bytes)",
                                ""}),
         frame_kind::reply);
  } else {
    on_message(beast::buffers_to_string(buffer_.data()));
  }
  buffer_.clear();
  do_read();
}

void ws_session::on_message(const std::string& text) {
  state_->metrics.ws_frames_received->inc();
  auto& bridge = state_->bridge;
  auto parsed = parse_ws_message(text, parse_limits{bridge.vocab_size(), bridge.max_model_len()});
  if (!parsed.message) return send(ws_error(parsed.id, *parsed.error), frame_kind::reply);
  if (auto* ping = std::get_if<ws_ping>(&*parsed.message)) return send(ws_pong(ping->data_json), frame_kind::reply);
  if (auto* cancel = std::get_if<ws_cancel>(&*parsed.message)) {
    if (auto it = requests_.find(cancel->id); it != requests_.end()) bridge.cancel(it->second.ticket);
    return;
  }
  auto& generate = std::get<ws_generate>(*parsed.message);
  const std::string id = generate.req.id;
  if (!bridge.is_ready()) {
    return send(ws_error(id, api_error{503, "unavailable",
                                       bridge.is_draining() ? "server is shutting down" : "server is not ready", ""}),
                frame_kind::reply);
  }
  if (requests_.count(id)) {
    return send(ws_error(id, api_error{400, "duplicate_id", "id \"" + id + "\" is already in flight on this connection",
                                       "id"}),
                frame_kind::reply);
  }
  auto& entry = requests_[id];
  entry.ticket = bridge.submit(std::move(generate.req), std::make_shared<ws_sink>(weak_from_this(), state_->gate));
}

void ws_session::post_event(const std::string& id, const request_event& event, double server_ms) {
  boost::asio::post(ws_.get_executor(), [self = shared_from_this(), id, event, server_ms] {
    self->on_event(id, event, server_ms);
  });
}

void ws_session::on_event(const std::string& id, const request_event& event, double server_ms) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;  // the connection closed; its requests were cancelled
  const bool is_slow = it->second.is_slow;
  if (is_terminal(event)) requests_.erase(it);
  if (is_closed_) return;
  std::visit(
      [&](const auto& e) {
        using event_type = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<event_type, accepted_event>) {
          send(ws_accepted(id), frame_kind::output);
        } else if constexpr (std::is_same_v<event_type, delta_event>) {
          if (!is_slow) send(ws_delta(id, e, server_ms), frame_kind::output);
        } else if constexpr (std::is_same_v<event_type, choice_done_event>) {
          if (!is_slow) send(ws_choice_done(id, e), frame_kind::output);
        } else if constexpr (std::is_same_v<event_type, done_event>) {
          std::string detail;
          if (is_slow) {
            detail = "slow consumer: more than " + std::to_string(state_->options.max_buffered_bytes) +
                     " bytes of output waited for the client (--max-buffered-bytes)";
          } else if (e.reason == request_finish_reason::cancelled && state_->bridge.is_draining()) {
            detail = "server shutting down";
          }
          send(ws_done(id, e, detail), frame_kind::reply);
        } else {
          send(ws_error(id, to_api_error(e)), frame_kind::reply);
        }
      },
      event);
}

// Every frame counts against max_buffered_bytes. Output may fill three quarters of it; past
// that the client is a slow consumer and its requests are cancelled, so the last quarter is
// left for the frames that end them (each request still ends visibly) and for errors and
// pongs. A frame that does not fit even there means the client is not reading what it asks
// for (a ping flood, say): the connection is closed.
void ws_session::send(std::string frame, frame_kind kind) {
  if (is_closed_) return;
  const int64_t bound = state_->options.max_buffered_bytes;
  const int64_t size = static_cast<int64_t>(frame.size());
  if (kind == frame_kind::output && queued_bytes_ + size > bound - bound / 4) return cancel_slow_requests();
  if (queued_bytes_ + size > bound) return close_connection(state_->metrics.closed_buffer_full);
  queued_bytes_ += size;
  state_->metrics.ws_frames_sent->inc();
  queue_.push_back(std::make_shared<const std::string>(std::move(frame)));
  if (queue_.size() == 1) do_write();
}

// Beast's timeouts watch reads only (a ping unanswered); a client that sends but never
// reads would hold its queue forever without this timer.
void ws_session::do_write() {
  auto frame = queue_.front();  // the write's, even if the queue is cleared meanwhile
  write_timer_.expires_after(std::chrono::milliseconds(state_->options.write_timeout_ms));
  write_timer_.async_wait([self = shared_from_this(), n = ++num_writes_](beast::error_code ec) {
    if (!ec && n == self->num_writes_ && !self->queue_.empty()) {
      self->close_connection(self->state_->metrics.closed_write_timeout);
    }
  });
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(*frame), [self = shared_from_this(), frame](beast::error_code ec, std::size_t n) {
    self->on_write(ec, n);
  });
}

void ws_session::on_write(beast::error_code ec, std::size_t) {
  ++num_writes_;
  write_timer_.cancel();
  if (ec || is_closed_) {
    queue_.clear();
    queued_bytes_ = 0;
    return close_requests();
  }
  queued_bytes_ -= static_cast<int64_t>(queue_.front()->size());
  queue_.pop_front();
  if (!queue_.empty()) do_write();
}

void ws_session::cancel_slow_requests() {
  for (auto& [id, entry] : requests_) {
    if (entry.is_slow) continue;
    entry.is_slow = true;
    state_->metrics.cancelled_slow_consumer->inc();
    state_->bridge.cancel(entry.ticket);
  }
}

void ws_session::close_connection(counter_metric* reason) {
  if (is_closed_) return;
  reason->inc();
  cancel_slow_requests();  // the requests not cancelled yet, counted as slow consumers
  is_closed_ = true;
  queue_.clear();
  queued_bytes_ = 0;
  write_timer_.cancel();
  beast::get_lowest_layer(ws_).close();  // the pending read and write end with an error
}

// The client is gone: every request it made stops and returns its KV blocks.
void ws_session::close_requests() {
  if (is_closed_) return;
  is_closed_ = true;
  for (const auto& [id, entry] : requests_) {
    if (entry.is_slow) continue;  // cancelled already, and counted
    state_->metrics.cancelled_client_gone->inc();
    state_->bridge.cancel(entry.ticket);
  }
}

}  // namespace troupe::net
