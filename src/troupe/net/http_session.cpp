// http_session: the read loop, plain responses, and the write queue of a streamed answer.
#include "troupe/net/http_session.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/socket.h>

#include <cerrno>

#include "troupe/net/ws_session.hpp"

namespace troupe::net {

namespace beast = boost::beast;
namespace http = beast::http;

http_session::http_session(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<server_state> state)
    : stream_(std::move(socket)), state_(std::move(state)) {}

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
  if (beast::websocket::is_upgrade(req)) {
    const std::string_view target = req.target();
    if (target.substr(0, target.find('?')) == "/v1/ws" &&
        is_authorized(state_->options, req[http::field::authorization], target)) {
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
  res->keep_alive(is_keep_alive && is_keep_alive_);
  res->body() = std::move(body);
  res->prepare_payload();
  const bool keep = res->keep_alive();
  http::async_write(stream_, *res, [self = shared_from_this(), res, keep](beast::error_code ec, std::size_t n) {
    self->on_respond(keep, ec, n);
  });
}

void http_session::respond_error(const api_error& e, bool is_keep_alive) {
  respond(static_cast<http::status>(e.status), "application/json", openai_error_body(e), is_keep_alive);
}

void http_session::on_respond(bool is_keep_alive, beast::error_code ec, std::size_t) {
  active_.reset();
  if (ec || !is_keep_alive) return close();
  do_read();
}

// -- streamed answers -----------------------------------------------------------------

void http_session::send_raw(std::string bytes, bool is_droppable) {
  if (is_droppable && queued_bytes_ + static_cast<int64_t>(bytes.size()) > state_->options.max_buffered_bytes) {
    if (active_ && !active_->is_slow && !active_->is_ended) {
      active_->is_slow = true;
      state_->bridge.cancel(active_->ticket);
    }
    return;
  }
  queued_bytes_ += static_cast<int64_t>(bytes.size());
  queue_.push_back(std::make_shared<const std::string>(std::move(bytes)));
  if (queue_.size() == 1) do_write();
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
  is_stream_finished_ = true;
  if (queue_.empty()) on_write({}, 0);
}

void http_session::do_write() {
  boost::asio::async_write(stream_, boost::asio::buffer(*queue_.front()),
                           beast::bind_front_handler(&http_session::on_write, shared_from_this()));
}

void http_session::on_write(beast::error_code ec, std::size_t) {
  if (ec) {
    queue_.clear();
    queued_bytes_ = 0;
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
    active_.reset();
    if (!is_keep_alive_) return close();
    do_read();
  }
}

// Counted once however the session learns it (the socket watch, a failed write, the end).
void http_session::cancel_for_client_gone() {
  if (active_->is_client_gone) return;
  active_->is_client_gone = true;
  state_->metrics.cancelled_client_gone->inc();
  state_->bridge.cancel(active_->ticket);
}

void http_session::close() {
  beast::error_code ec;
  stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_send, ec);
  stream_.socket().close(ec);
}

// A client that closes its side while its answer is being made has left: its request
// stops at once instead of running to max_tokens. A client that sends more (a pipelined
// request) is still there.
void http_session::watch_for_disconnect() {
  const auto ticket = active_->ticket;
  stream_.socket().async_wait(boost::asio::ip::tcp::socket::wait_read,
                              [self = shared_from_this(), ticket](beast::error_code ec) {
                                if (ec || !self->active_ || self->active_->ticket != ticket || self->active_->is_ended) {
                                  return;
                                }
                                char byte;
                                const auto n = ::recv(self->stream_.socket().native_handle(), &byte, 1,
                                                      MSG_PEEK | MSG_DONTWAIT);
                                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                                  self->cancel_for_client_gone();
                                }
                              });
}

}  // namespace troupe::net
