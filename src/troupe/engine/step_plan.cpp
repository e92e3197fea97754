#include "troupe/engine/step_plan.hpp"

#include <algorithm>
#include <string>

#include "troupe/model/error.hpp"

namespace troupe {

namespace {

// The penalty window after one more output token: the token appended, the oldest dropped
// past penalty_last_n (those are prompt tokens first).
void advance_penalty_window(sequence_step& s, int32_t token) {
  s.penalty_tokens.push_back(token);
  const int32_t n = s.params.penalty_last_n;
  if (n < 0 || static_cast<int32_t>(s.penalty_tokens.size()) <= n) return;
  const auto excess = static_cast<int32_t>(s.penalty_tokens.size()) - n;
  s.penalty_tokens.erase(s.penalty_tokens.begin(), s.penalty_tokens.begin() + excess);
  s.num_prompt_penalty_tokens = std::max(0, s.num_prompt_penalty_tokens - excess);
}

}  // namespace

int64_t step_delta::num_tokens() const {
  int64_t n = static_cast<int64_t>(next.size());
  for (const auto& s : full) n += static_cast<int64_t>(s.tokens.size());
  return n;
}

int64_t step_delta::num_prefill_tokens() const {
  int64_t n = 0;
  for (const auto& s : full) {
    // A decode feeds one known token (and, speculating, the proposals after it).
    const bool is_decode = s.tokens.size() == 1 + static_cast<size_t>(s.num_draft_tokens) && s.wants_sample;
    if (!is_decode) n += static_cast<int64_t>(s.tokens.size());
  }
  return n;
}

bool is_stop_token(const sampling_params& params, std::span<const int32_t> eog_ids, int32_t token) {
  // Under a grammar an end token always ends the sequence: with ignore_eos the sampler draws
  // one only once the grammar allows nothing else (its output is complete).
  const bool ends_on_eog = !params.ignore_eos || params.grammar != nullptr;
  if (ends_on_eog && std::find(eog_ids.begin(), eog_ids.end(), token) != eog_ids.end()) return true;
  return std::find(params.stop_token_ids.begin(), params.stop_token_ids.end(), token) != params.stop_token_ids.end();
}

void plan_state::remove_at(size_t index) {
  index_.erase(live_.sequences[index].seq_id);
  const size_t last = live_.sequences.size() - 1;
  if (index != last) {
    live_.sequences[index] = std::move(live_.sequences[last]);
    slots_[index] = slots_[last];
    index_[live_.sequences[index].seq_id] = index;
  }
  live_.sequences.pop_back();
  slots_.pop_back();
}

void plan_state::put(sequence_step&& step, const slot& s) {
  index_[step.seq_id] = live_.sequences.size();
  live_.sequences.push_back(std::move(step));
  slots_.push_back(s);
}

void plan_state::unpark() {
  for (auto& [step, s] : parked_) put(std::move(step), s);
  parked_.clear();
}

const batch_plan& plan_state::apply(step_delta&& delta) {
  unpark();
  for (uint64_t id : delta.forget) {
    ended_.erase(id);
    grammars_.erase(id);
    if (const auto it = index_.find(id); it != index_.end()) remove_at(it->second);
  }
  // Every decode_next is checked before anything changes; where each one is held is kept
  // (the whole entries below only append or replace in place, so positions stay valid).
  next_at_.clear();
  for (const auto& n : delta.next) {
    if (!ended_.empty() && ended_.contains(n.seq_id)) {
      next_at_.push_back(-1);
      continue;
    }
    const auto it = index_.find(n.seq_id);
    if (it == index_.end()) {
      throw error(error_code::bad_plan, "the step continues sequence " + std::to_string(n.seq_id) +
                                            ", which the worker holds no state for");
    }
    const auto& s = live_.sequences[it->second];
    const int32_t pos = s.start_pos + static_cast<int32_t>(s.tokens.size());
    if (n.start_pos != pos || slots_[it->second].last_sample < 0) {
      throw error(error_code::bad_plan, "the step continues sequence " + std::to_string(n.seq_id) + " at position " +
                                            std::to_string(n.start_pos) + ", but the worker's next position is " +
                                            std::to_string(pos) +
                                            (slots_[it->second].last_sample < 0 ? " and it has no sample to feed" : ""));
    }
    next_at_.push_back(static_cast<ptrdiff_t>(it->second));
  }
  ++stamp_;
  for (auto& s : delta.full) {
    ended_.erase(s.seq_id);  // a whole step stands on its own
    start_grammar(s);
    if (const auto it = index_.find(s.seq_id); it != index_.end()) {
      live_.sequences[it->second] = std::move(s);
      slots_[it->second] = {-1, stamp_};
    } else {
      put(std::move(s), {-1, stamp_});
    }
  }
  for (size_t k = 0; k < delta.next.size(); ++k) {
    const auto& n = delta.next[k];
    if (next_at_[k] < 0) continue;
    const auto i = static_cast<size_t>(next_at_[k]);
    auto& s = live_.sequences[i];
    auto& sl = slots_[i];
    s.start_pos = n.start_pos;
    s.tokens.resize(1);
    s.tokens[0] = sl.last_sample;
    if (n.new_block >= 0) s.block_table.push_back(n.new_block);
    s.wants_sample = true;
    s.sample_index += 1;
    if (s.params.has_penalties()) advance_penalty_window(s, sl.last_sample);
    sl.last_sample = -1;
    sl.stamp = stamp_;
  }
  // Held sequences that are not in this step wait aside, so the plan is live_ as it stands.
  for (size_t i = live_.sequences.size(); i-- > 0;) {
    if (slots_[i].stamp == stamp_) continue;
    parked_.emplace_back(std::move(live_.sequences[i]), slots_[i]);
    remove_at(i);
  }
  if (!grammars_.empty()) fill_masks();
  return live_;
}

void plan_state::start_grammar(const sequence_step& step) {
  if (!step.params.grammar) {
    grammars_.erase(step.seq_id);
    return;
  }
  grammar_state g{grammar_matcher(step.params.grammar), {}, {}};
  for (int32_t token : step.output_tokens) {
    if (!g.matcher.accept_token(token)) {
      throw error(error_code::bad_plan, "sequence " + std::to_string(step.seq_id) + ": output token " +
                                            std::to_string(token) + " does not fit its grammar");
    }
  }
  grammars_.insert_or_assign(step.seq_id, std::move(g));
}

void plan_state::fill_masks() {
  for (auto& s : live_.sequences) {
    s.allowed_tokens = nullptr;
    if (!s.wants_sample) continue;
    const auto it = grammars_.find(s.seq_id);
    if (it == grammars_.end()) continue;
    grammar_state& g = it->second;
    g.matcher.fill_mask(g.bits);
    const auto words = g.bits.words();
    g.allowed.assign(words.begin(), words.end());
    s.allowed_tokens = &g.allowed;
  }
}

void plan_state::on_result(const step_result& result) {
  const bool is_in_order = result.outputs.size() == live_.sequences.size();
  for (size_t i = live_.sequences.size(); i-- > 0;) {
    const auto& s = live_.sequences[i];
    if (!s.wants_sample) continue;
    const sequence_output* o = nullptr;
    if (is_in_order && result.outputs[i].seq_id == s.seq_id) {
      o = &result.outputs[i];
    } else {
      const auto it = std::find_if(result.outputs.begin(), result.outputs.end(),
                                   [&](const sequence_output& x) { return x.seq_id == s.seq_id; });
      if (it != result.outputs.end()) o = &*it;
    }
    if (o == nullptr || o->token < 0) {
      slots_[i].last_sample = -1;
      continue;
    }
    slots_[i].last_sample = o->token;
    if (s.params.grammar) {
      // What the grammar allowed was sampled; the matcher moves past it (an end token
      // finishes it).
      if (const auto g = grammars_.find(s.seq_id); g != grammars_.end()) g->second.matcher.accept_token(o->token);
    }
    if (is_stop_token(s.params, eog_ids_, o->token)) {
      ended_.insert(s.seq_id);
      remove_at(i);
    }
  }
}

void plan_state::fail(const step_delta& delta) {
  unpark();
  const auto drop = [this](uint64_t id) {
    if (const auto it = index_.find(id); it != index_.end()) remove_at(it->second);
  };
  for (uint64_t id : delta.forget) {
    ended_.erase(id);
    grammars_.erase(id);
    drop(id);
  }
  for (const auto& s : delta.full) {
    ended_.insert(s.seq_id);
    drop(s.seq_id);
  }
  for (const auto& n : delta.next) {
    ended_.insert(n.seq_id);
    drop(n.seq_id);
  }
}

}  // namespace troupe
