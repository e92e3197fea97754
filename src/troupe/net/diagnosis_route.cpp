// http_session's GET /v1/diagnosis: reads the query (window_s only), diagnoses the
// server's snapshot history on the I/O thread (a few hundred snapshots: microseconds) and
// answers the diagnosis as JSON.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <variant>

#include "troupe/model/error.hpp"
#include "troupe/net/diagnosis_json.hpp"
#include "troupe/net/http_session.hpp"

namespace troupe::net {

namespace http = boost::beast::http;

namespace {

constexpr double default_window_seconds = 60;

// The window the query asks for, or the error that names what was wrong.
std::variant<double, api_error> read_window(std::string_view target, double max_window_seconds) {
  double window = std::min(default_window_seconds, max_window_seconds);
  const auto q = target.find('?');
  std::string_view query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string_view name = pair.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (name != "window_s") {
      return invalid_request("unknown query parameter '" + std::string(name) + "' (allowed: window_s)",
                             std::string(name));
    }
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), window);
    const std::string range = "(0, " + std::to_string(static_cast<int64_t>(max_window_seconds)) + "]";
    if (ec != std::errc() || end != value.data() + value.size() || !std::isfinite(window) || window <= 0 ||
        window > max_window_seconds) {
      return invalid_request("window_s must be a number of seconds in " + range + ", got '" + std::string(value) + "'",
                             "window_s");
    }
  }
  return window;
}

}  // namespace

void http_session::respond_diagnosis(std::string_view target) {
  const auto& o = state_->options;
  const double max_window_seconds =
      static_cast<double>(o.diagnosis_interval_ms) / 1000.0 * static_cast<double>(state_->history.capacity() - 1);
  auto window = read_window(target, max_window_seconds);
  if (auto* e = std::get_if<api_error>(&window)) return respond_error(*e);
  try {
    const auto d = diagnose(state_->history.snapshots(), std::get<double>(window));
    respond(http::status::ok, "application/json", diagnosis_json(d));
  } catch (const error& e) {
    respond_error(api_error{500, "internal", std::string("diagnosis failed: ") + e.what(), ""});
  }
}

}  // namespace troupe::net
