// The interface both transports implement, and the URL that picks one: ws://HOST:PORT/PATH
// for troupe's WebSocket, http://HOST:PORT/PREFIX for an OpenAI-compatible server (the
// driver appends /completions or /chat/completions to PREFIX, e.g. /v1).
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <stdexcept>
#include <string>

#include "plan.hpp"
#include "record.hpp"
#include "workload.hpp"

namespace troupe::load {

// The server could not be reached (or refused the WebSocket upgrade) before the run.
struct connect_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct server_url {
  enum class scheme { ws, http };
  scheme kind = scheme::http;
  std::string host;
  std::string port;
  std::string path;  // "/v1/ws", "/v1", or "" for none
  std::string text;  // as given
};

// Throws std::invalid_argument naming what is wrong (wss:// and https:// are not supported).
server_url parse_server_url(const std::string& text);

struct client_options {
  std::string api_key;  // sent as Authorization: Bearer KEY when not empty
  std::string model;    // the HTTP body's "model"
};

class stream_client {
 public:
  virtual ~stream_client() = default;
  // Before the run: connects (WebSocket) or checks the server answers TCP (HTTP).
  // Throws connect_error.
  virtual boost::asio::awaitable<void> open() = 0;
  // Sends one request and follows it to its end; never throws for a failed request, the
  // record says how it failed. Many may be in flight at once on the one io_context thread.
  virtual boost::asio::awaitable<request_record> send(const request_spec& r) = 0;
  // After the run: closes connections.
  virtual boost::asio::awaitable<void> close() = 0;
};

std::unique_ptr<stream_client> make_ws_client(boost::asio::io_context& io, const server_url& url,
                                              const workload& w, const client_options& options);
std::unique_ptr<stream_client> make_sse_client(boost::asio::io_context& io, const server_url& url,
                                               const workload& w, const client_options& options);
std::unique_ptr<stream_client> make_client(boost::asio::io_context& io, const server_url& url,
                                           const workload& w, const client_options& options);

}  // namespace troupe::load
