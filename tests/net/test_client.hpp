// A small HTTP and WebSocket client for the server tests (Beast, every operation bounded
// by a timeout so that a broken server fails a test instead of hanging it), and the
// in-process server fixture on the tiny model behind a gated backend.
#pragma once
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <caf/all.hpp>
#include <simdjson.h>

#include <chrono>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "troupe/actors/engine.hpp"
#include "troupe/actors/model_bundle.hpp"
#include "troupe/net/bridge.hpp"
#include "troupe/net/server.hpp"
#include "util/gated_backend.hpp"

namespace troupe::test {

// A reply body parsed once for the checks that read it.
struct json {
  explicit json(const std::string& text) : padded(text) { root = parser.parse(padded); }
  simdjson::padded_string padded;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  // The string at a path of object keys, or "" where there is none.
  std::string str(std::initializer_list<const char*> path) {
    simdjson::dom::element e = root;
    for (const char* key : path) e = e[key];
    return e.is_string() ? std::string(std::string_view(e)) : std::string();
  }
};

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_reply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string allow;
  std::string retry_after;
};

http_reply http_call(uint16_t port, boost::beast::http::verb method, const std::string& target,
                     const std::string& body = {}, const header_list& headers = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(120));

// Reads the data: lines of a server-sent-event body, in order.
std::vector<std::string> sse_data_lines(const std::string& body);

// The value of one sample line ("name{labels} value") of a Prometheus text page; -1 when absent.
double metric_value(const std::string& page, const std::string& series);

class ws_client {
 public:
  // Connects and upgrades; throws std::runtime_error when either fails.
  explicit ws_client(uint16_t port, const std::string& target = "/v1/ws", const header_list& headers = {},
                     int receive_buffer_bytes = 0);
  ~ws_client();
  void send(const std::string& text);
  // The next message, or nullopt after timeout or when the connection ended.
  std::optional<std::string> read(std::chrono::milliseconds timeout = std::chrono::seconds(120));
  void close();  // a clean WebSocket close
  void drop();   // the TCP connection just goes away

 private:
  boost::asio::io_context io_;
  boost::beast::websocket::stream<boost::beast::tcp_stream> ws_;
};

// The tiny model behind a real engine and front door on a free loopback port. Its CPU
// backend sits behind a gate (open until a test closes it): a test that must act while a
// request still runs closes the gate, lets steps through one by one with gate->release(),
// and opens it again when the request may finish (the destructor opens it too).
struct server_fixture {
  explicit server_fixture(engine_options options = {}, net::server_options server = {});
  ~server_fixture();

  uint16_t port() const { return front_door->port(); }
  // Polls until no request is in flight and no KV block is held; false after timeout.
  // (With the gate closed and a step waiting at it, that never happens: open it first.)
  bool wait_idle(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Polls GET /metrics until the sample `series` is at least `value`; false after timeout.
  bool wait_metric(const std::string& series, double value,
                   std::chrono::milliseconds timeout = std::chrono::seconds(30));

  std::shared_ptr<const model_bundle> model;  // its tokenizer, for tests that send token ids
  std::shared_ptr<gated_backend> gate;        // the engine's backend
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<engine> eng;
  std::unique_ptr<net::engine_bridge> bridge;
  std::unique_ptr<net::server> front_door;
};

}  // namespace troupe::test
