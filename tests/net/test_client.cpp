// The test client and the server fixture.
#include "test_client.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <thread>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/gguf.hpp"
#include "util/tiny_model.hpp"

namespace troupe::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Runs io until done() or timeout; false on timeout (the pending operations are cancelled).
template <class Done>
bool run_until(asio::io_context& io, beast::tcp_stream& stream, std::chrono::milliseconds timeout, Done done) {
  io.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      stream.cancel();
      io.restart();
      io.run_for(std::chrono::seconds(1));
      return false;
    }
    io.run_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace

http_reply http_call(uint16_t port, http::verb method, const std::string& target, const std::string& body,
                     const header_list& headers, std::chrono::milliseconds timeout) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::error_code ec;
  stream.socket().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) throw std::runtime_error("connect: " + ec.message());
  http::request<http::string_body> req(method, target, 11);
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == http::verb::post) {
    req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
  }
  http::write(stream, req, ec);
  if (ec) throw std::runtime_error("write: " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(256 << 20);
  bool done = false;
  http::async_read(stream, buffer, parser, [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(io, stream, timeout, [&] { return done; })) throw std::runtime_error("timeout reading " + target);
  if (ec) throw std::runtime_error("read: " + ec.message());
  auto res = parser.release();
  return {static_cast<int>(res.result_int()), res.body(), std::string(res[http::field::content_type]),
          std::string(res[http::field::allow]), std::string(res[http::field::retry_after])};
}

double metric_value(const std::string& page, const std::string& series) {
  const auto at = page.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + series.size() + 2));
}

std::vector<std::string> sse_data_lines(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    auto end = body.find('\n', pos);
    if (end == std::string::npos) end = body.size();
    const std::string line = body.substr(pos, end - pos);
    if (line.rfind("data: ", 0) == 0) out.push_back(line.substr(6));
    pos = end + 1;
  }
  return out;
}

ws_client::ws_client(uint16_t port, const std::string& target, const header_list& headers, int receive_buffer_bytes)
    : ws_(io_) {
  auto& socket = beast::get_lowest_layer(ws_).socket();
  beast::error_code ec;
  socket.open(tcp::v4(), ec);
  if (receive_buffer_bytes > 0) socket.set_option(asio::socket_base::receive_buffer_size(receive_buffer_bytes), ec);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) throw std::runtime_error("connect: " + ec.message());
  ws_.set_option(beast::websocket::stream_base::decorator([headers](beast::websocket::request_type& req) {
    for (const auto& [name, value] : headers) req.set(name, value);
  }));
  ws_.read_message_max(64 << 20);
  ws_.handshake("127.0.0.1", target, ec);
  if (ec) throw std::runtime_error("handshake: " + ec.message());
  ws_.text(true);
}

ws_client::~ws_client() {
  beast::error_code ec;
  beast::get_lowest_layer(ws_).socket().close(ec);
}

void ws_client::send(const std::string& text) {
  beast::error_code ec;
  ws_.write(asio::buffer(text), ec);
  if (ec) throw std::runtime_error("ws write: " + ec.message());
}

std::optional<std::string> ws_client::read(std::chrono::milliseconds timeout) {
  beast::flat_buffer buffer;
  beast::error_code ec;
  bool done = false;
  ws_.async_read(buffer, [&](beast::error_code e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(io_, beast::get_lowest_layer(ws_), timeout, [&] { return done; }) || ec) return std::nullopt;
  return beast::buffers_to_string(buffer.data());
}

void ws_client::close() {
  beast::error_code ec;
  ws_.close(beast::websocket::close_code::normal, ec);
}

void ws_client::drop() {
  beast::error_code ec;
  auto& socket = beast::get_lowest_layer(ws_).socket();
  socket.set_option(asio::socket_base::linger(true, 0), ec);  // an RST, as a crashed client sends
  socket.close(ec);
}

server_fixture::server_fixture(engine_options options, net::server_options server) {
  tiny_model_options m;
  m.context_length = 2048;
  auto file = std::make_shared<const gguf::file>(gguf::file::parse(make_tiny_llama(m)));
  model = model_bundle::load(file, 2048);
  cpu::cpu_backend_options o;
  o.num_threads = 1;
  o.num_blocks = 1024;
  o.eog_ids = model->tok.eog_ids();
  gate = std::make_shared<gated_backend>(std::make_shared<cpu::cpu_backend>(file, o));
  cfg.set("scheduler.max-threads", 2);
  sys = std::make_unique<caf::actor_system>(cfg);
  options.scheduling.max_model_len = 2048;
  eng = std::make_unique<engine>(*sys, model, gate, options);
  bridge = std::make_unique<net::engine_bridge>(*eng, "tiny");
  server.port = 0;
  front_door = std::make_unique<net::server>(*bridge, server);
  front_door->start();
  bridge->set_ready(true);
}

server_fixture::~server_fixture() {
  // A step still waiting at a closed gate would hold up the engine's shutdown.
  const bool gate_timed_out = gate->timed_out();
  gate->open();
  CHECK_MESSAGE(!gate_timed_out, "a step waited at the closed gate until it gave up: open it before the request must finish");
  front_door->stop();
  front_door.reset();
  bridge.reset();
  eng.reset();
  sys.reset();
}

bool server_fixture::wait_idle(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (bridge->num_in_flight() == 0 && eng->stats().blocks.num_used_blocks == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool server_fixture::wait_metric(const std::string& series, double value, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (metric_value(http_call(port(), http::verb::get, "/metrics").body, series) >= value) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace troupe::test
