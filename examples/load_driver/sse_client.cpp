// The OpenAI-compatible HTTP transport: one connection per request, POST with stream:true,
// the answer read as Server-Sent Events. Cancelling a request closes its connection, the
// only way an OpenAI client can.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "client.hpp"
#include "wire.hpp"

namespace troupe::load {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto no_throw = asio::as_tuple(asio::use_awaitable);
constexpr size_t max_error_body_bytes = 64 * 1024;

class sse_client final : public stream_client {
 public:
  sse_client(asio::io_context& io, server_url url, workload w, client_options options)
      : io_(io), url_(std::move(url)), workload_(std::move(w)), options_(std::move(options)) {}

  asio::awaitable<void> open() override {
    tcp::resolver resolver(io_);
    auto [ec, endpoints] = co_await resolver.async_resolve(url_.host, url_.port, no_throw);
    if (ec) throw connect_error("cannot resolve " + url_.host + ": " + ec.message());
    endpoints_ = endpoints;
    beast::tcp_stream probe(io_);
    probe.expires_after(std::chrono::seconds(10));
    auto [connect_ec, ep] = co_await probe.async_connect(endpoints_, no_throw);
    if (connect_ec) throw connect_error("cannot connect to " + url_.text + ": " + connect_ec.message());
  }

  asio::awaitable<request_record> send(const request_spec& spec) override {
    request_record r;
    r.index = spec.index;
    r.priority = spec.priority;
    r.sent_ms = run_clock_ms();
    co_await follow(spec, r);
    if (r.ended_ms == 0) r.ended_ms = run_clock_ms();
    co_return r;
  }

  asio::awaitable<void> close() override { co_return; }

 private:
  // Fills r; on failure sets its reason. Returns when the request has ended.
  asio::awaitable<void> follow(const request_spec& spec, request_record& r) {
    beast::tcp_stream stream(io_);
    stream.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(workload_.timeout_s)));
    const auto failed = [&](const beast::error_code& ec, const char* step) {
      r.result = outcome::failed;
      r.failure_reason = ec == beast::error::timeout ? "timeout" : "connection";
      r.failure_detail = std::string(step) + ": " + ec.message();
    };

    auto [connect_ec, ep] = co_await stream.async_connect(endpoints_, no_throw);
    if (connect_ec) co_return failed(connect_ec, "connect");
    stream.socket().set_option(tcp::no_delay(true));

    http::request<http::string_body> req{http::verb::post, url_.path + http_target_path(workload_), 11};
    req.set(http::field::host, url_.host + ":" + url_.port);
    req.set(http::field::user_agent, "troupe-load");
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "text/event-stream");
    if (!options_.api_key.empty()) req.set(http::field::authorization, "Bearer " + options_.api_key);
    req.body() = http_request_body(spec, workload_, options_.model);
    req.prepare_payload();
    auto [write_ec, written] = co_await http::async_write(stream, req, no_throw);
    if (write_ec) co_return failed(write_ec, "write");

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    auto [header_ec, header_bytes] = co_await http::async_read_header(stream, buffer, parser, no_throw);
    if (header_ec) co_return failed(header_ec, "read header");
    const unsigned status = parser.get().result_int();
    if (status != 200) {
      r.result = outcome::failed;
      r.failure_reason = "http_";
      r.failure_reason += std::to_string(status);
      const std::string body = co_await read_rest(stream, buffer, parser);
      r.failure_detail = error_body_message(body);
      co_return;
    }

    sse_splitter splitter;
    int64_t num_tokens = 0;
    std::string finish_reason;
    char chunk[16 * 1024];
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, no_throw);
      const double received_ms = run_clock_ms();
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return failed(ec, "read");
      const size_t got = sizeof chunk - parser.get().body().size;
      for (const std::string& payload : splitter.feed(std::string_view(chunk, got))) {
        sse_chunk c;
        try {
          c = decode_sse_chunk(payload);
        } catch (const std::exception& e) {
          r.result = outcome::failed;
          r.failure_reason = "protocol";
          r.failure_detail = e.what();
          co_return;
        }
        if (c.error) {
          r.result = outcome::failed;
          r.failure_reason = "stream_error";
          r.failure_detail = *c.error;
          co_return;
        }
        if (c.usage) {
          r.prompt_tokens = c.usage->prompt_tokens;
          r.completion_tokens = c.usage->completion_tokens;
        }
        if (!c.finish_reason.empty()) finish_reason = c.finish_reason;
        if (!c.text.empty()) {
          r.deltas.push_back({received_ms, 1});
          if (spec.cancel_after_tokens && ++num_tokens >= *spec.cancel_after_tokens) {
            r.result = outcome::cancelled;
            r.ended_ms = received_ms;
            beast::error_code ignored;
            stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
            co_return;
          }
        }
        if (c.is_done_marker) {
          r.ended_ms = received_ms;
          if (finish_reason.empty() || finish_reason == "stop" || finish_reason == "length") {
            r.result = outcome::ok;
          } else {
            r.result = outcome::failed;
            r.failure_reason = "finish_" + finish_reason;
          }
          co_return;
        }
      }
    }
    r.result = outcome::failed;
    r.failure_reason = "protocol";
    r.failure_detail = "the stream ended without data: [DONE]";
  }

  // The rest of an error response's body, up to max_error_body_bytes.
  asio::awaitable<std::string> read_rest(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                         http::response_parser<http::buffer_body>& parser) {
    std::string body;
    char chunk[4096];
    while (!parser.is_done() && body.size() < max_error_body_bytes) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      auto [ec, n] = co_await http::async_read_some(stream, buffer, parser, no_throw);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) break;
      body.append(chunk, sizeof chunk - parser.get().body().size);
    }
    co_return body;
  }

  asio::io_context& io_;
  server_url url_;
  workload workload_;
  client_options options_;
  tcp::resolver::results_type endpoints_;
};

}  // namespace

std::unique_ptr<stream_client> make_sse_client(asio::io_context& io, const server_url& url, const workload& w,
                                               const client_options& options) {
  return std::make_unique<sse_client>(io, url, w, options);
}

}  // namespace troupe::load
