// parse_limits: what the request parsers check against the loaded model (token ids, lengths).
#pragma once
#include <cstdint>

namespace troupe::net {

struct parse_limits {
  int32_t vocab_size = 0;     // token ids (logit_bias, stop_token_ids) must be below it
  int32_t max_model_len = 0;  // max_tokens may not exceed it
};

}  // namespace troupe::net
