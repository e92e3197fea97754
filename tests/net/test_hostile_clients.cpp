// Clients that break the rules on purpose. Each case is one defect the front door had.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <thread>

#include "test_client.hpp"
#include "troupe/net/json_read.hpp"
#include "troupe/net/openai_protocol.hpp"
#include "troupe/net/ws_protocol.hpp"

using namespace troupe;
using namespace troupe::test;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::beast::http::verb;
using namespace std::chrono_literals;

namespace {

struct json {
  explicit json(const std::string& text) : padded(text) { root = parser.parse(padded); }
  simdjson::padded_string padded;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string str(std::initializer_list<const char*> path) {
    simdjson::dom::element e = root;
    for (const char* key : path) e = e[key];
    return e.is_string() ? std::string(std::string_view(e)) : std::string();
  }
};

// {"k0":0,"k1":0,...}: n distinct keys.
std::string object_with_keys(const std::string& prefix, int n) {
  std::string s = "{";
  for (int i = 0; i < n; ++i) {
    if (i) s += ',';
    s += '"';
    s += prefix;
    s += std::to_string(i);
    s += "\":0";
  }
  return s + "}";
}

}  // namespace

// -- 1. JSON objects with very many keys -----------------------------------------------

TEST_CASE("hostile: a logit_bias with 100,000 keys is refused naming the field") {
  net::server_options o;
  o.max_body_bytes = 4 << 20;
  server_fixture f({}, o);
  std::string bias = "{";
  for (int i = 0; i < 100000; ++i) {
    if (i) bias += ',';
    bias += '"' + std::to_string(i) + "\":1";
  }
  bias += '}';
  auto r = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":2,"logit_bias":)" + bias + "}");
  CHECK(r.status == 400);
  json j(r.body);
  CHECK(j.str({"error", "param"}) == "logit_bias");
  CHECK(j.str({"error", "message"}).find("logit_bias must have at most") == 0);
  // The server carries on.
  CHECK(http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":2})").status == 200);
}

TEST_CASE("hostile: the duplicate-key check does work linear in the number of keys") {
  constexpr int n = 100000;
  const net::parse_limits limits{1000, 2048};
  SUBCASE("ping data") {
    const auto before = net::json_read::num_key_comparisons();
    auto parsed = net::parse_ws_message(R"({"type":"ping","data":)" + object_with_keys("k", n) + "}", limits);
    REQUIRE(parsed.message);
    CHECK(std::get<net::ws_ping>(*parsed.message).data_json.size() > 6u * n);
    CHECK(net::json_read::num_key_comparisons() - before <= 4u * n);
  }
  SUBCASE("the keys of a chat content part") {
    const auto before = net::json_read::num_key_comparisons();
    const std::string part = object_with_keys("k", n);
    auto parsed = net::parse_openai_request(
        net::openai_endpoint::chat_completions,
        R"({"messages":[{"role":"user","content":[)" + part.substr(0, part.size() - 1) + R"(,"type":"text"}]}]})",
        limits);
    REQUIRE(parsed.error);
    CHECK(parsed.error->message.find("unknown field messages[0].content[0].k0") == 0);
    CHECK(net::json_read::num_key_comparisons() - before <= 4u * n);
  }
  SUBCASE("unknown top-level keys of a WebSocket frame") {
    const auto before = net::json_read::num_key_comparisons();
    const std::string keys = object_with_keys("x", n);
    auto parsed = net::parse_ws_message(R"({"type":"ping",)" + keys.substr(1), limits);
    REQUIRE(parsed.error);
    CHECK(parsed.error->message == R"(unknown field "x0" in a ping message)");
    CHECK(net::json_read::num_key_comparisons() - before <= 4u * n);
  }
}

TEST_CASE("hostile: a key given twice is still refused, in small and large objects") {
  const net::parse_limits limits{1000, 2048};
  for (int n : {3, 40, 5000}) {
    std::string data = object_with_keys("k", n);
    data.insert(data.size() - 1, R"(,"k1":2)");
    auto parsed = net::parse_ws_message(R"({"type":"ping","data":)" + data + "}", limits);
    REQUIRE(parsed.error);
    CHECK(parsed.error->message == R"(duplicate field "k1" in data)");
  }
  // One token id under two spellings is given twice as well.
  auto twice = net::parse_openai_request(net::openai_endpoint::completions,
                                         R"({"prompt":"x","logit_bias":{"7":1,"007":-1}})", limits);
  REQUIRE(twice.error);
  CHECK(twice.error->param == "logit_bias");
  CHECK(twice.error->message.find("token id 7 more than once") != std::string::npos);
}

