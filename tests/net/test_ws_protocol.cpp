// ws_protocol: client frames parse into requests field by field, every mistake is refused with
// a message naming the field (and the frame's id when it could be read), and the server's
// frames parse back with simdjson to what was sent.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "codec_test_util.hpp"
#include "troupe/net/json_writer.hpp"
#include "troupe/net/ws_protocol.hpp"

using namespace troupe;
using namespace troupe::net;
using troupe::test::parse_back;
using troupe::test::string_of;
using troupe::test::test_limits;

namespace {

// A generate frame with the given extra members after the prompt.
std::string generate_with(const std::string& members) {
  return R"({"type":"generate","id":"r1","prompt":"Once upon a time")" + (members.empty() ? "" : "," + members) + "}";
}

request parsed_request(const std::string& frame) {
  const ws_parse_result r = parse_ws_message(frame, test_limits);
  if (r.error) FAIL_CHECK("refused: " << r.error->message << " in " << frame);
  REQUIRE(r.message);
  REQUIRE(std::holds_alternative<ws_generate>(*r.message));
  return std::get<ws_generate>(*r.message).req;
}

api_error refusal(const std::string& frame) {
  const ws_parse_result r = parse_ws_message(frame, test_limits);
  if (!r.error) FAIL_CHECK("accepted: " << frame);
  REQUIRE(r.error);
  CHECK_FALSE(r.message);
  return *r.error;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("ws parse: a minimal generate takes the id, the prompt and every default") {
  const request r = parsed_request(generate_with(""));
  CHECK(r.id == "r1");
  CHECK(r.prompt == "Once upon a time");
  CHECK(r.messages.empty());
  const sampling_params defaults;
  CHECK(r.params.temperature == defaults.temperature);
  CHECK(r.params.max_tokens == defaults.max_tokens);
  CHECK(r.stop.empty());
  CHECK_FALSE(r.logprobs);
  CHECK_FALSE(r.speculative.has_value());  // the server's choice
}

TEST_CASE("ws parse: the protocol's full chat example sets every field") {
  const request r = parsed_request(
      R"({"type":"generate","id":"r2","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],
 "max_tokens":128,"temperature":0.7,"top_k":40,"top_p":0.9,"min_p":0.05,
 "repetition_penalty":1.1,"presence_penalty":0.5,"frequency_penalty":-0.5,"penalty_last_n":32,
 "seed":42,"stop":["\n\n"],"stop_token_ids":[2],"logit_bias":{"123":-100},"ignore_eos":true,
 "logprobs":true,"top_logprobs":3,"priority":-5,"timeout_ms":1500,"speculative":"ngram"})");
  CHECK(r.id == "r2");
  REQUIRE(r.messages.size() == 2);
  CHECK(r.messages[0].role == "system");
  CHECK(r.messages[0].content == "Be brief.");
  CHECK(r.messages[1].role == "user");
  CHECK(r.messages[1].content == "Hi");
  CHECK(r.params.max_tokens == 128);
  CHECK(r.params.temperature == 0.7f);
  CHECK(r.params.top_k == 40);
  CHECK(r.params.top_p == 0.9f);
  CHECK(r.params.min_p == 0.05f);
  CHECK(r.params.repetition_penalty == 1.1f);
  CHECK(r.params.presence_penalty == 0.5f);
  CHECK(r.params.frequency_penalty == -0.5f);
  CHECK(r.params.penalty_last_n == 32);
  CHECK(r.params.seed == 42);
  CHECK(r.stop == std::vector<std::string>{"\n\n"});
  CHECK(r.params.stop_token_ids == std::vector<int32_t>{2});
  REQUIRE(r.params.logit_bias.size() == 1);
  CHECK(r.params.logit_bias[0] == std::pair<int32_t, float>{123, -100.0f});
  CHECK(r.params.ignore_eos);
  CHECK(r.logprobs);
  CHECK(r.params.num_logprobs == 3);
  CHECK(r.priority == -5);
  CHECK(r.timeout_ms == 1500);
  CHECK(r.speculative == speculative_method::ngram);
}

TEST_CASE("ws parse: members may come in any order, type last included") {
  const request r = parsed_request(R"({"prompt":"x","temperature":0,"id":"late","type":"generate"})");
  CHECK(r.id == "late");
  CHECK(r.params.temperature == 0.0f);
}

TEST_CASE("ws parse: echo and a single stop string") {
  const request r = parsed_request(generate_with(R"("echo":true,"stop":"END")"));
  CHECK(r.echo);
  CHECK(r.stop == std::vector<std::string>{"END"});
}

TEST_CASE("ws parse: null leaves a field at its default") {
  const request r = parsed_request(generate_with(R"("temperature":null,"stop":null,"seed":null,"logprobs":null)"));
  CHECK(r.params.temperature == sampling_params{}.temperature);
  CHECK(r.stop.empty());
}

TEST_CASE("ws parse: a value of the wrong type names the field and what was sent") {
  struct wrong_type {
    const char* member;
    const char* field;
    const char* message_part;
  };
  const wrong_type cases[] = {
      {R"("temperature":"hot")", "temperature", "temperature must be a number, got a string"},
      {R"("top_p":[1])", "top_p", "top_p must be a number, got an array"},
      {R"("min_p":true)", "min_p", "min_p must be a number"},
      {R"("repetition_penalty":{})", "repetition_penalty", "repetition_penalty must be a number, got an object"},
      {R"("presence_penalty":"0")", "presence_penalty", "presence_penalty must be a number"},
      {R"("frequency_penalty":false)", "frequency_penalty", "frequency_penalty must be a number"},
      {R"("top_k":"40")", "top_k", "top_k must be an integer, got a string"},
      {R"("max_tokens":12.5)", "max_tokens", "max_tokens must be an integer, got 12.5"},
      {R"("penalty_last_n":[])", "penalty_last_n", "penalty_last_n must be an integer"},
      {R"("seed":"42")", "seed", "seed must be an integer"},
      {R"("priority":1.5)", "priority", "priority must be an integer"},
      {R"("speculative":"eagle")", "speculative", "speculative must be \"ngram\", \"draft\" or \"off\", got \"eagle\""},
      {R"("speculative":true)", "speculative", "speculative must be a string"},
      {R"("timeout_ms":"1s")", "timeout_ms", "timeout_ms must be an integer"},
      {R"("ignore_eos":1)", "ignore_eos", "ignore_eos must be true or false, got a number"},
      {R"("logprobs":"yes")", "logprobs", "logprobs must be true or false"},
      {R"("top_logprobs":true)", "top_logprobs", "top_logprobs must be an integer"},
      {R"("echo":"no")", "echo", "echo must be true or false"},
      {R"("stop":5)", "stop", "stop must be an array, got a number"},
      {R"("stop":["a",5])", "stop[1]", "stop[1] must be a string"},
      {R"("stop_token_ids":2)", "stop_token_ids", "stop_token_ids must be an array"},
      {R"("stop_token_ids":[2,"x"])", "stop_token_ids[1]", "stop_token_ids[1] must be an integer"},
      {R"("logit_bias":[1])", "logit_bias", "logit_bias must be an object"},
      {R"("logit_bias":{"5":"up"})", "logit_bias[5]", "logit_bias[5] must be a number"},
  };
  for (const wrong_type& c : cases) {
    CAPTURE(c.member);
    const api_error e = refusal(generate_with(c.member));
    CHECK(e.status == 400);
    CHECK(e.code == "invalid_request");
    CHECK(e.param == c.field);
    CHECK(contains(e.message, c.message_part));
  }
}

TEST_CASE("ws parse: out-of-range values are refused with the validator's message") {
  struct out_of_range {
    const char* member;
    const char* field;
    const char* message_part;
  };
  const out_of_range cases[] = {
      {R"("temperature":500)", "temperature", "temperature must be in [0, 100], got 500"},
      {R"("top_p":0)", "top_p", "top_p must be in (0, 1]"},
      {R"("min_p":1.5)", "min_p", "min_p must be in [0, 1]"},
      {R"("top_k":-1)", "top_k", "top_k must be in [0, inf)"},
      {R"("repetition_penalty":0)", "repetition_penalty", "repetition_penalty must be in (0, 10]"},
      {R"("presence_penalty":3)", "presence_penalty", "presence_penalty must be in [-2, 2]"},
      {R"("frequency_penalty":-3)", "frequency_penalty", "frequency_penalty must be in [-2, 2]"},
      {R"("penalty_last_n":-2)", "penalty_last_n", "penalty_last_n must be in [-1, inf)"},
      {R"("max_tokens":0)", "max_tokens", "max_tokens must be in [1, inf)"},
      {R"("max_tokens":513)", "max_tokens", "max_tokens must be in [1, 512]"},
      {R"("max_tokens":3000000000)", "max_tokens", "max_tokens must be in [-2147483648, 2147483647]"},
      {R"("priority":1001)", "priority", "priority must be in [-1000, 1000]"},
      {R"("timeout_ms":-1)", "timeout_ms", "timeout_ms must be in [0, 86400000]"},
      {R"("logprobs":true,"top_logprobs":21)", "top_logprobs", "top_logprobs must be in [0, 20], got 21"},
      {R"("top_logprobs":2)", "top_logprobs", "logprobs is off"},
      {R"("stop_token_ids":[1000])", "stop_token_ids", "stop_token_ids must be in [0, 1000)"},
      {R"("min_tokens":-1)", "min_tokens", "min_tokens must be in [0, 256] (at most max_tokens), got -1"},
      {R"("max_tokens":8,"min_tokens":9)", "min_tokens", "min_tokens must be in [0, 8] (at most max_tokens), got 9"},
      {R"("min_tokens":"3")", "min_tokens", "min_tokens must be an integer"},
      {R"("logit_bias":{"5":101})", "logit_bias", "logit_bias[5] must be in [-100, 100], got 101"},
      {R"("logit_bias":{"1000":1})", "logit_bias", "logit_bias[1000] token id must be in [0, 1000)"},
      {R"("stop":[""])", "stop", "stop[0] must not be empty"},
      {R"("stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"])", "stop",
       "stop must have at most 16 strings"},
  };
  for (const out_of_range& c : cases) {
    CAPTURE(c.member);
    const api_error e = refusal(generate_with(c.member));
    CHECK(e.code == "invalid_request");
    CHECK(e.param == c.field);
    CHECK(contains(e.message, c.message_part));
  }
}

TEST_CASE("ws parse: min_tokens is read on generate, up to max_tokens") {
  CHECK(parsed_request(generate_with(R"("min_tokens":5,"max_tokens":5)")).params.min_tokens == 5);
  CHECK(parsed_request(generate_with(R"("min_tokens":null)")).params.min_tokens == 0);
}

TEST_CASE("ws parse: integers written with a zero fraction are taken, others are not") {
  CHECK(parsed_request(generate_with(R"("max_tokens":16.0)")).params.max_tokens == 16);
  CHECK(parsed_request(generate_with(R"("top_k":1e1)")).params.top_k == 10);
  CHECK(contains(refusal(generate_with(R"("top_k":0.5)")).message, "top_k must be an integer, got 0.5"));
}

TEST_CASE("ws parse: seed takes the whole uint64 range and nothing negative") {
  CHECK(parsed_request(generate_with(R"("seed":0)")).params.seed == 0);
  CHECK(parsed_request(generate_with(R"("seed":18446744073709551615)")).params.seed == UINT64_MAX);
  const api_error negative = refusal(generate_with(R"("seed":-1)"));
  CHECK(negative.param == "seed");
  CHECK(contains(negative.message, "seed must be in [0, 18446744073709551615], got -1"));
  CHECK(refusal(generate_with(R"("seed":18446744073709551616)")).param == "seed");
}

TEST_CASE("ws parse: logit_bias keys are token ids written as strings") {
  const request r = parsed_request(generate_with(R"("logit_bias":{"5":-100,"7":2.5,"0":100})"));
  REQUIRE(r.params.logit_bias.size() == 3);
  CHECK(r.params.logit_bias[0] == std::pair<int32_t, float>{5, -100.0f});
  CHECK(r.params.logit_bias[1] == std::pair<int32_t, float>{7, 2.5f});
  CHECK(r.params.logit_bias[2] == std::pair<int32_t, float>{0, 100.0f});
  for (const char* key : {"abc", "", "5x", " 5", "+5", "99999999999"}) {
    CAPTURE(key);
    const api_error e = refusal(generate_with(std::string(R"("logit_bias":{")") + key + R"(":1})"));
    CHECK(e.param == "logit_bias");
    CHECK(contains(e.message, "logit_bias keys must be token ids"));
  }
  CHECK(contains(refusal(generate_with(R"("logit_bias":{"5":1,"5":2})")).message, "duplicate field \"5\""));
}

TEST_CASE("ws parse: message content may be an array of text parts, joined") {
  const request r = parsed_request(
      R"({"type":"generate","id":"c","messages":[{"role":"user","name":"ann","content":[{"type":"text","text":"Hello, "},{"text":"world","type":"text"}]}]})");
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].content == "Hello, world");
}

TEST_CASE("ws parse: the developer role is read as system") {
  const request r = parsed_request(R"({"type":"generate","id":"c","messages":[{"role":"developer","content":"x"}]})");
  CHECK(r.messages[0].role == "system");
}

TEST_CASE("ws parse: malformed messages are refused naming the message") {
  struct bad_messages {
    const char* messages;
    const char* param;
    const char* message_part;
  };
  const bad_messages cases[] = {
      {R"([])", "messages", "messages must not be empty"},
      {R"("hi")", "messages", "messages must be an array"},
      {R"([{"role":"user"}])", "messages[0].content", "messages[0].content is required"},
      {R"([{"content":"x"}])", "messages[0].role", "messages[0].role is required"},
      {R"([{"role":"function","content":"x"}])", "messages", "messages[0].role must be system, user, assistant or tool"},
      {R"([{"role":"user","content":"x","function_call":{}}])", "messages[0]", "unknown field messages[0].function_call"},
      {R"([{"role":"user","content":5}])", "messages[0].content", "must be a string or an array of text parts"},
      {R"([{"role":"user","content":null}])", "messages[0].content", "must be a string or an array of text parts"},
      {R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}])", "messages[0].content[0].type",
       "must be \"text\" (troupe serves text only), got \"image_url\""},
      {R"([{"role":"user","content":[{"type":"text"}]}])", "messages[0].content[0].text", "text is required"},
      {R"([{"role":"user","content":[{"type":"text","text":"a","x":1}]}])", "messages[0].content[0]",
       "unknown field messages[0].content[0].x"},
      {R"(["hi"])", "messages[0]", "messages[0] must be an object, got a string"},
  };
  for (const bad_messages& c : cases) {
    CAPTURE(c.messages);
    const api_error e = refusal(std::string(R"({"type":"generate","id":"c","messages":)") + c.messages + "}");
    CHECK(e.code == "invalid_request");
    CHECK(e.param == c.param);
    CHECK(contains(e.message, c.message_part));
  }
}

TEST_CASE("ws parse: exactly one of prompt and messages") {
  CHECK(refusal(R"({"type":"generate","id":"a"})").param == "prompt");
  CHECK(refusal(R"({"type":"generate","id":"a","prompt":""})").param == "prompt");
  const api_error both = refusal(R"({"type":"generate","id":"a","prompt":"x","messages":[{"role":"user","content":"y"}]})");
  CHECK(contains(both.message, "give one of them, not both"));
}

TEST_CASE("ws parse: a prompt may be token ids, each checked against the vocabulary") {
  const request r = parsed_request(R"({"type":"generate","id":"a","prompt":[5,6,7]})");
  CHECK(r.prompt.empty());
  CHECK(r.prompt_token_ids == std::vector<int32_t>{5, 6, 7});
  CHECK(contains(refusal(R"({"type":"generate","id":"a","prompt":[]})").message, "prompt must not be empty"));
  const api_error text_in_ids = refusal(R"({"type":"generate","id":"a","prompt":[5,"x"]})");
  CHECK(text_in_ids.param == "prompt");
  CHECK(contains(text_in_ids.message, "prompt[1] must be a token id"));
  CHECK(contains(refusal(R"({"type":"generate","id":"a","prompt":[5,1000]})").message, "prompt[1] must be a token id in [0, 1000)"));
}

TEST_CASE("ws parse: an unknown field is named, with the frame's id") {
  const ws_parse_result r = parse_ws_message(generate_with(R"("temprature":0.5)"), test_limits);
  REQUIRE(r.error);
  CHECK(r.error->code == "invalid_request");
  CHECK(r.error->param == "temprature");
  CHECK(contains(r.error->message, "unknown field \"temprature\""));
  CHECK(r.id == "r1");
}

TEST_CASE("ws parse: a member given twice is refused") {
  const api_error e = refusal(R"({"type":"generate","id":"a","prompt":"x","prompt":"y"})");
  CHECK(e.code == "invalid_request");
  CHECK(contains(e.message, "duplicate field \"prompt\""));
}

TEST_CASE("ws parse: the id is required, not empty and at most 256 bytes") {
  CHECK(refusal(R"({"type":"generate","prompt":"x"})").param == "id");
  CHECK(contains(refusal(R"({"type":"generate","id":"","prompt":"x"})").message, "id must not be empty"));
  CHECK(refusal(R"({"type":"generate","id":7,"prompt":"x"})").param == "id");
  const std::string long_id(257, 'x');
  const ws_parse_result r = parse_ws_message(R"({"type":"generate","prompt":"x","id":")" + long_id + R"("})", test_limits);
  REQUIRE(r.error);
  CHECK(contains(r.error->message, "id must be at most 256 bytes"));
  CHECK(r.id.empty());  // not echoed: the limit bounds what every error frame carries
  CHECK_FALSE(parse_ws_message(R"({"type":"generate","prompt":"x","id":")" + std::string(256, 'x') + R"("})",
                               test_limits)
                  .error);
}

TEST_CASE("ws parse: the id is recovered for the error even when it follows the bad field") {
  const ws_parse_result r = parse_ws_message(R"({"type":"generate","temperature":"hot","prompt":"x","id":"r9"})", test_limits);
  REQUIRE(r.error);
  CHECK(r.error->param == "temperature");
  CHECK(r.id == "r9");
  const ws_parse_result malformed = parse_ws_message(R"({"id":"r8","type":"generate","prompt":tru})", test_limits);
  REQUIRE(malformed.error);
  CHECK(malformed.error->code == "invalid_json");
  CHECK(malformed.id == "r8");
}

TEST_CASE("ws parse: text that is not JSON is invalid_json") {
  const char* cases[] = {
      "",
      "{",
      "not json",
      R"({"type":"generate","id":"a","prompt":"x"} trailing)",
      R"({"type":"generate","id":"a","prompt":"x"}})",
      R"({"type":"generate","id":"a","prompt":"x",})",
      R"({"type":"generate","id":"a","prompt":"x" "temperature":1})",
      R"({"type":"generate","id":"a","prompt":"x","temperature":01})",
      R"({"type":"generate","id":"a","prompt":"x","temperature":-})",
      R"({"type":"generate","id":"a","prompt":"x","ignore_eos":tru})",
      R"({"type":"generate","id":"a","prompt":"x","stop":nul})",
      R"({"type":"generate","id":"a","prompt":"bad \ud800 surrogate"})",
      R"({"type":"generate","id":"a","prompt":"bad \q escape"})",
      "{\"type\":\"generate\",\"id\":\"a\",\"prompt\":\"\xff\"}",
      "{\"type\":\"generate\",\"id\":\"a\",\"prompt\":\"\xc0\xaf\"}",
      "{\"type\":\"generate\",\"id\":\"a\",\"prompt\":\"raw\ncontrol\"}",
  };
  for (const std::string frame : cases) {
    CAPTURE(frame);
    const api_error e = refusal(frame);
    CHECK(e.status == 400);
    CHECK(e.code == "invalid_json");
  }
}

TEST_CASE("ws parse: a frame that is JSON but not an object says so") {
  for (const std::string frame : {"[1,2]", "\"generate\"", "42", "null"}) {
    CAPTURE(frame);
    const api_error e = refusal(frame);
    CHECK(e.status == 400);
    CHECK(contains(e.message, "a message must be a JSON object"));
  }
}

TEST_CASE("ws parse: nesting deeper than the parser allows is refused, not overflowed") {
  const std::string deep = std::string(5000, '[') + std::string(5000, ']');
  const api_error e = refusal(R"({"type":"ping","data":)" + deep + "}");
  CHECK(e.status == 400);
  const api_error in_generate = refusal(generate_with(R"("stop":)" + deep));
  CHECK(in_generate.status == 400);
}

TEST_CASE("ws parse: type is required and must be known") {
  const api_error missing = refusal(R"({"id":"a","prompt":"x"})");
  CHECK(missing.code == "invalid_request");
  CHECK(missing.param == "type");
  const api_error unknown = refusal(R"({"type":"generat","id":"a","prompt":"x"})");
  CHECK(unknown.status == 400);
  CHECK(unknown.code == "unknown_type");
  CHECK(contains(unknown.message, "got \"generat\""));
  CHECK(refusal(R"({"type":1})").param == "type");
}

TEST_CASE("ws parse: escaped keys are read unescaped") {
  const ws_parse_result r = parse_ws_message(R"({"t\u0079pe":"cancel","\u0069d":"r1"})", test_limits);
  REQUIRE(r.message);
  CHECK(std::get<ws_cancel>(*r.message).id == "r1");
}

TEST_CASE("ws parse: cancel takes an id and nothing else") {
  const ws_parse_result r = parse_ws_message(R"({"type":"cancel","id":"r1"})", test_limits);
  REQUIRE(r.message);
  CHECK(std::get<ws_cancel>(*r.message).id == "r1");
  CHECK(r.id == "r1");
  CHECK(refusal(R"({"type":"cancel"})").param == "id");
  CHECK(refusal(R"({"type":"cancel","id":""})").param == "id");
  CHECK(refusal(R"({"type":"cancel","id":"r1","temperature":1})").param == "temperature");
  CHECK(refusal(R"({"type":"cancel","id":"r1","data":1})").param == "data");
}

TEST_CASE("ws parse: ping carries any JSON data, checked and re-serialized") {
  const ws_parse_result bare = parse_ws_message(R"({"type":"ping"})", test_limits);
  REQUIRE(bare.message);
  CHECK(std::get<ws_ping>(*bare.message).data_json.empty());

  const ws_parse_result r = parse_ws_message(
      R"({"type":"ping","data": {"t" : 1763769600123.456, "big":12345678901234567890, "s":"a\"\u00e9\n", "a":[true,false,null,[],{}]} })",
      test_limits);
  REQUIRE(r.message);
  const std::string& data = std::get<ws_ping>(*r.message).data_json;
  CHECK(data == R"({"t":1763769600123.456,"big":12345678901234567890,"s":"a\"é\n","a":[true,false,null,[],{}]})");
}

TEST_CASE("ws parse: an integer past 64 bits in ping data comes back as the double it reads as") {
  const ws_parse_result r = parse_ws_message(R"({"type":"ping","data":{"seq":12222222222222222222222222222}})", test_limits);
  REQUIRE(r.message);
  const std::string pong = ws_pong(std::get<ws_ping>(*r.message).data_json);
  CHECK(pong == R"({"type":"pong","data":{"seq":1.2222222222222222e+28}})");
  CHECK(test::is_valid_json(pong));
  // Just past 64 bits, the shortest text of that double has no exponent (20 digits): it
  // is written with one, or it would be an integer past 64 bits again (a fuzzer's find).
  for (const char* big : {"55555555555555555555", "18446744073709551616", "-9223372036854775809"}) {
    CAPTURE(big);
    const ws_parse_result p = parse_ws_message(std::string(R"({"type":"ping","data":)") + big + "}", test_limits);
    REQUIRE(p.message);
    const std::string echoed = ws_pong(std::get<ws_ping>(*p.message).data_json);
    CHECK(test::is_valid_json(echoed));
    CHECK(echoed.find('e') != std::string::npos);
  }
  const ws_parse_result p = parse_ws_message(R"({"type":"ping","data":55555555555555555555})", test_limits);
  CHECK(ws_pong(std::get<ws_ping>(*p.message).data_json) == R"({"type":"pong","data":5.555555555555556e+19})");
}

TEST_CASE("ws parse: ping refuses an id, generate fields and broken data") {
  CHECK(refusal(R"({"type":"ping","id":"x"})").param == "id");
  CHECK(refusal(R"({"type":"ping","prompt":"x"})").param == "prompt");
  CHECK(refusal(R"({"type":"ping","data":[1,tru]})").code == "invalid_json");
  CHECK(refusal(R"({"type":"ping","data":{"a":1,"a":2}})").code == "invalid_request");
  const std::string deep = std::string(65, '[') + std::string(65, ']');
  CHECK(contains(refusal(R"({"type":"ping","data":)" + deep + "}").message, "data is nested too deeply"));
}

TEST_CASE("ws frames: accepted") {
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, ws_accepted("r\"1"));
  CHECK(string_of(o["type"]) == "accepted");
  CHECK(string_of(o["id"]) == "r\"1");
  CHECK(o.size() == 2);
}

TEST_CASE("ws frames: delta carries text, tokens and server time, logprobs only when present") {
  delta_event d;
  d.text = "Hel\"lo\n";
  d.token_ids = {2330, 7};
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, ws_delta("r1", d, 1763769600123.456));
  CHECK(string_of(o["type"]) == "delta");
  CHECK(string_of(o["id"]) == "r1");
  CHECK(string_of(o["text"]) == "Hel\"lo\n");
  simdjson::dom::array tokens = o["tokens"];
  REQUIRE(tokens.size() == 2);
  CHECK(int64_t(tokens.at(0)) == 2330);
  CHECK(int64_t(tokens.at(1)) == 7);
  CHECK(double(o["server_ms"]) == 1763769600123.456);
  CHECK(int64_t(o["index"]) == 0);
  CHECK(o["logprobs"].error() == simdjson::NO_SUCH_FIELD);
  d.index = 3;
  CHECK(int64_t(parse_back(parser, ws_delta("r1", d, 1.0))["index"]) == 3);
}

TEST_CASE("ws frames: delta logprobs with half a UTF-8 character stay valid JSON") {
  delta_event d;
  d.text = "\xE2\x82\xAC";
  d.token_ids = {5};
  token_logprobs t;
  t.sampled = logprob_entry{5, "\xE2\x82", -0.25f};
  t.top.push_back(t.sampled);
  t.top.push_back(logprob_entry{9, "x", -1.5f});
  d.logprobs.push_back(std::move(t));
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, ws_delta("r1", d, 1.0));
  simdjson::dom::array logprobs = o["logprobs"];
  REQUIRE(logprobs.size() == 1);
  simdjson::dom::object entry = logprobs.at(0);
  CHECK(int64_t(entry["token"]) == 5);
  CHECK(string_of(entry["text"]) == "\xEF\xBF\xBD");
  CHECK(double(entry["logprob"]) == -0.25);
  simdjson::dom::array top = entry["top"];
  REQUIRE(top.size() == 2);
  CHECK(int64_t(top.at(1)["token"]) == 9);
  CHECK(string_of(top.at(1)["text"]) == "x");
  CHECK(double(top.at(1)["logprob"]) == -1.5);
}

TEST_CASE("ws frames: done carries the reason, the stop, usage, timings and detail") {
  done_event d;
  d.reason = request_finish_reason::stop;
  d.stop_string = "\n\n";
  d.usage = {12, 40, 3};
  d.timings = {1.25, 35.0, 5.5, 240.0};
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, ws_done("r1", d, "server shutting down"));
  CHECK(string_of(o["type"]) == "done");
  CHECK(string_of(o["finish_reason"]) == "stop");
  CHECK(string_of(o["stop"]) == "\n\n");
  CHECK(o["stop_token"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(int64_t(o["usage"]["prompt_tokens"]) == 12);
  CHECK(int64_t(o["usage"]["completion_tokens"]) == 40);
  CHECK(int64_t(o["usage"]["total_tokens"]) == 52);
  CHECK(int64_t(o["usage"]["cached_prompt_tokens"]) == 3);
  CHECK(double(o["timings"]["queue_ms"]) == 1.25);
  CHECK(double(o["timings"]["ttft_ms"]) == 35.0);
  CHECK(double(o["timings"]["tpot_ms"]) == 5.5);
  CHECK(double(o["timings"]["total_ms"]) == 240.0);
  CHECK(string_of(o["detail"]) == "server shutting down");

  done_event by_token;
  by_token.reason = request_finish_reason::stop;
  by_token.stop_token = 2;
  simdjson::dom::object t = parse_back(parser, ws_done("r1", by_token));
  CHECK(int64_t(t["stop_token"]) == 2);
  CHECK(t["stop"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(t["detail"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(o["timings"]["draft_tokens"].error() == simdjson::NO_SUCH_FIELD);  // no proposals: no fields

  done_event speculative = d;
  speculative.timings.num_draft_tokens = 40;
  speculative.timings.num_accepted_tokens = 30;
  simdjson::dom::object sp = parse_back(parser, ws_done("r1", speculative));
  CHECK(int64_t(sp["timings"]["draft_tokens"]) == 40);
  CHECK(int64_t(sp["timings"]["accepted_tokens"]) == 30);
  CHECK(double(sp["timings"]["acceptance_rate"]) == 0.75);
}

TEST_CASE("ws frames: n > 1: choice_done per choice, and done repeats every choice's end") {
  const choice_done_event c1{1, request_finish_reason::stop, std::string("END"), {}, 7, -3.5};
  const choice_done_event c0{0, request_finish_reason::length, {}, {}, 9, -6.25};
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, ws_choice_done("r1", c1));
  CHECK(string_of(o["type"]) == "choice_done");
  CHECK(string_of(o["id"]) == "r1");
  CHECK(int64_t(o["index"]) == 1);
  CHECK(string_of(o["finish_reason"]) == "stop");
  CHECK(string_of(o["stop"]) == "END");
  CHECK(int64_t(o["completion_tokens"]) == 7);
  CHECK(double(o["cumulative_logprob"]) == -3.5);
  done_event d;
  d.reason = request_finish_reason::length;
  d.usage = {4, 16, 0};
  d.choices = {c0, c1};
  simdjson::dom::object done = parse_back(parser, ws_done("r1", d));
  simdjson::dom::array choices = done["choices"];
  REQUIRE(choices.size() == 2);
  CHECK(int64_t(choices.at(0)["index"]) == 0);
  CHECK(string_of(choices.at(0)["finish_reason"]) == "length");
  CHECK(int64_t(choices.at(1)["completion_tokens"]) == 7);
  CHECK(parse_back(parser, ws_done("r1", done_event{}))["choices"].error() == simdjson::NO_SUCH_FIELD);
}

TEST_CASE("ws frames: every finish reason is written as its name") {
  const std::pair<request_finish_reason, const char*> reasons[] = {
      {request_finish_reason::stop, "stop"},           {request_finish_reason::length, "length"},
      {request_finish_reason::cancelled, "cancelled"}, {request_finish_reason::timeout, "timeout"},
      {request_finish_reason::error, "error"}};
  simdjson::dom::parser parser;
  for (const auto& [reason, name] : reasons) {
    done_event d;
    d.reason = reason;
    CHECK(string_of(parse_back(parser, ws_done("r", d))["finish_reason"]) == name);
  }
}

TEST_CASE("ws frames: error with an id, and with null when the id could not be read") {
  simdjson::dom::parser parser;
  simdjson::dom::object o = parse_back(parser, ws_error("r1", invalid_request("temperature must be a number", "temperature")));
  CHECK(string_of(o["type"]) == "error");
  CHECK(string_of(o["id"]) == "r1");
  CHECK(string_of(o["code"]) == "invalid_request");
  CHECK(string_of(o["message"]) == "temperature must be a number");
  CHECK(string_of(o["param"]) == "temperature");
  simdjson::dom::object anonymous = parse_back(parser, ws_error("", invalid_json("malformed JSON")));
  CHECK(anonymous["id"].is_null());
  CHECK(anonymous["param"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(o["retry_after_ms"].error() == simdjson::NO_SUCH_FIELD);  // a bad request: retrying will not help
  simdjson::dom::object full = parse_back(parser, ws_error("r2", api_error{429, "queue_full", "the queue is full", ""}));
  CHECK(int64_t(full["retry_after_ms"]) == retry_after_ms);
  simdjson::dom::object draining = parse_back(parser, ws_error("r3", api_error{503, "unavailable", "draining", ""}));
  CHECK(int64_t(draining["retry_after_ms"]) == 1000);
}

TEST_CASE("ws frames: a ping's data comes back in the pong unchanged") {
  const ws_parse_result r = parse_ws_message(R"({"type":"ping","data":{"seq":7,"sent":[1.5,"x"]}})", test_limits);
  REQUIRE(r.message);
  simdjson::dom::parser parser;
  simdjson::dom::object pong = parse_back(parser, ws_pong(std::get<ws_ping>(*r.message).data_json));
  CHECK(string_of(pong["type"]) == "pong");
  CHECK(int64_t(pong["data"]["seq"]) == 7);
  CHECK(double(pong["data"]["sent"].at(0)) == 1.5);
  CHECK(string_of(pong["data"]["sent"].at(1)) == "x");
  CHECK(ws_pong("") == R"({"type":"pong"})");
}

TEST_CASE("ws round trip: a frame written from a parsed request parses back to the same request") {
  const std::string frame = generate_with(
      R"("temperature":0.25,"top_k":3,"stop":["\u0001","é"],"logit_bias":{"9":-1.5},"seed":18446744073709551615)");
  const request r = parsed_request(frame);
  // Rewrite the same fields with json_writer and parse again.
  json_writer w;
  w.begin_object().key("type").value("generate").key("id").value(r.id).key("prompt").value(r.prompt);
  w.key("temperature").value(r.params.temperature).key("top_k").value(r.params.top_k);
  w.key("stop").begin_array();
  for (const std::string& s : r.stop) w.value(s);
  w.end_array();
  w.key("logit_bias").begin_object().key(std::to_string(r.params.logit_bias[0].first)).value(r.params.logit_bias[0].second).end_object();
  w.key("seed").value(r.params.seed).end_object();
  const request again = parsed_request(w.str());
  CHECK(again.prompt == r.prompt);
  CHECK(again.params.temperature == r.params.temperature);
  CHECK(again.params.top_k == r.params.top_k);
  CHECK(again.stop == r.stop);
  CHECK(again.params.logit_bias == r.params.logit_bias);
  CHECK(again.params.seed == r.params.seed);
}
