// tokenize_protocol: POST /tokenize and POST /detokenize (docs/protocol.md) in the forms vLLM's
// and llama.cpp's servers take. Bodies are parsed and checked on the I/O thread (linear in the
// body, like the completion parsers); the answers (tokenize_answer.cpp) need the tokenizer,
// whose work grows with the text, and are written off it (engine_bridge::run_with_model).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/model/chat_template.hpp"
#include "troupe/model/tokenizer.hpp"
#include "troupe/net/api_error.hpp"
#include "troupe/net/parse_limits.hpp"

namespace troupe::net {

// What to tokenize and how. The defaults follow the input's form: a vLLM prompt is tokenized
// as /v1/completions tokenizes its prompt (BOS as the model says, special-token texts read
// as plain text), a chat as /v1/chat/completions renders and tokenizes its messages, and a
// llama.cpp content as llama-server does (no BOS, special-token texts parsed).
struct tokenize_request {
  std::string text;                    // prompt or content, or
  std::vector<chat_message> messages;  // a chat, rendered by the model's template first
  bool add_special = true;             // BOS (and EOS) as the model's metadata asks
  bool parse_special = false;          // control token texts in text become those tokens
  bool add_generation_prompt = true;   // messages: end with the opening of the assistant's turn
  bool with_pieces = false;            // llama.cpp: tokens as {"id", "piece"} objects
  bool return_token_strs = false;      // vLLM: token_strs, each token's text in the vocabulary

  bool is_chat() const { return !messages.empty(); }
};

struct detokenize_request {
  std::vector<int32_t> tokens;  // each in [0, vocab_size); may be empty
};

struct tokenize_parse_result {
  std::optional<tokenize_request> value;
  std::optional<api_error> error;
};

struct detokenize_parse_result {
  std::optional<detokenize_request> value;
  std::optional<api_error> error;
};

// Never throw. /tokenize takes exactly one of prompt (vLLM), content (llama.cpp) or messages,
// plus model (ignored), add_special_tokens or its llama.cpp name add_special, parse_special
// (not with messages), add_generation_prompt (messages only), with_pieces, return_token_strs.
// /detokenize takes tokens (each checked against limits.vocab_size) and model. Unknown fields
// are refused, naming them.
tokenize_parse_result parse_tokenize_request(std::string_view body);
detokenize_parse_result parse_detokenize_request(std::string_view body, const parse_limits& limits);

// An answer written from the tokenizer: the JSON body, or the refusal (a conversation the
// chat template cannot express).
struct tokenizer_answer {
  std::string body;
  std::optional<api_error> error;
};

// {"tokens":[ids],"count":N,"max_model_len":M}; with_pieces, tokens are {"id":id,"piece":text}
// with the piece a string when its bytes are valid UTF-8, else the list of its bytes (as
// llama-server writes them); return_token_strs adds "token_strs". Never throws.
tokenizer_answer answer_tokenize(const tokenize_request& r, const tokenizer& tok, const chat_template& tmpl,
                                 int32_t max_model_len);
// {"prompt":text,"content":text}: the tokens' text, special tokens written out, any invalid
// UTF-8 replaced by U+FFFD. Never throws.
tokenizer_answer answer_detokenize(const detokenize_request& r, const tokenizer& tok);

}  // namespace troupe::net
