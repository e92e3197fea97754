// One WebSocket connection on /v1/ws: many requests multiplexed by the client's ids
// (docs/protocol.md). Reads one message at a time (bounded by max_body_bytes, without
// closing the connection when one is too big); writes one frame at a time from a queue in
// which every frame counts against max_buffered_bytes: deltas past three quarters of it
// cancel the connection's requests, any frame past all of it (or a write not taken within
// write_timeout_ms) closes the connection. A close frame cancels the requests at once.
// post_event() is the only entry from other threads; everything else runs on the
// session's strand.
#pragma once
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

#include "troupe/net/server_state.hpp"

namespace troupe::net {

class ws_session : public std::enable_shared_from_this<ws_session> {
 public:
  ws_session(boost::beast::tcp_stream&& stream, std::shared_ptr<server_state> state);
  ~ws_session();

  // Completes the upgrade that the HTTP session read, then serves frames.
  void run(boost::beast::http::request<boost::beast::http::string_body> upgrade);

  // Any thread: an engine event for one of this connection's requests.
  void post_event(const std::string& id, const request_event& event, double server_ms);

 private:
  struct live_request {
    engine_bridge::ticket ticket = 0;
    bool is_slow = false;  // cancelled because the client did not keep up
  };

  void on_accept(boost::beast::error_code ec);
  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void on_message(const std::string& text);
  void on_event(const std::string& id, const request_event& event, double server_ms);
  // output: accepted and delta frames, dropped (and the requests cancelled) when the client
  // falls behind; reply: the frames that end a request or answer the client.
  enum class frame_kind { output, reply };
  void send(std::string frame, frame_kind kind);
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t bytes);
  void cancel_slow_requests();
  void close_requests();
  // The client stopped taking its output: its requests stop and the connection closes.
  void close_connection(counter_metric* reason);

  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
  std::shared_ptr<server_state> state_;
  boost::beast::flat_buffer buffer_;
  bool is_discarding_ = false;  // the current message is over the limit
  std::unordered_map<std::string, live_request> requests_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  int64_t queued_bytes_ = 0;
  boost::asio::steady_timer write_timer_;  // the frame being written must be taken in time
  uint64_t num_writes_ = 0;                // tells a stale timer expiry from the current one
  bool is_closed_ = false;
};

}  // namespace troupe::net
