// URL parsing, the clocks records use, and the choice of transport.
#include "client.hpp"

#include <chrono>

namespace troupe::load {

double run_clock_ms() {
  static const auto origin = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - origin).count();
}

double epoch_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
}

server_url parse_server_url(const std::string& text) {
  server_url u;
  u.text = text;
  std::string rest;
  if (text.rfind("ws://", 0) == 0) {
    u.kind = server_url::scheme::ws;
    rest = text.substr(5);
  } else if (text.rfind("http://", 0) == 0) {
    u.kind = server_url::scheme::http;
    rest = text.substr(7);
  } else if (text.rfind("wss://", 0) == 0 || text.rfind("https://", 0) == 0) {
    throw std::invalid_argument("--url " + text + ": TLS is not supported; use ws:// or http://");
  } else {
    throw std::invalid_argument("--url " + text + ": must start with ws:// or http://");
  }
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash);
  u.path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  const auto colon = authority.rfind(':');
  if (colon == std::string::npos || authority.back() == ']') {
    u.host = authority;
    u.port = "80";
  } else {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  }
  if (!u.host.empty() && u.host.front() == '[' && u.host.back() == ']') u.host = u.host.substr(1, u.host.size() - 2);
  if (u.host.empty()) throw std::invalid_argument("--url " + text + ": no host");
  if (u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos) {
    throw std::invalid_argument("--url " + text + ": port must be a number");
  }
  if (u.kind == server_url::scheme::ws && u.path.empty()) u.path.assign(1, '/');
  return u;
}

std::unique_ptr<stream_client> make_client(boost::asio::io_context& io, const server_url& url, const workload& w,
                                           const client_options& options) {
  if (url.kind == server_url::scheme::ws) return make_ws_client(io, url, w, options);
  return make_sse_client(io, url, w, options);
}

}  // namespace troupe::load
