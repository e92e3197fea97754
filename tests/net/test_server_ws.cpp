// The WebSocket protocol on a real engine (tiny model): multiplexing, cancel, a dropped
// connection, bad frames, oversized messages, a slow reader and draining.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <map>
#include <thread>

#include "test_client.hpp"

using namespace troupe;
using namespace troupe::test;
using boost::beast::http::verb;

namespace {

struct frame {
  std::string type, id, text, finish_reason, code, detail;
  int64_t num_tokens = 0;           // token ids in a delta
  int64_t completion_tokens = -1;   // usage in a done
};

frame parse_frame(const std::string& text) {
  simdjson::dom::parser parser;
  simdjson::dom::element e = parser.parse(text);
  frame f;
  auto str = [&](const char* key) {
    auto v = e[key];
    return v.error() || !v.is_string() ? std::string() : std::string(std::string_view(v));
  };
  f.type = str("type");
  f.id = str("id");
  f.text = str("text");
  f.finish_reason = str("finish_reason");
  f.code = str("code");
  f.detail = str("detail");
  if (auto tokens = e["tokens"]; !tokens.error()) f.num_tokens = static_cast<int64_t>(tokens.get_array().size());
  if (auto usage = e["usage"]; !usage.error()) f.completion_tokens = int64_t(usage["completion_tokens"]);
  return f;
}

// Reads frames until `id` ends (done or error); returns that last frame, and every text.
struct outcome {
  frame last;
  std::string text;
  int64_t num_tokens = 0;
};

std::map<std::string, outcome> read_until_all_end(ws_client& ws, size_t n) {
  std::map<std::string, outcome> out;
  size_t num_ended = 0;
  while (num_ended < n) {
    auto text = ws.read();
    REQUIRE(text);
    auto f = parse_frame(*text);
    auto& o = out[f.id];
    if (f.type == "delta") {
      o.text += f.text;
      o.num_tokens += f.num_tokens;
    } else if (f.type == "done" || f.type == "error") {
      o.last = f;
      ++num_ended;
    }
  }
  return out;
}

// Reads frames until one has the given type (and id, when given); false when the connection
// ends or a read times out first.
bool read_until(ws_client& ws, const std::string& type, const std::string& id = {}) {
  while (true) {
    auto text = ws.read();
    if (!text) return false;
    const auto f = parse_frame(*text);
    if (f.type == type && (id.empty() || f.id == id)) return true;
  }
}

// prefix + n, written out: GCC 12 warns (-Wrestrict, a false positive) on "literal" + std::to_string(n).
std::string numbered(const char* prefix, int n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

std::string generate(const std::string& id, int max_tokens, const std::string& extra = {}) {
  return R"({"type":"generate","id":")" + id + R"(","prompt":"the story of )" + id + R"(","max_tokens":)" +
         std::to_string(max_tokens) + R"(,"temperature":0,"ignore_eos":true)" + extra + "}";
}

}  // namespace

TEST_CASE("16 requests multiplexed on one connection each end once, with what they would give alone") {
  server_fixture f;
  ws_client ws(f.port());
  for (int i = 0; i < 16; ++i) ws.send(generate(numbered("r", i), 24));
  auto outcomes = read_until_all_end(ws, 16);
  REQUIRE(outcomes.size() == 16);
  for (int i = 0; i < 16; ++i) {
    const auto& o = outcomes[numbered("r", i)];
    CHECK(o.last.type == "done");
    CHECK(o.last.finish_reason == "length");
    CHECK(o.last.completion_tokens == 24);
    CHECK(o.num_tokens == 24);
  }
  // Greedy answers do not depend on what shared the batch.
  for (int i : {0, 7, 15}) {
    const std::string id = numbered("r", i);
    ws.send(generate(id, 24));
    auto alone = read_until_all_end(ws, 1);
    CHECK(alone[id].text == outcomes[id].text);
  }
}

TEST_CASE("cancel ends a request with done cancelled and frees its blocks; cancelling again is harmless") {
  server_fixture f;
  ws_client ws(f.port());
  // One step goes through (the first token), then the gate holds the request running.
  f.gate->close();
  f.gate->release(1);
  ws.send(generate("long", 2000));
  REQUIRE(read_until(ws, "delta", "long"));
  REQUIRE(f.gate->wait_held());
  ws.send(R"({"type":"cancel","id":"long"})");
  auto o = read_until_all_end(ws, 1);
  f.gate->open();
  CHECK(o["long"].last.type == "done");
  CHECK(o["long"].last.finish_reason == "cancelled");
  ws.send(R"({"type":"cancel","id":"long"})");
  ws.send(R"({"type":"cancel","id":"never-was"})");
  ws.send(R"({"type":"ping","data":{"n":1}})");
  auto pong = ws.read();
  REQUIRE(pong);
  CHECK(*pong == R"({"type":"pong","data":{"n":1}})");
  CHECK(f.wait_idle());
}

TEST_CASE("a WebSocket that goes away mid-stream cancels its requests and frees their blocks") {
  server_fixture f;
  const std::string client_gone = R"(troupe_front_door_cancelled_total{reason="client_gone"})";
  // The gate lets one step through (a first token), then holds the requests running until
  // the front door has seen their connection go.
  f.gate->close();
  f.gate->release(1);
  {
    ws_client ws(f.port());
    for (int i = 0; i < 4; ++i) ws.send(generate(numbered("gone", i), 2000));
    // All four accepted, and one has its first token.
    int num_accepted = 0;
    bool streaming = false;
    while (num_accepted < 4 || !streaming) {
      auto text = ws.read();
      REQUIRE(text);
      const auto fr = parse_frame(*text);
      num_accepted += fr.type == "accepted";
      streaming = streaming || fr.type == "delta";
    }
    ws.drop();
  }
  CHECK(f.wait_metric(client_gone, 4));
  f.gate->open();
  CHECK(f.wait_idle(std::chrono::seconds(20)));
  f.gate->close();
  f.gate->release(1);
  {
    ws_client ws(f.port());
    ws.send(generate("closing", 2000));
    REQUIRE(read_until(ws, "delta", "closing"));
    ws.close();
  }
  CHECK(f.wait_metric(client_gone, 5));
  f.gate->open();
  CHECK(f.wait_idle(std::chrono::seconds(20)));
  // All five stopped because their connection went, long before their 2,000 tokens.
  const auto metrics = http_call(f.port(), verb::get, "/metrics").body;
  CHECK(metrics.find(R"(troupe_front_door_cancelled_total{reason="client_gone"} 5)") != std::string::npos);
  const auto at = metrics.find("\ntroupe_generation_tokens_total ");
  REQUIRE(at != std::string::npos);
  CHECK(std::stod(metrics.substr(at + 32)) < 5 * 2000);
}

TEST_CASE("malformed JSON, an unknown type, bad parameters and a duplicate id get error frames; the rest carries on") {
  server_fixture f;
  ws_client ws(f.port());
  // The gate holds "keeps-going" in flight until all four bad frames have their answers,
  // so the second "keeps-going" always meets the first.
  f.gate->close();
  ws.send(generate("keeps-going", 40));
  ws.send("{not json");
  ws.send(R"({"type":"dance","id":"x"})");
  ws.send(R"({"type":"generate","id":"bad","prompt":"hi","top_p":3})");
  ws.send(generate("keeps-going", 4));
  std::map<std::string, std::string> codes;
  std::string invalid_json_code;
  outcome kept;
  while (kept.last.type.empty()) {
    auto text = ws.read();
    REQUIRE(text);
    auto fr = parse_frame(*text);
    if (fr.type == "error" && fr.id.empty()) invalid_json_code = fr.code;
    if (fr.type == "error" && !fr.id.empty() && fr.id != "keeps-going") codes[fr.id] = fr.code;
    if (fr.type == "error" && fr.id == "keeps-going") codes["duplicate"] = fr.code;
    if (fr.id == "keeps-going" && fr.type == "delta") kept.num_tokens += fr.num_tokens;
    if (fr.id == "keeps-going" && fr.type == "done") kept.last = fr;
    if (!invalid_json_code.empty() && codes.size() == 3) f.gate->open();
  }
  CHECK(invalid_json_code == "invalid_json");
  CHECK(codes["x"] == "unknown_type");
  CHECK(codes["bad"] == "invalid_request");
  CHECK(codes["duplicate"] == "duplicate_id");
  CHECK(kept.last.completion_tokens == 40);
  CHECK(kept.num_tokens == 40);
}

TEST_CASE("a message over the limit gets frame_too_large and the connection carries on") {
  net::server_options o;
  o.max_body_bytes = 4096;
  server_fixture f({}, o);
  ws_client ws(f.port());
  ws.send(R"({"type":"generate","id":"huge","prompt":")" + std::string(200000, 'a') + R"("})");
  auto error = ws.read();
  REQUIRE(error);
  auto fr = parse_frame(*error);
  CHECK(fr.type == "error");
  CHECK(fr.code == "frame_too_large");
  ws.send(generate("after", 3));
  auto o2 = read_until_all_end(ws, 1);
  CHECK(o2["after"].last.completion_tokens == 3);
}

TEST_CASE("a reader that does not keep up has its requests cancelled with a reason; others are served") {
  net::server_options o;
  o.max_buffered_bytes = 64 * 1024;
  server_fixture f({}, o);
  // A small receive window, and nobody reading: the server's queue fills.
  ws_client slow(f.port(), "/v1/ws", {}, 4096);
  for (int i = 0; i < 4; ++i) slow.send(generate(numbered("s", i), 2000, R"(,"logprobs":true,"top_logprobs":20)"));
  // Meanwhile another client is served in full.
  ws_client fast(f.port());
  fast.send(generate("fast", 200));
  auto served = read_until_all_end(fast, 1);
  CHECK(served["fast"].last.completion_tokens == 200);
  // The slow client's requests end long before 2000 tokens, and say why when it reads.
  CHECK(f.wait_idle(std::chrono::seconds(60)));
  auto ends = read_until_all_end(slow, 4);
  for (int i = 0; i < 4; ++i) {
    const auto& last = ends[numbered("s", i)].last;
    CHECK(last.finish_reason == "cancelled");
    CHECK(last.detail.find("slow consumer") == 0);
    CHECK(last.completion_tokens < 2000);
  }
  auto metrics = http_call(f.port(), verb::get, "/metrics");
  CHECK(metrics.body.find(R"(troupe_front_door_cancelled_total{reason="slow_consumer"} 4)") != std::string::npos);
}

TEST_CASE("while draining a new generate gets unavailable and requests in flight finish") {
  server_fixture f;
  ws_client ws(f.port());
  // The gate holds "inflight" running until draining has begun and "late" was refused.
  f.gate->close();
  ws.send(generate("inflight", 30));
  REQUIRE(read_until(ws, "accepted", "inflight"));
  REQUIRE(f.gate->wait_held());
  f.bridge->set_draining();
  ws.send(generate("late", 5));
  auto late = read_until_all_end(ws, 1);
  CHECK(late["late"].last.code == "unavailable");
  CHECK(late.count("inflight") == 0);
  f.gate->open();
  auto o = read_until_all_end(ws, 1);
  CHECK(o["inflight"].last.completion_tokens == 30);
}

TEST_CASE("a generate refused for a full queue gets an error and never an accepted; admitted ones run") {
  engine_options options;
  options.scheduling.max_num_seqs = 1;    // "running" holds the only slot
  options.scheduling.max_batch_size = 1;  // released to the scheduler at once
  options.scheduling.max_queue_len = 1;   // one sequence may wait: "waiting"
  server_fixture f(options);
  ws_client ws(f.port());
  // One step goes through, so "running" has started (and left the queue) when its first
  // delta arrives; the gate then holds it running.
  f.gate->close();
  f.gate->release(1);
  ws.send(generate("running", 20));
  REQUIRE(read_until(ws, "delta", "running"));
  REQUIRE(f.gate->wait_held());
  ws.send(generate("waiting", 3));
  REQUIRE(read_until(ws, "accepted", "waiting"));
  ws.send(generate("refused", 3));
  std::vector<frame> refused;
  while (refused.empty() || (refused.back().type != "error" && refused.back().type != "done")) {
    auto text = ws.read();
    REQUIRE(text);
    auto fr = parse_frame(*text);
    if (fr.id == "refused") refused.push_back(fr);
  }
  REQUIRE(refused.size() == 1);  // no accepted before the error
  CHECK(refused.front().type == "error");
  CHECK(refused.front().code == "queue_full");
  f.gate->open();
  auto o = read_until_all_end(ws, 2);
  CHECK(o["running"].last.completion_tokens == 20);
  CHECK(o["waiting"].last.completion_tokens == 3);
  CHECK(f.wait_idle());
}
