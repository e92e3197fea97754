// tokenize_answer: the /tokenize and /detokenize answers written from the tokenizer (kept
// apart from the parsers, which need no model).
#include <exception>

#include "troupe/model/error.hpp"
#include "troupe/model/unicode.hpp"
#include "troupe/net/json_writer.hpp"
#include "troupe/net/tokenize_protocol.hpp"

namespace troupe::net {
namespace {

// A piece as llama-server writes it: a string when its bytes are valid UTF-8, else its bytes.
void write_piece(json_writer& w, const std::string& piece) {
  if (unicode::sanitize_utf8(piece) == piece) {
    w.value(piece);
    return;
  }
  w.begin_array();
  for (const char byte : piece) w.value(static_cast<int32_t>(static_cast<unsigned char>(byte)));
  w.end_array();
}

std::vector<int32_t> tokenize(const tokenize_request& r, const tokenizer& tok, const chat_template& tmpl) {
  if (r.is_chat()) return tok.encode(tmpl.apply(r.messages, r.add_generation_prompt), r.add_special, true);
  return tok.encode(r.text, r.add_special, r.parse_special);
}

// Writes an answer; a troupe::error(invalid_argument) is the client's (a conversation the
// template cannot express), named by param.
template <typename write_fn>
tokenizer_answer answer_with(std::string_view param, write_fn&& write) {
  tokenizer_answer answer;
  try {
    json_writer w;
    write(w);
    answer.body = w.take();
  } catch (const error& e) {
    const bool is_input = e.code() == error_code::invalid_argument;
    answer.error = api_error{is_input ? 400 : 500, is_input ? "invalid_request" : "internal", e.what(),
                             is_input ? std::string(param) : std::string()};
  } catch (const std::exception& e) {
    answer.error = api_error{500, "internal", e.what(), ""};
  }
  return answer;
}

}  // namespace

tokenizer_answer answer_tokenize(const tokenize_request& r, const tokenizer& tok, const chat_template& tmpl,
                                 int32_t max_model_len) {
  return answer_with(r.is_chat() ? "messages" : "prompt", [&](json_writer& w) {
    const std::vector<int32_t> ids = tokenize(r, tok, tmpl);
    w.begin_object().key("tokens").begin_array();
    for (const int32_t id : ids) {
      if (!r.with_pieces) {
        w.value(id);
        continue;
      }
      w.begin_object().key("id").value(id).key("piece");
      write_piece(w, tok.token_to_piece(id, true));
      w.end_object();
    }
    w.end_array();
    w.key("count").value(static_cast<int64_t>(ids.size()));
    w.key("max_model_len").value(max_model_len);
    if (r.return_token_strs) {
      w.key("token_strs").begin_array();
      for (const int32_t id : ids) w.value(tok.token_text(id));
      w.end_array();
    }
    w.end_object();
  });
}

tokenizer_answer answer_detokenize(const detokenize_request& r, const tokenizer& tok) {
  return answer_with("tokens", [&](json_writer& w) {
    const std::string text = tok.decode(r.tokens, true);
    w.begin_object().key("prompt").value(text).key("content").value(text).end_object();
  });
}

}  // namespace troupe::net
