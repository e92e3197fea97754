// The choices of one request: one request_state per sampled sequence (n, or best_of when it
// asks for more), and the events the client sees. With one choice the events are exactly
// request_state's (no index, no choice_done). With n > 1 every delta carries its choice's
// index and each choice ends with a choice_done; the request's done follows the last one.
// With best_of > n nothing is shown until every choice has ended: then the n with the
// highest summed log-probability are returned, renumbered 0..n-1 in that order.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "troupe/engine/request_state.hpp"

namespace troupe {

class request_choices {
 public:
  struct token_result {
    std::vector<request_event> events;            // what to send now, in order
    std::optional<request_finish_reason> finish;  // set: the choice must end now (stop or length)
  };

  // `tok` must outlive this object; as request_state.
  request_choices(const request& req, const tokenizer& tok, int32_t max_model_len, int64_t arrival_ms);

  int32_t size() const { return static_cast<int32_t>(choices_.size()); }
  request_state& state(int32_t i) { return *choices_.at(static_cast<size_t>(i)).state; }
  const request_state& state(int32_t i) const { return *choices_.at(static_cast<size_t>(i)).state; }
  bool is_finished(int32_t i) const { return choices_.at(static_cast<size_t>(i)).end.has_value(); }
  bool is_done() const { return num_finished_ == size(); }

  // Each live choice moves to `next` (those already there or ended are left alone).
  void transition_all(request_status next, int64_t now_ms);
  void set_num_prompt_tokens(int32_t n);
  void set_num_cached_prompt_tokens(int32_t n);

  // A token for choice i (request_state::on_token); nothing for an ended choice.
  token_result on_token(int32_t i, const sampled_token& sampled, int64_t now_ms);
  // Ends choice i (request_state::finish): its last delta and choice_done, and the request's
  // done once it is the last. Nothing for a choice already ended.
  std::vector<request_event> finish(int32_t i, request_finish_reason reason, int64_t now_ms);

 private:
  struct choice {
    std::unique_ptr<request_state> state;
    double cumulative_logprob = 0.0;
    delta_event held;                   // best_of: everything it produced, shown at the end
    std::optional<done_event> end;
  };
  bool is_single() const { return size() == 1; }
  bool holds_back() const { return num_returned_ < size(); }
  void emit_delta(int32_t i, delta_event&& d, std::vector<request_event>& out);
  // The request's done once every choice has ended (and, for best_of, the kept choices).
  void finish_request(std::vector<request_event>& out);

  std::vector<choice> choices_;
  int32_t num_returned_ = 1;  // n
  int32_t num_finished_ = 0;
};

}  // namespace troupe
