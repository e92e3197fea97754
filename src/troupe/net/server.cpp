// server: the io_context, the acceptor loop and the io threads.
#include "troupe/net/server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>

#include <chrono>

#include "troupe/engine/fleet_snapshot.hpp"
#include "troupe/model/error.hpp"
#include "troupe/net/http_session.hpp"

namespace troupe::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct server::io {
  asio::io_context context;
  tcp::acceptor acceptor{asio::make_strand(context)};
  // Keeps run() going while connections come and go.
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(context);
  std::shared_ptr<server_state> state;
  // The diagnosis sampler: a snapshot of the registry per interval, on an I/O thread (a walk
  // of the registry under its mutex, which the engine's threads never wait on: their
  // updates are atomics).
  asio::steady_timer sampler{context};
  std::string replica;  // host:port, the name this server's snapshots carry

  void do_sample();

  void do_accept() {
    // Each connection gets its own strand: its handlers never run at once.
    acceptor.async_accept(asio::make_strand(context), [this](boost::beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
        return do_accept();  // a failed accept (e.g. out of descriptors) must not stop the server
      }
      if (state->num_connections.load() >= state->options.max_connections) {
        boost::beast::error_code ignored;
        socket.close(ignored);
      } else {
        state->num_connections.fetch_add(1);
        std::make_shared<http_session>(std::move(socket), state)->run();
      }
      do_accept();
    });
  }
};

void server::io::do_sample() {
  const double now = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  try {
    state->history.record(snapshot_from_samples(state->metrics.registry->samples(), now, replica));
  } catch (const error&) {
    // A registry without the engine's metrics (an engine that registers none): nothing to keep.
  }
  sampler.expires_after(std::chrono::milliseconds(state->options.diagnosis_interval_ms));
  sampler.async_wait([this](boost::beast::error_code ec) {
    if (!ec) do_sample();
  });
}

server::server(engine_bridge& bridge, server_options options)
    : state_(std::make_shared<server_state>(std::move(options), bridge)), io_(std::make_unique<io>()) {
  io_->state = state_;
}

server::~server() { stop(); }

void server::start() {
  const auto& o = state_->options;
  boost::beast::error_code ec;
  const auto address = asio::ip::make_address(o.host, ec);
  if (ec) throw error(error_code::invalid_argument, "--host " + o.host + " is not an IP address");
  const tcp::endpoint endpoint(address, o.port);
  auto& acceptor = io_->acceptor;
  auto fail = [&](const char* what) {
    throw error(error_code::io_error, std::string("cannot listen on ") + o.host + ":" + std::to_string(o.port) +
                                          ": " + what + ": " + ec.message());
  };
  if (acceptor.open(endpoint.protocol(), ec)) fail("open");
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec)) fail("reuse_address");
  if (acceptor.bind(endpoint, ec)) fail("bind");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec)) fail("listen");
  port_ = acceptor.local_endpoint().port();
  io_->do_accept();
  io_->replica = o.host + ":" + std::to_string(port_);
  asio::post(io_->sampler.get_executor(), [this] { io_->do_sample(); });
  for (int i = 0; i < o.io_threads; ++i) threads_.emplace_back([this] { io_->context.run(); });
}

void server::stop_accepting() {
  asio::post(io_->acceptor.get_executor(), [this] {
    boost::beast::error_code ec;
    io_->acceptor.close(ec);
  });
}

void server::stop() {
  state_->gate->close();  // no engine thread touches a session from here on
  if (threads_.empty()) return;
  io_->work.reset();
  io_->context.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

}  // namespace troupe::net
