// request: validation names the field at fault; prompt_tokens renders chats with the template,
// keeps raw prompts literal and refuses prompts that leave no room for output.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "troupe/engine/request_events.hpp"
#include "troupe/engine/request_state.hpp"
#include "troupe/model/error.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

constexpr int32_t vocab_size = 320;
constexpr int32_t max_model_len = 256;

request valid_request() {
  request r;
  r.id = "req-1";
  r.prompt = "Once upon a time";
  return r;
}

// The message validate() throws; fails the test when it does not throw invalid_argument.
std::string rejection(const request& r) {
  try {
    r.validate(vocab_size, max_model_len);
  } catch (const error& e) {
    CHECK(e.code() == error_code::invalid_argument);
    return e.what();
  }
  FAIL("validate accepted the request");
  return {};
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

TEST_CASE("request: a prompt request with defaults is valid, and so is a chat request") {
  CHECK_NOTHROW(valid_request().validate(vocab_size, max_model_len));
  request chat = valid_request();
  chat.prompt.clear();
  chat.messages = {{"system", "Be brief."}, {"user", "Hi"}};
  CHECK(chat.is_chat());
  CHECK_NOTHROW(chat.validate(vocab_size, max_model_len));
}

TEST_CASE("request: validation messages name the field at fault") {
  request r = valid_request();
  r.id.clear();
  CHECK(starts_with(rejection(r), "id "));

  r = valid_request();
  r.prompt.clear();
  CHECK(starts_with(rejection(r), "prompt must not be empty"));

  r = valid_request();
  r.messages = {{"user", "Hi"}};
  CHECK(starts_with(rejection(r), "prompt and messages"));

  r = valid_request();
  r.prompt.clear();
  r.messages = {{"user", "Hi"}, {"function", "{}"}};
  CHECK(rejection(r) == "messages[1].role must be system, user, assistant or tool, got \"function\"");

  r = valid_request();
  r.prompt.clear();
  r.messages = {{"user", "Hi", {{"c", "f", "{}"}}, ""}};
  CHECK(rejection(r) == "messages[0].tool_calls is only for assistant messages");

  r = valid_request();
  r.prompt.clear();
  r.messages = {{"user", "Hi"}};
  r.tools = {{"f", "", "{}"}, {"f", "", "{}"}};
  CHECK(rejection(r) == "tools: the function name \"f\" is given twice");
  r.tools.pop_back();
  r.tool_use = {tool_choice_mode::named, "g"};
  CHECK(rejection(r) == "tool_choice names the function \"g\", which tools does not have");
  r.tool_use = {tool_choice_mode::required, ""};
  r.guided = grammar_spec{grammar_kind::json_object, {}, {}};
  CHECK(starts_with(rejection(r), "tool_choice required or a named function cannot be combined"));

  r = valid_request();
  r.tools = {{"f", "", "{}"}};
  CHECK(rejection(r) == "tools need messages (a chat), not a prompt");

  r = valid_request();
  r.n = 0;
  CHECK(rejection(r) == "n must be in [1, 32], got 0");
  r.n = 4;
  r.best_of = 3;
  CHECK(starts_with(rejection(r), "best_of must be in [n, 32]"));
  r.best_of = 0;
  r.beam_width = 2;
  CHECK(rejection(r) == "n must be at most beam_width (2) with beam search, got 4");
  r.n = 2;
  r.beam_width = 11;
  CHECK(starts_with(rejection(r), "beam_width must be in [0, 10]"));

  r = valid_request();
  r.stop.assign(17, "x");
  CHECK(rejection(r) == "stop must have at most 16 strings, got 17");

  r = valid_request();
  r.stop = {"ok", ""};
  CHECK(rejection(r) == "stop[1] must not be empty");

  r = valid_request();
  r.stop = {std::string(257, 'x')};
  CHECK(starts_with(rejection(r), "stop[0] must be at most 256 bytes"));

  r = valid_request();
  r.stop = {"\xff"};
  CHECK(rejection(r) == "stop[0] must be valid UTF-8");

  r = valid_request();
  r.priority = 5000;
  CHECK(rejection(r) == "priority must be in [-1000, 1000] (lower runs first), got 5000");

  r = valid_request();
  r.timeout_ms = -1;
  CHECK(starts_with(rejection(r), "timeout_ms must be in [0, "));
}

TEST_CASE("request: sampling parameters are validated with their own field names") {
  request r = valid_request();
  r.params.temperature = -1.0f;
  CHECK(starts_with(rejection(r), "temperature"));

  r = valid_request();
  r.params.max_tokens = max_model_len + 1;
  CHECK(rejection(r) == "max_tokens must be in [1, 256] (max_model_len), got 257");

  r = valid_request();
  r.params.num_logprobs = 3;
  CHECK(starts_with(rejection(r), "num_logprobs (top_logprobs) is 3 but logprobs is off"));
  r.logprobs = true;
  CHECK_NOTHROW(r.validate(vocab_size, max_model_len));
}

TEST_CASE("request: echo is refused for chat requests") {
  request r = valid_request();
  r.prompt.clear();
  r.messages = {{"user", "Hi"}};
  r.echo = true;
  CHECK(starts_with(rejection(r), "echo "));
}

TEST_CASE("prompt_tokens: a chat is rendered with the generation prompt and its markers parsed as tokens") {
  const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  const tokenizer tok = tokenizer::from_gguf(file);
  const chat_template tmpl = chat_template::from_gguf(file);
  request r = valid_request();
  r.prompt.clear();
  r.messages = {{"user", "Hi"}};
  const std::vector<int32_t> ids = prompt_tokens(r, tok, tmpl, max_model_len);
  CHECK(ids == tok.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", true, true));
  CHECK(ids.front() == 1);  // <|im_start|> as one control token
}

TEST_CASE("request: a token id prompt is one input, each id in the vocabulary, without echo") {
  request r = valid_request();
  r.prompt.clear();
  r.prompt_token_ids = {5, 0, vocab_size - 1};
  CHECK_NOTHROW(r.validate(vocab_size, max_model_len));
  r.prompt_token_ids[1] = vocab_size;
  CHECK(rejection(r) == "prompt[1] must be a token id in [0, 320), got 320");
  r.prompt_token_ids[1] = -3;
  CHECK(rejection(r) == "prompt[1] must be a token id in [0, 320), got -3");
  r.prompt_token_ids[1] = 7;
  r.prompt = "text too";
  CHECK(starts_with(rejection(r), "prompt and messages"));
  r.prompt.clear();
  r.echo = true;
  CHECK(rejection(r) == "echo needs a text prompt, not token ids");
}

TEST_CASE("prompt_tokens: token ids are fed as given, with no BOS added, and counted against the context") {
  const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  const tokenizer tok = tokenizer::from_gguf(file);
  const chat_template tmpl = chat_template::from_gguf(file);
  request r = valid_request();
  r.prompt.clear();
  r.prompt_token_ids = {9, 8, 7};
  CHECK(prompt_tokens(r, tok, tmpl, max_model_len) == r.prompt_token_ids);
  try {
    prompt_tokens(r, tok, tmpl, 3);
    FAIL("three ids with max_model_len 3 were accepted");
  } catch (const error& e) {
    CHECK(e.code() == error_code::context_overflow);
  }
}

TEST_CASE("prompt_tokens: a raw prompt's marker text stays text") {
  const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  const tokenizer tok = tokenizer::from_gguf(file);
  request r = valid_request();
  r.prompt = "<|im_start|>";
  const std::vector<int32_t> ids = prompt_tokens(r, tok, chat_template::from_gguf(file), max_model_len);
  CHECK(ids.size() > 1);
  CHECK(tok.decode(ids, false) == "<|im_start|>");
}

TEST_CASE("prompt_tokens: a prompt that leaves no room for one output token is a context overflow") {
  const gguf::file file = gguf::file::parse(test::make_tiny_llama());
  const tokenizer tok = tokenizer::from_gguf(file);
  const chat_template tmpl = chat_template::from_gguf(file);
  request r = valid_request();
  const int32_t num_tokens = static_cast<int32_t>(tok.encode(r.prompt, true, false).size());
  CHECK(prompt_tokens(r, tok, tmpl, num_tokens + 1).size() == static_cast<size_t>(num_tokens));
  try {
    prompt_tokens(r, tok, tmpl, num_tokens);
    FAIL("a prompt of max_model_len tokens was accepted");
  } catch (const error& e) {
    CHECK(e.code() == error_code::context_overflow);
    CHECK(starts_with(e.what(), "prompt is " + std::to_string(num_tokens) + " tokens"));
  }
}

TEST_CASE("request_events: troupe errors map to the wire's error codes") {
  CHECK(to_error_event(error(error_code::invalid_argument, "bad")).code == request_error_code::invalid_request);
  CHECK(to_error_event(error(error_code::context_overflow, "long")).code == request_error_code::context_overflow);
  CHECK(to_error_event(error(error_code::internal, "bug")).code == request_error_code::internal);
  CHECK(to_error_event(error(error_code::invalid_argument, "bad")).message == "bad");
  CHECK(std::string(to_string(request_finish_reason::length)) == "length");
  CHECK(std::string(to_string(request_error_code::queue_full)) == "queue_full");
}
