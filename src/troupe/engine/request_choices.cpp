// request_choices: n (or best_of) request_states behind one request's events.
#include "troupe/engine/request_choices.hpp"

#include <algorithm>
#include <numeric>

namespace troupe {
namespace {

void append_delta(delta_event& to, delta_event&& from) {
  to.text += from.text;
  to.token_ids.insert(to.token_ids.end(), from.token_ids.begin(), from.token_ids.end());
  to.logprobs.insert(to.logprobs.end(), std::make_move_iterator(from.logprobs.begin()),
                     std::make_move_iterator(from.logprobs.end()));
}

choice_done_event choice_end(int32_t index, const done_event& done, double cumulative_logprob) {
  return {index, done.reason, done.stop_string, done.stop_token, done.usage.completion_tokens, cumulative_logprob};
}

}  // namespace

request_choices::request_choices(const request& req, const tokenizer& tok, int32_t max_model_len,
                                 int64_t arrival_ms) {
  // A beam search returns its n best hypotheses; sampling returns n of num_sequences.
  const int32_t num_sampled = req.beam_width > 0 ? std::max(1, req.n) : std::max(1, req.num_sequences());
  num_returned_ = std::clamp(req.n, 1, num_sampled);
  choices_.resize(static_cast<size_t>(num_sampled));
  for (auto& c : choices_) c.state = std::make_unique<request_state>(req, tok, max_model_len, arrival_ms);
}

void request_choices::transition_all(request_status next, int64_t now_ms) {
  for (auto& c : choices_) {
    if (c.end || c.state->status() == next || c.state->is_finished()) continue;
    c.state->transition_to(next, now_ms);
  }
}

void request_choices::set_num_prompt_tokens(int32_t n) {
  for (auto& c : choices_) c.state->set_num_prompt_tokens(n);
}

void request_choices::set_num_cached_prompt_tokens(int32_t n) {
  for (auto& c : choices_) c.state->set_num_cached_prompt_tokens(n);
}

void request_choices::emit_delta(int32_t i, delta_event&& d, std::vector<request_event>& out) {
  if (d.is_empty()) return;
  if (holds_back()) return append_delta(choices_[static_cast<size_t>(i)].held, std::move(d));
  d.index = i;
  out.emplace_back(std::move(d));
}

request_choices::token_result request_choices::on_token(int32_t i, const sampled_token& sampled, int64_t now_ms) {
  token_result result;
  choice& c = choices_.at(static_cast<size_t>(i));
  if (c.end) return result;
  auto r = c.state->on_token(sampled, now_ms);
  if (!r.delta.token_ids.empty()) c.cumulative_logprob += sampled.logprob;
  emit_delta(i, std::move(r.delta), result.events);
  result.finish = r.finish;
  return result;
}

std::vector<request_event> request_choices::finish(int32_t i, request_finish_reason reason, int64_t now_ms) {
  std::vector<request_event> out;
  choice& c = choices_.at(static_cast<size_t>(i));
  if (c.end) return out;
  auto r = c.state->finish(reason, now_ms);
  emit_delta(i, std::move(r.last_delta), out);
  c.end = std::move(r.done);
  ++num_finished_;
  if (!is_single() && !holds_back()) out.emplace_back(choice_end(i, *c.end, c.cumulative_logprob));
  if (is_done()) finish_request(out);
  return out;
}

void request_choices::finish_request(std::vector<request_event>& out) {
  if (is_single()) {
    out.emplace_back(std::move(*choices_.front().end));
    return;
  }
  // The choices returned, in the order they are numbered for the client.
  std::vector<int32_t> order(choices_.size());
  std::iota(order.begin(), order.end(), 0);
  if (holds_back()) {
    std::stable_sort(order.begin(), order.end(), [this](int32_t a, int32_t b) {
      return choices_[static_cast<size_t>(a)].cumulative_logprob > choices_[static_cast<size_t>(b)].cumulative_logprob;
    });
    order.resize(static_cast<size_t>(num_returned_));
    for (size_t k = 0; k < order.size(); ++k) {
      delta_event held = std::move(choices_[static_cast<size_t>(order[k])].held);
      if (held.is_empty()) continue;
      held.index = static_cast<int32_t>(k);
      out.emplace_back(std::move(held));
    }
    for (size_t k = 0; k < order.size(); ++k) {
      const choice& c = choices_[static_cast<size_t>(order[k])];
      out.emplace_back(choice_end(static_cast<int32_t>(k), *c.end, c.cumulative_logprob));
    }
  }
  const done_event& first = *choices_[static_cast<size_t>(order.front())].end;
  done_event done;
  done.reason = first.reason;
  done.stop_string = first.stop_string;
  done.stop_token = first.stop_token;
  done.usage.prompt_tokens = first.usage.prompt_tokens;
  done.usage.cached_prompt_tokens = first.usage.cached_prompt_tokens;
  done.timings = first.timings;
  double first_token_ms = 0.0;
  for (const choice& c : choices_) {
    const done_event& d = *c.end;
    done.usage.completion_tokens += d.usage.completion_tokens;  // every sampled choice is billed
    done.timings.total_ms = std::max(done.timings.total_ms, d.timings.total_ms);
    if (d.timings.time_to_first_token_ms > 0 &&
        (first_token_ms == 0.0 || d.timings.time_to_first_token_ms < first_token_ms)) {
      first_token_ms = d.timings.time_to_first_token_ms;
    }
  }
  done.timings.time_to_first_token_ms = first_token_ms;
  done.timings.num_draft_tokens = 0;
  done.timings.num_accepted_tokens = 0;
  for (const choice& c : choices_) {
    done.timings.num_draft_tokens += c.end->timings.num_draft_tokens;
    done.timings.num_accepted_tokens += c.end->timings.num_accepted_tokens;
  }
  for (size_t k = 0; k < order.size(); ++k) {
    const choice& c = choices_[static_cast<size_t>(order[k])];
    done.choices.push_back(choice_end(static_cast<int32_t>(k), *c.end, c.cumulative_logprob));
  }
  out.emplace_back(std::move(done));
}

}  // namespace troupe
