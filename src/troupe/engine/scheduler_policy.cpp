// scheduler_policy: builds one step (evictions for higher-priority arrivals, running
// decodes and prefill chunks with evictions when KV runs out, swapped resumes, waiting
// admissions, in that order) and retires sequences on stop rules, failures and aborts.
#include "troupe/engine/scheduler_policy.hpp"

#include <algorithm>
#include <functional>
#include <optional>
#include <tuple>
#include <utility>
#include <unordered_set>

#include "troupe/engine/step_cost.hpp"
#include "troupe/model/error.hpp"

namespace troupe {
namespace {

void append(kv_operations& to, kv_operations from) {
  to.copies.insert(to.copies.end(), from.copies.begin(), from.copies.end());
  to.swap_out.insert(to.swap_out.end(), from.swap_out.begin(), from.swap_out.end());
  to.swap_in.insert(to.swap_in.end(), from.swap_in.begin(), from.swap_in.end());
}

void erase_id(std::vector<uint64_t>& ids, uint64_t id) { std::erase(ids, id); }

// Among running and swapped sequences: higher admitted priority (lower number) first, then
// earlier arrival. The last in this order is the preemption victim.
bool is_ranked_before(const sequence& a, const sequence& b) {
  if (a.admitted_priority != b.admitted_priority) return a.admitted_priority < b.admitted_priority;
  return a.arrival_order < b.arrival_order;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

uint64_t fork_seed(uint64_t seed, uint64_t member) {
  if (member == 0) return seed;
  // splitmix64 of (seed, member): neighbouring seeds give unrelated member seeds.
  uint64_t z = seed + member * 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct scheduler_policy::step_builder {
  int64_t now_ms = 0;
  bool is_ahead = false;    // planned while a step runs: no preemption, no unknown token fed
  int32_t budget = 0;       // tokens neither planned nor promised yet
  double cost_budget = 0;   // the same in cost (step_cost.hpp)
  bool has_prefill = false; // a prompt chunk is planned or promised
  scheduled_step out;
  std::vector<step_entry> entries;                 // planned: KV grown, in plan order
  bool has_preempted_for_kv = false;
  bool is_short_of_kv = false;  // ahead: a running sequence could not grow (a preemption is due)
  uint64_t serial = 0;            // this step's number (totals_.num_steps once planned)
  uint64_t steady_epoch = 0;      // the lane step planned with it, or 0
  std::vector<sequence*> joins;   // planned one by one, joining the lane from the next step
  int32_t num_decodes = 0;        // decodes planned (lane members included), once counted
};

scheduler_policy::scheduler_policy(scheduler_config config, kv_space& kv, std::vector<int32_t> eog_ids)
    : config_(std::move(config)),
      attention_cost_(std::max(0.0, config_.attention_cost)),
      kv_(kv),
      eog_ids_(std::move(eog_ids)),
      ngram_(std::max(1, config_.ngram_min), std::max(std::max(1, config_.ngram_min), config_.ngram_max)),
      spec_cost_(config_.speculative_max_batch) {
  config_.validate();
  const int64_t pool_tokens = static_cast<int64_t>(kv_.num_total_blocks()) * kv_.block_size();
  max_sequence_tokens_ = static_cast<int32_t>(std::min<int64_t>(config_.max_model_len, pool_tokens));
}

void scheduler_policy::add(sequence_request request, int64_t now_ms) {
  const auto id = std::to_string(request.id);
  if (request.prompt_tokens.empty()) {
    throw error(error_code::invalid_argument, "sequence " + id + ": the prompt is empty");
  }
  const auto is_taken = [this](uint64_t x) {
    return sequences_.contains(x) || deferred_.contains(x) || fork_parents_.contains(x) || beam_ids_.contains(x);
  };
  if (is_taken(request.id)) {
    throw error(error_code::invalid_argument, "sequence " + id + " is already scheduled");
  }
  const auto group_size = static_cast<int64_t>(request.fork_ids.size()) + 1;
  if (group_size > config_.max_num_seqs) {
    throw error(error_code::invalid_argument,
                "sequence " + id + ": a group of " + std::to_string(group_size) +
                    " parallel samples does not fit max_num_seqs " + std::to_string(config_.max_num_seqs) +
                    " (the most sequences a step may run)");
  }
  const int32_t beam_width = request.beam.width;
  if (beam_width < 0 || beam_width > max_beam_width ||
      (beam_width > 0 && static_cast<int64_t>(request.fork_ids.size()) != beam_width - 1)) {
    throw error(error_code::invalid_argument,
                "sequence " + id + ": a beam search of width " + std::to_string(beam_width) + " needs width - 1 more ids (got " +
                    std::to_string(request.fork_ids.size()) + "), and the width must be in [0, " +
                    std::to_string(max_beam_width) + "]");
  }
  for (size_t i = 0; i < request.fork_ids.size(); ++i) {
    const uint64_t member = request.fork_ids[i];
    const bool is_repeated = member == request.id ||
                             std::find(request.fork_ids.begin(), request.fork_ids.begin() + static_cast<ptrdiff_t>(i),
                                       member) != request.fork_ids.begin() + static_cast<ptrdiff_t>(i);
    if (is_repeated || is_taken(member)) {
      throw error(error_code::invalid_argument,
                  "sequence " + id + ": group member " + std::to_string(member) + " is already scheduled");
    }
  }
  const int64_t num_prompt = static_cast<int64_t>(request.prompt_tokens.size());
  if (num_prompt > config_.max_model_len) {
    throw error(error_code::context_overflow, "sequence " + id + ": the prompt has " + std::to_string(num_prompt) +
                                                  " tokens, more than max_model_len " +
                                                  std::to_string(config_.max_model_len));
  }
  const int64_t num_blocks = ceil_div(num_prompt, kv_.block_size());
  if (num_blocks > kv_.num_total_blocks()) {
    throw error(error_code::context_overflow,
                "sequence " + id + ": the prompt has " + std::to_string(num_prompt) + " tokens and needs " +
                    std::to_string(num_blocks) + " KV blocks of " + std::to_string(kv_.block_size()) +
                    " tokens, but the pool holds " + std::to_string(kv_.num_total_blocks()));
  }
  // A group's members take the arrival orders after the parent's: they rank together.
  sequence seq(request.id, std::move(request.prompt_tokens), std::move(request.params), request.priority,
               next_arrival_order_, now_ms);
  next_arrival_order_ += static_cast<uint64_t>(group_size);
  seq.speculative = request.speculative.value_or(config_.speculative);
  // Proposals would each need the grammar's verdict: a constrained sequence does not speculate.
  if (seq.params.grammar) seq.speculative = speculative_method::off;
  // Without a draft model a request's choice of one has no effect (as any choice on a
  // backend that does not verify proposals).
  if (seq.speculative == speculative_method::draft && !config_.has_draft_model) {
    seq.speculative = speculative_method::off;
  }
  seq.num_speculative_tokens = config_.num_speculative_tokens;
  if (beam_width > 0) {
    // The search reads the model's raw log-probabilities: the sampler only has to report
    // each beam's 2w likeliest next tokens.
    seq.is_beam = true;
    seq.speculative = speculative_method::off;
    seq.params.temperature = 0.0f;
    seq.params.num_logprobs = 2 * beam_width;
    beam_group group{beam_search_state(request.beam, seq.params.min_tokens), {request.id}, beam_width, false,
                     seq.arrival_order};
    group.ids.insert(group.ids.end(), request.fork_ids.begin(), request.fork_ids.end());
    for (uint64_t x : group.ids) beam_ids_.emplace(x, request.id);
    beam_groups_.emplace(request.id, std::move(group));
  } else {
    for (uint64_t member : request.fork_ids) fork_parents_.emplace(member, request.id);
    if (!request.fork_ids.empty()) ++num_pending_forks_;
    for (size_t i = 0; i < request.fork_ids.size(); ++i) seq.fork_members.push_back(static_cast<uint32_t>(i + 1));
    seq.fork_ids = std::move(request.fork_ids);
  }
  sequences_.emplace(request.id, std::move(seq));
  waiting_.push_back(request.id);
}

void scheduler_policy::set_attention_cost(double attention_cost) {
  if (!(attention_cost >= 0)) throw error(error_code::invalid_argument, "attention_cost must be >= 0");
  attention_cost_ = attention_cost;
}

scheduled_step scheduler_policy::schedule(int64_t now_ms) {
  if (!in_flight_.empty()) {
    throw error(error_code::internal, "schedule() called while a step is in flight; call on_step_done first");
  }
  needs_sync_ = false;
  return plan(now_ms, false);
}

scheduled_step scheduler_policy::schedule_ahead(int64_t now_ms) {
  if (in_flight_.size() != 1) {
    throw error(error_code::internal, "schedule_ahead() needs exactly one step in flight, not " +
                                          std::to_string(in_flight_.size()));
  }
  if (needs_sync_) return {};
  // A beam's next token is chosen by its group's search, not sampled: nothing is planned
  // on the assumption of a sample while a beam search runs.
  if (!beam_groups_.empty()) {
    needs_sync_ = true;
    return {};
  }
  // A speculative step's sequences get an unknown number of tokens: nothing can be planned
  // behind it on the assumption of one each.
  const auto& running = in_flight_.back().entries;
  if (std::any_of(running.begin(), running.end(), [](const step_entry& e) { return e.num_drafts > 0; })) {
    needs_sync_ = true;
    return {};
  }
  return plan(now_ms, true);
}

scheduled_step scheduler_policy::plan(int64_t now_ms, bool is_ahead) {
  step_builder b;
  b.now_ms = now_ms;
  b.is_ahead = is_ahead;
  b.budget = config_.max_num_batched_tokens;
  b.cost_budget = step_cost(0, config_.max_num_batched_tokens, attention_cost_);
  // Every eviction comes before any KV is grown or swapped in for this step: an evicted
  // sequence then never leaves planned-but-unwritten blocks in the prefix cache, and every
  // swap_out precedes every swap_in, the order the backend runs them in.
  if (num_pending_forks_ > 0) fork_ready_groups();
  b.serial = totals_.num_steps + 1;
  const auto queue = waiting_in_order(now_ms);
  preempt_for_priority(b, queue);
  prepare_steady(b);
  schedule_running(b);
  // Resuming swapped or admitting new work in a step that ran out of KV would only evict
  // again (vLLM skips both too), unless nothing is left to run: an empty step must mean
  // that nothing can run until the next add, abort or step_done.
  if (b.is_short_of_kv) {
    needs_sync_ = true;
  } else if (!b.has_preempted_for_kv || (b.entries.empty() && (b.steady_epoch == 0 || num_steady_ == 0))) {
    schedule_swapped(b);
    if (swapped_.empty()) schedule_waiting(b, queue);
  }

  in_flight_step step;
  step.steady_epoch = b.steady_epoch;
  if (b.steady_epoch != 0) {
    // The lane: one decode_next per member, each at the position its offset gives; no
    // sequence is looked at.
    auto& next = b.out.plan.next;
    next.reserve(next.size() + static_cast<size_t>(num_steady_));
    step.steady_ids.reserve(static_cast<size_t>(num_steady_));
    const auto epoch = static_cast<int64_t>(b.steady_epoch);
    for (const steady_member& m : steady_) {
      if (m.seq == nullptr) continue;  // left the lane
      next.push_back({m.id, static_cast<int32_t>(m.offset + epoch), m.new_block});
      step.steady_ids.push_back(m.id);
    }
    for (const int32_t index : steady_grown_) steady_[static_cast<size_t>(index)].new_block = -1;
    steady_grown_.clear();
    const auto n = static_cast<int64_t>(num_steady_);
    b.out.num_attended_pairs += steady_offset_sum_ + n * epoch + n;  // attended_pairs(pos, 1) = pos + 1
  }
  for (sequence* seq : b.joins) join_steady(*seq);

  b.out.num_scheduled_tokens = static_cast<int32_t>(b.out.plan.num_tokens());
  b.out.token_budget = config_.max_num_batched_tokens;
  if (b.out.is_empty()) return std::move(b.out);
  b.out.plan.forget = std::move(forgets_);
  forgets_.clear();
  b.out.plan.is_planned_ahead = is_ahead;
  step.entries = std::move(b.entries);
  step.is_planned_ahead = is_ahead;
  step.serial = b.serial;
  totals_.num_steady_tokens += static_cast<int64_t>(step.steady_ids.size());
  in_flight_.push_back(std::move(step));
  ++totals_.num_steps;
  totals_.num_steps_ahead += is_ahead ? 1 : 0;
  totals_.num_scheduled_tokens += b.out.num_scheduled_tokens;
  totals_.num_budget_tokens += b.out.token_budget;
  return std::move(b.out);
}

bool scheduler_policy::ends_by_length_in_flight(const sequence& seq) const {
  if (seq.num_pending_samples == 0) return false;
  return seq.num_output_tokens() + seq.num_pending_samples >= seq.params.max_tokens ||
         planned_tokens(seq) >= max_sequence_tokens_;
}

void scheduler_policy::add_to_plan(step_builder& b, sequence& seq, int32_t num_tokens, kv_growth&& growth) {
  const bool had_copies = !growth.ops.copies.empty();
  append(b.out.ops, std::move(growth.ops));
  const int32_t start = scheduled_end(seq);
  const auto num_drafts = static_cast<int32_t>(seq.drafts.size());
  const int32_t num_known = num_tokens - num_drafts;
  const bool wants_sample = start + num_known == planned_tokens(seq) && seq.fork_ids.empty() && !seq.has_beam_next;
  b.entries.push_back({seq.id, num_tokens, wants_sample, num_drafts});
  b.out.num_attended_pairs += attended_pairs(start, num_tokens);
  const auto& table = *growth.block_table;
  const auto num_blocks = static_cast<int32_t>(table.size());
  bool is_next = false;
  if (num_drafts == 0 && num_tokens == 1 && seq.is_known_to_worker && seq.was_last_sent_sampled && !had_copies &&
      is_planned_decode(seq) && num_blocks <= seq.num_blocks_sent + 1) {
    const int32_t new_block = num_blocks > seq.num_blocks_sent ? table.back() : -1;
    b.out.plan.next.push_back({seq.id, start, new_block});
    is_next = true;
  } else {
    if (start + num_known > seq.num_tokens()) {
      // Only a decode_next may feed a token not yet known, and schedule_running keeps
      // every other case out of a step planned ahead.
      throw error(error_code::internal, "sequence " + std::to_string(seq.id) +
                                            ": a whole step would feed a token that is not known yet");
    }
    auto step = make_step(seq, num_known, table);
    if (num_drafts > 0) {
      step.tokens.insert(step.tokens.end(), seq.drafts.begin(), seq.drafts.end());
      step.num_draft_tokens = num_drafts;
      seq.drafts.clear();
    }
    b.out.plan.full.push_back(std::move(step));
  }
  seq.is_known_to_worker = true;
  // After a speculative step the worker's copy ends at the last proposal, not where the
  // sequence goes on: its next step is sent whole.
  seq.was_last_sent_sampled = wants_sample && num_drafts == 0;
  seq.num_blocks_sent = num_blocks;
  seq.num_in_flight_tokens += num_tokens;
  seq.num_pending_samples += wants_sample ? 1 : 0;
  seq.num_in_flight_steps += 1;
  seq.last_step_serial = b.serial;
  // A decode continued as the worker expects, its KV block not yet full: the lane takes it
  // from the next step on.
  // A sequence that may speculate joins only while the batch is too large to speculate.
  if (is_next && wants_sample && can_join_steady(seq) &&
      (seq.speculative == speculative_method::off || b.num_decodes > config_.speculative_max_batch)) {
    b.joins.push_back(&seq);
  }
}

int32_t scheduler_policy::num_tokens_to_feed(int32_t num_computed, int32_t num_uncomputed, int32_t budget) const {
  if (budget <= 0 || num_uncomputed <= 0) return 0;
  if (num_uncomputed <= budget) return num_uncomputed;
  if (!config_.enable_chunked_prefill) return 0;
  // A chunk that is not the last ends on a block boundary when it can: otherwise its step
  // holds a partly filled block until the next chunk fills it (KV waste for a whole prefill
  // step, the longest kind). The budget given up is under one block; a budget under one
  // block is used whole, so that the prompt still moves every step.
  const int32_t block_size = kv_.block_size();
  if (budget < block_size) return budget;
  return (num_computed + budget) / block_size * block_size - num_computed;
}

int32_t scheduler_policy::take_tokens(step_builder& b, int32_t num_computed, int32_t num_uncomputed) {
  int32_t cap = b.budget;
  const bool is_prefill = num_uncomputed > 1 || num_computed == 0;
  if (attention_cost_ > 0 && config_.enable_chunked_prefill) {
    int32_t by_cost = max_tokens_within(num_computed, b.cost_budget, attention_cost_);
    if (is_prefill && !b.has_prefill) by_cost = std::max(by_cost, kv_.block_size());
    cap = std::min(cap, std::max(by_cost, 1));
  }
  const int32_t n = num_tokens_to_feed(num_computed, num_uncomputed, cap);
  if (n > 0) {
    b.budget -= n;
    b.cost_budget -= step_cost(num_computed, n, attention_cost_);
    b.has_prefill = b.has_prefill || is_prefill;
  }
  return n;
}

std::vector<std::pair<int64_t, uint64_t>> scheduler_policy::waiting_in_order(int64_t now_ms) const {
  std::vector<std::pair<int64_t, uint64_t>> queue;
  queue.reserve(waiting_.size());
  for (uint64_t id : waiting_) queue.emplace_back(effective_priority(sequences_.at(id), now_ms), id);
  std::sort(queue.begin(), queue.end(), [this](const auto& x, const auto& y) {
    if (x.first != y.first) return x.first < y.first;
    return sequences_.at(x.second).arrival_order < sequences_.at(y.second).arrival_order;
  });
  return queue;
}

void scheduler_policy::preempt_for_priority(step_builder& b, const std::vector<std::pair<int64_t, uint64_t>>& queue) {
  if (!swapped_.empty()) return;  // swapped sequences resume before anything waiting is admitted
  int32_t num_free_slots = config_.max_num_seqs - num_running_slots();
  for (const auto& [priority, id] : queue) {
    const int32_t num_needed = num_slots(sequences_.at(id));
    // Strictly higher priority only. The victim restarts its ageing in the waiting queue,
    // so two sequences cannot evict each other in turn without ageing_ms per level waited.
    // It is recomputed rather than swapped: swapped sequences would hold the admission back.
    while (num_free_slots < num_needed) {
      const auto victim = lowest_ranked_running();
      if (!victim || sequences_.at(*victim).admitted_priority <= priority) return;
      if (b.is_ahead) {
        needs_sync_ = true;  // the victim is in the running step: evict it once that is back
        return;
      }
      preempt(*victim, b, preemption_mode::recompute);
      ++num_free_slots;
    }
    num_free_slots -= num_needed;
  }
}

void scheduler_policy::schedule_running(step_builder& b) {
  std::vector<sequence*> order = running_;  // rank order, kept while sequences are preempted
  // Token shares: every decode its one token first, then prefill chunks in rank order. A
  // sequence whose sample in flight ends it by length gets nothing more. Planned ahead, a
  // sequence is fed only what the worker can fill in: known tokens, or its own last sample.
  for (sequence* seq : order) {
    if (is_planned_decode(*seq) && b.budget > 0 && !ends_by_length_in_flight(*seq)) {
      if (b.is_ahead && seq->num_pending_samples > 0 && !seq->is_known_to_worker) continue;
      seq->step_share = 1;
      --b.budget;
      b.cost_budget -= step_cost(scheduled_end(*seq), 1, attention_cost_);
    }
  }
  propose_drafts(b, order);
  for (sequence* seq : order) {
    if (is_planned_decode(*seq) || ends_by_length_in_flight(*seq)) continue;
    seq->step_share = take_tokens(b, scheduled_end(*seq), planned_tokens(*seq) - scheduled_end(*seq));
  }
  // KV in rank order, so that the lowest-ranked running sequence, the victim when blocks
  // run out, is never one already planned (at worst the one asking).
  for (sequence* seq : order) {
    const int32_t n = seq->step_share;
    if (n == 0) continue;  // no tokens this step, or preempted
    const uint64_t id = seq->id;
    int32_t target = scheduled_end(*seq) + n;
    auto growth = kv_.try_grow(id, target, seq->tokens());
    if (!growth && !seq->drafts.empty()) {
      // Proposals are not worth a preemption: the plain decode first.
      const auto num_drafts = static_cast<int32_t>(seq->drafts.size());
      b.budget += num_drafts;
      b.cost_budget += step_cost(scheduled_end(*seq) + 1, num_drafts, attention_cost_);
      seq->drafts.clear();
      seq->step_share = 1;
      target = scheduled_end(*seq) + 1;
      growth = kv_.try_grow(id, target, seq->tokens());
    }
    if (!growth && b.is_ahead) {
      // Every possible victim is in the running step: leave it out now, preempt later.
      b.is_short_of_kv = true;
      seq->step_share = 0;
      continue;
    }
    bool was_preempted = false;
    while (!growth && !was_preempted) {
      const uint64_t victim = *lowest_ranked_running();
      preempt(victim, b, config_.preemption);
      b.has_preempted_for_kv = true;
      was_preempted = victim == id;
      if (!was_preempted) growth = kv_.try_grow(id, target, seq->tokens());
    }
    if (was_preempted) continue;
    const int32_t share = seq->step_share;
    seq->step_share = 0;
    add_to_plan(b, *seq, share, std::move(*growth));
  }
}

void scheduler_policy::propose_drafts(step_builder& b, std::vector<sequence*>& order) {
  const auto is_decode = [](const sequence* seq) { return seq->step_share == 1 && is_planned_decode(*seq); };
  b.num_decodes = (b.steady_epoch != 0 ? num_steady_ : 0) +
                  static_cast<int32_t>(std::count_if(order.begin(), order.end(), is_decode));
  if (b.is_ahead || b.num_decodes > config_.speculative_max_batch) return;
  // A batch this small may speculate: the lane's members that may are planned one by one,
  // as if they had never joined (their token of the lane step becomes their share).
  if (b.steady_epoch != 0 && num_steady_speculating_ > 0) {
    for (const steady_member& m : steady_) {
      if (m.seq == nullptr || m.seq->speculative == speculative_method::off) continue;
      sequence& seq = *m.seq;
      if (m.new_block >= 0) seq.num_blocks_sent -= 1;  // grown for this step: the block goes out with its entry
      leave_steady(seq);
      seq.step_share = 1;
    }
    order = running_;
  }
  bool wants_speculation = false, has_sampled_speculation = false;
  for (sequence* seq : order) {
    seq->drafts.clear();
    if (!is_decode(seq) || seq->speculative == speculative_method::off) continue;
    wants_speculation = true;
    has_sampled_speculation = has_sampled_speculation || !seq->params.is_greedy();
  }
  if (!wants_speculation) return;
  // Now and then a step of this size goes plain, so that the break-even rule knows what
  // proposals add to it; never one with a sampled sequence that would speculate, whose text
  // would then depend on step times (see weigh_speculation).
  if (config_.speculative_break_even && !has_sampled_speculation && spec_cost_.needs_plain_step(b.num_decodes)) return;
  for (sequence* seq : order) {
    if (!is_decode(seq) || seq->speculative == speculative_method::off) continue;
    if (seq->num_pending_samples > 0) continue;  // its last token is not known yet
    if (seq->speculation_pause > 0) {
      --seq->speculation_pause;
      continue;
    }
    // Every accepted proposal and the sample after them are output tokens: none may pass
    // max_tokens or the longest sequence.
    const int32_t room = std::min(seq->params.max_tokens - seq->num_output_tokens(),
                                  max_sequence_tokens_ - seq->num_tokens()) - 1;
    const int32_t max_drafts = std::min({seq->num_speculative_tokens, room, b.budget});
    if (max_drafts <= 0) continue;
    if (seq->speculative == speculative_method::draft) {
      // The worker's draft model draws these; the slots reserve their budget and KV.
      seq->drafts.assign(static_cast<size_t>(max_drafts), draft_slot);
    } else {
      ngram_.propose(seq->tokens(), max_drafts, seq->drafts);
    }
    const auto num_drafts = static_cast<int32_t>(seq->drafts.size());
    if (num_drafts == 0) continue;
    seq->step_share += num_drafts;
    b.budget -= num_drafts;
    b.cost_budget -= step_cost(scheduled_end(*seq) + 1, num_drafts, attention_cost_);
  }
}

void scheduler_policy::schedule_swapped(step_builder& b) {
  auto by_rank = [this](uint64_t x, uint64_t y) { return is_ranked_before(sequences_.at(x), sequences_.at(y)); };
  std::sort(swapped_.begin(), swapped_.end(), by_rank);
  size_t num_resumed = 0;
  for (; num_resumed < swapped_.size(); ++num_resumed) {
    const uint64_t id = swapped_[num_resumed];
    sequence& seq = sequences_.at(id);
    if (num_running_slots() + num_slots(seq) > config_.max_num_seqs) break;
    if (!kv_.can_swap_in(id)) break;
    const auto [budget, cost_budget, has_prefill] = std::tuple(b.budget, b.cost_budget, b.has_prefill);
    const int32_t num_to_feed = planned_tokens(seq) - seq.num_computed_tokens;
    const int32_t n = take_tokens(b, seq.num_computed_tokens, num_to_feed);
    // A parent swapped out once its shared prefill was done comes back to fork.
    if (n == 0 && num_to_feed > 0) break;
    append(b.out.ops, kv_.swap_in(id));
    seq.transition_to(sequence_state::running);
    insert_running(seq);
    b.out.resumed.push_back(id);
    if (n == 0) continue;
    // Swapped back in but no room to grow: it stays running and competes next step.
    auto growth = kv_.try_grow(id, seq.num_computed_tokens + n, seq.tokens());
    if (!growth) {
      std::tie(b.budget, b.cost_budget, b.has_prefill) = std::tuple(budget, cost_budget, has_prefill);
      continue;
    }
    add_to_plan(b, seq, n, std::move(*growth));
  }
  swapped_.erase(swapped_.begin(), swapped_.begin() + static_cast<ptrdiff_t>(num_resumed));
}

void scheduler_policy::schedule_waiting(step_builder& b, const std::vector<std::pair<int64_t, uint64_t>>& queue) {
  std::unordered_set<uint64_t> admitted;
  for (const auto& [priority, id] : queue) {
    sequence& seq = sequences_.at(id);
    if (num_running_slots() + num_slots(seq) > config_.max_num_seqs) break;
    // A parent never takes its last prompt token from the cache: its members feed it.
    const int32_t num_cached = std::min(kv_.num_cached_prefix_tokens(seq.tokens()), planned_tokens(seq));
    const auto [budget, cost_budget, has_prefill] = std::tuple(b.budget, b.cost_budget, b.has_prefill);
    const int32_t num_to_feed = planned_tokens(seq) - num_cached;
    const int32_t n = take_tokens(b, num_cached, num_to_feed);
    std::optional<kv_growth> growth;
    // A parent with nothing to prefill (a one-token prompt, or all but its last token
    // cached) is admitted to fork at once; each member then feeds the last token.
    if (n > 0 || (num_to_feed == 0 && !seq.fork_ids.empty())) growth = kv_.try_grow(id, num_cached + n, seq.tokens());
    // Strict order: nothing behind a blocked sequence jumps the queue.
    if (!growth) {
      std::tie(b.budget, b.cost_budget, b.has_prefill) = std::tuple(budget, cost_budget, has_prefill);
      break;
    }
    seq.num_computed_tokens = num_cached;
    seq.num_cached_prefix_tokens = num_cached;
    seq.admitted_priority = priority;
    seq.transition_to(sequence_state::running);
    insert_running(seq);
    if (seq.is_beam) beam_groups_.at(seq.group_id).is_admitted = true;
    (seq.num_preemptions == 0 ? b.out.started : b.out.resumed).push_back(id);
    admitted.insert(id);
    if (n > 0) {
      add_to_plan(b, seq, n, std::move(*growth));
      continue;
    }
    append(b.out.ops, std::move(growth->ops));
    for (sequence* member : fork_group(seq)) {
      const int32_t m = take_tokens(b, member->num_computed_tokens, 1);
      if (m == 0) continue;  // no budget left: it runs next step
      auto member_growth = kv_.try_grow(member->id, member->num_computed_tokens + m, member->tokens());
      if (member_growth) add_to_plan(b, *member, m, std::move(*member_growth));
    }
  }
  std::erase_if(waiting_, [&](uint64_t id) { return admitted.contains(id); });
}

void scheduler_policy::fork_ready_groups() {
  const std::vector<sequence*> order = running_;
  for (sequence* seq : order) {
    if (seq->fork_ids.empty() || seq->num_in_flight_steps > 0) continue;
    if (seq->num_computed_tokens == planned_tokens(*seq)) fork_group(*seq);
  }
}

std::vector<sequence*> scheduler_policy::fork_group(sequence& parent) {
  std::vector<sequence*> members{&parent};
  const std::vector<uint64_t> ids = std::exchange(parent.fork_ids, {});
  const std::vector<uint32_t> places = std::exchange(parent.fork_members, {});
  --num_pending_forks_;
  num_reserved_slots_ -= static_cast<int32_t>(ids.size());  // the members take them now
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint64_t id = ids[i];
    fork_parents_.erase(id);
    sampling_params params = parent.params;
    params.seed = fork_seed(parent.params.seed, places[i]);
    sequence child(id, std::vector<int32_t>(parent.tokens().begin(), parent.tokens().end()), std::move(params),
                   parent.priority, parent.arrival_order + places[i], parent.arrival_ms);
    child.group_id = parent.group_id;
    child.waiting_since_ms = parent.waiting_since_ms;
    child.admitted_priority = parent.admitted_priority;
    child.speculative = parent.speculative;
    child.num_speculative_tokens = parent.num_speculative_tokens;
    child.num_computed_tokens = parent.num_computed_tokens;
    child.num_cached_prefix_tokens = parent.num_cached_prefix_tokens;
    kv_.fork(parent.id, id);
    child.transition_to(sequence_state::running);
    sequence& placed = sequences_.emplace(id, std::move(child)).first->second;
    insert_running(placed);
    members.push_back(&placed);
  }
  return members;
}

void scheduler_policy::drop_pending_forks(sequence& seq) {
  if (seq.fork_ids.empty()) return;
  if (seq.state() == sequence_state::running) num_reserved_slots_ -= static_cast<int32_t>(seq.fork_ids.size());
  for (uint64_t id : seq.fork_ids) fork_parents_.erase(id);
  seq.fork_ids.clear();
  seq.fork_members.clear();
  --num_pending_forks_;
}

void scheduler_policy::preempt(uint64_t seq_id, step_builder& b, preemption_mode mode) {
  const auto is_planned = [seq_id](const step_entry& e) { return e.seq_id == seq_id; };
  if (std::any_of(b.entries.begin(), b.entries.end(), is_planned)) {
    throw error(error_code::internal, "sequence " + std::to_string(seq_id) + " was evicted after being planned");
  }
  sequence& seq = sequences_.at(seq_id);
  if (seq.steady_index >= 0) {
    const steady_member& m = steady_[static_cast<size_t>(seq.steady_index)];
    if (b.steady_epoch != 0) {  // its lane token of this step goes back to the budgets
      b.budget += 1;
      b.cost_budget += step_cost(m.offset + static_cast<int64_t>(b.steady_epoch), 1, attention_cost_);
    }
    leave_steady(seq);
  }
  if (seq.step_share > 0) {  // its share of this step goes back to the budgets
    b.budget += seq.step_share;
    b.cost_budget += step_cost(scheduled_end(seq), seq.step_share, attention_cost_);
    seq.step_share = 0;
  }
  if (seq.num_in_flight_steps > 0) {
    throw error(error_code::internal, "sequence " + std::to_string(seq_id) + " was evicted while a step holds it");
  }
  if (seq.is_known_to_worker) forgets_.push_back(seq_id);
  seq.is_known_to_worker = false;
  seq.num_blocks_sent = 0;
  seq.drafts.clear();
  erase_running(seq);
  if (mode == preemption_mode::swap && kv_.can_swap_out(seq_id)) {
    append(b.out.ops, kv_.swap_out(seq_id));
    seq.transition_to(sequence_state::swapped);
    swapped_.push_back(seq_id);
  } else {
    kv_.release(seq_id);
    seq.transition_to(sequence_state::waiting);  // forgets its KV: prompt+output are fed again
    seq.waiting_since_ms = b.now_ms;
    waiting_.push_back(seq_id);
  }
  ++seq.num_preemptions;
  ++totals_.num_preemptions;
  b.out.preempted.push_back(seq_id);
}

std::optional<uint64_t> scheduler_policy::lowest_ranked_running() const {
  const sequence* steady = lowest_ranked_steady();
  if (running_.empty()) return steady != nullptr ? std::optional<uint64_t>(steady->id) : std::nullopt;
  const sequence* last = running_.back();
  if (steady != nullptr && is_ranked_before(*last, *steady)) return steady->id;
  return last->id;
}

void scheduler_policy::insert_running(sequence& seq) {
  const auto rank = [](const sequence* x, const sequence* y) { return is_ranked_before(*x, *y); };
  running_.insert(std::upper_bound(running_.begin(), running_.end(), &seq, rank), &seq);
  num_reserved_slots_ += static_cast<int32_t>(seq.fork_ids.size());
}

void scheduler_policy::erase_running(const sequence& seq) {
  // Ranks are unique (arrival orders are), so the rank finds the sequence if it runs.
  const auto rank = [](const sequence* x, const sequence* y) { return is_ranked_before(*x, *y); };
  const auto it = std::lower_bound(running_.begin(), running_.end(), &seq, rank);
  if (it != running_.end() && *it == &seq) {
    running_.erase(it);
    num_reserved_slots_ -= static_cast<int32_t>(seq.fork_ids.size());
  }
}

int64_t scheduler_policy::effective_priority(const sequence& seq, int64_t now_ms) const {
  if (config_.ageing_ms == 0) return seq.priority;
  return seq.priority - std::max<int64_t>(0, now_ms - seq.waiting_since_ms) / config_.ageing_ms;
}

sequence_step scheduler_policy::make_step(const sequence& seq, int32_t num_tokens,
                                         const std::vector<int32_t>& block_table) const {
  sequence_step s;
  s.seq_id = seq.id;
  s.start_pos = scheduled_end(seq);
  s.tokens = seq.tokens_from(s.start_pos, num_tokens);
  s.block_table = block_table;
  s.wants_sample = s.start_pos + num_tokens == seq.num_tokens() && !seq.has_beam_next;
  s.params = seq.params;
  // The sampler is stateless given (seed, sample_index): counting output tokens makes a
  // recomputed sequence draw exactly what the uninterrupted run would have drawn.
  s.sample_index = static_cast<uint64_t>(seq.num_output_tokens());
  if (seq.params.grammar) s.output_tokens.assign(seq.output_tokens().begin(), seq.output_tokens().end());
  if (s.wants_sample && seq.params.has_penalties()) {
    auto [window, num_from_prompt] = seq.penalty_window();
    s.penalty_tokens = std::move(window);
    s.num_prompt_penalty_tokens = num_from_prompt;
  }
  return s;
}

std::vector<sequence_event> scheduler_policy::on_step_done(const step_result& result, double seconds) {
  if (in_flight_.empty()) throw error(error_code::internal, "on_step_done() without a step in flight");
  // Each entry's sequence is looked up once (nullptr: retired while the step ran), each
  // output matched to its sequence once; outputs of retired sequences are ignored.
  // The lane's members follow the entries: each a one-token decode that wants a sample.
  const in_flight_step& step = in_flight_.front();
  const size_t num_entries = step.entries.size();
  step_sequences_.clear();
  const auto lookup = [this](uint64_t id) {
    const auto it = sequences_.find(id);
    return it == sequences_.end() ? nullptr : &it->second;
  };
  for (const auto& e : step.entries) step_sequences_.push_back(lookup(e.seq_id));
  for (const uint64_t id : step.steady_ids) step_sequences_.push_back(lookup(id));
  for (const auto& o : result.outputs) {
    if (const auto it = sequences_.find(o.seq_id); it != sequences_.end()) it->second.step_output = &o;
  }
  for (size_t i = 0; i < step.size(); ++i) {
    const auto e = step.entry(i);
    if (!e.wants_sample || step_sequences_[i] == nullptr) continue;
    const sequence_output* o = step_sequences_[i]->step_output;
    if (o == nullptr || o->token < 0) {
      for (const auto& x : result.outputs) {
        if (const auto y = sequences_.find(x.seq_id); y != sequences_.end()) y->second.step_output = nullptr;
      }
      throw error(error_code::internal, "the step result has no sampled token for sequence " + std::to_string(e.seq_id));
    }
  }

  observe_step_time(in_flight_.front(), seconds);
  const in_flight_step done = std::move(in_flight_.front());
  in_flight_.erase(in_flight_.begin());
  release_deferred(done);
  std::vector<sequence_event> events;
  events.reserve(done.size());
  std::vector<uint64_t> beam_rounds;  // beam groups with a beam that got its next tokens
  for (size_t i = 0; i < done.size(); ++i) {
    const step_entry e = done.entry(i);
    if (step_sequences_[i] == nullptr) continue;  // retired while the step ran
    sequence& seq = *step_sequences_[i];
    // A member still in the lane since before this step never counted it in flight.
    const bool is_implicit = i >= num_entries && seq.steady_index >= 0 && seq.steady_join_epoch <= done.steady_epoch;
    seq.num_computed_tokens += e.num_tokens - e.num_drafts;
    if (!is_implicit) {
      seq.num_in_flight_tokens -= e.num_tokens;
      seq.num_in_flight_steps -= 1;
    }
    const sequence_output* output = std::exchange(seq.step_output, nullptr);
    if (!e.wants_sample) continue;  // a non-final prefill chunk
    if (!is_implicit) seq.num_pending_samples -= 1;
    const sequence_output& o = *output;
    if (seq.is_beam) {
      seq.beam_next = o.top_logprobs;
      seq.has_beam_next = true;
      if (std::find(beam_rounds.begin(), beam_rounds.end(), seq.group_id) == beam_rounds.end()) {
        beam_rounds.push_back(seq.group_id);
      }
      continue;
    }
    if (e.num_drafts > 0) {
      apply_speculative(e, seq, o, events);
      continue;
    }
    seq.append_token(o.token);
    sequence_event ev{e.seq_id, sequence_state::running, o.token, o.logprob, o.top_logprobs};
    if (should_stop(seq)) {
      ev.state = sequence_state::finished;
      ev.reason = seq.reason;
      // The worker drops a stopped sequence from the step planned behind this one (a lane
      // member's lane step in flight becomes its own count first).
      const bool is_stop = is_stop_token(seq.params, eog_ids_, o.token);
      if (is_stop && seq.steady_index >= 0) leave_steady(seq);
      if (seq.num_in_flight_steps > 0 && is_stop) {
        auto& behind = in_flight_.front();
        auto& next = behind.entries;
        const auto dropped = std::find_if(next.begin(), next.end(), [&](const step_entry& x) { return x.seq_id == seq.id; });
        if (dropped != next.end()) {
          seq.num_in_flight_tokens -= dropped->num_tokens;
          seq.num_pending_samples -= dropped->wants_sample ? 1 : 0;
          seq.num_in_flight_steps -= 1;
          next.erase(dropped);
        } else if (const auto lane = std::find(behind.steady_ids.begin(), behind.steady_ids.end(), seq.id);
                   lane != behind.steady_ids.end()) {
          seq.num_in_flight_tokens -= 1;
          seq.num_pending_samples -= 1;
          seq.num_in_flight_steps -= 1;
          behind.steady_ids.erase(lane);
        }
      }
      retire(seq, sequence_state::finished);
    }
    events.push_back(std::move(ev));
  }
  for (uint64_t group : beam_rounds) {
    if (beam_groups_.contains(group)) advance_beams(group, events);
  }
  return events;
}

void scheduler_policy::observe_step_time(const in_flight_step& step, double seconds) {
  step_decodes_ = 0;
  if (seconds < 0 || step.size() == 0 || static_cast<int32_t>(step.size()) > config_.speculative_max_batch) return;
  int32_t num_proposals = 0;
  for (size_t i = 0; i < step.entries.size(); ++i) {
    const step_entry& e = step.entries[i];
    if (!e.wants_sample || e.num_tokens - e.num_drafts != 1) return;  // a prompt chunk is in it
    if (e.num_drafts == 0) continue;
    const sequence* seq = step_sequences_[i];
    const sequence_output* o = seq != nullptr ? seq->step_output : nullptr;
    num_proposals += o != nullptr && o->num_drafted >= 0 ? std::min(o->num_drafted, e.num_drafts) : e.num_drafts;
  }
  step_decodes_ = static_cast<int32_t>(step.size());  // lane members are plain decodes
  spec_cost_.observe(step_decodes_, num_proposals, seconds);
}

void scheduler_policy::weigh_speculation(sequence& seq, int32_t num_proposed, int32_t num_accepted) {
  // Greedy sequences only: their text is the same whichever steps they speculate in. A
  // sampled sequence's is not (proposals change which uniform decides each token), and a
  // rule driven by measured time would make a seeded request's text depend on the load.
  if (!config_.speculative_break_even || step_decodes_ == 0 || num_proposed == 0 || !seq.params.is_greedy()) return;
  const double break_even = spec_cost_.break_even(step_decodes_, num_proposed);
  if (break_even < 0) return;
  // A moving average over the last few steps: acceptance moves with the text, and a sequence
  // should stop soon after its proposals stop paying, but not on one unlucky step.
  constexpr double weight = 0.3;
  constexpr int32_t min_samples = 4;
  const double gain = num_accepted - break_even;
  seq.speculation_gain = seq.num_gain_samples == 0 ? gain : seq.speculation_gain + weight * (gain - seq.speculation_gain);
  if (++seq.num_gain_samples < min_samples) return;
  if (seq.speculation_gain >= 0) {
    seq.num_break_even_pauses = 0;
    return;
  }
  // Under the break-even: sit out 4, 8, 16, then 32 steps. The average is kept, so one more
  // step that does not pay sends it back out; a few that do bring it back over.
  seq.speculation_pause = std::max(seq.speculation_pause, 4 << std::min(seq.num_break_even_pauses, 3));
  ++seq.num_break_even_pauses;
}

void scheduler_policy::apply_speculative(const step_entry& e, sequence& seq, const sequence_output& o,
                                         std::vector<sequence_event>& events) {
  const auto num_accepted = static_cast<int32_t>(o.accepted.size());
  // A draft model may fill fewer slots than were reserved (it stops where it is unsure).
  const int32_t num_proposed = o.num_drafted >= 0 ? o.num_drafted : e.num_drafts;
  if (num_proposed > e.num_drafts || num_accepted > num_proposed) {
    throw error(error_code::internal, "sequence " + std::to_string(seq.id) + ": " + std::to_string(num_accepted) +
                                          " proposals accepted of " + std::to_string(num_proposed) + " made in " +
                                          std::to_string(e.num_drafts) + " slots");
  }
  ++totals_.num_speculative_steps;
  totals_.num_draft_tokens += num_proposed;
  totals_.num_accepted_tokens += num_accepted;
  totals_.num_emitted_tokens += num_accepted + 1;
  if (totals_.num_drafts_at_position.size() < static_cast<size_t>(num_proposed)) {
    totals_.num_drafts_at_position.resize(static_cast<size_t>(num_proposed));
    totals_.num_accepted_at_position.resize(static_cast<size_t>(num_proposed));
  }
  for (int32_t i = 0; i < num_proposed; ++i) ++totals_.num_drafts_at_position[static_cast<size_t>(i)];
  for (int32_t i = 0; i < num_accepted; ++i) ++totals_.num_accepted_at_position[static_cast<size_t>(i)];
  // Next time one more proposal than were accepted now (prompt lookup), or every slot for a
  // draft model that stops by its own confidence. A sequence whose proposals keep failing
  // sits out 2, 4, ... 32 steps, so that text the proposer cannot predict costs little.
  const bool is_self_limiting = seq.speculative == speculative_method::draft && config_.draft_min_confidence > 0;
  seq.num_speculative_tokens =
      is_self_limiting ? config_.num_speculative_tokens : std::clamp(num_accepted + 1, 1, config_.num_speculative_tokens);
  seq.num_speculation_misses = num_accepted == 0 ? seq.num_speculation_misses + 1 : 0;
  if (seq.num_speculation_misses >= 2) seq.speculation_pause = 1 << std::min(seq.num_speculation_misses - 1, 5);
  weigh_speculation(seq, num_proposed, num_accepted);

  bool is_first = true;
  // Appends one emitted token and its event; true when the sequence stopped on it.
  const auto emit = [&](int32_t token, float logprob, const std::vector<token_logprob>& top) {
    seq.append_token(token);
    sequence_event ev{seq.id, sequence_state::running, token, logprob, top};
    if (is_first) {
      ev.num_proposed = num_proposed;
      ev.num_accepted = num_accepted;
      is_first = false;
    }
    const bool stops = should_stop(seq);
    if (stops) {
      ev.state = sequence_state::finished;
      ev.reason = seq.reason;
    }
    events.push_back(std::move(ev));
    return stops;
  };
  for (const auto& a : o.accepted) {
    ++seq.num_computed_tokens;  // the accepted proposal's KV is the token's
    if (emit(a.token, a.logprob, a.top_logprobs)) return retire(seq, sequence_state::finished);
  }
  if (emit(o.token, o.logprob, o.top_logprobs)) return retire(seq, sequence_state::finished);
  // The rejected proposals' positions: their blocks go back, their KV is never read.
  kv_.truncate(seq.id, seq.num_computed_tokens);
}

std::vector<sequence_event> scheduler_policy::on_step_failed(error_code code, const std::string& message) {
  if (in_flight_.empty()) throw error(error_code::internal, "on_step_failed() without a step in flight");
  in_flight_step failed = std::move(in_flight_.front());
  in_flight_.erase(in_flight_.begin());
  release_deferred(failed);
  // The worker fails a step planned ahead of a failed one (it may read the failed step's KV).
  if (!in_flight_.empty() && in_flight_.front().is_planned_ahead) needs_sync_ = true;
  std::vector<sequence_event> events;
  for (const auto& e : failed.entries) {
    const auto it = sequences_.find(e.seq_id);
    if (it == sequences_.end()) continue;
    sequence& seq = it->second;
    seq.num_in_flight_tokens -= e.num_tokens;
    seq.num_pending_samples -= e.wants_sample ? 1 : 0;
    seq.num_in_flight_steps -= 1;
  }
  for (const uint64_t id : failed.steady_ids) {
    const auto it = sequences_.find(id);
    if (it == sequences_.end()) continue;
    sequence& seq = it->second;
    if (seq.steady_index >= 0 && seq.steady_join_epoch <= failed.steady_epoch) continue;  // never counted
    seq.num_in_flight_tokens -= 1;
    seq.num_pending_samples -= 1;
    seq.num_in_flight_steps -= 1;
  }
  for (const uint64_t id : failed.steady_ids) failed.entries.push_back({id, 1, true, 0});
  for (const auto& e : failed.entries) {
    const auto it = sequences_.find(e.seq_id);
    if (it == sequences_.end()) continue;  // retired, or a beam whose group failed already
    sequence& seq = it->second;
    sequence_event ev;
    ev.seq_id = e.seq_id;
    ev.state = sequence_state::failed;
    ev.error = code;
    ev.message = message;
    if (seq.is_beam) {
      // A beam search fails as one request, under its group's id.
      ev.seq_id = seq.group_id;
      end_beam_group(seq.group_id, sequence_state::failed);
    } else {
      retire(seq, sequence_state::failed);
    }
    events.push_back(std::move(ev));
  }
  return events;
}

void scheduler_policy::forget_worker_state() {
  dissolve_steady();  // the lane continues what the worker holds
  for (auto& [id, seq] : sequences_) {
    seq.is_known_to_worker = false;
    seq.num_blocks_sent = 0;
  }
  forgets_.clear();
}

scheduler_policy::worker_loss scheduler_policy::on_worker_lost(error_code code, const std::string& message,
                                                               int64_t now_ms) {
  worker_loss out;
  std::vector<uint64_t> in_steps;  // plan order, each once
  std::unordered_set<uint64_t> seen;
  for (const auto& step : in_flight_) {
    for (const auto& e : step.entries) {
      if (seen.insert(e.seq_id).second) in_steps.push_back(e.seq_id);
    }
    for (const uint64_t id : step.steady_ids) {
      if (seen.insert(id).second) in_steps.push_back(id);
    }
  }
  std::vector<uint64_t> steady_ids;  // running, in the lane
  for (const steady_member& m : steady_) {
    if (m.seq != nullptr) steady_ids.push_back(m.id);
  }
  clear_steady();
  // Every block (deferred ones included) goes with the pool; nothing is released one by one.
  in_flight_.clear();
  deferred_.clear();
  forgets_.clear();
  needs_sync_ = false;
  for (uint64_t id : in_steps) {
    const auto it = sequences_.find(id);
    if (it == sequences_.end()) continue;
    sequence_event ev;
    ev.seq_id = id;
    ev.state = sequence_state::failed;
    ev.error = code;
    ev.message = message;
    out.failed.push_back(std::move(ev));
    drop_pending_forks(it->second);
    it->second.transition_to(sequence_state::failed);
    erase_running(it->second);
    erase_id(waiting_, id);
    erase_id(swapped_, id);
    sequences_.erase(it);
  }
  // Admitted again by priority and arrival, as every waiting sequence (waiting_in_order).
  std::vector<uint64_t> lost;
  for (const sequence* seq : running_) lost.push_back(seq->id);
  for (const uint64_t id : steady_ids) {
    if (sequences_.contains(id)) lost.push_back(id);
  }
  lost.insert(lost.end(), swapped_.begin(), swapped_.end());
  for (auto& [id, seq] : sequences_) {
    seq.num_in_flight_tokens = 0;
    seq.num_pending_samples = 0;
    seq.num_in_flight_steps = 0;
    seq.step_output = nullptr;
    seq.step_share = 0;
    seq.is_known_to_worker = false;
    seq.was_last_sent_sampled = false;
    seq.num_blocks_sent = 0;
  }
  for (uint64_t id : lost) {
    sequence& seq = sequences_.at(id);
    seq.transition_to(sequence_state::waiting);  // forgets its KV: prompt+output are fed again
    seq.waiting_since_ms = now_ms;
    ++seq.num_preemptions;
    ++totals_.num_preemptions;
    waiting_.push_back(id);
    out.requeued.push_back(id);
  }
  running_.clear();
  num_reserved_slots_ = 0;
  swapped_.clear();
  kv_.reset();
  return out;
}

std::vector<sequence_event> scheduler_policy::fail_all(error_code code, const std::string& message) {
  std::vector<uint64_t> ids;
  for (const auto& [id, seq] : sequences_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  std::vector<sequence_event> events;
  for (uint64_t id : ids) {
    sequence_event ev;
    ev.seq_id = id;
    ev.state = sequence_state::failed;
    ev.error = code;
    ev.message = message;
    events.push_back(std::move(ev));
  }
  clear_steady();
  sequences_.clear();
  waiting_.clear();
  running_.clear();
  swapped_.clear();
  in_flight_.clear();
  deferred_.clear();
  forgets_.clear();
  fork_parents_.clear();
  num_pending_forks_ = 0;
  num_reserved_slots_ = 0;
  beam_groups_.clear();
  beam_ids_.clear();
  needs_sync_ = false;
  kv_.reset();
  return events;
}

bool scheduler_policy::should_stop(sequence& seq) const {
  const int32_t token = seq.output_tokens().back();
  if (is_stop_token(seq.params, eog_ids_, token)) {
    seq.reason = finish_reason::stop;
    return true;
  }
  if (seq.num_output_tokens() >= seq.params.max_tokens || seq.num_tokens() >= max_sequence_tokens_) {
    seq.reason = finish_reason::length;
    return true;
  }
  return false;
}

void scheduler_policy::retire(sequence& seq, sequence_state final_state) {
  const uint64_t id = seq.id;
  drop_pending_forks(seq);
  if (seq.steady_index >= 0) leave_steady(seq);
  if (seq.state() == sequence_state::running || seq.state() == sequence_state::swapped) {
    const bool is_discard = final_state == sequence_state::failed;
    if (seq.num_in_flight_steps > 0) {
      // Blocks planned for steps in flight are registered in the prefix cache before the
      // steps write them: they go back only once those steps are back.
      defer_release(seq, is_discard);
    } else if (is_discard) {
      // Its planned step never ran: the blocks registered in the prefix cache hold nothing.
      kv_.discard(id);
    } else {
      kv_.release(id);
    }
  }
  if (seq.is_known_to_worker) forgets_.push_back(id);
  seq.transition_to(final_state);
  erase_running(seq);
  erase_id(waiting_, id);
  erase_id(swapped_, id);
  sequences_.erase(id);
}

void scheduler_policy::defer_release(sequence& seq, bool is_discard) {
  // Steps come back in order: the blocks go back with the newest step that holds the sequence.
  deferred_[seq.id] = is_discard;
  for (auto& step : in_flight_) {
    if (step.serial == seq.last_step_serial) {
      step.release_after.push_back(seq.id);
      return;
    }
  }
  throw error(error_code::internal, "sequence " + std::to_string(seq.id) + " has steps in flight, but none holds it");
}

void scheduler_policy::release_deferred(const in_flight_step& step) {
  for (const uint64_t id : step.release_after) {
    const auto it = deferred_.find(id);
    if (it == deferred_.end()) continue;
    if (it->second) {
      kv_.discard(id);
    } else {
      kv_.release(id);
    }
    deferred_.erase(it);
  }
}

// ---- the steady decode lane ----------------------------------------------------------------

bool scheduler_policy::can_join_steady(const sequence& seq) const {
  // A budget under max_num_seqs may not cover every decode, which must then be given out in
  // rank order one by one.
  return config_.steady_decodes && config_.max_num_batched_tokens >= config_.max_num_seqs && seq.steady_index < 0 &&
         !seq.is_beam && !seq.has_beam_next && seq.fork_ids.empty() && seq.state() == sequence_state::running;
}

void scheduler_policy::join_steady(sequence& seq) {
  // Lane step i (1, 2, ...) after joining feeds position end + i - 1; it may while its sample
  // neither passes max_tokens nor the longest sequence (what ends_by_length_in_flight checks
  // for a sequence planned one by one), and, without a new block, while that position is in
  // the last block.
  const int32_t end = scheduled_end(seq);
  const int64_t kv_room = static_cast<int64_t>(seq.num_blocks_sent) * kv_.block_size() - end;
  const int64_t length_room =
      std::min<int64_t>(static_cast<int64_t>(seq.params.max_tokens) - seq.num_output_tokens() - seq.num_pending_samples,
                        static_cast<int64_t>(max_sequence_tokens_) - planned_tokens(seq));
  if (length_room <= 0 || kv_room < 0) return;
  const uint64_t join = steady_epoch_ + 1;
  seq.steady_join_epoch = join;
  seq.steady_end_epoch = join + static_cast<uint64_t>(length_room);
  seq.steady_due_epoch = join + static_cast<uint64_t>(std::min(kv_room, length_room));
  seq.steady_index = static_cast<int32_t>(steady_.size());
  const int64_t offset = end - static_cast<int64_t>(join);
  steady_.push_back({seq.id, &seq, offset, -1});
  ++num_steady_;
  num_steady_speculating_ += seq.speculative != speculative_method::off ? 1 : 0;
  steady_offset_sum_ += offset;
  seq.steady_ticket = ++steady_tickets_;
  steady_due_.emplace_back(seq.steady_due_epoch, seq.id, seq.steady_ticket);
  std::push_heap(steady_due_.begin(), steady_due_.end(), std::greater<>{});
  erase_running(seq);
  if (num_steady_ == 1) {
    steady_lowest_ = &seq;
  } else if (steady_lowest_ != nullptr && is_ranked_before(*steady_lowest_, seq)) {
    steady_lowest_ = &seq;
  }
}

void scheduler_policy::leave_steady(sequence& seq) {
  // Its lane steps in flight become its own in-flight counts, as if planned one by one.
  for (const auto& step : in_flight_) {
    if (step.steady_epoch == 0 || step.steady_epoch < seq.steady_join_epoch) continue;
    seq.num_in_flight_tokens += 1;
    seq.num_pending_samples += 1;
    seq.num_in_flight_steps += 1;
    seq.last_step_serial = step.serial;
  }
  // Its place stays empty until the lane is compacted: the others keep their order.
  steady_member& m = steady_[static_cast<size_t>(seq.steady_index)];
  steady_offset_sum_ -= m.offset;
  m = steady_member{};
  --num_steady_;
  num_steady_speculating_ -= seq.speculative != speculative_method::off ? 1 : 0;
  seq.steady_index = -1;
  if (steady_lowest_ == &seq) steady_lowest_ = nullptr;
  insert_running(seq);
  // The pool learns the positions the lane planned (inside the last block: nothing is
  // allocated) and keys the blocks they filled.
  if (!kv_.grow(seq.id, scheduled_end(seq), seq.tokens()).copies.empty()) {
    throw error(error_code::internal, "sequence " + std::to_string(seq.id) + " left the steady lane with a shared last block");
  }
}

void scheduler_policy::compact_steady() {
  size_t kept = 0;
  for (size_t i = 0; i < steady_.size(); ++i) {
    if (steady_[i].seq == nullptr) continue;
    steady_[kept] = steady_[i];
    steady_[kept].seq->steady_index = static_cast<int32_t>(kept);
    ++kept;
  }
  steady_.resize(kept);
}

void scheduler_policy::dissolve_steady() {
  for (size_t i = 0; i < steady_.size(); ++i) {
    if (steady_[i].seq != nullptr) leave_steady(*steady_[i].seq);
  }
  steady_.clear();
  steady_due_.clear();
}

void scheduler_policy::clear_steady() {
  for (const steady_member& m : steady_) {
    if (m.seq != nullptr) m.seq->steady_index = -1;
  }
  steady_.clear();
  num_steady_ = 0;
  num_steady_speculating_ = 0;
  steady_due_.clear();
  steady_offset_sum_ = 0;
  steady_lowest_ = nullptr;
}

const sequence* scheduler_policy::lowest_ranked_steady() const {
  if (num_steady_ == 0) return nullptr;
  if (steady_lowest_ == nullptr) {
    for (const steady_member& m : steady_) {
      if (m.seq != nullptr && (steady_lowest_ == nullptr || is_ranked_before(*steady_lowest_, *m.seq))) {
        steady_lowest_ = m.seq;
      }
    }
  }
  return steady_lowest_;
}

void scheduler_policy::prepare_steady(step_builder& b) {
  if (num_steady_ == 0) {
    steady_.clear();
    steady_due_.clear();
    return;
  }
  if (steady_.size() > 2 * static_cast<size_t>(num_steady_) + 64) compact_steady();
  const uint64_t epoch = steady_epoch_ + 1;
  // Members due now: those whose length runs out leave; those whose last block is full
  // need one for this step's position.
  steady_grown_.clear();
  while (!steady_due_.empty() && std::get<0>(steady_due_.front()) <= epoch) {
    std::pop_heap(steady_due_.begin(), steady_due_.end(), std::greater<>{});
    const auto [due, id, ticket] = steady_due_.back();
    steady_due_.pop_back();
    const auto it = sequences_.find(id);
    if (it == sequences_.end() || it->second.steady_index < 0 || it->second.steady_ticket != ticket ||
        it->second.steady_due_epoch != due) {
      continue;  // left the lane since
    }
    sequence& seq = it->second;
    seq.steady_due_epoch = 0;  // looked at now; a new due step follows from what happens to it
    if (seq.steady_end_epoch <= epoch) {
      leave_steady(seq);
    } else {
      steady_grown_.push_back(seq.steady_index);
    }
  }
  // Every decode gets its token before any prompt chunk; when the budget might not cover
  // every decode, they are given out one by one in rank order, as without the lane.
  const int64_t num_decodes = num_steady_ + static_cast<int64_t>(running_.size());
  if (b.budget < num_decodes) {
    dissolve_steady();
    return;
  }
  if (!steady_grown_.empty()) {
    // A new block for each, here, only when the pool has more than every running sequence
    // could take this step (one block per running sequence and the budget's worth of prompt
    // chunks): then nobody runs short, and the step is the one planning every sequence in
    // rank order would give. Otherwise they are planned one by one.
    const int32_t block_size = kv_.block_size();
    // Members that may speculate count as running too: a small batch plans them one by one.
    const int64_t others = static_cast<int64_t>(running_.size()) + num_steady_speculating_ +
                           (static_cast<int64_t>(b.budget) - num_steady_ + block_size - 1) / block_size;
    const bool has_room = kv_.num_free_blocks() >= static_cast<int64_t>(steady_grown_.size()) + others;
    for (const int32_t index : steady_grown_) {
      steady_member& m = steady_[static_cast<size_t>(index)];
      sequence& seq = *m.seq;
      if (!has_room) {
        leave_steady(seq);
        continue;
      }
      const int64_t pos = m.offset + static_cast<int64_t>(epoch);
      auto growth = kv_.try_grow(seq.id, static_cast<int32_t>(pos + 1), seq.tokens());
      if (!growth || !growth->ops.copies.empty() ||
          static_cast<int32_t>(growth->block_table->size()) != seq.num_blocks_sent + 1) {
        throw error(error_code::internal, "sequence " + std::to_string(seq.id) + " could not take a new block in the steady lane");
      }
      m.new_block = growth->block_table->back();
      seq.num_blocks_sent += 1;
      seq.steady_due_epoch = std::min(epoch + static_cast<uint64_t>(block_size), seq.steady_end_epoch);
      steady_due_.emplace_back(seq.steady_due_epoch, seq.id, seq.steady_ticket);
      std::push_heap(steady_due_.begin(), steady_due_.end(), std::greater<>{});
    }
    if (!has_room) steady_grown_.clear();
  }
  if (num_steady_ == 0) return;
  steady_epoch_ = epoch;
  b.steady_epoch = epoch;
  const auto n = static_cast<int64_t>(num_steady_);
  b.budget -= static_cast<int32_t>(n);
  const int64_t sum_pos = steady_offset_sum_ + n * static_cast<int64_t>(epoch);
  b.cost_budget -= attention_cost_ > 0 ? static_cast<double>(n) + static_cast<double>(sum_pos + n) / attention_cost_
                                       : static_cast<double>(n);
}

bool scheduler_policy::abort(uint64_t seq_id) {
  if (const auto beam = beam_ids_.find(seq_id); beam != beam_ids_.end()) {
    // Any of a beam search's ids cancels the whole search.
    end_beam_group(beam->second, sequence_state::cancelled);
    return true;
  }
  if (const auto member = fork_parents_.find(seq_id); member != fork_parents_.end()) {
    sequence& parent = sequences_.at(member->second);
    const auto at = std::find(parent.fork_ids.begin(), parent.fork_ids.end(), seq_id) - parent.fork_ids.begin();
    parent.fork_ids.erase(parent.fork_ids.begin() + at);
    parent.fork_members.erase(parent.fork_members.begin() + at);
    if (parent.state() == sequence_state::running) --num_reserved_slots_;
    fork_parents_.erase(member);
    // With no member left the parent is a plain sequence: it feeds its last token itself.
    if (parent.fork_ids.empty()) --num_pending_forks_;
    return true;
  }
  const auto it = sequences_.find(seq_id);
  if (it == sequences_.end()) return false;
  retire(it->second, sequence_state::cancelled);
  return true;
}

const sequence* scheduler_policy::find(uint64_t seq_id) const {
  const auto it = sequences_.find(seq_id);
  return it == sequences_.end() ? nullptr : &it->second;
}

scheduler_stats scheduler_policy::stats() const {
  scheduler_stats s = totals_;
  s.num_running = static_cast<int32_t>(running_.size()) + num_steady_;
  s.num_waiting = static_cast<int32_t>(waiting_.size());
  s.num_swapped = static_cast<int32_t>(swapped_.size());
  return s;
}

}  // namespace troupe
