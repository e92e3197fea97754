#include "actors/batcher.hpp"

#include <deque>
#include <optional>
#include <unordered_map>

#include "actors/messages.hpp"
#include "engine/batcher_policy.hpp"

namespace troupe {

namespace {

struct batcher_state {
  std::optional<batcher_policy> policy;
  std::unordered_map<uint64_t, pending_sequence_ptr> held;
  caf::actor scheduler;
  // The scheduler's waiting queue as last reported, plus the batches sent since that report
  // (the report says how many batches it had received), so the queue cap holds even while
  // batches and reports cross.
  int32_t num_waiting_reported = 0;
  uint64_t num_batches_sent = 0;
  std::deque<int32_t> unacknowledged_batch_sizes;
  int32_t num_waiting_in_scheduler() const {
    int32_t n = num_waiting_reported;
    for (int32_t size : unacknowledged_batch_sizes) n += size;
    return n;
  }
  int64_t armed_deadline_ms = -1;  // the timer already set, -1 when none
  std::shared_ptr<serving_metrics> metrics;  // null: none
  void publish() const {
    if (metrics) metrics->on_batching(static_cast<int32_t>(held.size()));
  }
  static inline const char* name = "troupe.batcher";
};

using batcher_self = caf::stateful_actor<batcher_state>*;

void release_ready(batcher_self self) {
  auto& st = self->state;
  const int64_t now = now_ms(self);
  auto ids = st.policy->take_ready(now);
  if (!ids.empty()) {
    auto batch = std::make_shared<std::vector<pending_sequence_ptr>>();
    for (uint64_t id : ids) {
      if (auto it = st.held.find(id); it != st.held.end()) {
        batch->push_back(it->second);
        st.held.erase(it);
      }
    }
    ++st.num_batches_sent;
    st.unacknowledged_batch_sizes.push_back(static_cast<int32_t>(batch->size()));
    self->send(st.scheduler, atoms::batch_atom::value, pending_batch_ptr(std::move(batch)));
  }
  st.publish();
  if (const auto deadline = st.policy->next_deadline_ms(); deadline && *deadline != st.armed_deadline_ms) {
    st.armed_deadline_ms = *deadline;
    self->delayed_send(self, std::chrono::milliseconds(std::max<int64_t>(0, *deadline - now)),
                       atoms::tick_atom::value);
  }
}

caf::behavior batcher(batcher_self self, scheduler_config config, caf::actor scheduler,
                      std::shared_ptr<serving_metrics> metrics) {
  self->state.policy.emplace(config);
  self->state.scheduler = std::move(scheduler);
  self->state.metrics = std::move(metrics);
  return {
      [=](atoms::enqueue_atom, const pending_sequence_ptr& p) {
        auto& st = self->state;
        const auto offer = st.policy->offer(p->request.id, now_ms(self), st.num_waiting_in_scheduler());
        if (!offer.is_accepted()) {
          self->send(p->owner, atoms::refused_atom::value, p->request.id, std::string(to_string(offer.refusal)),
                   offer.message);
          return;
        }
        st.held.emplace(p->request.id, p);
        release_ready(self);
      },
      [=](atoms::cancel_atom, uint64_t seq_id) {
        auto& st = self->state;
        if (st.policy->remove(seq_id)) {
          st.held.erase(seq_id);
          st.publish();
          return;
        }
        // Already released: messages between two actors keep their order, so the abort
        // reaches the scheduler after the batch that carried the sequence.
        self->send(st.scheduler, atoms::abort_atom::value, seq_id);
      },
      [=](atoms::waiting_atom, int32_t num_waiting, uint64_t num_batches_received) {
        auto& st = self->state;
        st.num_waiting_reported = num_waiting;
        const uint64_t num_unacknowledged = st.num_batches_sent - num_batches_received;
        while (st.unacknowledged_batch_sizes.size() > num_unacknowledged) st.unacknowledged_batch_sizes.pop_front();
      },
      [=](atoms::tick_atom) {
        self->state.armed_deadline_ms = -1;
        release_ready(self);
      },
  };
}

}  // namespace

caf::actor spawn_batcher(caf::actor_system& sys, const scheduler_config& config, caf::actor scheduler,
                         std::shared_ptr<serving_metrics> metrics) {
  return sys.spawn(batcher, config, std::move(scheduler), std::move(metrics));
}

}  // namespace troupe
