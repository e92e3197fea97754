// libFuzzer target for what a WebSocket client sends: the input is the raw bytes that follow
// a valid upgrade (frame headers, masks, lengths, fragments, control frames), read by
// Beast's server-side websocket::stream over an in-memory stream the way ws_session reads
// them: the same stream options, async_read_some in 64 KiB chunks, a message over the size
// limit discarded and answered with 413, every complete message through parse_ws_message
// and its reply frame written back while the next read is pending. The first input byte
// sets how many bytes each transport read returns, so frames also arrive split anywhere.
//
// What must hold: no crash, leak or undefined behaviour; the upgrade succeeds; no message
// over the limit reaches the parser; every message gets the reply the server would give.
// Keep the stream set-up in step with ws_session::run and ws_session::on_read.
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>
#include <string_view>
#include <variant>

#include "troupe/net/ws_protocol.hpp"

namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;

[[noreturn]] void fail(const char* why) {
  std::fprintf(stderr, "fuzz_ws_frames: %s\n", why);
  std::abort();
}

// The server's --max-body-bytes, made small so that inputs of a few KiB cross it.
constexpr std::size_t max_message_bytes = 256;
constexpr std::size_t read_chunk_bytes = 64 * 1024;  // as ws_session
const troupe::net::parse_limits limits{49152, 2048};

beast::http::request<beast::http::string_body> upgrade_request() {
  beast::http::request<beast::http::string_body> req{beast::http::verb::get, "/v1/ws", 11};
  req.set(beast::http::field::host, "localhost");
  req.set(beast::http::field::upgrade, "websocket");
  req.set(beast::http::field::connection, "upgrade");
  req.set(beast::http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  req.set(beast::http::field::sec_websocket_version, "13");
  return req;
}

// The read and write halves of ws_session without the engine: a generate is answered with
// the accepted frame that a running engine would send first.
class server {
 public:
  explicit server(beast::test::stream&& stream) : ws_(std::move(stream)) {}

  // The stream's timeout timer keeps the io_context busy after the connection ends, so
  // the caller runs ready handlers until this says the session has nothing left in flight.
  bool is_done() const { return !is_reading_ && queue_.empty(); }

  void run() {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(beast::http::field::server, "troupe"); }));
    ws_.read_message_max(0);
    ws_.control_callback([](websocket::frame_type, beast::string_view) {});
    ws_.async_accept(upgrade_request(), [this](beast::error_code ec) {
      if (ec) fail("a valid upgrade was refused");
      do_read();
    });
  }

 private:
  void do_read() {
    ws_.async_read_some(buffer_, read_chunk_bytes, [this](beast::error_code ec, std::size_t) {
      is_reading_ = !ec;
      on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) return;
    if (buffer_.size() > max_message_bytes) {
      is_discarding_ = true;
      buffer_.clear();
    }
    if (!ws_.is_message_done()) return do_read();
    if (is_discarding_) {
      is_discarding_ = false;
      send(troupe::net::ws_error({}, troupe::net::api_error{413, "frame_too_large", "message is over the limit", ""}));
    } else {
      on_message(beast::buffers_to_string(buffer_.data()));
    }
    buffer_.clear();
    do_read();
  }

  void on_message(const std::string& text) {
    if (text.size() > max_message_bytes) fail("a message over the limit reached the parser");
    const auto parsed = troupe::net::parse_ws_message(text, limits);
    if (!parsed.message) return send(troupe::net::ws_error(parsed.id, *parsed.error));
    if (const auto* ping = std::get_if<troupe::net::ws_ping>(&*parsed.message)) {
      return send(troupe::net::ws_pong(ping->data_json));
    }
    if (const auto* generate = std::get_if<troupe::net::ws_generate>(&*parsed.message)) {
      send(troupe::net::ws_accepted(generate->req.id));
    }
  }

  void send(std::string frame) {
    queue_.push_back(std::move(frame));
    if (queue_.size() == 1) do_write();
  }

  void do_write() {
    ws_.text(true);
    ws_.async_write(boost::asio::buffer(queue_.front()), [this](beast::error_code ec, std::size_t) {
      if (ec) return queue_.clear();
      queue_.pop_front();
      if (!queue_.empty()) do_write();
    });
  }

  websocket::stream<beast::test::stream> ws_;
  beast::flat_buffer buffer_;
  bool is_discarding_ = false;
  bool is_reading_ = true;
  std::deque<std::string> queue_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static boost::asio::io_context ioc;
  if (size == 0) return 0;
  beast::test::stream client(ioc), stream(ioc);
  if (data[0] < 128) stream.read_size(data[0] + 1u);
  stream.append(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  client.connect(stream);
  stream.close_remote();  // after the input the server reads the end of the connection
  {
    server s(std::move(stream));
    s.run();
    ioc.restart();
    while (!s.is_done()) {
      // Nothing ready but the stream's timers: the session would wait for a timeout although
      // every byte has arrived and the client's side is closed. Fail at once (with the input)
      // rather than hang until libFuzzer's wall-clock timeout.
      if (ioc.poll_one() == 0) fail("the session is waiting on nothing but its timers");
    }
  }
  ioc.restart();
  ioc.run();  // handlers cancelled by the stream's destruction
  return 0;
}
