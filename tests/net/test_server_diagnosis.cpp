// GET /v1/diagnosis on the in-process server (tiny model): the sampler's snapshots carry
// the server's name and limits, an idle server is idle, the window is the one asked for,
// and bad query parameters or methods are refused naming them.
#include <doctest/doctest.h>

#include <thread>

#include "test_client.hpp"

using namespace troupe;
using namespace troupe::test;
using boost::beast::http::verb;

namespace {

net::server_options fast_sampler() {
  net::server_options o;
  o.port = 0;
  o.diagnosis_interval_ms = 50;
  o.diagnosis_history = 40;  // 1.95 s of history
  return o;
}

engine_options small_caps() {
  engine_options o;
  o.scheduling.max_num_seqs = 3;
  o.scheduling.max_num_batched_tokens = 256;
  return o;
}

}  // namespace

TEST_CASE("diagnosis route: an idle server is diagnosed idle, named host:port, with its scheduler's limits") {
  server_fixture f(small_caps(), fast_sampler());
  // Snapshots come every 50 ms; on cores shared with other work some come late, so wait for
  // them rather than for a fixed time: 22 span 1.05 s, past the one second the rules need
  // (20 on time span only 0.95 s, which the rules call insufficient_data).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  auto r = http_call(f.port(), verb::get, "/v1/diagnosis");
  while (r.status == 200 && int64_t(json(r.body).root["num_snapshots"]) < 22 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    r = http_call(f.port(), verb::get, "/v1/diagnosis");
  }
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  json j(r.body);
  CHECK(j.str({"limiting_factor"}) == "idle");
  const auto replica = j.root["replicas"].at(0);
  CHECK(std::string(std::string_view(replica["replica"])) == "127.0.0.1:" + std::to_string(f.port()));
  CHECK(double(replica["max_num_seqs"]) == 3);
  CHECK(double(replica["max_num_batched_tokens"]) == 256);
  CHECK(int64_t(j.root["num_snapshots"]) >= 20);
  // A window under the second the rules need cannot difference counters.
  json narrow(http_call(f.port(), verb::get, "/v1/diagnosis?window_s=0.5").body);
  CHECK(narrow.str({"limiting_factor"}) == "insufficient_data");
}

TEST_CASE("diagnosis route: window_s picks the window; the default is capped by the history's span") {
  server_fixture f(small_caps(), fast_sampler());
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  json narrow(http_call(f.port(), verb::get, "/v1/diagnosis?window_s=0.2").body);
  CHECK(double(narrow.root["window_s"]) == 0.2);
  CHECK(int64_t(narrow.root["num_snapshots"]) <= 6);
  json whole(http_call(f.port(), verb::get, "/v1/diagnosis").body);
  CHECK(double(whole.root["window_s"]) == doctest::Approx(0.05 * 39));
  CHECK(int64_t(whole.root["num_snapshots"]) > int64_t(narrow.root["num_snapshots"]));
}

TEST_CASE("diagnosis route: a bad or unknown query parameter is 400 naming it; POST is 405") {
  server_fixture f(small_caps(), fast_sampler());
  for (const char* query : {"?window_s=abc", "?window_s=-1", "?window_s=inf", "?window_s=1.96", "?window_s=1&x=2"}) {
    const auto r = http_call(f.port(), verb::get, std::string("/v1/diagnosis") + query);
    INFO(query, " -> ", r.body);
    CHECK(r.status == 400);
    json j(r.body);
    CHECK(j.str({"error", "code"}) == "invalid_request");
    const std::string param = j.str({"error", "param"});
    CHECK((param == "window_s" || param == "x"));
    CHECK(j.str({"error", "message"}).find(param) != std::string::npos);
  }
  CHECK(http_call(f.port(), verb::post, "/v1/diagnosis", "{}").status == 405);
}
