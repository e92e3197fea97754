#include "troupe/actors/batcher.hpp"

#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "troupe/actors/scheduler.hpp"
#include "troupe/engine/batcher_policy.hpp"
#include "troupe/engine/trace.hpp"

namespace troupe {

namespace {

struct batcher_state {
  std::optional<batcher_policy> policy;
  std::unordered_map<uint64_t, pending_sequence> held;
  // Sequences admitted and still waiting: held here, or sent on and not yet started. The
  // request actors say when theirs stops waiting (dequeued), so the count needs no report
  // from the scheduler.
  std::unordered_set<uint64_t> waiting;
  scheduler_actor scheduler;
  int64_t armed_deadline_ms = -1;            // the timer already set, -1 when none
  std::shared_ptr<serving_metrics> metrics;  // null: none
  int32_t num_waiting_elsewhere() const { return static_cast<int32_t>(waiting.size() - held.size()); }
  void publish() const {
    if (metrics) metrics->on_batching(static_cast<int32_t>(held.size()));
  }
  static inline const char* name = "troupe.batcher";
};

using batcher_self = batcher_actor::stateful_pointer<batcher_state>;

void release_ready(batcher_self self) {
  auto& st = self->state;
  const int64_t now = now_ms(self);
  auto ids = st.policy->take_ready(now);
  if (!ids.empty()) {
    pending_batch batch;
    batch.sequences.reserve(ids.size());
    for (uint64_t id : ids) {
      if (auto it = st.held.find(id); it != st.held.end()) {
        batch.sequences.push_back(std::move(it->second));
        st.held.erase(it);
      }
    }
    self->send(st.scheduler, atoms::batch_atom::value, std::move(batch));
  }
  st.publish();
  if (const auto deadline = st.policy->next_deadline_ms(); deadline && *deadline != st.armed_deadline_ms) {
    st.armed_deadline_ms = *deadline;
    self->delayed_send(self, std::chrono::milliseconds(std::max<int64_t>(0, *deadline - now)),
                       atoms::tick_atom::value);
  }
}

batcher_actor::behavior_type batcher(batcher_self self, scheduler_config config, scheduler_actor scheduler,
                                     std::shared_ptr<serving_metrics> metrics) {
  self->state.policy.emplace(config);
  self->state.scheduler = std::move(scheduler);
  self->state.metrics = std::move(metrics);
  return {
      [=](atoms::enqueue_atom, pending_sequence& p) -> caf::result<atoms::admitted_atom> {
        trace::scoped_span traced(trace::lane::batcher);
        auto& st = self->state;
        const uint64_t id = p.request.id;
        if (st.waiting.count(id)) {
          return to_caf_error(request_error_code::invalid_request,
                                 "sequence " + std::to_string(id) + " is already queued");
        }
        const auto offer = st.policy->offer(id, now_ms(self), st.num_waiting_elsewhere());
        if (!offer.is_accepted()) return to_caf_error(request_error_code::queue_full, offer.message);
        st.waiting.insert(id);
        st.held.emplace(id, std::move(p));
        // The answer goes out before the batch may: the request actor hears `admitted`
        // before anything the scheduler tells it about this sequence.
        auto rp = self->make_response_promise<atoms::admitted_atom>();
        rp.deliver(atoms::admitted_atom::value);
        release_ready(self);
        return rp;
      },
      [=](atoms::cancel_atom, uint64_t seq_id) {
        auto& st = self->state;
        st.waiting.erase(seq_id);
        if (st.policy->remove(seq_id)) {
          st.held.erase(seq_id);
          st.publish();
          return;
        }
        // Already released: messages between two actors keep their order, so the abort
        // reaches the scheduler after the batch that carried the sequence.
        self->send(st.scheduler, atoms::abort_atom::value, seq_id);
      },
      [=](atoms::dequeued_atom, uint64_t seq_id) { self->state.waiting.erase(seq_id); },
      [=](atoms::tick_atom) {
        self->state.armed_deadline_ms = -1;
        release_ready(self);
      },
  };
}

}  // namespace

batcher_actor spawn_batcher(caf::actor_system& sys, const scheduler_config& config, scheduler_actor scheduler,
                            std::shared_ptr<serving_metrics> metrics) {
  return sys.spawn(batcher, config, std::move(scheduler), std::move(metrics));
}

}  // namespace troupe
