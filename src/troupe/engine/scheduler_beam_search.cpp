// scheduler_policy's beam groups: a beam search's sequences, forked and dropped round by
// round as beam_search_state decides. A beam's step feeds its last token and returns the
// model's 2w likeliest next tokens (no token is appended then: the beam holds them); once
// every live beam of the group holds its tokens, the group advances: each next beam either
// continues its parent in place (the first to take it) or is a copy-on-write fork of it
// under a free id of the group, and parents with no continuation retire. The group's one
// event is its end, with the hypotheses. Steps with beams are always whole (a beam's next
// token is not the one the worker sampled), and never planned ahead.
#include <algorithm>

#include "troupe/engine/scheduler_policy.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

int32_t scheduler_policy::num_slots(const sequence& seq) const {
  if (seq.is_beam) {
    const beam_group& g = beam_groups_.at(seq.group_id);
    return g.is_admitted ? 0 : g.width;  // an admitted group holds its slots already
  }
  return 1 + static_cast<int32_t>(seq.fork_ids.size());
}

int32_t scheduler_policy::num_running_slots() const {
  int32_t n = static_cast<int32_t>(running_.size()) + num_steady_ + num_reserved_slots_;
  for (const auto& [group_id, g] : beam_groups_) {
    if (!g.is_admitted) continue;
    int32_t num_running = 0;
    for (uint64_t id : g.ids) {
      const auto it = sequences_.find(id);
      if (it != sequences_.end() && it->second.state() == sequence_state::running) ++num_running;
    }
    n += std::max(0, g.width - num_running);
  }
  return n;
}

sequence& scheduler_policy::fork_beam(sequence& parent, uint64_t id, uint64_t arrival_order) {
  sequence child(id, std::vector<int32_t>(parent.prompt_tokens().begin(), parent.prompt_tokens().end()), parent.params,
                 parent.priority, arrival_order, parent.arrival_ms);
  for (int32_t token : parent.output_tokens()) child.append_token(token);
  child.group_id = parent.group_id;
  child.is_beam = true;
  child.beam_logprob = parent.beam_logprob;
  child.beam_logprobs = parent.beam_logprobs;
  child.admitted_priority = parent.admitted_priority;
  child.waiting_since_ms = parent.waiting_since_ms;
  child.num_preemptions = parent.num_preemptions;
  const bool is_resident = parent.state() == sequence_state::running && parent.num_in_flight_steps == 0;
  if (is_resident) {
    kv_.fork(parent.id, id);
    child.num_computed_tokens = parent.num_computed_tokens;
    child.num_cached_prefix_tokens = parent.num_cached_prefix_tokens;
    child.transition_to(sequence_state::running);
  }
  sequence& placed = sequences_.emplace(id, std::move(child)).first->second;
  if (is_resident) {
    insert_running(placed);
  } else {
    waiting_.push_back(id);  // its parent's KV is not resident: it is fed again from the start
  }
  return placed;
}

void scheduler_policy::advance_beams(uint64_t group_id, std::vector<sequence_event>& events) {
  beam_group& g = beam_groups_.at(group_id);
  std::vector<sequence*> live;
  for (uint64_t id : g.ids) {
    if (const auto it = sequences_.find(id); it != sequences_.end()) live.push_back(&it->second);
  }
  if (live.empty()) return;
  for (const sequence* b : live) {
    if (!b->has_beam_next) return;  // the round waits for every live beam
  }
  std::vector<std::vector<int32_t>> outputs(live.size());
  std::vector<live_beam> beams;
  for (size_t i = 0; i < live.size(); ++i) {
    outputs[i].assign(live[i]->output_tokens().begin(), live[i]->output_tokens().end());
    beams.push_back({&outputs[i], &live[i]->beam_logprobs, live[i]->beam_logprob, &live[i]->beam_next});
  }
  const sequence& first = *live.front();
  const int32_t max_output = std::min(first.params.max_tokens, max_sequence_tokens_ - first.num_prompt_tokens());
  const auto next = g.search.advance(beams, max_output, [&](int32_t token) {
    return is_stop_token(first.params, eog_ids_, token);
  });
  if (g.search.is_done()) {
    sequence_event ev;
    ev.seq_id = group_id;
    ev.state = sequence_state::finished;
    ev.beams = g.search.hypotheses();
    if (!ev.beams.empty()) {
      ev.token = ev.beams.front().tokens.back();
      ev.reason = ev.beams.front().reason;
    }
    end_beam_group(group_id, sequence_state::cancelled);
    events.push_back(std::move(ev));
    return;
  }
  // Each live beam's first continuation takes it over; the others fork it.
  std::vector<int32_t> taker(live.size(), -1);
  for (size_t k = 0; k < next.size(); ++k) {
    auto& t = taker[static_cast<size_t>(next[k].parent)];
    if (t < 0) t = static_cast<int32_t>(k);
  }
  std::vector<uint64_t> free_ids;
  for (uint64_t id : g.ids) {
    if (!sequences_.contains(id)) free_ids.push_back(id);
  }
  for (size_t i = 0; i < live.size(); ++i) {
    if (taker[i] >= 0) continue;
    free_ids.push_back(live[i]->id);
    retire(*live[i], sequence_state::cancelled);  // no continuation: its blocks go back
    live[i] = nullptr;
  }
  // Forks copy their parent before the parent takes its own next token.
  std::vector<std::pair<sequence*, const next_beam*>> moves;
  size_t num_used = 0;
  for (size_t k = 0; k < next.size(); ++k) {
    sequence& parent = *live[static_cast<size_t>(next[k].parent)];
    if (taker[static_cast<size_t>(next[k].parent)] == static_cast<int32_t>(k)) {
      moves.emplace_back(&parent, &next[k]);
      continue;
    }
    if (num_used >= free_ids.size()) throw error(error_code::internal, "beam group " + std::to_string(group_id) + ": no free id");
    const uint64_t id = free_ids[num_used++];
    const auto slot = std::find(g.ids.begin(), g.ids.end(), id) - g.ids.begin();
    // Each id has its own arrival order within the group's: ranks stay unique.
    moves.emplace_back(&fork_beam(parent, id, g.first_arrival_order + static_cast<uint64_t>(slot)), &next[k]);
  }
  for (auto& [seq, n] : moves) {
    seq->append_token(n->token);
    seq->beam_logprob = n->cumulative_logprob;
    seq->beam_logprobs.push_back(n->logprob);
    seq->beam_next.clear();
    seq->has_beam_next = false;
    seq->was_last_sent_sampled = false;  // the worker sampled something else: the next step is whole
  }
}

void scheduler_policy::end_beam_group(uint64_t group_id, sequence_state final_state) {
  const auto it = beam_groups_.find(group_id);
  if (it == beam_groups_.end()) return;
  const std::vector<uint64_t> ids = it->second.ids;
  for (uint64_t id : ids) {
    beam_ids_.erase(id);
    if (const auto s = sequences_.find(id); s != sequences_.end()) retire(s->second, final_state);
  }
  beam_groups_.erase(it);
}

}  // namespace troupe
