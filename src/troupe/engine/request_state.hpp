// The request actor's state: its state machine, incremental detokenization, stop strings,
// stop tokens and length, usage and timings. Time comes in as arguments (no clock inside).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "troupe/engine/request.hpp"
#include "troupe/engine/request_events.hpp"
#include "troupe/engine/stop_matcher.hpp"
#include "troupe/model/backend.hpp"
#include "troupe/model/chat_template.hpp"
#include "troupe/model/tokenizer.hpp"

namespace troupe {

// tokenizing ──► queued ──► running ──► finished
//                             ▲  │
//                 preempted ◄─┘──┘  (preempted ──► running on resume)
// Every live state may also end as cancelled (cancel, lost client, deadline) or failed.
enum class request_status { tokenizing, queued, running, preempted, finished, cancelled, failed };

const char* to_string(request_status status);
bool is_terminal(request_status status);
bool is_legal_transition(request_status from, request_status to);

// The prompt's token ids: chat messages rendered by the template (with the generation
// prompt) and tokenized with special-token parsing; a raw prompt tokenized without it. BOS
// is added as the model's metadata says. Throws troupe::error(context_overflow) when the
// prompt leaves no room for one output token within max_model_len, invalid_argument for a
// conversation the template cannot express or a prompt of no tokens.
std::vector<int32_t> prompt_tokens(const request& req, const tokenizer& tok, const chat_template& tmpl,
                                   int32_t max_model_len);

// What the sampler reported about one token; the request keeps it only when it asked.
struct sampled_token {
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<token_logprob> top_logprobs;
};

class request_state {
 public:
  struct token_result {
    delta_event delta;                            // may be empty (all bytes held back)
    std::optional<request_finish_reason> finish;  // set: the request must end now (stop or length)
  };
  struct finish_result {
    delta_event last_delta;  // the held-back text released at the end; empty when none
    done_event done;
  };

  // `tok` must outlive this object. Starts in tokenizing at arrival_ms.
  request_state(const request& req, const tokenizer& tok, int32_t max_model_len, int64_t arrival_ms);

  request_status status() const { return status_; }
  bool is_finished() const { return is_terminal(status_); }
  // Moves to `next` at now_ms or throws troupe::error(internal) naming both states. Entering
  // a terminal state this way ends without events; finish() is the way that reports them.
  void transition_to(request_status next, int64_t now_ms);

  // Known after tokenization, before the request is queued.
  void set_num_prompt_tokens(int32_t n) { num_prompt_tokens_ = n; }
  // From the first admission's prefix-cache hit (a resume after preemption does not change it).
  void set_num_cached_prompt_tokens(int32_t n);

  // One sampled token while running. Returns the text it completes and, when the request
  // must end here (a stop string or stop token, max_tokens, max_model_len), the reason:
  // the caller then aborts the sequence and calls finish. Tokens arriving after that point
  // or after the end (steps still in flight) are dropped: empty result, not counted. A stop
  // string completed while the output is short of min_tokens is output as text (stop tokens
  // cannot come that early: the sampler bans them, sampler_math.hpp can_sample_end).
  // Throws troupe::error(internal) in tokenizing, queued or preempted.
  token_result on_token(const sampled_token& sampled, int64_t now_ms);
  // A speculative step proposed num_drafts tokens for this request and num_accepted of them
  // were taken (reported in the timings).
  void on_speculation(int32_t num_drafts, int32_t num_accepted) {
    num_draft_tokens_ += num_drafts;
    num_accepted_tokens_ += num_accepted;
  }

  // Ends the request: stop and length go to finished, cancelled and timeout to cancelled,
  // error to failed. A reason decided by on_token takes precedence over stop or length
  // given here. Held-back text is released into last_delta unless a stop string ended the
  // output. Throws troupe::error(internal) when already ended.
  finish_result finish(request_finish_reason reason, int64_t now_ms);

  std::optional<int64_t> deadline_ms() const { return deadline_ms_; }  // arrival + timeout_ms
  bool is_past_deadline(int64_t now_ms) const;

  int32_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int32_t num_output_tokens() const { return num_output_tokens_; }

 private:
  bool is_stop_token(int32_t token) const;
  void append_logprobs(delta_event& delta, const sampled_token& sampled) const;
  request_timings timings(int64_t finished_ms) const;

  const tokenizer* tok_;
  incremental_decoder decoder_;
  stop_matcher matcher_;
  int32_t max_model_len_;
  int32_t max_tokens_;
  int32_t min_tokens_;  // stop strings end the output only once it has this many tokens
  std::vector<int32_t> stop_token_ids_;
  bool ignore_eos_;
  bool wants_logprobs_;
  std::string echo_text_;  // the prompt, sent before the first output when echo was asked

  request_status status_ = request_status::tokenizing;
  int32_t num_prompt_tokens_ = 0;
  int32_t num_cached_prompt_tokens_ = 0;
  int32_t num_output_tokens_ = 0;
  int32_t num_draft_tokens_ = 0;
  int32_t num_accepted_tokens_ = 0;
  std::optional<request_finish_reason> decided_;  // by on_token: stop or length
  std::optional<std::string> stop_string_;
  std::optional<int32_t> stop_token_;

  int64_t arrival_ms_;
  std::optional<int64_t> deadline_ms_;
  std::optional<int64_t> queued_ms_;
  std::optional<int64_t> first_running_ms_;
  std::optional<int64_t> first_token_ms_;
  int64_t last_token_ms_ = 0;
};

}  // namespace troupe
