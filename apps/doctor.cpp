// `troupe doctor URL...`: scrapes each server's /metrics (Prometheus text) every --interval
// seconds for --window seconds, reads the scrapes into fleet snapshots (each URL one
// replica, named host:port, unless its samples carry a replica label), runs the bottleneck
// monitor (engine/diagnosis.hpp) and prints its report, or its JSON with --json. Works
// against any troupe server; exits 1 naming the URL when one cannot be read or is not troupe's.
#include "apps/doctor.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "apps/cli_args.hpp"
#include "troupe/engine/fleet_snapshot.hpp"
#include "troupe/engine/prometheus_text.hpp"
#include "troupe/model/error.hpp"
#include "troupe/net/diagnosis_json.hpp"

namespace troupe::apps {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

constexpr const char* doctor_usage =
    "usage: troupe doctor URL [URL...] [--window S] [--interval S] [--timeout-ms MS] [--json]\n"
    "Scrapes each troupe server's /metrics (URL: http://HOST:PORT or the metrics URL itself)\n"
    "every --interval seconds (default 1) for --window seconds (default 5), then says what\n"
    "limits the fleet, the knob to turn and the numbers that led there. Each URL is one\n"
    "replica. --json prints the diagnosis as GET /v1/diagnosis does.\n";

struct metrics_url {
  std::string text;  // as given
  std::string host;
  std::string port;
  std::string target;
};

metrics_url parse_url(const std::string& url) {
  constexpr std::string_view scheme = "http://";
  if (url.rfind("https://", 0) == 0) {
    throw error(error_code::invalid_argument, url + ": https is not supported (troupe serves plain http://)");
  }
  if (url.rfind(scheme, 0) != 0) {
    throw error(error_code::invalid_argument, url + ": expected http://HOST[:PORT][/PATH]");
  }
  metrics_url u{url, "", "80", "/metrics"};
  std::string rest = url.substr(scheme.size());
  const auto slash = rest.find('/');
  if (slash != std::string::npos) {
    if (rest.size() > slash + 1) u.target = rest.substr(slash);
    rest.resize(slash);
  }
  const auto colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    u.port = rest.substr(colon + 1);
    rest.resize(colon);
  }
  if (!rest.empty() && rest.front() == '[' && rest.back() == ']') rest = rest.substr(1, rest.size() - 2);
  u.host = rest;
  const bool is_port = !u.port.empty() && u.port.size() <= 5 &&
                       u.port.find_first_not_of("0123456789") == std::string::npos && std::stoi(u.port) <= 65535;
  if (u.host.empty() || !is_port) throw error(error_code::invalid_argument, url + ": expected http://HOST[:PORT][/PATH]");
  return u;
}

// One GET, every step bounded by timeout_ms. Throws troupe::error(io_error) naming the URL.
std::string http_get(const metrics_url& u, int64_t timeout_ms) {
  asio::io_context context;
  beast::tcp_stream stream(context);
  auto fail = [&](const std::string& what) -> std::string {
    throw error(error_code::io_error, "cannot read " + u.text + ": " + what);
  };
  try {
    asio::ip::tcp::resolver resolver(context);
    const auto endpoints = resolver.resolve(u.host, u.port);
    stream.expires_after(std::chrono::milliseconds(timeout_ms));
    stream.connect(endpoints);
    http::request<http::empty_body> req{http::verb::get, u.target, 11};
    req.set(http::field::host, u.host);
    req.set(http::field::user_agent, "troupe-doctor");
    stream.expires_after(std::chrono::milliseconds(timeout_ms));
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    stream.expires_after(std::chrono::milliseconds(timeout_ms));
    http::read(stream, buffer, parser);
    auto res = parser.release();
    beast::error_code ignored;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    if (res.result() != http::status::ok) {
      return fail("GET " + u.target + " answered " + std::to_string(res.result_int()) + " " +
                  std::string(res.reason()));
    }
    return std::move(res.body());
  } catch (const beast::system_error& e) {
    return fail(e.code().message());
  }
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One snapshot of the whole fleet: every URL scraped once.
fleet_snapshot scrape(const std::vector<metrics_url>& urls, int64_t timeout_ms) {
  std::vector<fleet_snapshot> parts;
  for (const auto& u : urls) {
    const std::string text = http_get(u, timeout_ms);
    const double now = steady_seconds();
    try {
      parts.push_back(snapshot_from_samples(parse_prometheus_text(text), now, u.host + ":" + u.port));
    } catch (const error& e) {
      throw error(e.code(), u.text + ": " + e.what());
    }
  }
  return merge_snapshots(parts);
}

}  // namespace

int run_doctor(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::fputs(doctor_usage, stdout);
      return 0;
    }
  }
  const cli_args args(argc, argv, 2, {"--window", "--interval", "--timeout-ms"}, {"--json"});
  if (args.positional().empty()) {
    std::fputs(doctor_usage, stderr);
    return 2;
  }
  const double window = args.get_float("--window", 5);
  const double interval = args.get_float("--interval", 1);
  const int64_t timeout_ms = args.get_int("--timeout-ms", 5000, 1, 600000);
  // Under a second, counters have barely moved: the diagnosis would be insufficient_data.
  if (window < 1 || window > 3600) {
    throw error(error_code::invalid_argument, "--window must be in [1, 3600] seconds, got " + args.get_or("--window", ""));
  }
  if (interval < 0.1 || interval > window) {
    throw error(error_code::invalid_argument,
                "--interval must be in [0.1, --window] seconds, got " + args.get_or("--interval", ""));
  }
  std::vector<metrics_url> urls;
  for (const auto& text : args.positional()) urls.push_back(parse_url(text));

  // Scrapes on a fixed schedule from the first, until the scrapes span the whole window.
  std::vector<fleet_snapshot> history;
  history.push_back(scrape(urls, timeout_ms));
  const double first = history.front().time_seconds;
  for (int i = 1; history.back().time_seconds - first < window; ++i) {
    const double wait = first + i * interval - steady_seconds();
    if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    history.push_back(scrape(urls, timeout_ms));
  }
  // Every scrape of the run, however the last one's timing fell.
  const double covered = history.back().time_seconds - history.front().time_seconds;
  const auto d = diagnose(history, covered + interval);
  const std::string out = args.has("--json") ? net::diagnosis_json(d) + "\n" : format_diagnosis_report(d);
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace troupe::apps
