#include "troupe/actors/worker_group.hpp"

#include <memory>
#include <string>

#include "troupe/engine/rank_replies.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

struct worker_group_state {
  std::vector<worker_actor> ranks;
  std::unique_ptr<rank_replies> replies;
  static inline const char* name = "troupe.worker_group";
};

using step_promise = caf::typed_response_promise<step_result>;

void finish(step_promise& rp, rank_replies::outcome& done) {
  if (done.result) {
    rp.deliver(std::move(*done.result));
  } else {
    rp.deliver(caf::make_error(done.code, std::move(done.error)));
  }
}

worker_actor::behavior_type worker_group(worker_actor::stateful_pointer<worker_group_state> self,
                                         std::vector<worker_actor> ranks) {
  self->state.replies = std::make_unique<rank_replies>((int32_t)ranks.size());
  for (const auto& r : ranks) self->link_to(r);
  self->state.ranks = std::move(ranks);
  return {
      [=](atoms::step_atom, const step_request& request) -> caf::result<step_result> {
        auto& st = self->state;
        uint64_t step_id = 0;
        try {
          step_id = st.replies->begin();
        } catch (const error& e) {
          return caf::make_error(e.code(), std::string(e.what()));
        }
        auto rp = self->make_response_promise<step_result>();
        for (int32_t r = 0; r < (int32_t)st.ranks.size(); ++r) {
          self->request(st.ranks[(size_t)r], caf::infinite, atoms::step_atom::value, request)
              .then(
                  [=](step_result& result) mutable {
                    if (auto done = self->state.replies->on_result(step_id, r, std::move(result))) finish(rp, *done);
                  },
                  [=](caf::error& err) mutable {
                    const auto e = error_value_of(err, self->system());
                    if (auto done = self->state.replies->on_error(step_id, r, e.code, e.message)) finish(rp, *done);
                  });
        }
        return rp;
      },
  };
}

}  // namespace

worker_actor spawn_worker_group(caf::actor_system& sys, std::vector<worker_actor> ranks) {
  if (ranks.empty()) throw error(error_code::invalid_argument, "a worker group needs at least one rank");
  return sys.spawn(worker_group, std::move(ranks));
}

}  // namespace troupe
