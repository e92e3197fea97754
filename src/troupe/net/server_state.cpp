// The small shared helpers of the sessions: the API-key check and the wall clock.
#include "troupe/net/server_state.hpp"

#include <chrono>

namespace troupe::net {
namespace {

// Compares without an early exit, so that response time says nothing about the key.
bool same_key(std::string_view given, std::string_view expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  return diff == 0;
}

std::string_view query_value(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    if (pair.size() > name.size() && pair.substr(0, name.size()) == name && pair[name.size()] == '=') {
      return pair.substr(name.size() + 1);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

}  // namespace

bool is_authorized(const server_options& options, std::string_view authorization_header, std::string_view target) {
  if (options.api_key.empty()) return true;
  constexpr std::string_view bearer = "Bearer ";
  if (authorization_header.size() > bearer.size() && authorization_header.substr(0, bearer.size()) == bearer) {
    return same_key(authorization_header.substr(bearer.size()), options.api_key);
  }
  // Browsers cannot set headers on a WebSocket: the chat page passes the key in the URL.
  const auto from_query = query_value(target, "api_key");
  return !from_query.empty() && same_key(from_query, options.api_key);
}

double unix_time_ms() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration<double, std::milli>(now).count();
}

}  // namespace troupe::net
