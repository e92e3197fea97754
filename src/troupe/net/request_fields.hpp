// request_fields: the request fields both wires share (sampling, stop strings and tokens,
// priority, deadline, chat messages), read from JSON into troupe::request, and the final
// validation whose message names the field as the client spelled it.
#pragma once
#include <string_view>
#include <vector>

#include "troupe/engine/request.hpp"
#include "troupe/net/json_read.hpp"
#include "troupe/net/parse_limits.hpp"

namespace troupe::net::request_fields {

// Reads key into req when it is one of the shared fields (null leaves the default); false
// when key is not one of them. Throws json_read::parse_failure on a bad value. limits bound
// what can be counted while reading (logit_bias has at most vocab_size entries).
bool read_shared_field(std::string_view key, json_read::value& v, request& req, const parse_limits& limits);

// messages: [{"role": system|user|assistant|developer, "content": string or [{"type":"text",
// "text": string}], "name": ignored}]. developer becomes system.
std::vector<chat_message> read_messages(json_read::value& v);

// A prompt as token ids: a non-empty array of integers, appended to ids (their range is
// checked against the vocabulary by validate).
void read_token_ids(json_read::value& v, std::string_view field, std::vector<int32_t>& ids);

// Runs request::validate, once use_beam_search has its width (the larger of n and best_of).
// Its troupe::error becomes a parse_failure whose message and param use the wire's name for
// the number of alternatives (num_logprobs_name).
void validate(request& req, const parse_limits& limits, std::string_view num_logprobs_name);

}  // namespace troupe::net::request_fields
