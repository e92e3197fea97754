// openai_protocol: OpenAI request bodies map onto troupe::request (and mistakes are refused
// naming the field); response objects, stream chunks, errors and the model list parse back
// with simdjson to what OpenAI clients read, field by field.
#include <doctest/doctest.h>

#include <string>
#include <tuple>
#include <vector>

#include "codec_test_util.hpp"
#include "troupe/net/openai_protocol.hpp"

using namespace troupe;
using namespace troupe::net;
using troupe::test::parse_back;
using troupe::test::string_of;
using troupe::test::test_limits;

namespace {

openai_request parsed(openai_endpoint ep, const std::string& body) {
  const openai_parse_result r = parse_openai_request(ep, body, test_limits);
  if (r.error) FAIL_CHECK("refused: " << r.error->message << " in " << body);
  REQUIRE(r.value);
  return *r.value;
}

api_error refusal(openai_endpoint ep, const std::string& body) {
  const openai_parse_result r = parse_openai_request(ep, body, test_limits);
  if (!r.error) FAIL_CHECK("accepted: " << body);
  REQUIRE(r.error);
  CHECK_FALSE(r.value);
  return *r.error;
}

constexpr auto completions = openai_endpoint::completions;
constexpr auto chat = openai_endpoint::chat_completions;

std::string chat_with(const std::string& members) {
  return R"({"model":"m","messages":[{"role":"user","content":"Hi"}])" + (members.empty() ? "" : "," + members) + "}";
}

std::string completion_with(const std::string& members) {
  return R"({"model":"m","prompt":"Once")" + (members.empty() ? "" : "," + members) + "}";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The payloads of "data: ...\n\n" events; fails the test on anything else.
std::vector<std::string> sse_payloads(const std::string& stream) {
  std::vector<std::string> payloads;
  size_t pos = 0;
  while (pos < stream.size()) {
    const size_t end = stream.find("\n\n", pos);
    REQUIRE(end != std::string::npos);
    const std::string event = stream.substr(pos, end - pos);
    REQUIRE(event.rfind("data: ", 0) == 0);
    payloads.push_back(event.substr(6));
    pos = end + 2;
  }
  return payloads;
}

request completion_request(bool logprobs, bool include_usage, bool echo = false) {
  request r;
  r.prompt = "Say";
  r.logprobs = logprobs;
  r.params.num_logprobs = logprobs ? 2 : 0;
  r.include_usage = include_usage;
  r.echo = echo;
  return r;
}

delta_event delta_of(const std::string& text, int32_t token, const std::string& token_text, float logprob) {
  delta_event d;
  d.text = text;
  d.token_ids = {token};
  token_logprobs t;
  t.sampled = logprob_entry{token, token_text, logprob};
  t.top.push_back(t.sampled);
  t.top.push_back(logprob_entry{99, "alt", -3.0f});
  d.logprobs.push_back(std::move(t));
  return d;
}

done_event done_with_usage() {
  done_event d;
  d.reason = request_finish_reason::length;
  d.usage = {5, 2, 4};
  return d;
}

void check_usage(simdjson::dom::element usage) {
  CHECK(int64_t(usage["prompt_tokens"]) == 5);
  CHECK(int64_t(usage["completion_tokens"]) == 2);
  CHECK(int64_t(usage["total_tokens"]) == 7);
  CHECK(int64_t(usage["prompt_tokens_details"]["cached_tokens"]) == 4);
}

}  // namespace

TEST_CASE("openai parse: a minimal completion body") {
  const openai_request r = parsed(completions, R"({"model":"gpt-x","prompt":"Once upon a time"})");
  CHECK(r.model == "gpt-x");
  CHECK(r.req.prompt == "Once upon a time");
  CHECK(r.req.id.empty());
  CHECK_FALSE(r.stream);
  CHECK_FALSE(r.req.include_usage);
  CHECK_FALSE(r.req.logprobs);
  CHECK(r.req.params.max_tokens == sampling_params{}.max_tokens);
}

TEST_CASE("openai parse: a completion body with every field") {
  const openai_request r = parsed(completions, R"({
    "model":"m","prompt":"Once","max_tokens":32,"temperature":0.5,"top_p":0.8,"n":1,"best_of":1,
    "stream":true,"stream_options":{"include_usage":true},"stop":["\n","END"],"seed":7,
    "presence_penalty":0.25,"frequency_penalty":0.5,"logit_bias":{"17":-50},"logprobs":3,"echo":true,
    "user":"someone","top_k":20,"min_p":0.1,"repetition_penalty":1.2,"penalty_last_n":-1,"ignore_eos":true,
    "stop_token_ids":[1,2],"priority":3,"timeout_ms":9000,"speculative":"off"})");
  CHECK(r.stream);
  CHECK(r.req.include_usage);
  CHECK(r.req.params.max_tokens == 32);
  CHECK(r.req.params.temperature == 0.5f);
  CHECK(r.req.params.top_p == 0.8f);
  CHECK(r.req.stop == std::vector<std::string>{"\n", "END"});
  CHECK(r.req.params.seed == 7);
  CHECK(r.req.params.presence_penalty == 0.25f);
  CHECK(r.req.params.frequency_penalty == 0.5f);
  CHECK(r.req.params.logit_bias == std::vector<std::pair<int32_t, float>>{{17, -50.0f}});
  CHECK(r.req.logprobs);
  CHECK(r.req.params.num_logprobs == 3);
  CHECK(r.req.echo);
  CHECK(r.req.params.top_k == 20);
  CHECK(r.req.params.min_p == 0.1f);
  CHECK(r.req.params.repetition_penalty == 1.2f);
  CHECK(r.req.params.penalty_last_n == -1);
  CHECK(r.req.params.ignore_eos);
  CHECK(r.req.params.stop_token_ids == std::vector<int32_t>{1, 2});
  CHECK(r.req.priority == 3);
  CHECK(r.req.timeout_ms == 9000);
  CHECK(r.req.speculative == speculative_method::off);
}

TEST_CASE("openai parse: completion logprobs is the number of alternatives, 0 meaning the sampled token only") {
  const openai_request zero = parsed(completions, completion_with(R"("logprobs":0)"));
  CHECK(zero.req.logprobs);
  CHECK(zero.req.params.num_logprobs == 0);
  CHECK_FALSE(parsed(completions, completion_with(R"("logprobs":null)")).req.logprobs);
  const api_error too_many = refusal(completions, completion_with(R"("logprobs":21)"));
  CHECK(too_many.param == "logprobs");
  CHECK(contains(too_many.message, "logprobs must be in [0, 20], got 21"));
  CHECK(refusal(completions, completion_with(R"("logprobs":true)")).param == "logprobs");
}

TEST_CASE("openai parse: the prompt is a string, token ids, or a batch of exactly one of them") {
  CHECK(parsed(completions, R"({"prompt":["only one"]})").req.prompt == "only one");
  CHECK(contains(refusal(completions, R"({"prompt":["a","b"]})").message, "one prompt per request"));
  CHECK(refusal(completions, R"({"prompt":[]})").param == "prompt");
  CHECK(refusal(completions, R"({"prompt":5})").param == "prompt");
  CHECK(refusal(completions, R"({"model":"m"})").param == "prompt");
  CHECK(refusal(completions, R"({"prompt":null})").param == "prompt");
}

TEST_CASE("openai parse: a token id prompt is taken as given, flat or as a batch of one") {
  const std::vector<int32_t> ids{1, 2, 3};
  CHECK(parsed(completions, R"({"prompt":[1,2,3]})").req.prompt_token_ids == ids);
  CHECK(parsed(completions, R"({"prompt":[[1,2,3]]})").req.prompt_token_ids == ids);
  CHECK(parsed(completions, R"({"prompt":[1,2,3]})").req.prompt.empty());
  CHECK(contains(refusal(completions, R"({"prompt":[[1,2],[3]]})").message, "one prompt per request"));
  CHECK(contains(refusal(completions, R"({"prompt":["a",[3]]})").message, "one prompt per request"));
  CHECK(contains(refusal(completions, R"({"prompt":[1,"a"]})").message, "token ids must all be integers"));
  CHECK(contains(refusal(completions, R"({"prompt":[[1,"a"]]})").message, "prompt[0][1] must be a token id"));
  CHECK(contains(refusal(completions, R"({"prompt":[[]]})").message, "prompt[0] must not be empty"));
  CHECK(contains(refusal(completions, R"({"prompt":[1.5]})").message, "prompt[0]"));
  CHECK(contains(refusal(completions, R"({"prompt":[true]})").message, "must be a string, token ids"));
  // Each id must be in the vocabulary, and echo wants text.
  const api_error outside = refusal(completions, R"({"prompt":[1,-1]})");
  CHECK(outside.param == "prompt");
  CHECK(contains(outside.message, "prompt[1] must be a token id in [0, "));
  CHECK(contains(refusal(completions, R"({"prompt":[1,99999999]})").message, "got 99999999"));
  CHECK(contains(refusal(completions, R"({"prompt":[1,2],"echo":true})").message, "echo needs a text prompt"));
}

TEST_CASE("openai parse: a chat body with logprobs and top_logprobs") {
  const openai_request r = parsed(chat, chat_with(R"("logprobs":true,"top_logprobs":2,"max_tokens":9)"));
  REQUIRE(r.req.messages.size() == 1);
  CHECK(r.req.messages[0].role == "user");
  CHECK(r.req.messages[0].content == "Hi");
  CHECK(r.req.logprobs);
  CHECK(r.req.params.num_logprobs == 2);
  CHECK(r.req.params.max_tokens == 9);
  const api_error without = refusal(chat, chat_with(R"("top_logprobs":2)"));
  CHECK(without.param == "top_logprobs");
  CHECK(contains(without.message, "logprobs is off"));
  CHECK(refusal(chat, chat_with(R"("logprobs":true,"top_logprobs":21)")).param == "top_logprobs");
  CHECK(refusal(chat, chat_with(R"("logprobs":3)")).param == "logprobs");
}

TEST_CASE("openai parse: max_completion_tokens overrides max_tokens whichever comes first") {
  CHECK(parsed(chat, chat_with(R"("max_tokens":5,"max_completion_tokens":7)")).req.params.max_tokens == 7);
  CHECK(parsed(chat, chat_with(R"("max_completion_tokens":7,"max_tokens":5)")).req.params.max_tokens == 7);
  CHECK(parsed(chat, chat_with(R"("max_completion_tokens":null,"max_tokens":5)")).req.params.max_tokens == 5);
  CHECK(refusal(chat, chat_with(R"("max_completion_tokens":0)")).param == "max_tokens");
  CHECK(refusal(chat, chat_with(R"("max_completion_tokens":"7")")).param == "max_completion_tokens");
}

TEST_CASE("openai parse: min_tokens on both endpoints, checked against the max_tokens in force") {
  CHECK(parsed(completions, completion_with(R"("min_tokens":4,"max_tokens":4)")).req.params.min_tokens == 4);
  CHECK(parsed(chat, chat_with(R"("min_tokens":7,"max_completion_tokens":7,"max_tokens":5)")).req.params.min_tokens ==
        7);
  const api_error over = refusal(chat, chat_with(R"("min_tokens":6,"max_completion_tokens":5)"));
  CHECK(over.status == 400);
  CHECK(over.param == "min_tokens");
  CHECK(contains(over.message, "min_tokens must be in [0, 5] (at most max_tokens), got 6"));
  CHECK(refusal(completions, completion_with(R"("min_tokens":-2)")).param == "min_tokens");
  CHECK(refusal(completions, completion_with(R"("min_tokens":1.5)")).param == "min_tokens");
}

TEST_CASE("openai parse: chat content parts and the developer role") {
  const openai_request r = parsed(
      chat, R"({"messages":[{"role":"developer","content":"Be terse."},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]})");
  REQUIRE(r.req.messages.size() == 2);
  CHECK(r.req.messages[0].role == "system");
  CHECK(r.req.messages[1].content == "ab");
  CHECK(refusal(chat, R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"u"}}]}]})").param ==
        "messages[0].content[0].type");
  CHECK(refusal(chat, R"({"model":"m"})").param == "messages");
  CHECK(refusal(chat, R"({"messages":[]})").param == "messages");
}

TEST_CASE("openai parse: n and best_of on both endpoints, best_of at least n and not streamed") {
  CHECK(parsed(chat, chat_with(R"("n":1)")).req.n == 1);
  CHECK(parsed(chat, chat_with(R"("n":null)")).req.n == 1);
  CHECK(parsed(chat, chat_with(R"("n":4,"stream":true)")).req.n == 4);
  const auto best = parsed(completions, completion_with(R"("n":2,"best_of":5)")).req;
  CHECK(best.n == 2);
  CHECK(best.best_of == 5);
  CHECK(best.num_sequences() == 5);
  CHECK(parsed(completions, completion_with(R"("best_of":1)")).req.num_sequences() == 1);
  const api_error zero = refusal(chat, chat_with(R"("n":0)"));
  CHECK(zero.param == "n");
  CHECK(contains(zero.message, "n must be in [1, 32]"));
  CHECK(refusal(chat, chat_with(R"("n":33)")).param == "n");
  CHECK(refusal(completions, completion_with(R"("n":3,"best_of":2)")).param == "best_of");
  CHECK(refusal(completions, completion_with(R"("best_of":40)")).param == "best_of");
  const api_error streamed = refusal(completions, completion_with(R"("n":1,"best_of":3,"stream":true)"));
  CHECK(streamed.param == "best_of");
  CHECK(contains(streamed.message, "cannot be streamed"));
  // best_of equal to n is only n: it streams.
  CHECK(parsed(completions, completion_with(R"("n":2,"best_of":2,"stream":true)")).req.n == 2);
}

TEST_CASE("openai parse: structured output from response_format or vLLM's guided fields, one of them") {
  const auto schema = parsed(chat, chat_with(R"("response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object","properties":{"a":{"type":"integer"}}}}})")).req;
  REQUIRE(schema.guided);
  CHECK(schema.guided->kind == grammar_kind::json_schema);
  CHECK(schema.guided->text == R"({"type":"object","properties":{"a":{"type":"integer"}}})");
  CHECK(schema.guided_field == "response_format");
  const auto object = parsed(chat, chat_with(R"("response_format":{"type":"json_object"})")).req;
  REQUIRE(object.guided);
  CHECK(object.guided->kind == grammar_kind::json_object);
  CHECK_FALSE(parsed(chat, chat_with(R"("response_format":{"type":"text"})")).req.guided);
  const auto regex = parsed(completions, completion_with(R"("guided_regex":"\\d+")")).req;
  REQUIRE(regex.guided);
  CHECK(regex.guided->kind == grammar_kind::regex);
  CHECK(regex.guided->text == "\\d+");
  CHECK(regex.guided_field == "guided_regex");
  const auto choice = parsed(completions, completion_with(R"("guided_choice":["yes","no"])")).req;
  REQUIRE(choice.guided);
  CHECK(choice.guided->choices == std::vector<std::string>{"yes", "no"});
  const auto as_text = parsed(completions, completion_with(R"("guided_json":"{\"type\":\"string\"}")")).req;
  REQUIRE(as_text.guided);
  CHECK(as_text.guided->text == R"({"type":"string"})");
  CHECK(parsed(completions, completion_with(R"("guided_json":{"enum":[1,2]})")).req.guided->text == R"({"enum":[1,2]})");

  CHECK(refusal(completions, completion_with(R"("guided_regex":"a","guided_choice":["a"])")).param == "guided_choice");
  CHECK(refusal(chat, chat_with(R"("response_format":{"type":"json_object"},"guided_json":{})")).param == "guided_json");
  CHECK(contains(refusal(chat, chat_with(R"("response_format":{"type":"xml"})")).message, "response_format.type must be"));
  CHECK(contains(refusal(chat, chat_with(R"("response_format":{"type":"json_schema"})")).message,
                 "response_format.json_schema.schema is required"));
  CHECK(contains(refusal(chat, chat_with(R"("response_format":{"type":"json_schema","json_schema":{"schema":{},"x":1}})")).message,
                 "unknown field response_format.json_schema.x"));
  CHECK(refusal(completions, completion_with(R"("guided_choice":[])")).param == "guided_choice");
  CHECK(refusal(completions, completion_with(R"("guided_json":[1])")).param == "guided_json");
  CHECK(refusal(completions, completion_with(R"("guided_json":{},"beam_width":2)")).param == "beam_width");
}

TEST_CASE("openai parse: stream_options only with stream, holding include_usage") {
  const openai_request r = parsed(chat, chat_with(R"("stream":true,"stream_options":{"include_usage":true})"));
  CHECK(r.stream);
  CHECK(r.req.include_usage);
  CHECK_FALSE(parsed(chat, chat_with(R"("stream":true,"stream_options":{"include_usage":false})")).req.include_usage);
  CHECK(refusal(chat, chat_with(R"("stream_options":{"include_usage":true})")).param == "stream_options");
  CHECK(refusal(chat, chat_with(R"("stream":false,"stream_options":{"include_usage":true})")).param == "stream_options");
  CHECK(refusal(chat, chat_with(R"("stream":true,"stream_options":{"continuous":true})")).param == "stream_options");
  CHECK(refusal(chat, chat_with(R"("stream":true,"stream_options":{"include_usage":1})")).param ==
        "stream_options.include_usage");
  CHECK(refusal(chat, chat_with(R"("stream":"yes")")).param == "stream");
}

TEST_CASE("openai parse: null means not set, for the fields OpenAI clients send as null") {
  const openai_request r = parsed(
      chat, chat_with(R"("stream":null,"stream_options":null,"user":null,"seed":null,"stop":null,"temperature":null,"logit_bias":null,"top_logprobs":null,"logprobs":null)"));
  CHECK_FALSE(r.stream);
  CHECK(r.req.params.temperature == sampling_params{}.temperature);
}

TEST_CASE("openai parse: unknown fields and the other endpoint's fields are refused by name") {
  const api_error functions = refusal(chat, chat_with(R"("functions":[])"));  // OpenAI's deprecated form of tools
  CHECK(functions.param == "functions");
  CHECK(contains(functions.message, "unknown field \"functions\""));
  CHECK(refusal(chat, chat_with(R"("echo":true)")).param == "echo");
  CHECK(refusal(chat, chat_with(R"("prompt":"x")")).param == "prompt");
  CHECK(refusal(completions, completion_with(R"("messages":[])")).param == "messages");
  CHECK(refusal(completions, completion_with(R"("max_completion_tokens":5)")).param == "max_completion_tokens");
  CHECK(refusal(completions, completion_with(R"("top_logprobs":2)")).param == "top_logprobs");
  CHECK(refusal(completions, completion_with(R"("suffix":null)")).param == "suffix");
}

TEST_CASE("openai parse: shared fields are refused with the same messages as on the WebSocket") {
  const api_error e = refusal(chat, chat_with(R"("temperature":101)"));
  CHECK(e.status == 400);
  CHECK(e.code == "invalid_request");
  CHECK(e.param == "temperature");
  CHECK(contains(e.message, "temperature must be in [0, 100], got 101"));
  CHECK(refusal(completions, completion_with(R"("seed":-5)")).param == "seed");
  CHECK(refusal(completions, completion_with(R"("model":5)")).param == "model");
  CHECK(refusal(completions, completion_with(R"("user":[])")).param == "user");
  CHECK(refusal(completions, completion_with(R"("max_tokens":513)")).param == "max_tokens");
  CHECK(refusal(completions, completion_with(R"("echo":"yes")")).param == "echo");
  CHECK(contains(refusal(completions, completion_with(R"("top_p":1,"top_p":1)")).message, "duplicate field \"top_p\""));
}

TEST_CASE("openai parse: bodies that are not JSON objects") {
  for (const std::string body : {"", "{", "{\"prompt\":\"x\"}x", "{\"prompt\":\"\xff\"}", "nul"}) {
    CAPTURE(body);
    CHECK(refusal(completions, body).code == "invalid_json");
  }
  const api_error array = refusal(completions, R"(["prompt"])");
  CHECK(array.code == "invalid_request");
  CHECK(contains(array.message, "the request body must be a JSON object, got an array"));
}

TEST_CASE("openai response: a completion body with logprobs, field by field") {
  openai_response response(completions, "cmpl-1", "m", 1700000000, completion_request(true, false));
  response.add(delta_of("Hel", 10, "Hel", -0.5f));
  response.add(delta_of("lo", 11, "lo", -0.25f));
  const std::string body = response.body(done_with_usage());
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, body);
  CHECK(string_of(o["id"]) == "cmpl-1");
  CHECK(string_of(o["object"]) == "text_completion");
  CHECK(int64_t(o["created"]) == 1700000000);
  CHECK(string_of(o["model"]) == "m");
  simdjson::dom::array choices = o["choices"];
  REQUIRE(choices.size() == 1);
  simdjson::dom::element choice = choices.at(0);
  CHECK(int64_t(choice["index"]) == 0);
  CHECK(string_of(choice["text"]) == "Hello");
  CHECK(string_of(choice["finish_reason"]) == "length");
  simdjson::dom::element lp = choice["logprobs"];
  CHECK(string_of(lp["tokens"].at(0)) == "Hel");
  CHECK(string_of(lp["tokens"].at(1)) == "lo");
  CHECK(double(lp["token_logprobs"].at(0)) == -0.5);
  CHECK(double(lp["token_logprobs"].at(1)) == -0.25);
  CHECK(double(lp["top_logprobs"].at(0)["Hel"]) == -0.5);
  CHECK(double(lp["top_logprobs"].at(0)["alt"]) == -3.0);
  CHECK(int64_t(lp["text_offset"].at(0)) == 0);
  CHECK(int64_t(lp["text_offset"].at(1)) == 3);
  check_usage(o["usage"]);
}

TEST_CASE("openai response: with echo, text offsets start after the prompt") {
  openai_response response(completions, "cmpl-2", "m", 1, completion_request(true, false, true));
  response.add(delta_of("Say hi", 10, " hi", -0.5f));
  simdjson::dom::parser parser;
  simdjson::dom::element choice = parse_back(parser, response.body(done_with_usage()))["choices"].at(0);
  CHECK(string_of(choice["text"]) == "Say hi");
  CHECK(int64_t(choice["logprobs"]["text_offset"].at(0)) == 3);
}

TEST_CASE("openai response: completion top_logprobs keep one entry per written text, the likelier") {
  openai_response response(completions, "cmpl-3", "m", 1, completion_request(true, false));
  delta_event d;
  d.token_ids = {1};
  token_logprobs t;
  t.sampled = logprob_entry{1, "\xE2\x82", -0.1f};
  t.top.push_back(t.sampled);
  t.top.push_back(logprob_entry{2, "\xF0\x9F", -0.2f});
  t.top.push_back(logprob_entry{3, "ok", -0.3f});
  d.logprobs.push_back(std::move(t));
  response.add(d);
  simdjson::dom::parser parser;
  simdjson::dom::object top = parse_back(parser, response.body(done_with_usage()))["choices"].at(0)["logprobs"]["top_logprobs"].at(0);
  CHECK(top.size() == 2);
  CHECK(double(top["\xEF\xBF\xBD"]) == doctest::Approx(-0.1));
  CHECK(double(top["ok"]) == doctest::Approx(-0.3));
}

TEST_CASE("openai response: without logprobs the field is null") {
  openai_response response(chat, "chatcmpl-1", "m", 1, completion_request(false, false));
  delta_event d;
  d.text = "Hi";
  d.token_ids = {4};
  response.add(d);
  simdjson::dom::parser parser;
  simdjson::dom::element choice = parse_back(parser, response.body(done_with_usage()))["choices"].at(0);
  CHECK(choice["logprobs"].is_null());
}

TEST_CASE("openai response: a chat body with logprobs carrying each token's bytes") {
  request req = completion_request(true, false);
  req.prompt.clear();
  req.messages = {{"user", "Hi"}};
  openai_response response(chat, "chatcmpl-2", "m", 1700000001, req);
  response.add(delta_of("", 20, "\xE2\x82", -0.5f));  // half of the euro sign, held back
  response.add(delta_of("\xE2\x82\xAC!", 21, "\xAC!", -0.75f));
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, response.body(done_with_usage()));
  CHECK(string_of(o["id"]) == "chatcmpl-2");
  CHECK(string_of(o["object"]) == "chat.completion");
  CHECK(int64_t(o["created"]) == 1700000001);
  simdjson::dom::element choice = o["choices"].at(0);
  CHECK(int64_t(choice["index"]) == 0);
  CHECK(string_of(choice["message"]["role"]) == "assistant");
  CHECK(string_of(choice["message"]["content"]) == "\xE2\x82\xAC!");
  CHECK(string_of(choice["finish_reason"]) == "length");
  simdjson::dom::array content = choice["logprobs"]["content"];
  REQUIRE(content.size() == 2);
  simdjson::dom::element first = content.at(0);
  CHECK(string_of(first["token"]) == "\xEF\xBF\xBD");
  CHECK(double(first["logprob"]) == -0.5);
  simdjson::dom::array bytes = first["bytes"];
  REQUIRE(bytes.size() == 2);
  CHECK(int64_t(bytes.at(0)) == 0xE2);
  CHECK(int64_t(bytes.at(1)) == 0x82);
  simdjson::dom::array top = first["top_logprobs"];
  REQUIRE(top.size() == 2);
  CHECK(string_of(top.at(1)["token"]) == "alt");
  CHECK(double(top.at(1)["logprob"]) == -3.0);
  CHECK(simdjson::dom::array(top.at(1)["bytes"]).size() == 3);
  CHECK(int64_t(content.at(1)["bytes"].at(0)) == 0xAC);
  check_usage(o["usage"]);
}

TEST_CASE("openai stream: completion chunks, the finish chunk, the usage chunk, then DONE") {
  openai_response response(completions, "cmpl-4", "m", 5, completion_request(false, true));
  CHECK(response.sse_start().empty());
  delta_event d;
  d.text = "Hel";
  d.token_ids = {1};
  std::string stream = response.sse_delta(d);
  stream += response.sse_finish(done_with_usage());
  const std::vector<std::string> payloads = sse_payloads(stream);
  REQUIRE(payloads.size() == 4);
  simdjson::dom::parser parser;
  simdjson::dom::object chunk = parse_back(parser, payloads[0]);
  CHECK(string_of(chunk["id"]) == "cmpl-4");
  CHECK(string_of(chunk["object"]) == "text_completion");
  CHECK(int64_t(chunk["created"]) == 5);
  CHECK(string_of(chunk["model"]) == "m");
  CHECK(string_of(chunk["choices"].at(0)["text"]) == "Hel");
  CHECK(chunk["choices"].at(0)["finish_reason"].is_null());
  CHECK(chunk["choices"].at(0)["logprobs"].is_null());
  CHECK(chunk["usage"].is_null());
  simdjson::dom::object finish = parse_back(parser, payloads[1]);
  CHECK(string_of(finish["choices"].at(0)["text"]).empty());
  CHECK(string_of(finish["choices"].at(0)["finish_reason"]) == "length");
  simdjson::dom::object usage = parse_back(parser, payloads[2]);
  CHECK(simdjson::dom::array(usage["choices"]).size() == 0);
  check_usage(usage["usage"]);
  CHECK(payloads[3] == "[DONE]");
}

TEST_CASE("openai stream: n > 1 chunks carry their choice's index; each choice opens and finishes on its own") {
  request r;
  r.messages = {{"user", "Hi"}};
  r.n = 2;
  r.include_usage = true;
  openai_response response(chat, "chatcmpl-9", "m", 5, r);
  std::string stream = response.sse_start();
  delta_event d0;
  d0.text = "A";
  d0.token_ids = {1};
  delta_event d1 = d0;
  d1.text = "B";
  d1.index = 1;
  stream += response.sse_delta(d1);
  stream += response.sse_delta(d0);
  stream += response.sse_delta(d1);
  stream += response.sse_choice_finish({1, request_finish_reason::stop, {}, 2, 2, -1.0});
  stream += response.sse_choice_finish({0, request_finish_reason::length, {}, {}, 1, -0.5});
  done_event done = done_with_usage();
  done.choices = {{0, request_finish_reason::length, {}, {}, 1, -0.5}, {1, request_finish_reason::stop, {}, 2, 2, -1.0}};
  stream += response.sse_finish(done);
  const std::vector<std::string> payloads = sse_payloads(stream);
  // opening 0, opening 1, B, A, B, finish 1, finish 0, usage, DONE
  REQUIRE(payloads.size() == 9);
  simdjson::dom::parser parser;
  std::vector<int64_t> indices;
  std::vector<std::string> contents;
  for (size_t i = 0; i + 2 < payloads.size(); ++i) {
    simdjson::dom::object chunk = parse_back(parser, payloads[i]);
    simdjson::dom::element choice = chunk["choices"].at(0);
    indices.push_back(int64_t(choice["index"]));
    if (i == 1) CHECK(string_of(choice["delta"]["role"]) == "assistant");
    if (i >= 2 && i <= 4) contents.push_back(string_of(choice["delta"]["content"]));
    if (i == 5) CHECK(string_of(choice["finish_reason"]) == "stop");
    if (i == 6) CHECK(string_of(choice["finish_reason"]) == "length");
  }
  CHECK(indices == std::vector<int64_t>{0, 1, 1, 0, 1, 1, 0});
  CHECK(contents == std::vector<std::string>{"B", "A", "B"});
  check_usage(parse_back(parser, payloads[7])["usage"]);
  CHECK(payloads[8] == "[DONE]");
}

TEST_CASE("openai response: n > 1 bodies list every choice in index order with its own reason") {
  request r = completion_request(true, false);
  r.n = 2;
  openai_response response(completions, "cmpl-9", "m", 5, r);
  delta_event d1 = delta_of("two", 7, "two", -0.5f);
  d1.index = 1;
  response.add(d1);
  response.add(delta_of("one", 6, "one", -0.25f));
  done_event done = done_with_usage();
  done.choices = {{0, request_finish_reason::length, {}, {}, 1, -0.25}, {1, request_finish_reason::stop, {}, 2, 1, -0.5}};
  simdjson::dom::parser parser;
  simdjson::dom::object body = parse_back(parser, response.body(done));
  simdjson::dom::array choices = body["choices"];
  REQUIRE(choices.size() == 2);
  CHECK(int64_t(choices.at(0)["index"]) == 0);
  CHECK(string_of(choices.at(0)["text"]) == "one");
  CHECK(string_of(choices.at(0)["finish_reason"]) == "length");
  CHECK(int64_t(choices.at(1)["index"]) == 1);
  CHECK(string_of(choices.at(1)["text"]) == "two");
  CHECK(string_of(choices.at(1)["finish_reason"]) == "stop");
  // Each choice's text offsets start at its own beginning.
  CHECK(int64_t(choices.at(1)["logprobs"]["text_offset"].at(0)) == 0);
  check_usage(body["usage"]);
}

TEST_CASE("openai stream: without include_usage there is no usage chunk and no usage key") {
  openai_response response(completions, "cmpl-5", "m", 5, completion_request(false, false));
  delta_event d;
  d.text = "x";
  simdjson::dom::parser parser;
  CHECK(parse_back(parser, sse_payloads(response.sse_delta(d))[0])["usage"].error() == simdjson::NO_SUCH_FIELD);
  const std::vector<std::string> payloads = sse_payloads(response.sse_finish(done_with_usage()));
  REQUIRE(payloads.size() == 2);
  CHECK(payloads[1] == "[DONE]");
}

TEST_CASE("openai stream: a delta with nothing to show writes nothing") {
  openai_response plain(completions, "cmpl-6", "m", 5, completion_request(false, false));
  delta_event held_back;
  held_back.token_ids = {7};
  CHECK(plain.sse_delta(held_back).empty());
  CHECK(plain.sse_delta(delta_event{}).empty());
  // With logprobs asked, the held-back token's logprob still goes out.
  openai_response with_logprobs(completions, "cmpl-7", "m", 5, completion_request(true, false));
  CHECK_FALSE(with_logprobs.sse_delta(delta_of("", 7, "\xE2", -1.0f)).empty());
}

TEST_CASE("openai stream: completion text offsets continue across chunks") {
  openai_response response(completions, "cmpl-8", "m", 5, completion_request(true, false));
  simdjson::dom::parser parser;
  const std::string first = sse_payloads(response.sse_delta(delta_of("ab", 1, "ab", -1.0f)))[0];
  CHECK(int64_t(parse_back(parser, first)["choices"].at(0)["logprobs"]["text_offset"].at(0)) == 0);
  const std::string second = sse_payloads(response.sse_delta(delta_of("cde", 2, "cde", -1.0f)))[0];
  CHECK(int64_t(parse_back(parser, second)["choices"].at(0)["logprobs"]["text_offset"].at(0)) == 2);
}

TEST_CASE("openai stream: chat opens with the assistant role, then content deltas, then an empty delta with the reason") {
  request req;
  req.messages = {{"user", "Hi"}};
  req.include_usage = true;
  openai_response response(chat, "chatcmpl-3", "m", 9, req);
  std::string stream = response.sse_start();
  delta_event d;
  d.text = "Hello \"you\"\n";
  d.token_ids = {1, 2};
  stream += response.sse_delta(d);
  done_event done = done_with_usage();
  done.reason = request_finish_reason::stop;
  stream += response.sse_finish(done);
  const std::vector<std::string> payloads = sse_payloads(stream);
  REQUIRE(payloads.size() == 5);
  simdjson::dom::parser parser;
  simdjson::dom::object start = parse_back(parser, payloads[0]);
  CHECK(string_of(start["object"]) == "chat.completion.chunk");
  CHECK(string_of(start["choices"].at(0)["delta"]["role"]) == "assistant");
  simdjson::dom::object content = parse_back(parser, payloads[1]);
  CHECK(string_of(content["id"]) == "chatcmpl-3");
  CHECK(string_of(content["choices"].at(0)["delta"]["content"]) == "Hello \"you\"\n");
  CHECK(content["choices"].at(0)["delta"]["role"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(content["choices"].at(0)["logprobs"].is_null());
  simdjson::dom::object finish = parse_back(parser, payloads[2]);
  CHECK(simdjson::dom::object(finish["choices"].at(0)["delta"]).size() == 0);
  CHECK(string_of(finish["choices"].at(0)["finish_reason"]) == "stop");
  simdjson::dom::object usage = parse_back(parser, payloads[3]);
  CHECK(string_of(usage["object"]) == "chat.completion.chunk");
  check_usage(usage["usage"]);
  CHECK(payloads[4] == "[DONE]");
}

TEST_CASE("openai stream: chat logprobs in a chunk") {
  request req = completion_request(true, false);
  openai_response response(chat, "chatcmpl-4", "m", 9, req);
  simdjson::dom::parser parser;
  simdjson::dom::object chunk = parse_back(parser, sse_payloads(response.sse_delta(delta_of("Hi", 3, "Hi", -0.5f)))[0]);
  simdjson::dom::element entry = chunk["choices"].at(0)["logprobs"]["content"].at(0);
  CHECK(string_of(entry["token"]) == "Hi");
  CHECK(double(entry["logprob"]) == -0.5);
  CHECK(int64_t(entry["bytes"].at(0)) == 'H');
}

TEST_CASE("openai stream: finish reasons pass through, troupe's own included") {
  for (const auto reason : {request_finish_reason::cancelled, request_finish_reason::timeout, request_finish_reason::error}) {
    openai_response response(completions, "cmpl-9", "m", 5, completion_request(false, false));
    done_event d;
    d.reason = reason;
    simdjson::dom::parser parser;
    CHECK(string_of(parse_back(parser, sse_payloads(response.sse_finish(d))[0])["choices"].at(0)["finish_reason"]) ==
          to_string(reason));
  }
}

TEST_CASE("openai stream: an error mid-stream is an error event, then DONE") {
  openai_response response(chat, "chatcmpl-5", "m", 9, completion_request(false, false));
  const std::vector<std::string> payloads =
      sse_payloads(response.sse_error({503, "unavailable", "server shutting down", {}}));
  REQUIRE(payloads.size() == 2);
  simdjson::dom::parser parser;
  simdjson::dom::element error = parse_back(parser, payloads[0])["error"];
  CHECK(string_of(error["message"]) == "server shutting down");
  CHECK(string_of(error["type"]) == "server_error");
  CHECK(string_of(error["code"]) == "unavailable");
  CHECK(error["param"].is_null());
  CHECK(payloads[1] == "[DONE]");
}

TEST_CASE("openai errors: the error object and its type by status") {
  simdjson::dom::parser parser;
  simdjson::dom::element e =
      parse_back(parser, openai_error_body(invalid_request("temperature must be a number", "temperature")))["error"];
  CHECK(string_of(e["message"]) == "temperature must be a number");
  CHECK(string_of(e["type"]) == "invalid_request_error");
  CHECK(string_of(e["param"]) == "temperature");
  CHECK(string_of(e["code"]) == "invalid_request");
  const std::pair<int, const char*> types[] = {{400, "invalid_request_error"}, {401, "authentication_error"},
                                               {404, "invalid_request_error"}, {413, "invalid_request_error"},
                                               {429, "invalid_request_error"}, {500, "server_error"},
                                               {503, "server_error"}};
  for (const auto& [status, type] : types) {
    CHECK(string_of(parse_back(parser, openai_error_body({status, "x", "m", {}}))["error"]["type"]) == type);
  }
}

TEST_CASE("openai errors: engine error events map to statuses and codes") {
  const std::tuple<request_error_code, int, const char*> cases[] = {
      {request_error_code::invalid_request, 400, "invalid_request"},
      {request_error_code::context_overflow, 400, "context_overflow"},
      {request_error_code::queue_full, 429, "queue_full"},
      {request_error_code::internal, 500, "internal"},
      {request_error_code::unavailable, 503, "unavailable"},
      {request_error_code::cancelled, 503, "cancelled"},
      {request_error_code::timeout, 503, "timeout"},
      {request_error_code::out_of_memory, 503, "out_of_memory"},
      {request_error_code::replica_lost, 502, "replica_lost"}};
  for (const auto& [code, status, name] : cases) {
    const api_error e = to_api_error({code, "why"});
    CHECK(e.status == status);
    CHECK(e.code == name);
    CHECK(e.message == "why");
  }
  CHECK(to_api_error({request_error_code::invalid_request, "stop[0] must not be empty"}).param == "stop");
  CHECK(to_api_error({request_error_code::invalid_request, "the prompt is too long"}).param.empty());
}

TEST_CASE("openai models: the one model with its context length") {
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, models_list_body("SmolLM2-135M", 1700000000, 8192));
  CHECK(string_of(o["object"]) == "list");
  simdjson::dom::array data = o["data"];
  REQUIRE(data.size() == 1);
  CHECK(string_of(data.at(0)["id"]) == "SmolLM2-135M");
  CHECK(string_of(data.at(0)["object"]) == "model");
  CHECK(int64_t(data.at(0)["created"]) == 1700000000);
  CHECK(string_of(data.at(0)["owned_by"]) == "troupe");
  CHECK(int64_t(data.at(0)["max_model_len"]) == 8192);
}

TEST_CASE("tool calls: Hermes blocks, several or unterminated, a JSON answer, and text that is no call") {
  auto a = parse_tool_calls("Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
  REQUIRE(a.calls.size() == 1);
  CHECK(a.calls[0].name == "get_weather");
  CHECK(a.calls[0].arguments == R"({"city":"Paris"})");
  CHECK(a.content == "Let me check.");
  auto two = parse_tool_calls("<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"b\",\"arguments\":{\"x\":[1,2]}}");
  REQUIRE(two.calls.size() == 2);  // the last one without its closing tag
  CHECK(two.calls[1].arguments == R"({"x":[1,2]})");
  CHECK(two.content.empty());
  auto llama = parse_tool_calls(" {\"name\": \"add\", \"parameters\": {\"a\": 2, \"b\": 3}}");
  REQUIRE(llama.calls.size() == 1);
  CHECK(llama.calls[0].arguments == R"({"a":2,"b":3})");
  auto as_string = parse_tool_calls(R"({"name":"add","arguments":"{\"a\":1}"})");
  REQUIRE(as_string.calls.size() == 1);
  CHECK(as_string.calls[0].arguments == R"({"a":1})");
  CHECK(parse_tool_calls("Hello there").calls.empty());
  CHECK(parse_tool_calls("Hello there").content == "Hello there");
  CHECK(parse_tool_calls(R"({"answer": 42})").calls.empty());  // JSON, but not a call
  const auto broken = parse_tool_calls("<tool_call>{not json}</tool_call> ok");
  CHECK(broken.calls.empty());
  CHECK(broken.content == "<tool_call>{not json}</tool_call> ok");

  CHECK(showable_prefix("Sure, ") == 5);  // trailing whitespace waits for what follows
  CHECK(showable_prefix("Sure, go") == 8);
  CHECK(showable_prefix("Sure <tool") == 4);  // may be the start of a call
  CHECK(showable_prefix("Sure <tool_call>{") == 4);
  CHECK(showable_prefix("  {\"name\"") == 0);
  CHECK(showable_prefix("  ") == 0);
  CHECK(new_tool_call_id().rfind("call_", 0) == 0);
  CHECK(new_tool_call_id() != new_tool_call_id());
}

TEST_CASE("openai parse: tools, tool_choice, assistant tool_calls and tool messages") {
  const auto r = parsed(chat, R"({"messages":[{"role":"user","content":"hi"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"add","arguments":"{\"a\":1}"}}]},
      {"role":"tool","tool_call_id":"c1","content":"1"}],
      "tools":[{"type":"function","function":{"name":"add","description":"Adds","parameters":{"type":"object"},"strict":true}}],
      "tool_choice":{"type":"function","function":{"name":"add"}},"parallel_tool_calls":false})").req;
  REQUIRE(r.tools.size() == 1);
  CHECK(r.tools[0].name == "add");
  CHECK(r.tools[0].parameters == R"({"type":"object"})");
  CHECK(r.tool_use.mode == tool_choice_mode::named);
  CHECK(r.tool_use.name == "add");
  REQUIRE(r.messages.size() == 3);
  REQUIRE(r.messages[1].tool_calls.size() == 1);
  CHECK(r.messages[1].tool_calls[0].arguments == R"({"a":1})");
  CHECK(r.messages[2].tool_call_id == "c1");
  CHECK(parsed(chat, chat_with(R"("tool_choice":"none")")).req.tool_use.mode == tool_choice_mode::none);
  CHECK(refusal(chat, chat_with(R"("tool_choice":"required")")).param == "tool_choice");  // no tools
  CHECK(contains(refusal(chat, chat_with(R"("tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}})")).message,
                 "which tools does not have"));
  CHECK(refusal(chat, chat_with(R"("tools":[{"type":"code"}])")).param == "tools");
  CHECK(refusal(chat, chat_with(R"("tool_choice":"sometimes")")).param == "tool_choice");
  CHECK(contains(refusal(chat, chat_with(R"("tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"a"}}])")).message,
                 "given twice"));
}

TEST_CASE("openai response: a chat answer with calls has tool_calls, null content and finish_reason tool_calls") {
  request r;
  r.messages = {{"user", "Hi"}};
  r.tools = {{"get_weather", "", "{}"}};
  openai_response whole(chat, "chatcmpl-t", "m", 5, r);
  delta_event d;
  d.text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
  whole.add(d);
  done_event done = done_with_usage();
  done.reason = request_finish_reason::stop;
  simdjson::dom::parser parser;
  simdjson::dom::object body = parse_back(parser, whole.body(done));
  simdjson::dom::element choice = body["choices"].at(0);
  CHECK(string_of(choice["finish_reason"]) == "tool_calls");
  CHECK(choice["message"]["content"].is_null());
  simdjson::dom::element call = choice["message"]["tool_calls"].at(0);
  CHECK(string_of(call["type"]) == "function");
  CHECK(string_of(call["function"]["name"]) == "get_weather");
  CHECK(string_of(call["function"]["arguments"]) == R"({"city":"Oslo"})");
  CHECK(string_of(call["id"]).rfind("call_", 0) == 0);

  // Streamed: the text before the call is shown, the call comes as a tool_calls delta.
  openai_response stream(chat, "chatcmpl-s", "m", 5, r);
  std::string events = stream.sse_start();
  delta_event a;
  a.text = "Checking. <tool";
  events += stream.sse_delta(a);
  delta_event b;
  b.text = "_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>";
  events += stream.sse_delta(b);
  events += stream.sse_finish(done);
  const auto payloads = sse_payloads(events);
  std::string content;
  int num_calls = 0;
  std::string finish;
  for (const auto& p : payloads) {
    if (p == "[DONE]") continue;
    simdjson::dom::object chunk = parse_back(parser, p);
    simdjson::dom::array choices = chunk["choices"];
    if (choices.size() == 0) continue;
    simdjson::dom::element c = choices.at(0);
    std::string_view text;
    if (c["delta"]["content"].get(text) == simdjson::SUCCESS) content += text;
    simdjson::dom::array calls;
    if (c["delta"]["tool_calls"].get(calls) == simdjson::SUCCESS) {
      num_calls += static_cast<int>(calls.size());
      CHECK(int64_t(calls.at(0)["index"]) == 0);
    }
    std::string_view reason;
    if (c["finish_reason"].get(reason) == simdjson::SUCCESS) finish = reason;
  }
  CHECK(content == "Checking.");
  CHECK(num_calls == 1);
  CHECK(finish == "tool_calls");
}
