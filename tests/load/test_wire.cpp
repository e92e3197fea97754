// The wire: request bodies carry what the workload sets and nothing troupe-only that it
// does not; WebSocket frames and SSE streams decode to the events the protocol defines,
// whatever way the bytes are cut.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <string>

#include "client.hpp"
#include "wire.hpp"

using namespace troupe::load;

namespace {

request_spec spec(std::optional<int64_t> priority = std::nullopt) {
  request_spec r;
  r.id = "r7";
  r.prompt = "the \"water\"";
  r.max_tokens = 16;
  r.priority = priority;
  return r;
}

workload with_api(api_kind api, const std::string& sampling = "{}") {
  workload w;
  w.api = api;
  w.sampling_json = sampling;
  return w;
}

simdjson::dom::element parse(simdjson::dom::parser& p, const std::string& text) {
  simdjson::dom::element e;
  REQUIRE_FALSE(p.parse(text).get(e));
  return e;
}

}  // namespace

TEST_CASE("a WebSocket generate frame carries id, prompt, max_tokens and the sampling block") {
  simdjson::dom::parser p;
  const auto e = parse(p, ws_generate_frame(spec(), with_api(api_kind::completions, R"({"temperature":0})")));
  CHECK(std::string_view(e["type"]) == "generate");
  CHECK(std::string_view(e["id"]) == "r7");
  CHECK(std::string_view(e["prompt"]) == "the \"water\"");
  CHECK(int64_t(e["max_tokens"]) == 16);
  CHECK(double(e["temperature"]) == 0);
  CHECK(e["priority"].error() == simdjson::NO_SUCH_FIELD);
}

TEST_CASE("priority is sent only when the request has one") {
  simdjson::dom::parser p;
  CHECK(int64_t(parse(p, ws_generate_frame(spec(3), with_api(api_kind::completions)))["priority"]) == 3);
  const auto body = parse(p, http_request_body(spec(), with_api(api_kind::completions), "m"));
  CHECK(body["priority"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(int64_t(parse(p, http_request_body(spec(-2), with_api(api_kind::completions), "m"))["priority"]) == -2);
}

TEST_CASE("a chat workload sends messages, on both transports") {
  simdjson::dom::parser p;
  const auto frame = parse(p, ws_generate_frame(spec(), with_api(api_kind::chat)));
  CHECK(frame["prompt"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(std::string_view(frame["messages"].at(0)["role"]) == "user");
  CHECK(std::string_view(frame["messages"].at(0)["content"]) == "the \"water\"");
  const auto body = parse(p, http_request_body(spec(), with_api(api_kind::chat), "m"));
  CHECK(std::string_view(body["messages"].at(0)["content"]) == "the \"water\"");
  CHECK(http_target_path(with_api(api_kind::chat)) == "/chat/completions");
  CHECK(http_target_path(with_api(api_kind::completions)) == "/completions");
}

TEST_CASE("an HTTP body streams with usage and names the model") {
  simdjson::dom::parser p;
  const auto body = parse(p, http_request_body(spec(), with_api(api_kind::completions, R"({"ignore_eos":true})"),
                                               "smollm"));
  CHECK(std::string_view(body["model"]) == "smollm");
  CHECK(bool(body["stream"]));
  CHECK(bool(body["stream_options"]["include_usage"]));
  CHECK(bool(body["ignore_eos"]));
  CHECK(std::string_view(body["prompt"]) == "the \"water\"");
}

TEST_CASE("WebSocket frames decode to accepted, delta, done and error events") {
  const ws_event delta = decode_ws_frame(
      R"({"type":"delta","id":"r1","text":"Hel","tokens":[2330,11],"server_ms":1763769600123.5})");
  CHECK(delta.type == ws_event::kind::delta);
  CHECK(delta.id == "r1");
  CHECK(delta.text == "Hel");
  CHECK(delta.num_tokens == 2);
  CHECK(*delta.server_ms == doctest::Approx(1763769600123.5));
  CHECK(decode_ws_frame(R"({"type":"delta","id":"r1","text":"x"})").num_tokens == 1);
  const ws_event done = decode_ws_frame(
      R"({"type":"done","id":"r1","finish_reason":"length","usage":{"prompt_tokens":12,"completion_tokens":40}})");
  CHECK(done.type == ws_event::kind::done);
  CHECK(done.finish_reason == "length");
  CHECK(done.usage->prompt_tokens == 12);
  CHECK(done.usage->completion_tokens == 40);
  const ws_event error = decode_ws_frame(R"({"type":"error","id":null,"code":"queue_full","message":"busy"})");
  CHECK(error.type == ws_event::kind::error);
  CHECK(error.id.empty());
  CHECK(error.code == "queue_full");
  CHECK(decode_ws_frame(R"({"type":"accepted","id":"r2"})").type == ws_event::kind::accepted);
  CHECK_THROWS(decode_ws_frame("not json"));
  CHECK_THROWS(decode_ws_frame(R"({"id":"r1"})"));
}

TEST_CASE("the SSE splitter yields each event's data however the bytes are cut") {
  const std::string stream =
      ": comment\n\ndata: {\"a\":1}\n\ndata: {\"b\":\r\ndata: 2}\r\n\r\nevent: x\ndata: [DONE]\n\n";
  for (size_t cut = 1; cut <= stream.size(); ++cut) {
    sse_splitter splitter;
    std::vector<std::string> events;
    for (size_t at = 0; at < stream.size(); at += cut) {
      for (auto& e : splitter.feed(std::string_view(stream).substr(at, cut))) events.push_back(e);
    }
    REQUIRE(events.size() == 3);
    CHECK(events[0] == "{\"a\":1}");
    CHECK(events[1] == "{\"b\":\n2}");
    CHECK(events[2] == "[DONE]");
  }
}

TEST_CASE("SSE chunks decode text, finish reason, usage, errors and the end marker") {
  const sse_chunk completion =
      decode_sse_chunk(R"({"choices":[{"text":" world","index":0,"finish_reason":null}]})");
  CHECK(completion.text == " world");
  CHECK(completion.finish_reason.empty());
  const sse_chunk chat = decode_sse_chunk(R"({"choices":[{"delta":{"content":"Hi"},"finish_reason":"stop"}]})");
  CHECK(chat.text == "Hi");
  CHECK(chat.finish_reason == "stop");
  const sse_chunk usage =
      decode_sse_chunk(R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}})");
  CHECK(usage.text.empty());
  CHECK(usage.usage->prompt_tokens == 9);
  CHECK(usage.usage->completion_tokens == 3);
  CHECK(*decode_sse_chunk(R"({"error":{"message":"boom","code":"internal"}})").error == "boom");
  CHECK(decode_sse_chunk("[DONE]").is_done_marker);
  CHECK_THROWS(decode_sse_chunk("{oops"));
}

TEST_CASE("an OpenAI error body gives its message") {
  CHECK(error_body_message(R"({"error":{"message":"queue full","type":"x","code":"queue_full"}})") == "queue full");
  CHECK(error_body_message("plain text") == "plain text");
}

TEST_CASE("server URLs: ws and http with host, port and path, others refused") {
  const server_url ws = parse_server_url("ws://127.0.0.1:8080/v1/ws");
  CHECK(ws.kind == server_url::scheme::ws);
  CHECK(ws.host == "127.0.0.1");
  CHECK(ws.port == "8080");
  CHECK(ws.path == "/v1/ws");
  const server_url http = parse_server_url("http://localhost:8181/v1/");
  CHECK(http.kind == server_url::scheme::http);
  CHECK(http.path == "/v1");
  CHECK(parse_server_url("http://example").port == "80");
  CHECK_THROWS_AS(parse_server_url("https://x:1/v1"), std::invalid_argument);
  CHECK_THROWS_AS(parse_server_url("ftp://x"), std::invalid_argument);
  CHECK_THROWS_AS(parse_server_url("http://x:port/v1"), std::invalid_argument);
}
