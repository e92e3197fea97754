// The HTTP front door on a real engine (tiny model): every route, every error status,
// streaming, and what a client that leaves does to its request.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <thread>

#include "test_client.hpp"

using namespace troupe;
using namespace troupe::test;
using boost::beast::http::verb;

namespace {

std::string error_code_of(const http_reply& r) {
  json j(r.body);
  return std::string(std::string_view(j.root["error"]["code"]));
}

std::string error_message_of(const http_reply& r) {
  json j(r.body);
  return std::string(std::string_view(j.root["error"]["message"]));
}

// Sends a completion request and closes the connection without reading the answer.
void send_and_leave(uint16_t port, const std::string& body) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  std::string request = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
  request += "Content-Length: ";
  request += std::to_string(body.size());
  request += "\r\n\r\n";
  request += body;
  boost::asio::write(socket, boost::asio::buffer(request));
  socket.close();
}

const std::string long_request = R"({"prompt":"once upon a time","max_tokens":1500,"ignore_eos":true})";

}  // namespace

TEST_CASE("health, models, metrics and the chat page answer GET") {
  server_fixture f;
  auto health = http_call(f.port(), verb::get, "/health");
  CHECK(health.status == 200);
  CHECK(health.body == R"({"status":"ok"})");
  auto models = http_call(f.port(), verb::get, "/v1/models");
  CHECK(models.status == 200);
  json m(models.body);
  CHECK(std::string_view(m.root["data"].at(0)["id"]) == "tiny");
  auto metrics = http_call(f.port(), verb::get, "/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.content_type.find("text/plain") == 0);
  CHECK(metrics.body.find("troupe_http_connections") != std::string::npos);
  CHECK(metrics.body.find("troupe_num_requests_running") != std::string::npos);
  // Every response is counted by route and status.
  CHECK(metrics.body.find(R"(troupe_http_responses_total{route="/v1/models",status="200"} 1)") != std::string::npos);
  auto page = http_call(f.port(), verb::get, "/");
  CHECK(page.status == 200);
  CHECK(page.content_type.find("text/html") == 0);
  CHECK(page.body.find("/v1/ws") != std::string::npos);
}

TEST_CASE("an unknown route is 404 and a wrong method is 405 naming the allowed one") {
  server_fixture f;
  auto missing = http_call(f.port(), verb::get, "/v1/nothing");
  CHECK(missing.status == 404);
  CHECK(error_code_of(missing) == "not_found");
  auto wrong = http_call(f.port(), verb::get, "/v1/completions");
  CHECK(wrong.status == 405);
  CHECK(wrong.allow == "POST");
  CHECK(http_call(f.port(), verb::post, "/health", "{}").status == 405);
}

TEST_CASE("malformed JSON, a wrong type and an out-of-range parameter are 400 naming the problem") {
  server_fixture f;
  auto malformed = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt": "hi",)");
  CHECK(malformed.status == 400);
  CHECK(error_code_of(malformed) == "invalid_json");
  auto wrong_type = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":"ten"})");
  CHECK(wrong_type.status == 400);
  CHECK(error_message_of(wrong_type).find("max_tokens") != std::string::npos);
  auto out_of_range = http_call(f.port(), verb::post, "/v1/chat/completions",
                                R"({"messages":[{"role":"user","content":"hi"}],"temperature":-1})");
  CHECK(out_of_range.status == 400);
  CHECK(error_message_of(out_of_range).find("temperature") != std::string::npos);
  // The server carries on.
  CHECK(http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":2})").status == 200);
}

TEST_CASE("a body over max_body_bytes is 413") {
  net::server_options o;
  o.max_body_bytes = 4096;
  server_fixture f({}, o);
  const std::string body = R"({"prompt":")" + std::string(8000, 'a') + R"("})";
  auto r = http_call(f.port(), verb::post, "/v1/completions", body);
  CHECK(r.status == 413);
  CHECK(http_call(f.port(), verb::get, "/health").status == 200);
}

TEST_CASE("a prompt longer than the context is 400 context_overflow") {
  server_fixture f;
  std::string prompt;
  for (int i = 0; i < 1500; ++i) prompt += "zq xv ";
  auto r = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":")" + prompt + R"(","max_tokens":4})");
  CHECK(r.status == 400);
  CHECK(error_code_of(r) == "context_overflow");
}

TEST_CASE("with an API key the /v1 routes and the WebSocket upgrade need it, /health does not") {
  net::server_options o;
  o.api_key = "sesame";
  server_fixture f({}, o);
  auto without = http_call(f.port(), verb::get, "/v1/models");
  CHECK(without.status == 401);
  CHECK(error_code_of(without) == "invalid_api_key");
  CHECK(http_call(f.port(), verb::get, "/v1/models", {}, {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(http_call(f.port(), verb::get, "/v1/models", {}, {{"Authorization", "Bearer sesame"}}).status == 200);
  CHECK(http_call(f.port(), verb::get, "/health").status == 200);
  CHECK_THROWS(ws_client(f.port()));
  CHECK_NOTHROW(ws_client(f.port(), "/v1/ws", {{"Authorization", "Bearer sesame"}}));
  CHECK_NOTHROW(ws_client(f.port(), "/v1/ws?api_key=sesame"));
}

TEST_CASE("a full waiting room answers 429 queue_full") {
  engine_options e;
  e.scheduling.max_num_seqs = 1;
  e.scheduling.max_batch_size = 1;
  e.scheduling.max_queue_len = 1;
  server_fixture f(e);
  ws_client ws(f.port());
  // One runs (its first token shows the scheduler has it; the gate then holds its next
  // step, so it is still running), one waits: the room is full.
  f.gate->close();
  f.gate->release(1);
  ws.send(R"({"type":"generate","id":"a","prompt":"once","max_tokens":2000,"ignore_eos":true})");
  while (true) {
    auto frame = ws.read();
    REQUIRE(frame);
    if (frame->find(R"("type":"delta")") != std::string::npos) break;
  }
  REQUIRE(f.gate->wait_held());
  ws.send(R"({"type":"generate","id":"b","prompt":"once","max_tokens":2000,"ignore_eos":true})");
  while (true) {
    auto frame = ws.read();
    REQUIRE(frame);
    REQUIRE(frame->find(R"("type":"error")") == std::string::npos);
    if (frame->find(R"("type":"accepted","id":"b")") != std::string::npos) break;
  }
  auto r = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":2})");
  CHECK(r.status == 429);
  CHECK(error_code_of(r) == "queue_full");
  ws.drop();
  f.gate->open();
  CHECK(f.wait_idle());
}

TEST_CASE("while draining, /health and new completions answer 503") {
  server_fixture f;
  f.bridge->set_draining();
  CHECK(http_call(f.port(), verb::get, "/health").status == 503);
  auto r = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":"hi","max_tokens":2})");
  CHECK(r.status == 503);
  CHECK(error_code_of(r) == "unavailable");
}

TEST_CASE("a streamed completion is server-sent events ending in [DONE], with usage when asked") {
  server_fixture f;
  auto r = http_call(f.port(), verb::post, "/v1/completions",
                     R"({"prompt":"once upon","max_tokens":12,"temperature":0,"ignore_eos":true,"stream":true,)"
                     R"("stream_options":{"include_usage":true}})");
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "text/event-stream");
  auto lines = sse_data_lines(r.body);
  REQUIRE(lines.size() >= 3);
  CHECK(lines.back() == "[DONE]");
  json usage(lines[lines.size() - 2]);
  CHECK(int64_t(usage.root["usage"]["completion_tokens"]) == 12);
  std::string streamed;
  for (size_t i = 0; i + 2 < lines.size(); ++i) {
    json chunk(lines[i]);
    auto choices = chunk.root["choices"].get_array();
    if (choices.size() == 0) continue;
    streamed += std::string(std::string_view(choices.at(0)["text"]));
  }
  // The same request whole gives the same text.
  auto whole = http_call(f.port(), verb::post, "/v1/completions",
                         R"({"prompt":"once upon","max_tokens":12,"temperature":0,"ignore_eos":true})");
  REQUIRE(whole.status == 200);
  json w(whole.body);
  CHECK(std::string(std::string_view(w.root["choices"].at(0)["text"])) == streamed);
  CHECK(std::string_view(w.root["choices"].at(0)["finish_reason"]) == "length");
}

TEST_CASE("a prompt given as token ids answers as its text does, and ids outside the vocabulary are 400") {
  server_fixture f;
  const std::string text = "once upon a time";
  std::string ids;
  for (const int32_t id : f.model->tok.encode(text, true, false)) {
    if (!ids.empty()) ids += ',';
    ids += std::to_string(id);
  }
  const std::string rest = R"(,"max_tokens":12,"temperature":0,"ignore_eos":true})";
  auto by_text = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":")" + text + "\"" + rest);
  auto by_ids = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":[)" + ids + "]" + rest);
  REQUIRE(by_text.status == 200);
  REQUIRE(by_ids.status == 200);
  json t(by_text.body);
  json i(by_ids.body);
  CHECK(std::string_view(i.root["choices"].at(0)["text"]) == std::string_view(t.root["choices"].at(0)["text"]));
  CHECK(int64_t(i.root["usage"]["prompt_tokens"]) == int64_t(t.root["usage"]["prompt_tokens"]));
  auto outside = http_call(f.port(), verb::post, "/v1/completions", R"({"prompt":[1,2,1000000]})");
  CHECK(outside.status == 400);
  CHECK(error_code_of(outside) == "invalid_request");
}

TEST_CASE("a client that disconnects mid-answer stops its request and frees its blocks") {
  server_fixture f;
  const std::string client_gone = R"(troupe_front_door_cancelled_total{reason="client_gone"})";
  double expected = 0;
  for (const bool stream : {false, true}) {
    std::string body = long_request;
    if (stream) body.insert(body.size() - 1, R"(,"stream":true)");
    // The gate holds the request's steps, so it is still running when the front door sees
    // its client leave. (Waiting for idle alone is not enough: right after the client
    // leaves, the server may not have read its request yet, and an engine with nothing in
    // flight is already idle.)
    f.gate->close();
    send_and_leave(f.port(), body);
    CHECK(f.wait_metric(client_gone, ++expected));
    f.gate->open();
    CHECK(f.wait_idle(std::chrono::seconds(30)));
  }
  // Both stopped long before their 1,500 tokens, because the front door saw them leave.
  auto metrics = http_call(f.port(), verb::get, "/metrics").body;
  CHECK(metric_value(metrics, client_gone) == 2);
  CHECK(metric_value(metrics, "troupe_generation_tokens_total") < 2 * 1500);
}
