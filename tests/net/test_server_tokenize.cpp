// POST /tokenize and POST /detokenize on the real front door (tiny model): answers equal to
// the tokenizer's, the chat form equal to what a chat completion counts, refusals as 400s,
// the API key and the route metrics as on /v1; and min_tokens through both wires.
#include <doctest/doctest.h>

#include <simdjson.h>

#include <cstdio>
#include <string>
#include <vector>

#include "test_client.hpp"

using namespace troupe;
using namespace troupe::test;
using boost::beast::http::verb;

namespace {

std::vector<int32_t> ids_of(const http_reply& r) {
  json j(r.body);
  std::vector<int32_t> ids;
  for (simdjson::dom::element t : j.root["tokens"].get_array()) ids.push_back(static_cast<int32_t>(int64_t(t)));
  return ids;
}

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (const int32_t id : ids) {
    if (out.size() > 1) out += ',';
    out += std::to_string(id);
  }
  return out + "]";
}

std::string error_param_of(const http_reply& r) {
  json j(r.body);
  const simdjson::dom::element param = j.root["error"]["param"];
  return param.is_null() ? "" : std::string(std::string_view(param));
}

int64_t completion_tokens_of(const http_reply& r) {
  json j(r.body);
  return int64_t(j.root["usage"]["completion_tokens"]);
}

// The greedy first output token of a prompt, from the WebSocket's delta frames (they carry ids).
int32_t greedy_first_token(uint16_t port, const std::string& prompt) {
  ws_client ws(port);
  ws.send(R"({"type":"generate","id":"g","prompt":")" + prompt +
          R"(","max_tokens":1,"temperature":0,"ignore_eos":true})");
  while (true) {
    auto frame = ws.read();
    REQUIRE(frame);
    json j(*frame);
    const std::string_view type(j.root["type"]);
    REQUIRE(type != "error");
    REQUIRE(type != "done");
    if (type != "delta") continue;
    const simdjson::dom::array tokens = j.root["tokens"].get_array();
    if (tokens.size() > 0) return static_cast<int32_t>(int64_t(tokens.at(0)));
  }
}

// s as the body of a JSON string literal.
std::string json_escaped(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("tokenize then detokenize gives back the text, in vLLM's and llama.cpp's forms") {
  server_fixture f;
  for (const std::string text : {"hello world", "the cat sits on the mat", "caf\u00e9 \u65e5\u672c \U0001F600"}) {
    CAPTURE(text);
    auto t = http_call(f.port(), verb::post, "/tokenize", R"({"content":")" + text + R"("})");
    REQUIRE(t.status == 200);
    CHECK(t.content_type == "application/json");
    const std::vector<int32_t> ids = ids_of(t);
    CHECK(ids == f.model->tok.encode(text, false, true));
    json tj(t.body);
    CHECK(int64_t(tj.root["count"]) == static_cast<int64_t>(ids.size()));
    CHECK(int64_t(tj.root["max_model_len"]) == f.bridge->max_model_len());
    auto d = http_call(f.port(), verb::post, "/detokenize", R"({"tokens":)" + ids_json(ids) + "}");
    REQUIRE(d.status == 200);
    json dj(d.body);
    CHECK(std::string_view(dj.root["prompt"]) == text);
    CHECK(std::string_view(dj.root["content"]) == text);
    auto v = http_call(f.port(), verb::post, "/tokenize", R"({"model":"x","prompt":")" + text + R"("})");
    REQUIRE(v.status == 200);
    CHECK(ids_of(v) == f.model->tok.encode(text, true, false));
  }
}

TEST_CASE("tokenize of messages counts what a chat completion reports as prompt_tokens") {
  server_fixture f;
  const std::string messages = R"("messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}])";
  auto t = http_call(f.port(), verb::post, "/tokenize", "{" + messages + "}");
  REQUIRE(t.status == 200);
  auto chat = http_call(f.port(), verb::post, "/v1/chat/completions", "{" + messages + R"(,"max_tokens":1})");
  REQUIRE(chat.status == 200);
  json c(chat.body);
  CHECK(static_cast<int64_t>(ids_of(t).size()) == int64_t(c.root["usage"]["prompt_tokens"]));
}

TEST_CASE("tokenize and detokenize refuse bad bodies with 400 naming the field, and serve on") {
  server_fixture f;
  struct bad_case {
    const char* route;
    const char* body;
    const char* param;
  };
  const bad_case cases[] = {
      {"/tokenize", R"({"prompt":"a","messages":[{"role":"user","content":"b"}]})", "messages"},
      {"/tokenize", R"({"content":"a","bogus":1})", "bogus"},
      {"/tokenize", R"({"content":7})", "content"},
      {"/tokenize", R"({})", "prompt"},
      {"/detokenize", R"({"tokens":[1,1000000]})", "tokens"},
      {"/detokenize", R"({"tokens":"1 2"})", "tokens"},
      {"/detokenize", R"({"tokens":[1],"with_pieces":true})", "with_pieces"},
  };
  for (const bad_case& c : cases) {
    CAPTURE(c.body);
    auto r = http_call(f.port(), verb::post, c.route, c.body);
    CHECK(r.status == 400);
    json j(r.body);
    CHECK(std::string_view(j.root["error"]["code"]) == "invalid_request");
    CHECK(std::string_view(j.root["error"]["type"]) == "invalid_request_error");
    CHECK(error_param_of(r) == c.param);
  }
  auto malformed = http_call(f.port(), verb::post, "/tokenize", R"({"content":)");
  CHECK(malformed.status == 400);
  CHECK(http_call(f.port(), verb::get, "/tokenize").status == 405);
  CHECK(http_call(f.port(), verb::post, "/tokenize", R"({"content":"still here"})").status == 200);
}

TEST_CASE("a tokenize body over max_body_bytes is 413") {
  net::server_options o;
  o.max_body_bytes = 4096;
  server_fixture f({}, o);
  auto r = http_call(f.port(), verb::post, "/tokenize", R"({"content":")" + std::string(8000, 'a') + R"("})");
  CHECK(r.status == 413);
}

TEST_CASE("a tokenize body at max_body_bytes is tokenized whole") {
  net::server_options o;
  o.max_body_bytes = 64 * 1024;
  server_fixture f({}, o);
  std::string text;
  while (text.size() + 64 < static_cast<size_t>(o.max_body_bytes)) text += "the quick brown fox \u00e9 ";
  auto r = http_call(f.port(), verb::post, "/tokenize", R"({"content":")" + text + R"("})");
  REQUIRE(r.status == 200);
  CHECK(ids_of(r) == f.model->tok.encode(text, false, true));
}

TEST_CASE("with an API key /tokenize and /detokenize need it, and both count in the route metrics") {
  net::server_options o;
  o.api_key = "sesame";
  server_fixture f({}, o);
  CHECK(http_call(f.port(), verb::post, "/tokenize", R"({"content":"a"})").status == 401);
  CHECK(http_call(f.port(), verb::post, "/detokenize", R"({"tokens":[5]})").status == 401);
  const header_list key{{"Authorization", "Bearer sesame"}};
  CHECK(http_call(f.port(), verb::post, "/tokenize", R"({"content":"a"})", key).status == 200);
  CHECK(http_call(f.port(), verb::post, "/detokenize", R"({"tokens":[5]})", key).status == 200);
  const std::string page = http_call(f.port(), verb::get, "/metrics").body;
  CHECK(metric_value(page, R"(troupe_http_responses_total{route="/tokenize",status="200"})") == 1);
  CHECK(metric_value(page, R"(troupe_http_responses_total{route="/tokenize",status="401"})") == 1);
  CHECK(metric_value(page, R"(troupe_http_responses_total{route="/detokenize",status="200"})") == 1);
}

TEST_CASE("while draining, /tokenize answers 503 with Retry-After like the completions") {
  server_fixture f;
  f.bridge->set_draining();
  auto r = http_call(f.port(), verb::post, "/tokenize", R"({"content":"a"})");
  CHECK(r.status == 503);
  CHECK(r.retry_after == "1");
}

TEST_CASE("min_tokens keeps a stop token from ending a completion before that many tokens") {
  server_fixture f;
  const std::string greedy = R"("prompt":"once upon a time","temperature":0,"max_tokens":12,"ignore_eos":true)";
  const std::string stop_first =
      R"(,"stop_token_ids":[)" + std::to_string(greedy_first_token(f.port(), "once upon a time")) + "]";
  auto stopped = http_call(f.port(), verb::post, "/v1/completions", "{" + greedy + stop_first + "}");
  REQUIRE(stopped.status == 200);
  CHECK(completion_tokens_of(stopped) == 1);
  auto held = http_call(f.port(), verb::post, "/v1/completions", "{" + greedy + stop_first + R"(,"min_tokens":5})");
  REQUIRE(held.status == 200);
  CHECK(completion_tokens_of(held) >= 5);
  auto chat = http_call(f.port(), verb::post, "/v1/chat/completions",
                        R"({"messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":9,"min_tokens":9,)"
                        R"("stop_token_ids":)" + ids_json({0, 1, 2}) + "}");
  REQUIRE(chat.status == 200);
  CHECK(completion_tokens_of(chat) == 9);
}

TEST_CASE("min_tokens keeps a stop string from ending the output before that many tokens") {
  server_fixture f;
  const std::string greedy = R"("prompt":"the quick brown","temperature":0,"max_tokens":10,"ignore_eos":true)";
  auto plain = http_call(f.port(), verb::post, "/v1/completions", "{" + greedy + "}");
  REQUIRE(plain.status == 200);
  json p(plain.body);
  const std::string text(std::string_view(p.root["choices"].at(0)["text"]));
  // The stop string: the output's first character that is not a replacement character.
  std::string first;
  for (size_t i = 0; i < text.size() && first.empty();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t length = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
    if (text.compare(i, length, "\xEF\xBF\xBD") != 0) first = text.substr(i, length);
    i += length;
  }
  REQUIRE_FALSE(first.empty());
  const std::string stop = R"(,"stop":")" + json_escaped(first) + "\"";
  auto stopped = http_call(f.port(), verb::post, "/v1/completions", "{" + greedy + stop + "}");
  REQUIRE(stopped.status == 200);
  const int64_t num_before_stop = completion_tokens_of(stopped);
  REQUIRE(num_before_stop < 10);
  const std::string min_tokens = R"(,"min_tokens":)" + std::to_string(num_before_stop + 1);
  auto held = http_call(f.port(), verb::post, "/v1/completions", "{" + greedy + stop + min_tokens + "}");
  REQUIRE(held.status == 200);
  CHECK(completion_tokens_of(held) > num_before_stop);
  json h(held.body);
  CHECK(std::string_view(h.root["choices"].at(0)["text"]).substr(0, text.find(first) + first.size()) ==
        text.substr(0, text.find(first) + first.size()));
}

TEST_CASE("min_tokens on the WebSocket: generate takes it, and over max_tokens it is refused naming it") {
  server_fixture f;
  ws_client ws(f.port());
  ws.send(R"({"type":"generate","id":"m","prompt":"hi","max_tokens":7,"min_tokens":7,"temperature":0,)"
          R"("stop_token_ids":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]})");
  while (true) {
    auto frame = ws.read();
    REQUIRE(frame);
    REQUIRE(frame->find(R"("type":"error")") == std::string::npos);
    if (frame->find(R"("type":"done")") == std::string::npos) continue;
    CHECK(frame->find(R"("completion_tokens":7)") != std::string::npos);
    break;
  }
  ws.send(R"({"type":"generate","id":"n","prompt":"hi","max_tokens":3,"min_tokens":4})");
  auto refused = ws.read();
  REQUIRE(refused);
  CHECK(refused->find(R"("type":"error")") != std::string::npos);
  CHECK(refused->find(R"("param":"min_tokens")") != std::string::npos);
}
