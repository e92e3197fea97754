#include "troupe/actors/worker_group.hpp"

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "troupe/engine/rank_replies.hpp"
#include "troupe/engine/step_plan.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

using step_promise = caf::typed_response_promise<step_result>;

struct queued_step {
  step_request request;
  step_promise promise;
};

struct worker_group_state {
  std::vector<worker_actor> ranks;
  std::unique_ptr<rank_replies> replies;
  std::unique_ptr<plan_state> plans;  // the group's own copy: ranks get whole steps
  std::deque<queued_step> queue;      // a step planned ahead waits for the one running
  std::optional<step_delta> running;  // the delta of the step the ranks run, for a failure
  std::optional<error_value> last_failure;
  static inline const char* name = "troupe.worker_group";
};

using group_self = worker_actor::stateful_pointer<worker_group_state>;

void dispatch_next(group_self self);

void finish(group_self self, step_promise& rp, rank_replies::outcome& done) {
  auto& st = self->state;
  if (done.result) {
    st.plans->on_result(*done.result);
    st.last_failure.reset();
    rp.deliver(std::move(*done.result));
  } else {
    st.plans->fail(*st.running);
    st.last_failure = error_value{done.code, done.error};
    rp.deliver(to_caf_error(done.code, std::move(done.error)));
  }
  st.running.reset();
  dispatch_next(self);
}

// Starts the first queued step on every rank, if none is running.
void dispatch_next(group_self self) {
  auto& st = self->state;
  while (!st.running && !st.queue.empty()) {
    auto q = std::move(st.queue.front());
    st.queue.pop_front();
    if (q.request.plan.is_planned_ahead && st.last_failure) {
      st.plans->fail(q.request.plan);
      q.promise.deliver(to_caf_error(st.last_failure->code,
                                        "the step before this one failed: " + st.last_failure->message));
      continue;
    }
    step_request whole;
    try {
      whole.ops = std::move(q.request.ops);
      whole.plan.forget = q.request.plan.forget;
      const batch_plan& plan = st.plans->apply(std::move(q.request.plan));
      whole.plan.full = plan.sequences;
    } catch (const error& e) {
      st.plans->fail(q.request.plan);
      st.last_failure = error_value{e.code(), e.what()};
      q.promise.deliver(to_caf_error(e.code(), std::string(e.what())));
      continue;
    }
    const uint64_t step_id = st.replies->begin();
    st.running = std::move(q.request.plan);
    auto rp = q.promise;
    for (int32_t r = 0; r < (int32_t)st.ranks.size(); ++r) {
      self->request(st.ranks[(size_t)r], caf::infinite, atoms::step_atom::value, whole)
          .then(
              [=](step_result& result) mutable {
                if (auto done = self->state.replies->on_result(step_id, r, std::move(result))) finish(self, rp, *done);
              },
              [=](caf::error& err) mutable {
                const auto e = error_value_of(err, self->system());
                if (auto done = self->state.replies->on_error(step_id, r, e.code, e.message)) finish(self, rp, *done);
              });
    }
  }
}

worker_actor::behavior_type worker_group(group_self self, std::vector<worker_actor> ranks, std::vector<int32_t> eog_ids) {
  self->state.replies = std::make_unique<rank_replies>((int32_t)ranks.size());
  self->state.plans = std::make_unique<plan_state>(std::move(eog_ids));
  for (const auto& r : ranks) self->link_to(r);
  self->state.ranks = std::move(ranks);
  return {
      [=](atoms::step_atom, step_request& request) -> caf::result<step_result> {
        auto rp = self->make_response_promise<step_result>();
        self->state.queue.push_back({std::move(request), rp});
        dispatch_next(self);
        return rp;
      },
  };
}

}  // namespace

worker_actor spawn_worker_group(caf::actor_system& sys, std::vector<worker_actor> ranks, std::vector<int32_t> eog_ids) {
  if (ranks.empty()) throw error(error_code::invalid_argument, "a worker group needs at least one rank");
  return sys.spawn(worker_group, std::move(ranks), std::move(eog_ids));
}

}  // namespace troupe
