// sampling_params::validate: every field against the range vLLM and the OpenAI API accept,
// with a message that names the field, the allowed range and the value received.
#include "troupe/model/sampling_params.hpp"

#include <cmath>
#include <cstdio>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {
namespace {

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

[[noreturn]] void reject(const std::string& field, const std::string& range, double value) {
  throw error(error_code::invalid_argument,
              field + " must be in " + range + ", got " + format_number(value));
}

// Written as "not inside" so that NaN, which fails every comparison, is rejected too.
// Built by appending: GCC 12 warns falsely (-Wrestrict, PR105651) on "literal" + string.
std::string interval(char open, double lo, double hi) {
  std::string text(1, open);
  text.append(format_number(lo)).append(", ").append(format_number(hi)).append("]");
  return text;
}

void require_closed(const char* field, double value, double lo, double hi) {
  if (!(value >= lo && value <= hi)) reject(field, interval('[', lo, hi), value);
}

void require_left_open(const char* field, double value, double lo, double hi) {
  if (!(value > lo && value <= hi)) reject(field, interval('(', lo, hi), value);
}

void require_token_id(const std::string& field, int32_t token, int32_t vocab_size) {
  if (token < 0 || token >= vocab_size) {
    reject(field, std::string("[0, ").append(std::to_string(vocab_size)).append(")"), token);
  }
}

}  // namespace

void sampling_params::validate(int32_t vocab_size) const {
  require_closed("temperature", temperature, 0.0, 100.0);
  if (top_k < 0) reject("top_k", "[0, inf) (0 = off)", top_k);
  require_left_open("top_p", top_p, 0.0, 1.0);
  require_closed("min_p", min_p, 0.0, 1.0);
  require_left_open("repetition_penalty", repetition_penalty, 0.0, 10.0);
  require_closed("presence_penalty", presence_penalty, -2.0, 2.0);
  require_closed("frequency_penalty", frequency_penalty, -2.0, 2.0);
  if (penalty_last_n < -1) reject("penalty_last_n", "[-1, inf) (-1 = all)", penalty_last_n);
  for (const auto& [token, bias] : logit_bias) {
    const std::string field = std::string("logit_bias[").append(std::to_string(token)).append("]");
    require_token_id(field + " token id", token, vocab_size);
    require_closed(field.c_str(), bias, -100.0, 100.0);
  }
  if (num_logprobs < 0 || num_logprobs > 20) reject("num_logprobs", "[0, 20]", num_logprobs);
  if (max_tokens < 1) reject("max_tokens", "[1, inf)", max_tokens);
  if (min_tokens < 0 || min_tokens > max_tokens) {
    reject("min_tokens", std::string("[0, ").append(std::to_string(max_tokens)).append("] (at most max_tokens)"),
           min_tokens);
  }
  for (int32_t token : stop_token_ids) require_token_id("stop_token_ids", token, vocab_size);
}

}  // namespace troupe
