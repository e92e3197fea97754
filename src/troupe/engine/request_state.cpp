// request_state: the transition table, token handling (decode, stop rules, logprobs) and the
// arithmetic of usage and timings.
#include "troupe/engine/request_state.hpp"

#include <algorithm>
#include <utility>

#include "troupe/engine/tool_calls.hpp"
#include "troupe/model/error.hpp"

namespace troupe {
namespace {

request_status terminal_status(request_finish_reason reason) {
  switch (reason) {
    case request_finish_reason::stop:
    case request_finish_reason::length: return request_status::finished;
    case request_finish_reason::cancelled:
    case request_finish_reason::timeout: return request_status::cancelled;
    case request_finish_reason::error: break;
  }
  return request_status::failed;
}

}  // namespace

const char* to_string(request_status status) {
  switch (status) {
    case request_status::tokenizing: return "tokenizing";
    case request_status::queued: return "queued";
    case request_status::running: return "running";
    case request_status::preempted: return "preempted";
    case request_status::finished: return "finished";
    case request_status::cancelled: return "cancelled";
    case request_status::failed: return "failed";
  }
  return "unknown";
}

bool is_terminal(request_status status) {
  return status == request_status::finished || status == request_status::cancelled ||
         status == request_status::failed;
}

bool is_legal_transition(request_status from, request_status to) {
  using s = request_status;
  if (is_terminal(from)) return false;
  if (to == s::cancelled || to == s::failed) return true;
  switch (from) {
    case s::tokenizing: return to == s::queued;
    case s::queued: return to == s::running;
    case s::running: return to == s::preempted || to == s::finished;
    case s::preempted: return to == s::running;
    default: return false;
  }
}

std::vector<int32_t> prompt_tokens(const request& req, const tokenizer& tok, const chat_template& tmpl,
                                   int32_t max_model_len) {
  const auto has_tool_turns = [&] {
    return std::any_of(req.messages.begin(), req.messages.end(),
                       [](const chat_message& m) { return m.role == "tool" || !m.tool_calls.empty(); });
  };
  std::vector<int32_t> ids;
  if (req.is_chat() && (req.offers_tools() || has_tool_turns())) {
    const std::vector<tool_definition> none;
    ids = tok.encode(tmpl.apply_with_tools(req.messages, req.offers_tools() ? req.tools : none, true), true, true);
  } else {
    ids = req.is_chat()                    ? tok.encode(tmpl.apply(req.messages, true), true, true)
          : !req.prompt_token_ids.empty() ? req.prompt_token_ids
                                           : tok.encode(req.prompt, true, false);
  }
  if (ids.empty()) throw error(error_code::invalid_argument, "prompt gives no tokens");
  if (static_cast<int64_t>(ids.size()) + 1 > max_model_len) {
    throw error(error_code::context_overflow,
                "prompt is " + std::to_string(ids.size()) + " tokens; max_model_len " +
                    std::to_string(max_model_len) + " allows at most " + std::to_string(max_model_len - 1) +
                    " prompt tokens plus one output token");
  }
  return ids;
}

request_state::request_state(const request& req, const tokenizer& tok, int32_t max_model_len, int64_t arrival_ms)
    : tok_(&tok),
      decoder_(tok),
      matcher_(req.stop),
      max_model_len_(max_model_len),
      max_tokens_(req.params.max_tokens),
      min_tokens_(req.params.min_tokens),
      stop_token_ids_(req.params.stop_token_ids),
      // A grammar's end is the output's end, ignore_eos or not (the sampler draws an end
      // token under ignore_eos only when the grammar allows nothing else).
      ignore_eos_(req.params.ignore_eos && !req.guided && !constrains_tool_call(req)),
      wants_logprobs_(req.logprobs),
      echo_text_(req.echo ? req.prompt : std::string()),
      arrival_ms_(arrival_ms),
      deadline_ms_(req.timeout_ms > 0 ? std::optional<int64_t>(arrival_ms + req.timeout_ms) : std::nullopt) {}

void request_state::transition_to(request_status next, int64_t now_ms) {
  if (!is_legal_transition(status_, next)) {
    throw error(error_code::internal, std::string("request: illegal transition ") + to_string(status_) + " -> " +
                                          to_string(next));
  }
  if (next == request_status::queued) queued_ms_ = now_ms;
  if (next == request_status::running && !first_running_ms_) first_running_ms_ = now_ms;
  status_ = next;
}

void request_state::set_num_cached_prompt_tokens(int32_t n) {
  if (!first_running_ms_) num_cached_prompt_tokens_ = n;
}

bool request_state::is_stop_token(int32_t token) const {
  if (!ignore_eos_ && tok_->is_eog(token)) return true;
  return std::find(stop_token_ids_.begin(), stop_token_ids_.end(), token) != stop_token_ids_.end();
}

void request_state::append_logprobs(delta_event& delta, const sampled_token& sampled) const {
  if (!wants_logprobs_) return;
  token_logprobs entry;
  entry.sampled = {sampled.token, tok_->token_to_piece(sampled.token, true), sampled.logprob};
  entry.top.reserve(sampled.top_logprobs.size());
  for (const token_logprob& alt : sampled.top_logprobs) {
    entry.top.push_back({alt.token, tok_->token_to_piece(alt.token, true), alt.logprob});
  }
  delta.logprobs.push_back(std::move(entry));
}

request_state::token_result request_state::on_token(const sampled_token& sampled, int64_t now_ms) {
  token_result result;
  if (is_terminal(status_) || decided_) return result;
  if (status_ != request_status::running) {
    throw error(error_code::internal, std::string("request: token received while ") + to_string(status_) +
                                          "; tokens come only while running");
  }
  ++num_output_tokens_;
  if (!first_token_ms_) first_token_ms_ = now_ms;
  last_token_ms_ = now_ms;
  result.delta.token_ids.push_back(sampled.token);
  append_logprobs(result.delta, sampled);
  result.delta.text = std::move(echo_text_);
  echo_text_.clear();

  if (is_stop_token(sampled.token)) {
    // Its text is not output; what the decoder and the matcher hold is released by finish.
    decided_ = request_finish_reason::stop;
    stop_token_ = sampled.token;
  } else {
    stop_matcher::result matched = matcher_.push(decoder_.push(sampled.token), num_output_tokens_ >= min_tokens_);
    result.delta.text += matched.text;
    if (matched.stop_index) {
      decided_ = request_finish_reason::stop;
      stop_string_ = matcher_.stop_strings()[*matched.stop_index];
    } else if (num_output_tokens_ >= max_tokens_ || num_prompt_tokens_ + num_output_tokens_ >= max_model_len_) {
      decided_ = request_finish_reason::length;
    }
  }
  result.finish = decided_;
  return result;
}

request_state::finish_result request_state::finish(request_finish_reason reason, int64_t now_ms) {
  const bool is_natural_end = reason == request_finish_reason::stop || reason == request_finish_reason::length;
  if (decided_ && is_natural_end) reason = *decided_;
  transition_to(terminal_status(reason), now_ms);

  finish_result result;
  if (!matcher_.is_stopped()) {
    stop_matcher::result matched = matcher_.push(decoder_.flush(), num_output_tokens_ >= min_tokens_);
    result.last_delta.text = std::move(matched.text);
    if (matched.stop_index) {
      // The replacement character of a trailing broken byte sequence completed a stop string.
      stop_string_ = matcher_.stop_strings()[*matched.stop_index];
      if (is_natural_end) reason = request_finish_reason::stop;
    } else {
      result.last_delta.text += matcher_.flush();
    }
  }

  done_event& done = result.done;
  done.reason = reason;
  if (reason == request_finish_reason::stop) {
    done.stop_string = stop_string_;
    done.stop_token = stop_token_;
  }
  done.usage = {num_prompt_tokens_, num_output_tokens_, num_cached_prompt_tokens_};
  done.timings = timings(now_ms);
  return result;
}

request_timings request_state::timings(int64_t finished_ms) const {
  request_timings t;
  if (queued_ms_) t.queue_ms = static_cast<double>(first_running_ms_.value_or(finished_ms) - *queued_ms_);
  if (first_token_ms_) t.time_to_first_token_ms = static_cast<double>(*first_token_ms_ - arrival_ms_);
  if (num_output_tokens_ >= 2) {
    t.per_output_token_ms = static_cast<double>(last_token_ms_ - *first_token_ms_) / (num_output_tokens_ - 1);
  }
  t.total_ms = static_cast<double>(finished_ms - arrival_ms_);
  t.num_draft_tokens = num_draft_tokens_;
  t.num_accepted_tokens = num_accepted_tokens_;
  return t;
}

bool request_state::is_past_deadline(int64_t now_ms) const { return deadline_ms_ && now_ms >= *deadline_ms_; }

}  // namespace troupe
