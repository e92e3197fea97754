// http_session: the read loop, plain responses, and the write queue of a streamed answer.
#include "troupe/net/http_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/websocket.hpp>

#include <cctype>
#include <optional>
#include <vector>

#include "troupe/net/ws_session.hpp"

namespace troupe::net {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

// Bytes a client may pipeline behind a running completion: one request of the largest size
// allowed, with room for its headers. Past it the session stops reading until the answer
// ends (and so no longer sees the client leave).
constexpr int64_t read_ahead_header_bytes = 64 * 1024;

std::string lower_trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// What the parser could not judge on its own. Beast frames only a body whose last transfer
// coding is chunked and reads any other as empty, so the body's bytes would be parsed as the
// next request (request smuggling); such a request is refused and the connection closed
// before anything more is read (RFC 9112 section 6.1). HTTP/1.1 requires exactly one Host.
std::optional<api_error> framing_error(const http_session::request_type& req) {
  std::vector<std::string> codings;
  const auto [first, last] = req.equal_range(http::field::transfer_encoding);
  for (auto field = first; field != last; ++field) {
    std::string_view value = field->value();
    while (true) {
      const auto comma = value.find(',');
      codings.push_back(lower_trimmed(value.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      value.remove_prefix(comma + 1);
    }
  }
  if (!codings.empty()) {
    if (codings.back() != "chunked") {
      return api_error{400, "invalid_request",
                       "Transfer-Encoding must end with chunked: without it the body's length is unknown", ""};
    }
    if (codings.size() > 1) {
      return api_error{501, "not_implemented", "Transfer-Encoding: only chunked is supported", ""};
    }
    if (req.count(http::field::content_length) > 0) {
      return api_error{400, "invalid_request", "a request may not have both Transfer-Encoding and Content-Length", ""};
    }
  }
  const size_t num_hosts = req.count(http::field::host);
  if (num_hosts > 1 || (num_hosts == 0 && req.version() >= 11)) {
    return api_error{400, "invalid_request", "an HTTP/1.1 request needs exactly one Host header", ""};
  }
  return std::nullopt;
}

// RFC 6455: the key is a random 16-byte value in base64, always 22 characters and "==".
// Beast takes any key of up to 24 characters.
bool is_websocket_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  for (const char c : key.substr(0, 22)) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  }
  return true;
}

}  // namespace

http_session::http_session(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<server_state> state)
    : stream_(std::move(socket)), hold_(stream_.get_executor()), state_(std::move(state)) {}

http_session::~http_session() {
  // A connection that ends with its answer unsent (the client left) stops the request.
  if (active_ && !active_->is_ended) cancel_for_client_gone();
  state_->num_connections.fetch_sub(1);
}

void http_session::run() {
  boost::asio::dispatch(stream_.get_executor(), beast::bind_front_handler(&http_session::do_read, shared_from_this()));
}

void http_session::do_read() {
  parser_.emplace();
  parser_->body_limit(static_cast<uint64_t>(state_->options.max_body_bytes));
  stream_.expires_after(std::chrono::milliseconds(state_->options.idle_timeout_ms));
  http::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&http_session::on_read, shared_from_this()));
}

void http_session::on_read(beast::error_code ec, std::size_t) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout) return close();
  if (ec == http::error::body_limit) {
    return respond_error(api_error{413, "request_too_large",
                                   "request body is over the limit of " +
                                       std::to_string(state_->options.max_body_bytes) + " bytes (--max-body-bytes)",
                                   ""},
                         false);
  }
  if (ec == http::error::header_limit) {
    return respond_error(api_error{413, "request_too_large", "request headers are too large", ""}, false);
  }
  if (ec) {
    if (ec.category() == http::make_error_code(http::error::end_of_stream).category()) {
      return respond_error(api_error{400, "invalid_request", "malformed HTTP request: " + ec.message(), ""}, false);
    }
    return close();
  }
  request_type req = parser_->release();
  route_ = "other";
  http_version_ = req.version();
  is_keep_alive_ = req.keep_alive();
  if (auto refusal = framing_error(req)) return respond_error(*refusal, false);
  if (beast::websocket::is_upgrade(req)) {
    const std::string_view target = req.target();
    if (target.substr(0, target.find('?')) == "/v1/ws" &&
        is_authorized(state_->options, req[http::field::authorization], target, true)) {
      if (!is_websocket_key(req[http::field::sec_websocket_key])) {
        return respond_error(api_error{400, "invalid_request",
                                       "Sec-WebSocket-Key must be 24 base64 characters encoding 16 bytes (RFC 6455)",
                                       ""},
                             false);
      }
      // The connection becomes a WebSocket; this session ends here.
      std::make_shared<ws_session>(std::move(stream_), state_)->run(std::move(req));
      return;
    }
  }
  route(std::move(req));
}

void http_session::respond(http::status status, std::string content_type, std::string body, bool is_keep_alive,
                           std::string allow) {
  state_->metrics.count_response(route_, static_cast<int>(status));
  auto res = std::make_shared<http::response<http::string_body>>(status, http_version_);
  res->set(http::field::server, "troupe");
  res->set(http::field::content_type, content_type);
  if (!allow.empty()) res->set(http::field::allow, allow);
  if (status == http::status::unauthorized) res->set(http::field::www_authenticate, "Bearer");
  // A full queue and a server starting or draining are over in moments; clients that honour
  // Retry-After (the OpenAI SDKs do) wait this long instead of retrying at once.
  if (status == http::status::too_many_requests || status == http::status::service_unavailable) {
    res->set(http::field::retry_after, std::to_string(retry_after_ms / 1000));
  }
  res->keep_alive(is_keep_alive && is_keep_alive_);
  res->body() = std::move(body);
  res->prepare_payload();
  const bool keep = res->keep_alive();
  stream_.expires_after(std::chrono::milliseconds(state_->options.write_timeout_ms));
  http::async_write(stream_, *res, [self = shared_from_this(), res, keep](beast::error_code ec, std::size_t n) {
    self->on_respond(keep, ec, n);
  });
}

void http_session::respond_error(const api_error& e, bool is_keep_alive) {
  respond(static_cast<http::status>(e.status), "application/json", openai_error_body(e), is_keep_alive);
}

void http_session::on_respond(bool is_keep_alive, beast::error_code ec, std::size_t) {
  end_completion();
  if (ec == beast::error::timeout) state_->metrics.closed_write_timeout->inc();
  if (ec || !is_keep_alive || is_closed_) return close();
  do_read();
}

void http_session::end_completion() {
  active_.reset();
  hold_.cancel();
}

// -- streamed answers -----------------------------------------------------------------

void http_session::send_raw(std::string bytes, bool is_droppable) {
  if (is_closed_) return;
  const int64_t bound = state_->options.max_buffered_bytes;
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (is_droppable && queued_bytes_ + size > bound - bound / 4) return cancel_for_slow_consumer();
  if (queued_bytes_ + size > bound) return close_for_buffer_full();
  queued_bytes_ += size;
  queue_.push_back(std::make_shared<const std::string>(std::move(bytes)));
  if (queue_.size() == 1) do_write();
}

void http_session::cancel_for_slow_consumer() {
  if (!active_ || active_->is_slow || active_->is_ended) return;
  active_->is_slow = true;
  state_->metrics.cancelled_slow_consumer->inc();
  state_->bridge.cancel(active_->ticket);
}

void http_session::close_for_buffer_full() {
  state_->metrics.closed_buffer_full->inc();
  cancel_for_slow_consumer();
  if (active_) active_->is_ended = true;  // nothing more can reach the client
  close();
}

// HTTP/1.1 frames each event as a chunk; HTTP/1.0 has no chunks and ends by closing.
void http_session::send_chunk(const std::string& data, bool is_droppable) {
  if (data.empty()) return;
  if (http_version_ < 11) return send_raw(data, is_droppable);
  char size[20];
  const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  std::string chunk(size, static_cast<size_t>(n));
  chunk.append(data).append("\r\n");
  send_raw(std::move(chunk), is_droppable);
}

void http_session::send_stream_header() {
  active_->is_header_sent = true;
  state_->metrics.count_response(route_, 200);
  std::string header = http_version_ < 11 ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.1 200 OK\r\n";
  header += "Server: troupe\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n";
  if (http_version_ < 11) {
    header += "Connection: close\r\n\r\n";
    is_keep_alive_ = false;
  } else {
    header += is_keep_alive_ ? "Transfer-Encoding: chunked\r\n\r\n" : "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
  }
  send_raw(std::move(header), false);
}

void http_session::end_stream() {
  if (http_version_ >= 11) send_raw("0\r\n\r\n", false);
  if (is_closed_) return;
  is_stream_finished_ = true;
  if (queue_.empty()) on_write({}, 0);
}

// A chunk the client does not take within write_timeout_ms means it stopped reading: the
// stream's timer closes the socket and on_write closes the session. The read-ahead waits on
// the raw socket, so this timer never ends a quiet client's wait for its next token.
void http_session::do_write() {
  auto bytes = queue_.front();  // the write's, even if the queue is cleared meanwhile
  stream_.expires_after(std::chrono::milliseconds(state_->options.write_timeout_ms));
  boost::asio::async_write(stream_, boost::asio::buffer(*bytes),
                           [self = shared_from_this(), bytes](beast::error_code ec, std::size_t n) {
                             self->on_write(ec, n);
                           });
}

void http_session::on_write(beast::error_code ec, std::size_t) {
  if (ec) {
    queue_.clear();
    queued_bytes_ = 0;
    if (ec == beast::error::timeout) {
      state_->metrics.closed_write_timeout->inc();
      cancel_for_slow_consumer();
    }
    if (active_ && !active_->is_ended) {
      cancel_for_client_gone();
      active_->is_ended = true;  // nothing more can reach the client
    }
    return close();
  }
  if (!queue_.empty()) {
    queued_bytes_ -= static_cast<int64_t>(queue_.front()->size());
    queue_.pop_front();
  }
  if (!queue_.empty()) return do_write();
  if (is_stream_finished_) {
    is_stream_finished_ = false;
    end_completion();
    if (!is_keep_alive_ || is_closed_) return close();
    do_read();
  }
}

// Counted once however the session learns it (the read-ahead, a failed write, the end).
// A request already cancelled as a slow consumer is not counted again.
void http_session::cancel_for_client_gone() {
  if (active_->is_client_gone || active_->is_slow) return;
  active_->is_client_gone = true;
  state_->metrics.cancelled_client_gone->inc();
  state_->bridge.cancel(active_->ticket);
}

void http_session::close() {
  is_closed_ = true;
  hold_.cancel();
  beast::error_code ec;
  stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
  stream_.socket().close(ec);
}

// While a completion runs the connection is still read, so that a client that closes its
// side is seen (end-of-file: its request stops at once instead of running to max_tokens)
// and one that pipelines its next requests keeps them: their bytes wait in buffer_, where
// the next do_read parses them once this answer has ended. The wait is on the raw socket,
// outside the stream's timeouts, and never reads past the bytes already there.
void http_session::read_ahead() {
  if (static_cast<int64_t>(buffer_.size()) >= state_->options.max_body_bytes + read_ahead_header_bytes) return;
  const auto ticket = active_->ticket;
  stream_.socket().async_wait(boost::asio::ip::tcp::socket::wait_read,
                              [self = shared_from_this(), ticket](beast::error_code ec) {
                                if (ec || !self->active_ || self->active_->ticket != ticket ||
                                    self->active_->is_ended) {
                                  return;
                                }
                                self->on_read_ahead();
                              });
}

void http_session::on_read_ahead() {
  auto& socket = stream_.socket();
  beast::error_code ec;
  const size_t available = socket.available(ec);
  if (!ec && available > 0) {
    const int64_t room = state_->options.max_body_bytes + read_ahead_header_bytes - static_cast<int64_t>(buffer_.size());
    const size_t got = socket.read_some(buffer_.prepare(std::min(available, static_cast<size_t>(room))), ec);
    buffer_.commit(got);
    if (!ec) return read_ahead();
  }
  // Readable with nothing to read: end-of-file or a reset.
  cancel_for_client_gone();
}

}  // namespace troupe::net
