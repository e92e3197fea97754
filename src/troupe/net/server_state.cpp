// The small shared helpers of the sessions: the API-key check and the wall clock.
#include "troupe/net/server_state.hpp"

#include <cctype>
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

bool is_authorized(const server_options& options, std::string_view authorization_header, std::string_view target,
                   bool allow_query_key) {
  if (options.api_key.empty()) return true;
  // RFC 9110 section 11.1: the scheme is case-insensitive; one or more spaces follow it.
  constexpr std::string_view bearer = "bearer";
  const auto space = authorization_header.find(' ');
  if (space == bearer.size()) {
    bool is_bearer = true;
    for (size_t i = 0; i < bearer.size(); ++i) {
      is_bearer = is_bearer && std::tolower(static_cast<unsigned char>(authorization_header[i])) == bearer[i];
    }
    std::string_view credentials = authorization_header.substr(space);
    while (!credentials.empty() && credentials.front() == ' ') credentials.remove_prefix(1);
    if (is_bearer && !credentials.empty()) return same_key(credentials, options.api_key);
  }
  if (!allow_query_key) return false;
  const auto from_query = query_value(target, "api_key");
  return !from_query.empty() && same_key(from_query, options.api_key);
}

bool has_api_key_in_query(std::string_view target) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return false;
  const std::string_view query = target.substr(q + 1);
  return query.rfind("api_key=", 0) == 0 || query.find("&api_key=") != std::string_view::npos;
}

double unix_time_ms() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration<double, std::milli>(now).count();
}

}  // namespace troupe::net
