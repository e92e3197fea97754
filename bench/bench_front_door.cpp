// The front door under many connections: opens --connections WebSockets to a running
// `troupe serve` and holds them open (each pings now and then and must get its pong),
// while --streaming of them generate back to back for --seconds. Reports errors, requests,
// tokens/s, and the front door's added latency per token: client receipt time minus the
// delta's server_ms (when the engine handed the token to the front door), p50/p99/max.
// bench/front_door.sh starts the server and runs this.
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <simdjson.h>

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "apps/cli_args.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

double unix_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct totals {
  int64_t num_connected = 0, num_connect_errors = 0, num_dropped = 0;
  int64_t num_requests = 0, num_request_errors = 0, num_tokens = 0;
  int64_t num_pings = 0, num_pongs = 0;
  std::vector<double> front_door_ms;  // per delta
  std::vector<double> ttft_ms;
  bool is_stopping = false;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(asio::io_context& io, totals& t, int index, bool is_streaming, std::string prompt, int max_tokens)
      : ws_(io), timer_(io), totals_(t), index_(index), is_streaming_(is_streaming),
        prompt_(std::move(prompt)), max_tokens_(max_tokens) {}

  void start(const tcp::endpoint& endpoint) {
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(30));
    beast::get_lowest_layer(ws_).async_connect(endpoint, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->fail_connect();
      beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true));
      self->ws_.async_handshake("127.0.0.1", "/v1/ws", [self](beast::error_code ec2) {
        if (ec2) return self->fail_connect();
        beast::get_lowest_layer(self->ws_).expires_never();
        ++self->totals_.num_connected;
        self->is_open_ = true;
        self->do_read();
        if (self->is_streaming_) {
          self->send_generate();
        } else {
          self->schedule_ping();
        }
      });
    });
  }

  void stop() {
    if (!is_open_) return;
    is_open_ = false;
    timer_.cancel();
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {});
  }

 private:
  void fail_connect() { ++totals_.num_connect_errors; }

  void send(std::string text) {
    queue_.push_back(std::move(text));
    if (queue_.size() == 1) do_write();
  }
  void do_write() {
    ws_.text(true);
    ws_.async_write(asio::buffer(queue_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      self->queue_.erase(self->queue_.begin());
      if (!self->queue_.empty()) self->do_write();
    });
  }

  void send_generate() {
    if (totals_.is_stopping) return;
    ++request_number_;
    sent_ms_ = unix_ms();
    is_first_token_ = true;
    send(R"({"type":"generate","id":"c)" + std::to_string(index_) + "-" + std::to_string(request_number_) +
         R"(","prompt":")" + prompt_ + R"(","max_tokens":)" + std::to_string(max_tokens_) +
         R"(,"ignore_eos":true,"temperature":0.8,"seed":)" + std::to_string(index_) + "}");
  }

  void schedule_ping() {
    // Spread over 10 s so that 1,000 idle connections do not all ping at once.
    timer_.expires_after(std::chrono::milliseconds(5000 + (index_ * 37) % 10000));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || !self->is_open_ || self->totals_.is_stopping) return;
      ++self->totals_.num_pings;
      self->send(R"({"type":"ping","data":)" + std::to_string(self->index_) + "}");
      self->schedule_ping();
    });
  }

  void do_read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) {
        if (self->is_open_ && !self->totals_.is_stopping) ++self->totals_.num_dropped;
        self->is_open_ = false;
        return;
      }
      self->on_message(beast::buffers_to_string(self->buffer_.data()));
      self->buffer_.clear();
      self->do_read();
    });
  }

  void on_message(const std::string& text) {
    const double now = unix_ms();
    simdjson::dom::element e;
    if (parser_.parse(text).get(e)) return;
    std::string_view type;
    if (e["type"].get(type)) return;
    if (type == "pong") {
      ++totals_.num_pongs;
    } else if (type == "delta") {
      double server_ms = 0;
      if (!e["server_ms"].get(server_ms)) totals_.front_door_ms.push_back(now - server_ms);
      simdjson::dom::array tokens;
      if (!e["tokens"].get(tokens)) totals_.num_tokens += static_cast<int64_t>(tokens.size());
      if (is_first_token_) {
        is_first_token_ = false;
        totals_.ttft_ms.push_back(now - sent_ms_);
      }
    } else if (type == "done") {
      ++totals_.num_requests;
      send_generate();
    } else if (type == "error") {
      ++totals_.num_request_errors;
      std::fprintf(stderr, "error frame: %s\n", text.c_str());
      send_generate();
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_;
  simdjson::dom::parser parser_;
  std::vector<std::string> queue_;
  totals& totals_;
  int index_;
  bool is_streaming_;
  std::string prompt_;
  int max_tokens_;
  bool is_open_ = false;
  int request_number_ = 0;
  double sent_ms_ = 0;
  bool is_first_token_ = true;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  // nearest rank
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

}  // namespace

int main(int argc, char** argv) {
  const troupe::apps::cli_args args(argc, argv, 1, {"--port", "--connections", "--streaming", "--seconds",
                                                    "--max-tokens", "--prompt-words"},
                                    {});
  const auto port = static_cast<uint16_t>(args.get_int("--port", 8080, 1, 65535));
  const int num_connections = static_cast<int>(args.get_int("--connections", 1000, 1, 100000));
  const int num_streaming = static_cast<int>(args.get_int("--streaming", 64, 0, num_connections));
  const int seconds = static_cast<int>(args.get_int("--seconds", 30, 1, 3600));
  const int max_tokens = static_cast<int>(args.get_int("--max-tokens", 64, 1, 8192));
  const int prompt_words = static_cast<int>(args.get_int("--prompt-words", 24, 1, 4096));

  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);

  std::string prompt = "Tell me a story about";
  for (int i = 0; i < prompt_words; ++i) prompt += " a";
  asio::io_context io;
  totals t;
  const tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  std::vector<std::shared_ptr<connection>> connections;
  for (int i = 0; i < num_connections; ++i) {
    // The streaming ones are spread among the idle ones.
    const bool is_streaming = num_streaming > 0 && i % std::max(1, num_connections / num_streaming) == 0 &&
                              i / std::max(1, num_connections / num_streaming) < num_streaming;
    connections.push_back(std::make_shared<connection>(io, t, i, is_streaming, prompt, max_tokens));
    connections.back()->start(endpoint);
  }
  asio::steady_timer stop_timer(io);
  const auto start = std::chrono::steady_clock::now();
  stop_timer.expires_after(std::chrono::seconds(seconds));
  stop_timer.async_wait([&](beast::error_code) {
    t.is_stopping = true;
    for (auto& c : connections) c->stop();
  });
  io.run_for(std::chrono::seconds(seconds + 30));
  const double elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::printf("front door: %d WebSocket connections (%d streaming, max_tokens %d), %d s\n", num_connections,
              num_streaming, max_tokens, seconds);
  std::printf("  connected %lld, connect errors %lld, dropped %lld\n", (long long)t.num_connected,
              (long long)t.num_connect_errors, (long long)t.num_dropped);
  std::printf("  requests done %lld, error frames %lld, tokens %lld (%.1f tok/s)\n", (long long)t.num_requests,
              (long long)t.num_request_errors, (long long)t.num_tokens, t.num_tokens / elapsed_s);
  std::printf("  pings %lld, pongs %lld\n", (long long)t.num_pings, (long long)t.num_pongs);
  std::printf("  front-door latency per delta (client receipt - server_ms): p50 %.3f ms  p99 %.3f ms  max %.3f ms"
              " over %zu deltas\n",
              percentile(t.front_door_ms, 50), percentile(t.front_door_ms, 99), percentile(t.front_door_ms, 100),
              t.front_door_ms.size());
  std::printf("  time to first token: p50 %.1f ms  p99 %.1f ms\n", percentile(t.ttft_ms, 50), percentile(t.ttft_ms, 99));
  std::printf("RESULT connections=%d streaming=%d connected=%lld errors=%lld dropped=%lld requests=%lld "
              "tok_s=%.1f fd_p50_ms=%.3f fd_p99_ms=%.3f\n",
              num_connections, num_streaming, (long long)t.num_connected,
              (long long)(t.num_connect_errors + t.num_request_errors), (long long)t.num_dropped,
              (long long)t.num_requests, t.num_tokens / elapsed_s, percentile(t.front_door_ms, 50),
              percentile(t.front_door_ms, 99));
  const bool ok = t.num_connected == num_connections && t.num_connect_errors == 0 && t.num_request_errors == 0 &&
                  t.num_dropped == 0 && t.num_pongs == t.num_pings;
  return ok ? 0 : 1;
}
