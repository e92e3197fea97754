#include "troupe/actors/scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "troupe/actors/fan_out.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/engine/prefix_digest.hpp"
#include "troupe/engine/step_cost.hpp"
#include "troupe/engine/step_deadline.hpp"
#include "troupe/engine/trace.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

struct scheduler_state {
  std::unique_ptr<block_manager> blocks;
  std::unique_ptr<scheduler_policy> policy;
  std::unordered_map<uint64_t, request_actor> owners;  // live sequence -> its request actor
  worker_actor worker;
  worker_factory make_worker;
  std::shared_ptr<worker_actor> current_worker;  // read by the exit functor
  int64_t num_worker_restarts = 0;
  double busy_seconds = 0;
  double overhead_seconds = 0;
  int64_t num_step_sequences = 0;  // over the steps that came back, for the stats snapshot
  int64_t num_prefill_tokens = 0;
  int32_t max_num_seqs = 0;
  int32_t max_num_batched_tokens = 0;
  // Recent requests' prefix keys and first blocks: the digest the stats snapshot carries.
  prefix_digest digest;
  std::shared_ptr<serving_metrics> metrics;  // null: none
  std::optional<step_cost_model> costs;      // refits the policy's attention_cost; none: fixed
  std::chrono::steady_clock::time_point last_blocks_sample;
  // When the last step came back: a step sent earlier (planned ahead) starts running then.
  std::chrono::steady_clock::time_point last_back;
  bool is_async = false;
  // The request side: a step's events go out as one message per fan-out actor, each
  // holding the events of the sequences whose id falls to it.
  std::vector<fan_out_actor> fan_outs;
  std::vector<notice_batch> outgoing;
  // The watchdog. The steps with the worker, oldest first (as the policy's steps in flight):
  // the oldest one runs, and its deadline starts when the one before it came back.
  struct flight {
    uint64_t serial = 0;
    double cost = 0;           // step_cost units, to scale the deadline
    int64_t deadline_ms = 0;   // given when it started running
    int64_t due_ms = -1;       // on the actor clock; -1: not running yet
  };
  std::deque<flight> flights;
  uint64_t next_serial = 1;
  std::unique_ptr<step_deadline> deadline;
  std::vector<int64_t> timers_due_ms;  // the step_timer messages on their way to us
  std::shared_ptr<engine_health> health;  // null: none
  // Set once a stuck worker could not be replaced: every sequence has failed, new ones are refused.
  std::optional<std::string> failure;
  static inline const char* name = "troupe.scheduler";
};

using scheduler_self = scheduler_actor::stateful_pointer<scheduler_state>;
using clock_type = std::chrono::steady_clock;

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double clock_seconds(clock_type::time_point t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); }

void add_overhead(scheduler_self self, double seconds) {
  self->state.overhead_seconds += seconds;
  if (self->state.metrics) self->state.metrics->on_scheduler_overhead(seconds);
}

// The queue gauges after every change. The KV pool's statistics walk every sequence, so
// they are sampled at most every 100 ms while busy, and taken whenever the engine has
// drained, so that an idle engine's figures are exact.
void publish_state(scheduler_self self) {
  auto& st = self->state;
  if (!st.metrics) return;
  st.metrics->on_queues(st.policy->stats());
  if (st.policy->has_unfinished()) {
    const auto now = clock_type::now();
    if (now - st.last_blocks_sample < std::chrono::milliseconds(100)) return;
    st.last_blocks_sample = now;
  }
  st.metrics->on_blocks(st.blocks->stats());
}

void queue_notice(scheduler_self self, request_notice n) {
  auto& st = self->state;
  st.outgoing[n.event.seq_id % st.outgoing.size()].notices.push_back(std::move(n));
}

// Sends what queue_notice collected: one message per fan-out actor with anything to deliver.
void flush_notices(scheduler_self self) {
  auto& st = self->state;
  for (size_t i = 0; i < st.outgoing.size(); ++i) {
    if (st.outgoing[i].notices.empty()) continue;
    self->send(st.fan_outs[i], atoms::token_atom::value, std::move(st.outgoing[i]));
    st.outgoing[i] = {};
  }
}

// Each event is moved into its fan-out actor's batch (no copy) and leaves with it.
void fan_out(scheduler_self self, std::vector<sequence_event>& events) {
  auto& st = self->state;
  for (auto& e : events) {
    const auto it = st.owners.find(e.seq_id);
    if (it == st.owners.end()) continue;
    const bool is_last = e.state != sequence_state::running;
    queue_notice(self, {it->second, request_notice::kind::token, std::move(e), 0});
    if (is_last) st.owners.erase(it);
  }
}

void kick(scheduler_self self);
void replace_worker(scheduler_self self);
void start_deadline(scheduler_self self);
void on_step_back(scheduler_self self, step_sample sample, int64_t num_pairs, clock_type::time_point sent,
                  const step_result& result);

// What a planned step tells the request actors: sent after the step itself has gone to the
// worker, and after the previous step's tokens (a sequence preempted now may have had a
// token from the step before).
struct step_notices {
  std::vector<uint64_t> started;
  std::vector<uint64_t> resumed;
  std::vector<uint64_t> preempted;
};

void append(step_notices& to, step_notices from) {
  to.started.insert(to.started.end(), from.started.begin(), from.started.end());
  to.resumed.insert(to.resumed.end(), from.resumed.begin(), from.resumed.end());
  to.preempted.insert(to.preempted.end(), from.preempted.begin(), from.preempted.end());
}

// Plans a step and sends it to the worker, unless nothing can run: the next step when none
// is in flight, or (is_ahead) the one after the step in flight.
step_notices send_step(scheduler_self self, bool is_ahead) {
  auto& st = self->state;
  const auto plan_start = clock_type::now();
  auto step = is_ahead ? st.policy->schedule_ahead(now_ms(self)) : st.policy->schedule(now_ms(self));
  if (step.is_empty()) {
    if (st.metrics && !is_ahead) st.metrics->on_idle();
    return {};
  }
  if (st.metrics) st.metrics->on_preemptions(static_cast<int64_t>(step.preempted.size()));
  step_sample sample;
  const int64_t num_pairs = step.num_attended_pairs;
  sample.num_sequences = static_cast<int32_t>(step.plan.full.size() + step.plan.next.size());
  sample.num_tokens = step.num_scheduled_tokens;
  sample.num_prefill_tokens = step.plan.num_prefill_tokens();
  sample.token_budget = step.token_budget;
  if (st.metrics) {
    const slot_usage slots = st.blocks->count_slots();  // as the step holds them while it runs
    sample.num_reserved_slots = slots.num_reserved;
    sample.num_unused_slots = slots.num_unused;
  }
  step_request request{std::move(step.ops), std::move(step.plan)};
  const auto sent = clock_type::now();
  const auto target = st.worker;
  const uint64_t serial = st.next_serial++;
  const double ac = st.policy->attention_cost();
  st.flights.push_back({serial, static_cast<double>(sample.num_tokens) + (ac > 0 ? double(num_pairs) / ac : 0.0)});
  // An answer for a step that is no longer the oldest with the worker comes from a worker
  // abandoned as stuck: the policy has already failed or re-queued its sequences.
  auto is_oldest = [self, serial] { return !self->state.flights.empty() && self->state.flights.front().serial == serial; };
  self->request(st.worker, caf::infinite, atoms::step_atom::value, std::move(request))
      .then(
          [=](const step_result& result) {
            if (is_oldest()) on_step_back(self, sample, num_pairs, sent, result);
          },
          [=](caf::error& err) {
            if (!is_oldest()) return;
            const auto e = error_value_of(err, self->system());
            self->state.last_back = clock_type::now();
            self->state.flights.pop_front();
            start_deadline(self);
            auto events = self->state.policy->on_step_failed(e.code, e.message);
            fan_out(self, events);
            // A step that failed with troupe's own code leaves a usable worker. Any other
            // error means the worker is gone (its down message may still be on the way):
            // replace it now, or the next step would go to the dead one and fail too.
            if (err.category() != caf::atom("troupe") && target == self->state.worker) replace_worker(self);
            kick(self);
          });
  start_deadline(self);
  add_overhead(self, seconds_between(plan_start, sent));
  return {std::move(step.started), std::move(step.resumed), std::move(step.preempted)};
}

// Sends every step that can go now: the next one when none is in flight and, with
// asynchronous scheduling, the one after it, so that the worker never waits for a plan.
step_notices pump(scheduler_self self) {
  auto& st = self->state;
  step_notices notices;
  if (!st.policy->is_step_in_flight()) append(notices, send_step(self, false));
  if (st.is_async && st.policy->num_steps_in_flight() == 1) append(notices, send_step(self, true));
  return notices;
}

void send_notices(scheduler_self self, const step_notices& n) {
  auto& st = self->state;
  auto notice = [&](uint64_t id, request_notice::kind what, int32_t num_cached) {
    const auto it = st.owners.find(id);
    if (it == st.owners.end()) return;
    request_notice out{it->second, what, {}, num_cached};
    out.event.seq_id = id;
    queue_notice(self, std::move(out));
  };
  for (uint64_t id : n.started) notice(id, request_notice::kind::started, st.blocks->num_reused_prefix_tokens(id));
  for (uint64_t id : n.resumed) notice(id, request_notice::kind::started, -1);
  for (uint64_t id : n.preempted) notice(id, request_notice::kind::preempted, 0);
}

// A step came back: apply it, send the next one at once (the worker should not wait for
// the fan-out), then the tokens, the new step's notices and the gauges.
void on_step_back(scheduler_self self, step_sample sample, int64_t num_pairs, clock_type::time_point sent,
                  const step_result& result) {
  trace::scoped_span traced(trace::lane::scheduler);
  auto& st = self->state;
  const auto back = clock_type::now();
  // A step planned ahead was sent while the one before it ran: it started when that came back.
  const auto started = std::max(sent, st.last_back);
  st.last_back = back;
  st.busy_seconds += seconds_between(started, back);
  st.num_step_sequences += sample.num_sequences;
  st.num_prefill_tokens += sample.num_prefill_tokens;
  st.deadline->observe(st.flights.front().cost, seconds_between(started, back));
  st.flights.pop_front();
  start_deadline(self);  // the step planned ahead runs now
  if (st.costs) {
    st.costs->observe(sample.num_tokens, num_pairs, seconds_between(started, back));
    st.policy->set_attention_cost(st.costs->attention_cost());
    if (st.metrics) st.metrics->on_attention_cost(st.costs->attention_cost());
  }
  if (st.metrics) {
    sample.sent_seconds = clock_seconds(started);
    sample.back_seconds = clock_seconds(back);
    st.metrics->on_step(sample);
  }
  auto events = st.policy->on_step_done(result, seconds_between(started, back));
  // Counted apart from send_step's planning, which counts itself.
  add_overhead(self, seconds_between(back, clock_type::now()));
  const step_notices notices = pump(self);
  const auto after_send = clock_type::now();
  // Before the events go out: a client that has seen its request end finds it gone from the
  // gauges too.
  publish_state(self);
  fan_out(self, events);
  send_notices(self, notices);
  flush_notices(self);
  add_overhead(self, seconds_between(after_send, clock_type::now()));
}

// No worker can be made: every sequence fails, and from now on every new one is refused.
void fail_engine(scheduler_self self, const std::string& reason) {
  auto& st = self->state;
  st.failure = reason;
  std::fprintf(stderr, "troupe: the engine has failed and serves no more requests: %s\n", reason.c_str());
  if (st.health) st.health->fail(reason);
  if (st.metrics) st.metrics->on_engine_failed();
  st.flights.clear();
  auto events = st.policy->fail_all(error_code::step_timeout, reason);
  fan_out(self, events);
}

// A new worker for the next step; the old one is stopped (a stuck one once its step returns).
// False (and the engine failed) when none can be made.
bool swap_worker(scheduler_self self, worker_start why, const std::string& context) {
  auto& st = self->state;
  self->demonitor(st.worker.address());
  caf::anon_send_exit(st.worker, caf::exit_reason::kill);
  st.policy->forget_worker_state();
  try {
    st.worker = st.make_worker(why);
  } catch (const std::exception& e) {
    fail_engine(self, context + "no replacement worker could be made: " + e.what());
    return false;
  }
  ++st.num_worker_restarts;
  *st.current_worker = st.worker;
  self->monitor(st.worker);
  if (st.metrics) {
    st.metrics->on_worker_replaced(why == worker_start::after_crash ? serving_metrics::replacement_reason::crash
                                                                     : serving_metrics::replacement_reason::step_timeout);
  }
  return true;
}

void replace_worker(scheduler_self self) { swap_worker(self, worker_start::after_crash, "the worker died and "); }

// The watchdog: the oldest step with the worker starts running now; its deadline starts too.
// One timer message is on its way at a time unless a step's deadline falls before it.
void start_deadline(scheduler_self self) {
  auto& st = self->state;
  if (st.flights.empty() || !st.deadline->is_enabled()) return;
  auto& f = st.flights.front();
  if (f.due_ms >= 0) return;
  f.deadline_ms = st.deadline->deadline_ms(f.cost);
  f.due_ms = now_ms(self) + f.deadline_ms;
  for (int64_t t : st.timers_due_ms) {
    if (t <= f.due_ms) return;  // fires first, and then re-arms for what is left
  }
  st.timers_due_ms.push_back(f.due_ms);
  self->delayed_send(self, std::chrono::milliseconds(f.deadline_ms), atoms::step_timer_atom::value);
}

// The oldest step is past its deadline: its worker is stuck in the backend and cannot be
// interrupted. Its sequences (and those of a step planned behind it) fail; the worker is
// abandoned with its backend and KV pool, so every other running or swapped sequence is
// fed again from scratch on a replacement with a fresh backend.
void on_step_stuck(scheduler_self self) {
  auto& st = self->state;
  const int64_t waited_ms = st.flights.front().deadline_ms;
  const std::string what = "a step did not return within " + std::to_string(waited_ms) +
                           " ms (the watchdog's deadline, --step-timeout-ms): the worker is stuck in its backend";
  std::fprintf(stderr, "troupe: %s; abandoning it and starting a worker with a fresh backend\n", what.c_str());
  if (st.metrics) st.metrics->on_step_timeout();
  if (st.health) st.health->note_abandoned_worker();
  st.flights.clear();
  auto loss = st.policy->on_worker_lost(error_code::step_timeout, what, now_ms(self));
  fan_out(self, loss.failed);
  if (!swap_worker(self, worker_start::after_step_timeout, what + "; ")) {
    flush_notices(self);
    publish_state(self);
    return;
  }
  step_notices lost;
  lost.preempted = std::move(loss.requeued);
  send_notices(self, lost);
  kick(self);
}

void on_step_timer(scheduler_self self) {
  auto& st = self->state;
  const int64_t now = now_ms(self);
  if (!st.timers_due_ms.empty()) st.timers_due_ms.erase(std::min_element(st.timers_due_ms.begin(), st.timers_due_ms.end()));
  if (st.flights.empty() || st.flights.front().due_ms < 0) return;
  const auto& f = st.flights.front();
  if (now >= f.due_ms) return on_step_stuck(self);
  for (int64_t t : st.timers_due_ms) {
    if (t <= f.due_ms) return;
  }
  st.timers_due_ms.push_back(f.due_ms);
  self->delayed_send(self, std::chrono::milliseconds(f.due_ms - now), atoms::step_timer_atom::value);
}

// Sends what can be sent now, and brings the gauges up to date.
void kick(scheduler_self self) {
  send_notices(self, pump(self));
  flush_notices(self);
  publish_state(self);
}

scheduler_actor::behavior_type scheduler(scheduler_self self, scheduler_config config, block_manager_config blocks,
                                         std::vector<int32_t> eog_ids, scheduler_links links) {
  auto& st = self->state;
  st.metrics = std::move(links.metrics);
  st.health = std::move(links.health);
  st.deadline = std::make_unique<step_deadline>(
      step_deadline_config{config.step_timeout_ms, 4.0, links.prior_seconds_per_cost});
  st.is_async = config.async_scheduling;
  st.max_num_seqs = config.max_num_seqs;
  st.max_num_batched_tokens = config.max_num_batched_tokens;
  st.blocks = std::make_unique<block_manager>(blocks);
  st.policy = std::make_unique<scheduler_policy>(config, *st.blocks, std::move(eog_ids));
  if (config.fit_attention_cost && config.attention_cost > 0) st.costs.emplace(config.attention_cost);
  if (st.metrics) {
    st.metrics->on_attention_cost(st.policy->attention_cost());
    st.metrics->on_limits(config.max_num_seqs, config.max_num_batched_tokens);
  }
  st.make_worker = std::move(links.make_worker);
  st.worker = st.make_worker(worker_start::first);
  self->monitor(st.worker);
  // The worker goes when the scheduler goes (engine shutdown), whichever worker it is then.
  auto current_worker = std::make_shared<worker_actor>(st.worker);
  st.current_worker = current_worker;
  // Two fan-out actors: the request side's sends run on both of CAF's threads on a small
  // machine, and per request actor in order.
  for (int i = 0; i < 2; ++i) st.fan_outs.push_back(spawn_fan_out(self->system()));
  st.outgoing.resize(st.fan_outs.size());
  self->attach_functor([current_worker, fan_outs = st.fan_outs](const caf::error&) {
    caf::anon_send_exit(*current_worker, caf::exit_reason::user_shutdown);
    for (const auto& f : fan_outs) caf::anon_send_exit(f, caf::exit_reason::user_shutdown);
  });
  // A dead worker is replaced; the step it had in flight fails through the request's error
  // handler (its requests end with an error), everything queued carries on.
  self->set_down_handler([=](caf::down_msg& down) {
    if (down.source != self->state.worker.address()) return;  // one replaced already
    replace_worker(self);
    kick(self);
  });
  return {
      [=](atoms::batch_atom, pending_batch& batch) {
        trace::scoped_span traced(trace::lane::scheduler);
        auto& st = self->state;
        const int64_t now = now_ms(self);
        for (auto& p : batch.sequences) {
          const uint64_t id = p.request.id;
          const std::vector<uint64_t> members = p.request.fork_ids;
          const uint64_t prefix_key = p.request.prefix_key;
          const auto first_block = st.blocks->first_block_key(p.request.prompt_tokens);
          try {
            if (st.failure) throw error(error_code::step_timeout, "the engine has failed: " + *st.failure);
            st.policy->add(std::move(p.request), now);
            if (prefix_key != 0 && first_block) st.digest.remember(prefix_key, *first_block);
            for (uint64_t member : members) st.owners.emplace(member, p.owner);
            st.owners.emplace(id, std::move(p.owner));
          } catch (const error& e) {
            // A prompt that can never fit (longer than max_model_len or the KV pool).
            sequence_event refused;
            refused.seq_id = id;
            refused.state = sequence_state::failed;
            refused.error = e.code();
            refused.message = e.what();
            self->send(p.owner, atoms::token_atom::value, std::move(refused));
          }
        }
        kick(self);
      },
      [=](atoms::abort_atom, uint64_t seq_id) {
        auto& st = self->state;
        st.owners.erase(seq_id);
        if (st.policy->abort(seq_id)) kick(self);
      },
      [=](atoms::stats_atom) {
        auto& st = self->state;
        scheduler_snapshot out{st.policy->stats(), st.blocks->stats(), st.busy_seconds, st.overhead_seconds};
        out.num_step_sequences = st.num_step_sequences;
        out.num_prefill_tokens = st.num_prefill_tokens;
        out.max_num_seqs = st.max_num_seqs;
        out.max_num_batched_tokens = st.max_num_batched_tokens;
        out.cached_prefix_keys = st.digest.cached_keys(*st.blocks);
        return out;
      },
      [=](atoms::step_timer_atom) { on_step_timer(self); },
  };
}

}  // namespace

scheduler_actor spawn_scheduler(caf::actor_system& sys, const scheduler_config& config,
                                const block_manager_config& blocks, std::vector<int32_t> eog_ids,
                                scheduler_links links) {
  return sys.spawn(scheduler, config, blocks, std::move(eog_ids), std::move(links));
}

}  // namespace troupe
