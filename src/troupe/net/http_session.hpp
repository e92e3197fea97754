// One HTTP/1.1 connection: reads requests (bodies bounded by max_body_bytes), routes them
// (net/routes.cpp, net/tokenize_routes.cpp), answers with OpenAI-style errors, streams
// completions as server-sent events, and hands a WebSocket upgrade on /v1/ws to a
// ws_session. One request at a time per connection: requests a client pipelines behind a
// running completion wait, read but unparsed, and are answered in order once it ends.
// post_event() is the only entry from other threads (a tokenizer answer is posted to the
// strand by the call that started it); the rest runs on the connection's strand.
#pragma once
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "troupe/net/api_error.hpp"
#include "troupe/net/openai_protocol.hpp"
#include "troupe/net/server_state.hpp"
#include "troupe/net/tokenize_protocol.hpp"

namespace troupe::net {

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  using request_type = boost::beast::http::request<boost::beast::http::string_body>;

  http_session(boost::asio::ip::tcp::socket&& socket, std::shared_ptr<server_state> state);
  ~http_session();

  void run();

  // Any thread: an engine event for the completion this connection is serving.
  void post_event(engine_bridge::ticket ticket, const request_event& event);

 private:
  // The completion in flight on this connection.
  struct completion {
    engine_bridge::ticket ticket = 0;
    openai_response response;
    bool is_stream = false;
    bool is_header_sent = false;
    bool is_ended = false;      // done or error seen
    bool is_slow = false;       // cancelled because the client did not keep up
    bool is_client_gone = false;
  };

  void do_read();
  void on_read(boost::beast::error_code ec, std::size_t bytes);
  void route(request_type req);
  void start_completion(const request_type& req, openai_endpoint endpoint);
  // /tokenize and /detokenize: the body parsed here, the tokenizer's work on an engine
  // thread, whose answer is posted back to this strand (on_tokenizer_answer).
  void start_tokenizer_call(const request_type& req, std::string_view path);
  void on_tokenizer_answer(const tokenizer_answer& answer);
  // GET /v1/diagnosis[?window_s=S]: the bottleneck monitor over the server's snapshot
  // history (net/diagnosis_route.cpp).
  void respond_diagnosis(std::string_view target);
  void on_event(engine_bridge::ticket ticket, const request_event& event);
  void on_stream_event(const request_event& event);
  // Whether a done ends the answer with 503 timeout: the deadline passed before any output.
  bool is_timeout_without_output(const done_event& done) const;
  // While a completion runs: pipelined bytes go to buffer_, end-of-file cancels it.
  void read_ahead();
  void on_read_ahead();
  void cancel_for_client_gone();
  void cancel_for_slow_consumer();
  void end_completion();

  // Plain responses: one whole message, then the next request (or close).
  void respond(boost::beast::http::status status, std::string content_type, std::string body,
               bool is_keep_alive = true, std::string allow = {});
  void respond_error(const api_error& e, bool is_keep_alive = true);
  void on_respond(bool is_keep_alive, boost::beast::error_code ec, std::size_t bytes);

  // Streamed responses: raw bytes of a chunked message through a queue bounded by
  // max_buffered_bytes. Droppable bytes (deltas) may fill three quarters of it, past which
  // the request is cancelled as a slow consumer; the rest (the header, the ending chunks)
  // may fill all of it, past which the connection is closed.
  void send_raw(std::string bytes, bool is_droppable);
  void send_chunk(const std::string& data, bool is_droppable);
  void send_stream_header();
  void end_stream();
  void do_write();
  void on_write(boost::beast::error_code ec, std::size_t bytes);

  // Past max_buffered_bytes or write_timeout_ms: the client is not taking its output.
  void close_for_buffer_full();
  void close();

  boost::beast::tcp_stream stream_;
  // Armed while a completion runs: its handler holds the session, which otherwise only
  // pending reads and writes would (the sink holds a weak pointer).
  boost::asio::steady_timer hold_;
  std::shared_ptr<server_state> state_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  std::string_view route_ = "other";  // the metrics label of the request being answered
  unsigned http_version_ = 11;
  bool is_keep_alive_ = true;
  std::optional<completion> active_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  int64_t queued_bytes_ = 0;
  bool is_stream_finished_ = false;  // the last chunk is queued; read on once it is written
  bool is_closed_ = false;
};

}  // namespace troupe::net
