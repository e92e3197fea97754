// tokenize_protocol: /tokenize bodies in vLLM's and llama.cpp's forms map onto one request with
// the defaults of their form, /detokenize bodies are checked against the vocabulary, mistakes
// are refused naming the field, and the answers (on the tiny model's tokenizer) parse back to
// what those servers' clients read.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "codec_test_util.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/net/tokenize_protocol.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;
using namespace troupe::net;
using troupe::test::parse_back;
using troupe::test::string_of;
using troupe::test::test_limits;

namespace {

const gguf::file& tiny_file() {
  static const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  return file;
}

const tokenizer& tiny_tokenizer() {
  static const tokenizer tok = tokenizer::from_gguf(tiny_file());
  return tok;
}

const chat_template& tiny_template() {
  static const chat_template tmpl = chat_template::from_gguf(tiny_file());
  return tmpl;
}

tokenize_request parsed(const std::string& body) {
  const tokenize_parse_result r = parse_tokenize_request(body);
  if (r.error) FAIL_CHECK("refused: " << r.error->message << " in " << body);
  REQUIRE(r.value);
  return *r.value;
}

api_error refusal(const std::string& body) {
  const tokenize_parse_result r = parse_tokenize_request(body);
  if (!r.error) FAIL_CHECK("accepted: " << body);
  REQUIRE(r.error);
  CHECK_FALSE(r.value);
  return *r.error;
}

api_error detokenize_refusal(const std::string& body) {
  const detokenize_parse_result r = parse_detokenize_request(body, test_limits);
  if (!r.error) FAIL_CHECK("accepted: " << body);
  REQUIRE(r.error);
  return *r.error;
}

std::vector<int64_t> ids_of(simdjson::dom::element tokens) {
  std::vector<int64_t> ids;
  for (simdjson::dom::element t : tokens.get_array()) ids.push_back(int64_t(t));
  return ids;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

constexpr int32_t im_start = 1;  // the tiny model's control tokens (BOS) and
constexpr int32_t im_end = 2;    // (EOS), as tiny_model.hpp lays them out

}  // namespace

TEST_CASE("tokenize parse: vLLM's prompt takes the completion endpoint's defaults") {
  const tokenize_request r = parsed(R"({"model":"m","prompt":"Hello"})");
  CHECK(r.text == "Hello");
  CHECK_FALSE(r.is_chat());
  CHECK(r.add_special);
  CHECK_FALSE(r.parse_special);
  CHECK_FALSE(r.with_pieces);
  CHECK_FALSE(parsed(R"({"prompt":"x","add_special_tokens":false})").add_special);
}

TEST_CASE("tokenize parse: llama.cpp's content takes llama-server's defaults") {
  const tokenize_request r = parsed(R"({"content":"Hello","with_pieces":true})");
  CHECK(r.text == "Hello");
  CHECK_FALSE(r.add_special);
  CHECK(r.parse_special);
  CHECK(r.with_pieces);
  const tokenize_request spelled = parsed(R"({"content":"x","add_special":true,"parse_special":false})");
  CHECK(spelled.add_special);
  CHECK_FALSE(spelled.parse_special);
}

TEST_CASE("tokenize parse: messages take the chat endpoint's defaults and add_generation_prompt") {
  const tokenize_request r = parsed(R"({"messages":[{"role":"developer","content":"Be brief"},{"role":"user","content":"Hi"}]})");
  REQUIRE(r.messages.size() == 2);
  CHECK(r.messages[0].role == "system");
  CHECK(r.add_generation_prompt);
  CHECK(r.add_special);
  CHECK(parsed(R"({"messages":[{"role":"user","content":"Hi"}],"add_generation_prompt":false})").add_generation_prompt ==
        false);
}

TEST_CASE("tokenize parse: null leaves an option at its form's default") {
  const tokenize_request r = parsed(R"({"model":null,"content":"x","add_special":null,"with_pieces":null})");
  CHECK_FALSE(r.add_special);
  CHECK_FALSE(r.with_pieces);
}

TEST_CASE("tokenize parse: mistakes are refused naming the field") {
  CHECK(refusal(R"({"prompt":"a","messages":[{"role":"user","content":"b"}]})").param == "messages");
  CHECK(contains(refusal(R"({"prompt":"a","content":"b"})").message, "give one of them, not both"));
  CHECK(refusal(R"({"model":"m"})").param == "prompt");
  CHECK(refusal(R"({"prompt":"a","add_special_tokens":true,"add_special":true})").param == "add_special");
  CHECK(refusal(R"({"prompt":"a","add_generation_prompt":true})").param == "add_generation_prompt");
  CHECK(refusal(R"({"messages":[{"role":"user","content":"b"}],"parse_special":true})").param == "parse_special");
  CHECK(refusal(R"({"messages":[{"role":"tool","content":"b"}]})").param == "messages");
  CHECK(refusal(R"({"messages":[]})").param == "messages");
  const api_error unknown = refusal(R"({"prompt":"a","tools":[]})");
  CHECK(unknown.param == "tools");
  CHECK(contains(unknown.message, "unknown field \"tools\""));
  CHECK(refusal(R"({"prompt":5})").param == "prompt");
  CHECK(refusal(R"({"prompt":["a"]})").param == "prompt");
  CHECK(refusal(R"({"content":"a","with_pieces":"yes"})").param == "with_pieces");
  CHECK(refusal(R"({"content":"a","content":"b"})").message.find("duplicate field") != std::string::npos);
  CHECK(refusal(R"({"content":"a")").code == "invalid_json");
  CHECK(refusal(R"(["content"])").code == "invalid_request");
}

TEST_CASE("detokenize parse: tokens must be ids in the vocabulary") {
  const detokenize_parse_result ok = parse_detokenize_request(R"({"model":"m","tokens":[0,5,999]})", test_limits);
  REQUIRE(ok.value);
  CHECK(ok.value->tokens == std::vector<int32_t>{0, 5, 999});
  const detokenize_parse_result empty = parse_detokenize_request(R"({"tokens":[]})", test_limits);
  REQUIRE(empty.value);
  CHECK(empty.value->tokens.empty());
  const api_error outside = detokenize_refusal(R"({"tokens":[1,1000]})");
  CHECK(outside.param == "tokens");
  CHECK(contains(outside.message, "tokens[1] must be a token id in [0, 1000), got 1000"));
  CHECK(detokenize_refusal(R"({"tokens":[-1]})").param == "tokens");
  CHECK(detokenize_refusal(R"({"tokens":["7"]})").param == "tokens");
  CHECK(detokenize_refusal(R"({"tokens":[1.5]})").param == "tokens");
  CHECK(detokenize_refusal(R"({"tokens":7})").param == "tokens");
  CHECK(detokenize_refusal(R"({})").param == "tokens");
  CHECK(detokenize_refusal(R"({"tokens":[1],"prompt":"x"})").param == "prompt");
}

TEST_CASE("tokenize answer: ids, count and max_model_len, equal to what the tokenizer gives") {
  const tokenize_request r = parsed(R"({"prompt":"hello world"})");
  const tokenizer_answer a = answer_tokenize(r, tiny_tokenizer(), tiny_template(), 256);
  REQUIRE_FALSE(a.error);
  simdjson::dom::parser parser;
  const auto root = parse_back(parser, a.body);
  const std::vector<int32_t> expected = tiny_tokenizer().encode("hello world", true, false);
  const std::vector<int64_t> ids = ids_of(root["tokens"]);
  CHECK(ids == std::vector<int64_t>(expected.begin(), expected.end()));
  CHECK(int64_t(root["count"]) == static_cast<int64_t>(expected.size()));
  CHECK(int64_t(root["max_model_len"]) == 256);
}

TEST_CASE("tokenize answer: parse_special decides whether a control token's text is that token") {
  const tokenizer_answer special = answer_tokenize(parsed(R"({"content":"<|im_end|>"})"), tiny_tokenizer(),
                                                   tiny_template(), 256);
  simdjson::dom::parser parser;
  CHECK(ids_of(parse_back(parser, special.body)["tokens"]) == std::vector<int64_t>{im_end});
  const tokenizer_answer plain = answer_tokenize(parsed(R"({"prompt":"<|im_end|>","add_special_tokens":false})"),
                                                 tiny_tokenizer(), tiny_template(), 256);
  simdjson::dom::parser parser2;
  CHECK(ids_of(parse_back(parser2, plain.body)["tokens"]).size() > 1);
}

TEST_CASE("tokenize answer: messages are rendered by the chat template, as chat completions render them") {
  const tokenize_request r = parsed(R"({"messages":[{"role":"user","content":"Hi"}]})");
  const tokenizer_answer a = answer_tokenize(r, tiny_tokenizer(), tiny_template(), 256);
  REQUIRE_FALSE(a.error);
  const std::vector<int32_t> expected = tiny_tokenizer().encode(tiny_template().apply(r.messages, true), true, true);
  simdjson::dom::parser parser;
  const std::vector<int64_t> ids = ids_of(parse_back(parser, a.body)["tokens"]);
  CHECK(ids == std::vector<int64_t>(expected.begin(), expected.end()));
  CHECK(ids.front() == im_start);
  const tokenizer_answer without = answer_tokenize(
      parsed(R"({"messages":[{"role":"user","content":"Hi"}],"add_generation_prompt":false})"), tiny_tokenizer(),
      tiny_template(), 256);
  simdjson::dom::parser parser2;
  CHECK(ids_of(parse_back(parser2, without.body)["tokens"]).size() < ids.size());
}

TEST_CASE("tokenize answer: with_pieces gives each id with its text, bytes when the text is not UTF-8") {
  const tokenizer_answer a =
      answer_tokenize(parsed(R"({"content":"hi \u00e9","with_pieces":true})"), tiny_tokenizer(), tiny_template(), 256);
  REQUIRE_FALSE(a.error);
  REQUIRE(test::is_valid_json(a.body));
  simdjson::dom::parser parser;
  const auto root = parse_back(parser, a.body);
  std::vector<uint8_t> bytes;
  for (simdjson::dom::element t : root["tokens"].get_array()) {
    const int64_t id = t["id"];
    const std::string piece = tiny_tokenizer().token_to_piece(static_cast<int32_t>(id), true);
    const simdjson::dom::element p = t["piece"];
    if (p.is_string()) {
      CHECK(string_of(p) == piece);
    } else {
      std::string from_bytes;
      for (simdjson::dom::element b : p.get_array()) from_bytes.push_back(static_cast<char>(int64_t(b)));
      CHECK(from_bytes == piece);
      bytes.push_back(1);
    }
  }
  // The tiny vocabulary has no merge for "é": its two bytes are two tokens, neither UTF-8.
  CHECK(bytes.size() == 2);
}

TEST_CASE("tokenize answer: return_token_strs gives the vocabulary's text of each token") {
  const tokenizer_answer a =
      answer_tokenize(parsed(R"({"prompt":"a b","return_token_strs":true,"add_special_tokens":false})"),
                      tiny_tokenizer(), tiny_template(), 256);
  simdjson::dom::parser parser;
  const auto root = parse_back(parser, a.body);
  const std::vector<int64_t> ids = ids_of(root["tokens"]);
  std::vector<std::string> strs;
  for (simdjson::dom::element s : root["token_strs"].get_array()) strs.push_back(string_of(s));
  REQUIRE(strs.size() == ids.size());
  for (size_t i = 0; i < ids.size(); ++i) CHECK(strs[i] == tiny_tokenizer().token_text(static_cast<int32_t>(ids[i])));
}

TEST_CASE("detokenize answer: the text under both servers' names, special tokens written out") {
  detokenize_request r;
  r.tokens = tiny_tokenizer().encode("hello world", false, false);
  r.tokens.push_back(im_end);
  const tokenizer_answer a = answer_detokenize(r, tiny_tokenizer());
  REQUIRE_FALSE(a.error);
  simdjson::dom::parser parser;
  const auto root = parse_back(parser, a.body);
  CHECK(string_of(root["prompt"]) == "hello world<|im_end|>");
  CHECK(string_of(root["content"]) == "hello world<|im_end|>");
}

TEST_CASE("detokenize answer: half a character becomes U+FFFD, so the answer is valid JSON") {
  detokenize_request r;
  r.tokens = {3 + 0xC3};  // the first byte of "é" alone
  const tokenizer_answer a = answer_detokenize(r, tiny_tokenizer());
  REQUIRE(test::is_valid_json(a.body));
  simdjson::dom::parser parser;
  CHECK(string_of(parse_back(parser, a.body)["content"]) == "\xEF\xBF\xBD");
}
