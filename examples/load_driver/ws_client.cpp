// troupe's WebSocket transport: a few connections, requests multiplexed on them by id.
// Each connection has one reader coroutine that routes frames to the waiting request and
// one writer at a time draining a queue of frames (a WebSocket allows one write in
// flight). Everything runs on the io_context's one thread, so no locks.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <unordered_map>

#include "client.hpp"
#include "wire.hpp"

namespace troupe::load {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
constexpr auto no_throw = asio::as_tuple(asio::use_awaitable);

// A request waiting for its frames. Lives in send()'s coroutine frame; the connection
// holds a pointer only while the request is unfinished.
struct pending_request {
  const request_spec* spec = nullptr;
  request_record* record = nullptr;
  asio::steady_timer* wake = nullptr;  // cancelled when the request ends
  int64_t num_tokens = 0;
  bool is_finished = false;
};

class ws_connection : public std::enable_shared_from_this<ws_connection> {
 public:
  explicit ws_connection(asio::io_context& io) : ws_(io) {}

  asio::awaitable<void> connect(const server_url& url, const tcp::resolver::results_type& endpoints,
                                const std::string& api_key) {
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(10));
    auto [ec, ep] = co_await beast::get_lowest_layer(ws_).async_connect(endpoints, no_throw);
    if (ec) throw connect_error("cannot connect to " + url.text + ": " + ec.message());
    beast::get_lowest_layer(ws_).socket().set_option(tcp::no_delay(true));
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    ws_.set_option(websocket::stream_base::decorator([api_key](websocket::request_type& req) {
      req.set(beast::http::field::user_agent, "troupe-load");
      if (!api_key.empty()) req.set(beast::http::field::authorization, "Bearer " + api_key);
    }));
    websocket::response_type response;
    auto [hs_ec] = co_await ws_.async_handshake(response, url.host + ":" + url.port, url.path, no_throw);
    if (hs_ec) {
      std::string why = hs_ec.message();
      if (response.result_int() != 0 && response.result_int() != 101) {
        why = "HTTP " + std::to_string(response.result_int()) + " " + std::string(response.reason());
      }
      throw connect_error("WebSocket upgrade to " + url.text + " failed: " + why);
    }
    ws_.text(true);
    is_open_ = true;
    asio::co_spawn(ws_.get_executor(), read_loop(shared_from_this()), asio::detached);
  }

  bool is_open() const { return is_open_; }

  void start(pending_request& p) {
    pending_[p.spec->id] = &p;
    write(ws_generate_frame(*p.spec, workload_ref()));
  }

  // The request stops waiting without an answer (its timeout): tell the server.
  void abandon(pending_request& p) {
    pending_.erase(p.spec->id);
    if (is_open_) write(ws_cancel_frame(p.spec->id));
  }

  asio::awaitable<void> close() {
    if (!is_open_) co_return;
    is_open_ = false;
    co_await ws_.async_close(websocket::close_code::normal, no_throw);
  }

  void set_workload(const workload* w) { workload_ = w; }

 private:
  const workload& workload_ref() const { return *workload_; }

  void write(std::string frame) {
    outbox_.push_back(std::move(frame));
    if (is_writing_) return;
    is_writing_ = true;
    asio::co_spawn(ws_.get_executor(), write_loop(shared_from_this()), asio::detached);
  }

  asio::awaitable<void> write_loop([[maybe_unused]] std::shared_ptr<ws_connection> self) {
    while (!outbox_.empty() && is_open_) {
      auto [ec, n] = co_await ws_.async_write(asio::buffer(outbox_.front()), no_throw);
      if (ec) {
        fail_all("connection", "write: " + ec.message());
        break;
      }
      outbox_.pop_front();
    }
    outbox_.clear();
    is_writing_ = false;
  }

  asio::awaitable<void> read_loop([[maybe_unused]] std::shared_ptr<ws_connection> self) {
    beast::flat_buffer buffer;
    for (;;) {
      auto [ec, n] = co_await ws_.async_read(buffer, no_throw);
      const double received_ms = run_clock_ms();
      const double received_epoch_ms = epoch_ms();
      if (ec) {
        fail_all("connection", "read: " + ec.message());
        co_return;
      }
      const auto data = buffer.cdata();
      on_frame(std::string_view(static_cast<const char*>(data.data()), data.size()), received_ms,
               received_epoch_ms);
      buffer.consume(buffer.size());
    }
  }

  void on_frame(std::string_view frame, double received_ms, double received_epoch_ms) {
    ws_event ev;
    try {
      ev = decode_ws_frame(frame);
    } catch (const std::exception& e) {
      fail_all("protocol", e.what());
      return;
    }
    const auto it = pending_.find(ev.id);
    if (it == pending_.end()) return;  // a request already ended here (cancelled, timed out)
    pending_request& p = *it->second;
    request_record& r = *p.record;
    switch (ev.type) {
      case ws_event::kind::delta:
        if (ev.server_ms) r.front_door_ms.push_back(received_epoch_ms - *ev.server_ms);
        if (ev.text.empty()) break;
        r.deltas.push_back({received_ms, ev.num_tokens});
        p.num_tokens += ev.num_tokens;
        if (p.spec->cancel_after_tokens && p.num_tokens >= *p.spec->cancel_after_tokens) {
          write(ws_cancel_frame(ev.id));
          finish(p, outcome::cancelled, received_ms);
        }
        break;
      case ws_event::kind::done:
        if (ev.usage) {
          r.prompt_tokens = ev.usage->prompt_tokens;
          r.completion_tokens = ev.usage->completion_tokens;
        }
        if (ev.finish_reason == "stop" || ev.finish_reason == "length") {
          finish(p, outcome::ok, received_ms);
        } else {
          r.failure_reason = "finish_" + (ev.finish_reason.empty() ? std::string("missing") : ev.finish_reason);
          r.failure_detail = ev.message;
          finish(p, outcome::failed, received_ms);
        }
        break;
      case ws_event::kind::error:
        r.failure_reason = "error_" + (ev.code.empty() ? std::string("missing") : ev.code);
        r.failure_detail = ev.message;
        finish(p, outcome::failed, received_ms);
        break;
      default:
        break;
    }
  }

  void finish(pending_request& p, outcome result, double at_ms) {
    pending_.erase(p.spec->id);
    p.record->result = result;
    p.record->ended_ms = at_ms;
    p.is_finished = true;
    p.wake->cancel();
  }

  void fail_all(const std::string& reason, const std::string& detail) {
    is_open_ = false;
    const double now = run_clock_ms();
    auto waiting = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : waiting) {
      p->record->failure_reason = reason;
      p->record->failure_detail = detail;
      p->is_finished = true;
      p->record->result = outcome::failed;
      p->record->ended_ms = now;
      p->wake->cancel();
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  const workload* workload_ = nullptr;
  std::deque<std::string> outbox_;  // front() is being written; deque keeps it in place
  bool is_writing_ = false;
  bool is_open_ = false;
  std::unordered_map<std::string, pending_request*> pending_;
};

class ws_client final : public stream_client {
 public:
  ws_client(asio::io_context& io, server_url url, workload w, client_options options)
      : io_(io), url_(std::move(url)), workload_(std::move(w)), options_(std::move(options)) {}

  asio::awaitable<void> open() override {
    tcp::resolver resolver(io_);
    auto [ec, endpoints] = co_await resolver.async_resolve(url_.host, url_.port, no_throw);
    if (ec) throw connect_error("cannot resolve " + url_.host + ": " + ec.message());
    for (int64_t i = 0; i < workload_.num_connections; ++i) {
      auto c = std::make_shared<ws_connection>(io_);
      c->set_workload(&workload_);
      co_await c->connect(url_, endpoints, options_.api_key);
      connections_.push_back(std::move(c));
    }
  }

  asio::awaitable<request_record> send(const request_spec& spec) override {
    request_record record;
    record.index = spec.index;
    record.priority = spec.priority;
    record.sent_ms = run_clock_ms();
    ws_connection& c = *connections_[spec.index % connections_.size()];
    if (!c.is_open()) {
      record.failure_reason = "connection";
      record.failure_detail = "WebSocket connection is closed";
      record.ended_ms = record.sent_ms;
      co_return record;
    }
    asio::steady_timer wake(io_);
    wake.expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(
        std::chrono::duration<double>(workload_.timeout_s)));
    pending_request p{&spec, &record, &wake};
    c.start(p);
    co_await wake.async_wait(no_throw);
    if (!p.is_finished) {  // the timer ran out before the request ended
      c.abandon(p);
      record.result = outcome::failed;
      record.failure_reason = "timeout";
      record.ended_ms = run_clock_ms();
    }
    co_return record;
  }

  asio::awaitable<void> close() override {
    for (auto& c : connections_) co_await c->close();
    connections_.clear();
  }

 private:
  asio::io_context& io_;
  server_url url_;
  workload workload_;
  client_options options_;
  std::vector<std::shared_ptr<ws_connection>> connections_;
};

}  // namespace

std::unique_ptr<stream_client> make_ws_client(asio::io_context& io, const server_url& url, const workload& w,
                                              const client_options& options) {
  return std::make_unique<ws_client>(io, url, w, options);
}

}  // namespace troupe::load
