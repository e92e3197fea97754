// Clients that break the rules on purpose: huge objects, pipelined requests, close frames
// without a TCP close, output nobody reads, smuggling and malformed headers. Each case is
// one defect the front door had; the raw client below writes exactly the bytes a test
// gives, so nothing in between tidies the attack up.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <thread>

#include "test_client.hpp"
#include "troupe/net/json_read.hpp"
#include "troupe/net/openai_protocol.hpp"
#include "troupe/net/ws_protocol.hpp"

using namespace troupe;
using namespace troupe::test;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

using response = http::response<http::string_body>;

// A TCP connection that writes the bytes it is given and reads HTTP responses or
// WebSocket frames off the same stream; every read gives up after its timeout.
class raw_client {
 public:
  explicit raw_client(uint16_t port, int receive_buffer_bytes = 0) : stream_(io_) {
    auto& socket = stream_.socket();
    socket.open(asio::ip::tcp::v4());
    if (receive_buffer_bytes > 0) socket.set_option(asio::socket_base::receive_buffer_size(receive_buffer_bytes));
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
  }

  void write(std::string_view bytes) { asio::write(stream_.socket(), asio::buffer(bytes)); }
  // False once the server has closed (a reset or a broken pipe).
  bool try_write(std::string_view bytes) {
    beast::error_code ec;
    asio::write(stream_.socket(), asio::buffer(bytes), ec);
    return !ec;
  }

  // The next response, or nullopt when the connection ended or the timeout passed.
  std::optional<response> read_response(std::chrono::milliseconds timeout = 60s) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    beast::error_code ec;
    bool done = false;
    http::async_read(stream_, buffer_, parser, [&](beast::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    if (!run_until(std::chrono::steady_clock::now() + timeout, done) || ec) return std::nullopt;
    return parser.release();
  }

  // Reads and discards until the server closes; false when it is still open at the timeout.
  bool wait_closed(std::chrono::milliseconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      buffer_.clear();
      if (!fill(1, deadline)) return is_closed_;
    }
  }

  // The upgrade handshake with the given key; the status the server answered.
  int ws_handshake(const std::string& key = "dGhlIHNhbXBsZSBub25jZQ==", const std::string& extra_headers = {}) {
    write("GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " +
          key + "\r\n" + extra_headers + "\r\n");
    auto r = read_response();
    return r ? r->result_int() : 0;
  }

  // A masked client frame: opcode 1 text, 8 close, 9 ping.
  void ws_send(uint8_t opcode, std::string_view payload) { write(ws_frame(opcode, payload)); }
  bool ws_try_send(uint8_t opcode, std::string_view payload) { return try_write(ws_frame(opcode, payload)); }

  // The next server frame's payload (opcode in *opcode), or nullopt.
  std::optional<std::string> ws_read(std::chrono::milliseconds timeout = 60s, int* opcode = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!fill(2, deadline)) return std::nullopt;
    const auto* b = static_cast<const unsigned char*>(buffer_.data().data());
    if (opcode) *opcode = b[0] & 0x0f;
    uint64_t length = b[1] & 0x7f;
    size_t header = 2;
    if (length >= 126) {
      header = length == 126 ? 4 : 10;
      if (!fill(header, deadline)) return std::nullopt;
      b = static_cast<const unsigned char*>(buffer_.data().data());
      length = 0;
      for (size_t i = 2; i < header; ++i) length = (length << 8) | b[i];
    }
    if (!fill(header + length, deadline)) return std::nullopt;
    const char* data = static_cast<const char*>(buffer_.data().data());
    std::string payload(data + header, length);
    buffer_.consume(header + length);
    return payload;
  }

  // The next text frame, skipping control frames.
  std::optional<std::string> ws_read_text(std::chrono::milliseconds timeout = 60s) {
    while (true) {
      int opcode = 0;
      auto payload = ws_read(timeout, &opcode);
      if (!payload || opcode == 1) return payload;
      if (opcode == 8) return std::nullopt;
    }
  }

 private:
  static std::string ws_frame(uint8_t opcode, std::string_view payload) {
    std::string f(1, static_cast<char>(0x80 | opcode));
    const uint64_t n = payload.size();
    if (n < 126) {
      f += static_cast<char>(0x80 | n);
    } else if (n < 65536) {
      f += static_cast<char>(0x80 | 126);
      f += static_cast<char>(n >> 8);
      f += static_cast<char>(n & 0xff);
    } else {
      f += static_cast<char>(0x80 | 127);
      for (int i = 7; i >= 0; --i) f += static_cast<char>((n >> (8 * i)) & 0xff);
    }
    const char mask[4] = {0x12, 0x34, 0x56, 0x78};
    f.append(mask, 4);
    for (uint64_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
    return f;
  }

  // Until buffer_ holds n bytes; false on timeout or when the connection ended.
  bool fill(size_t n, std::chrono::steady_clock::time_point deadline) {
    while (buffer_.size() < n) {
      beast::error_code ec;
      size_t got = 0;
      bool done = false;
      stream_.socket().async_read_some(buffer_.prepare(64 * 1024), [&](beast::error_code e, std::size_t k) {
        ec = e;
        got = k;
        done = true;
      });
      const bool in_time = run_until(deadline, done);
      buffer_.commit(got);
      if (!in_time) return false;
      if (ec) {
        is_closed_ = true;
        return false;
      }
    }
    return true;
  }

  // Runs the io until done, or cancels at the deadline (and waits for the cancelled
  // handler, which refers to the caller's locals); false on timeout.
  bool run_until(std::chrono::steady_clock::time_point deadline, const bool& done) {
    io_.restart();
    while (!done) {
      if (std::chrono::steady_clock::now() >= deadline) {
        beast::error_code ignored;
        stream_.socket().cancel(ignored);
        while (!done) {
          io_.restart();
          io_.run_for(10ms);
        }
        return false;
      }
      io_.run_for(10ms);
    }
    return true;
  }

  asio::io_context io_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  bool is_closed_ = false;
};

std::string post(const std::string& target, const std::string& body, const std::string& extra_headers = {}) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

// {"k0":0,"k1":0,...}: n distinct keys.
std::string object_with_keys(const std::string& prefix, int n) {
  std::string s = "{";
  for (int i = 0; i < n; ++i) {
    if (i) s += ',';
    s += '"';
    s += prefix;
    s += std::to_string(i);
    s += "\":0";
  }
  return s + "}";
}

const std::string client_gone = R"(troupe_front_door_cancelled_total{reason="client_gone"})";
const std::string slow_consumer = R"(troupe_front_door_cancelled_total{reason="slow_consumer"})";
const std::string closed_buffer_full = R"(troupe_front_door_closed_total{reason="buffer_full"})";
const std::string closed_write_timeout = R"(troupe_front_door_closed_total{reason="write_timeout"})";

double metric(server_fixture& f, const std::string& series) {
  return metric_value(http_call(f.port(), verb::get, "/metrics").body, series);
}

// Polls /metrics until the gauge `series` is exactly value; false after timeout.
bool wait_gauge(server_fixture& f, const std::string& series, double value, std::chrono::milliseconds timeout = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (metric(f, series) == value) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

}  // namespace

// -- 1. JSON objects with very many keys -----------------------------------------------

TEST_CASE("hostile: a logit_bias with 100,000 keys is refused naming the field") {
  net::server_options o;
  o.max_body_bytes = 4 << 20;
  server_fixture f({}, o);
  std::string bias = "{";
  for (int i = 0; i < 100000; ++i) {
    if (i) bias += ',';
    bias += '"' + std::to_string(i) + "\":1";
  }
  bias += '}';
  auto r = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":2,"logit_bias":)" + bias + "}");
  CHECK(r.status == 400);
  json j(r.body);
  CHECK(j.str({"error", "param"}) == "logit_bias");
  CHECK(j.str({"error", "message"}).find("logit_bias must have at most") == 0);
  // The server carries on.
  CHECK(http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":2})").status == 200);
}

TEST_CASE("hostile: the duplicate-key check does work linear in the number of keys") {
  constexpr int n = 100000;
  const net::parse_limits limits{1000, 2048};
  SUBCASE("ping data") {
    const auto before = net::json_read::num_key_comparisons();
    auto parsed = net::parse_ws_message(R"({"type":"ping","data":)" + object_with_keys("k", n) + "}", limits);
    REQUIRE(parsed.message);
    CHECK(std::get<net::ws_ping>(*parsed.message).data_json.size() > 6u * n);
    CHECK(net::json_read::num_key_comparisons() - before <= 4u * n);
  }
  SUBCASE("the keys of a chat content part") {
    const auto before = net::json_read::num_key_comparisons();
    const std::string part = object_with_keys("k", n);
    auto parsed = net::parse_openai_request(
        net::openai_endpoint::chat_completions,
        R"({"messages":[{"role":"user","content":[)" + part.substr(0, part.size() - 1) + R"(,"type":"text"}]}]})",
        limits);
    REQUIRE(parsed.error);
    CHECK(parsed.error->message.find("unknown field messages[0].content[0].k0") == 0);
    CHECK(net::json_read::num_key_comparisons() - before <= 4u * n);
  }
  SUBCASE("unknown top-level keys of a WebSocket frame") {
    const auto before = net::json_read::num_key_comparisons();
    const std::string keys = object_with_keys("x", n);
    auto parsed = net::parse_ws_message(R"({"type":"ping",)" + keys.substr(1), limits);
    REQUIRE(parsed.error);
    CHECK(parsed.error->message == R"(unknown field "x0" in a ping message)");
    CHECK(net::json_read::num_key_comparisons() - before <= 4u * n);
  }
}

TEST_CASE("hostile: a key given twice is still refused, in small and large objects") {
  const net::parse_limits limits{1000, 2048};
  for (int n : {3, 40, 5000}) {
    std::string data = object_with_keys("k", n);
    data.insert(data.size() - 1, R"(,"k1":2)");
    auto parsed = net::parse_ws_message(R"({"type":"ping","data":)" + data + "}", limits);
    REQUIRE(parsed.error);
    CHECK(parsed.error->message == R"(duplicate field "k1" in data)");
  }
  // One token id under two spellings is given twice as well.
  auto twice = net::parse_openai_request(net::openai_endpoint::completions,
                                         R"({"prompt":"x","logit_bias":{"7":1,"007":-1}})", limits);
  REQUIRE(twice.error);
  CHECK(twice.error->param == "logit_bias");
  CHECK(twice.error->message.find("token id 7 more than once") != std::string::npos);
}

// -- 2. Pipelined requests -------------------------------------------------------------

TEST_CASE("hostile: two completions pipelined on one socket while the first runs are both answered, in order") {
  server_fixture f;
  raw_client c(f.port());
  // The gate holds the first request running, so the second arrives while it generates.
  f.gate->close();
  c.write(post("/v1/completions", R"({"prompt":"first","max_tokens":5,"ignore_eos":true})"));
  REQUIRE(f.gate->wait_held());
  c.write(post("/v1/completions", R"({"prompt":"second","max_tokens":3,"ignore_eos":true})"));
  std::this_thread::sleep_for(100ms);  // the second request's bytes reach the server first
  f.gate->open();
  auto first = c.read_response();
  REQUIRE(first);
  CHECK(first->result_int() == 200);
  CHECK(json(first->body()).root["usage"]["completion_tokens"].get_int64().value() == 5);
  auto second = c.read_response();
  REQUIRE(second);
  CHECK(second->result_int() == 200);
  CHECK(json(second->body()).root["usage"]["completion_tokens"].get_int64().value() == 3);
  CHECK(metric(f, client_gone) == 0);
}

TEST_CASE("hostile: requests pipelined behind a stream wait for it; it ends with [DONE]") {
  server_fixture f;
  raw_client c(f.port());
  f.gate->close();
  f.gate->release(1);
  // Three requests in one write, then one more while the stream runs.
  c.write(post("/v1/completions", R"({"prompt":"a","max_tokens":6,"ignore_eos":true,"stream":true})") +
          "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
          post("/v1/completions", R"({"prompt":"b","max_tokens":2,"ignore_eos":true})"));
  REQUIRE(f.gate->wait_held());
  c.write("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  std::this_thread::sleep_for(100ms);
  f.gate->open();
  auto stream = c.read_response();
  REQUIRE(stream);
  CHECK(stream->result_int() == 200);
  auto lines = sse_data_lines(stream->body());
  REQUIRE(!lines.empty());
  CHECK(lines.back() == "[DONE]");
  auto health = c.read_response();
  REQUIRE(health);
  CHECK(health->body() == R"({"status":"ok"})");
  auto b = c.read_response();
  REQUIRE(b);
  CHECK(json(b->body()).root["usage"]["completion_tokens"].get_int64().value() == 2);
  auto models = c.read_response();
  REQUIRE(models);
  CHECK(models->body().find(R"("object":"list")") != std::string::npos);
}

TEST_CASE("hostile: a client that pipelines a request and then closes still has its request cancelled") {
  server_fixture f;
  f.gate->close();
  {
    raw_client c(f.port());
    c.write(post("/v1/completions", R"({"prompt":"a","max_tokens":1500,"ignore_eos":true})"));
    REQUIRE(f.gate->wait_held());
    c.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  }
  CHECK(f.wait_metric(client_gone, 1));
  f.gate->open();
  CHECK(f.wait_idle(30s));
}

// -- 3. A close frame without a TCP close ----------------------------------------------

TEST_CASE("hostile: a WebSocket close frame cancels the connection's requests while its TCP socket stays open") {
  server_fixture f;
  raw_client c(f.port());
  REQUIRE(c.ws_handshake() == 101);
  f.gate->close();
  f.gate->release(1);
  c.ws_send(1, R"({"type":"generate","id":"held","prompt":"once","max_tokens":1500,"ignore_eos":true})");
  while (true) {
    auto frame = c.ws_read_text();
    REQUIRE(frame);
    if (frame->find(R"("type":"delta")") != std::string::npos) break;
  }
  REQUIRE(f.gate->wait_held());
  c.ws_send(8, std::string("\x03\xe8", 2));  // close, 1000 normal; the socket stays open
  CHECK(f.wait_metric(client_gone, 1, 10s));
  f.gate->open();
  CHECK(f.wait_idle(10s));
  CHECK(metric(f, "troupe_generation_tokens_total") < 1500);
}

// -- 4. Output nobody reads ------------------------------------------------------------

TEST_CASE("hostile: a client that sends big pings and never reads is closed at --max-buffered-bytes") {
  net::server_options o;
  o.max_buffered_bytes = 1 << 20;
  server_fixture f({}, o);
  raw_client c(f.port(), 4096);
  REQUIRE(c.ws_handshake() == 101);
  const std::string ping = R"({"type":"ping","data":")" + std::string(200 * 1024, 'p') + R"("})";
  int sent = 0;
  while (sent < 200 && c.ws_try_send(1, ping)) ++sent;
  // 200 pongs of 200 KiB would be 40 MiB; the server closed long before.
  CHECK(sent < 200);
  CHECK(f.wait_metric(closed_buffer_full, 1));
  CHECK(wait_gauge(f, "troupe_websocket_sessions", 0));
}

TEST_CASE("hostile: a WebSocket client that stops reading is closed after the write timeout") {
  net::server_options o;
  o.max_buffered_bytes = 64 << 20;  // never reached: the write timeout is what closes it
  o.write_timeout_ms = 500;
  server_fixture f({}, o);
  raw_client c(f.port(), 4096);
  REQUIRE(c.ws_handshake() == 101);
  f.gate->close();
  c.ws_send(1, R"({"type":"generate","id":"held","prompt":"once","max_tokens":1500,"ignore_eos":true})");
  REQUIRE(f.gate->wait_held());
  // 8 MB of pongs, more than the kernel's socket buffers hold (4 MiB by default): a write
  // stalls for good, and the connection closes with its request.
  const std::string ping = R"({"type":"ping","data":")" + std::string(100 * 1000, 'p') + R"("})";
  for (int i = 0; i < 80 && c.ws_try_send(1, ping); ++i) {
  }
  CHECK(f.wait_metric(closed_write_timeout, 1));
  CHECK(f.wait_metric(slow_consumer, 1));
  CHECK(wait_gauge(f, "troupe_websocket_sessions", 0));
  f.gate->open();
  CHECK(f.wait_idle(30s));
  CHECK(metric(f, "troupe_generation_tokens_total") < 1500);
}

TEST_CASE("hostile: an HTTP stream that outruns its reader is cancelled, and counted, as a slow consumer") {
  net::server_options o;
  o.max_buffered_bytes = 64 * 1024;
  server_fixture f({}, o);
  {
    raw_client c(f.port(), 4096);
    // One stream (2.6 MB here) may fit the kernel's socket buffers (4 MiB by default); eight
    // pipelined ones do not, so the queue must pass the bound.
    const std::string stream = post("/v1/chat/completions",
                                    R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2000,)"
                                    R"("ignore_eos":true,"stream":true,"logprobs":true,"top_logprobs":20})");
    std::string eight;
    for (int i = 0; i < 8; ++i) eight += stream;
    c.write(eight);
    CHECK(f.wait_metric(slow_consumer, 1));
  }
  CHECK(f.wait_idle(30s));  // the client's leaving stops what runs; the rest never starts
}

TEST_CASE("hostile: an HTTP client that stops reading is closed after the write timeout") {
  net::server_options o;
  o.max_buffered_bytes = 64 << 20;  // never reached: the write timeout is what closes it
  o.write_timeout_ms = 500;
  server_fixture f({}, o);
  raw_client c(f.port(), 4096);
  // Eight pipelined streams of 2.6 MB: more than the kernel's buffers hold, so a write stalls.
  const std::string stream = post("/v1/chat/completions",
                                  R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2000,)"
                                  R"("ignore_eos":true,"stream":true,"logprobs":true,"top_logprobs":20})");
  std::string eight;
  for (int i = 0; i < 8; ++i) eight += stream;
  c.write(eight);
  CHECK(f.wait_metric(closed_write_timeout, 1));
  // The stream being written is cancelled (unless the stalled write was the end of one that
  // had finished), and the rest never start.
  CHECK(f.wait_idle(30s));
  CHECK(c.wait_closed());
}

TEST_CASE("hostile: a client that reads is not closed for pauses between tokens longer than the write timeout") {
  net::server_options o;
  o.write_timeout_ms = 200;
  server_fixture f({}, o);
  f.gate->close();
  f.gate->release(1);
  ws_client ws(f.port());
  ws.send(R"({"type":"generate","id":"p","prompt":"once","max_tokens":3,"ignore_eos":true})");
  REQUIRE(f.gate->wait_held());
  raw_client http(f.port());
  http.write(post("/v1/completions", R"({"prompt":"a","max_tokens":3,"ignore_eos":true,"stream":true})"));
  std::this_thread::sleep_for(800ms);  // four write timeouts with nothing to write
  f.gate->open();
  bool done = false;
  while (!done) {
    auto frame = ws.read();
    REQUIRE(frame);
    done = frame->find(R"("type":"done")") != std::string::npos;
  }
  auto r = http.read_response();
  REQUIRE(r);
  CHECK(sse_data_lines(r->body()).back() == "[DONE]");
  CHECK(metric(f, closed_write_timeout) == 0);
}

// -- 5. HTTP details -------------------------------------------------------------------

TEST_CASE("hostile: a Transfer-Encoding other than chunked is refused and its body never read as a request") {
  server_fixture f;
  for (const std::string coding : {"gzip", "identity", "chunked, gzip", "xchunked", "gzip, chunked"}) {
    CAPTURE(coding);
    raw_client c(f.port());
    const std::string smuggled = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    c.write("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: " + coding +
            "\r\n\r\n" + smuggled);
    auto r = c.read_response();
    REQUIRE(r);
    CHECK((r->result_int() == 501 || r->result_int() == 400));
    CHECK(r->keep_alive() == false);
    CHECK(c.wait_closed());
  }
  auto metrics = http_call(f.port(), verb::get, "/metrics").body;
  CHECK(metrics.find(R"(route="/v1/models")") == std::string::npos);
}

TEST_CASE("hostile: HTTP/1.1 without Host is 400; HTTP/1.0 without Host is served") {
  server_fixture f;
  raw_client c(f.port());
  c.write("GET /health HTTP/1.1\r\n\r\n");
  auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->result_int() == 400);
  CHECK(json(r->body()).str({"error", "message"}).find("Host") != std::string::npos);
  raw_client twice(f.port());
  twice.write("GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  auto t = twice.read_response();
  REQUIRE(t);
  CHECK(t->result_int() == 400);
  raw_client old(f.port());
  old.write("GET /health HTTP/1.0\r\n\r\n");
  auto o = old.read_response();
  REQUIRE(o);
  CHECK(o->result_int() == 200);
}

TEST_CASE("hostile: a WebSocket upgrade whose Sec-WebSocket-Key is not 16 bytes in base64 is 400") {
  server_fixture f;
  for (const std::string key : {"abc", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===", "dGhlIHNhbXBsZSBub25j!Q==",
                          "dGhlIHNhbXBsZSBub25jZQ=A", "dGhlIHNhbXBsZSBub25jZSBhbmQgbW9yZQ=="}) {
    CAPTURE(key);
    raw_client c(f.port());
    CHECK(c.ws_handshake(key) == 400);
  }
  raw_client good(f.port());
  CHECK(good.ws_handshake("AAAAAAAAAAAAAAAAAAAAAA==") == 101);
}

TEST_CASE("hostile: the Bearer scheme is case-insensitive; ?api_key= opens only the WebSocket") {
  net::server_options o;
  o.api_key = "sesame";
  server_fixture f({}, o);
  for (const std::string scheme : {"Bearer", "bearer", "BEARER"}) {
    CAPTURE(scheme);
    CHECK(http_call(f.port(), verb::get, "/v1/models", {}, {{"Authorization", scheme + " sesame"}}).status == 200);
    CHECK_NOTHROW(ws_client(f.port(), "/v1/ws", {{"Authorization", scheme + " sesame"}}));
  }
  CHECK(http_call(f.port(), verb::get, "/v1/models", {}, {{"Authorization", "Basic sesame"}}).status == 401);
  auto in_url = http_call(f.port(), verb::get, "/v1/models?api_key=sesame");
  CHECK(in_url.status == 401);
  CHECK(json(in_url.body).str({"error", "message"}).find("api_key") != std::string::npos);
  CHECK(http_call(f.port(), verb::post, "/v1/completions?api_key=sesame", R"({"prompt":"x","max_tokens":1})").status ==
        401);
  CHECK_NOTHROW(ws_client(f.port(), "/v1/ws?api_key=sesame"));
}

TEST_CASE("hostile: 429 and 503 answers carry Retry-After") {
  engine_options e;
  e.scheduling.max_num_seqs = 1;
  e.scheduling.max_batch_size = 1;
  e.scheduling.max_queue_len = 1;
  server_fixture f(e);
  ws_client ws(f.port());
  f.gate->close();
  f.gate->release(1);
  ws.send(R"({"type":"generate","id":"a","prompt":"once","max_tokens":2000,"ignore_eos":true})");
  while (ws.read().value_or("").find(R"("type":"delta")") == std::string::npos) {
  }
  REQUIRE(f.gate->wait_held());
  ws.send(R"({"type":"generate","id":"b","prompt":"once","max_tokens":2000,"ignore_eos":true})");
  while (ws.read().value_or("").find(R"("type":"accepted","id":"b")") == std::string::npos) {
  }
  raw_client c(f.port());
  c.write(post("/v1/completions", R"({"prompt":"hi","max_tokens":2})"));
  auto full = c.read_response();
  REQUIRE(full);
  CHECK(full->result_int() == 429);
  CHECK((*full)[http::field::retry_after] == "1");
  // A stream refused before its first token gets its own status, with the header too.
  c.write(post("/v1/completions", R"({"prompt":"hi","max_tokens":2,"stream":true})"));
  auto full_stream = c.read_response();
  REQUIRE(full_stream);
  CHECK(full_stream->result_int() == 429);
  CHECK((*full_stream)[http::field::retry_after] == "1");
  ws.drop();
  f.gate->open();
  CHECK(f.wait_idle());
  f.bridge->set_draining();
  c.write(post("/v1/completions", R"({"prompt":"hi","max_tokens":2})"));
  auto draining = c.read_response();
  REQUIRE(draining);
  CHECK(draining->result_int() == 503);
  CHECK((*draining)[http::field::retry_after] == "1");
  c.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  auto health = c.read_response();
  REQUIRE(health);
  CHECK(health->result_int() == 503);
  CHECK((*health)[http::field::retry_after] == "1");
}

TEST_CASE("hostile: timeout_ms before the first token is 503 timeout; with output it ends 200 finish_reason timeout") {
  server_fixture f;
  for (const bool stream : {false, true}) {
    CAPTURE(stream);
    const std::string s = stream ? R"(,"stream":true)" : "";
    // No step goes through: the deadline passes before any token.
    f.gate->close();
    auto none = http_call(f.port(), verb::post, "/v1/completions",
                          R"({"prompt":"a","max_tokens":50,"ignore_eos":true,"timeout_ms":300)" + s + "}");
    f.gate->open();
    CHECK(f.wait_idle());
    CHECK(none.status == 503);
    CHECK(none.retry_after == "1");
    json n(none.body);
    CHECK(n.str({"error", "code"}) == "timeout");
    // One step goes through (the first token), then the deadline passes.
    f.gate->close();
    f.gate->release(1);
    auto some = http_call(f.port(), verb::post, "/v1/completions",
                          R"({"prompt":"a","max_tokens":50,"ignore_eos":true,"timeout_ms":300)" + s + "}");
    f.gate->open();
    CHECK(f.wait_idle());
    CHECK(some.status == 200);
    if (stream) {
      auto lines = sse_data_lines(some.body);
      REQUIRE(lines.size() >= 2);
      CHECK(lines.back() == "[DONE]");
      CHECK(json(lines[lines.size() - 2]).root["choices"].at(0)["finish_reason"].get_string().value() == "timeout");
    } else {
      CHECK(json(some.body).root["choices"].at(0)["finish_reason"].get_string().value() == "timeout");
    }
  }
}
