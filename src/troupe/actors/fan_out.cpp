#include "troupe/actors/fan_out.hpp"

#include "troupe/engine/trace.hpp"

namespace troupe {

namespace {

struct fan_out_state {
  static inline const char* name = "troupe.fan_out";
};

fan_out_actor::behavior_type fan_out(fan_out_actor::stateful_pointer<fan_out_state> self) {
  return {
      [=](atoms::token_atom, notice_batch& batch) {
        trace::scoped_span traced(trace::lane::fan_out);
        for (auto& n : batch.notices) {
          switch (n.what) {
            case request_notice::kind::token:
              self->send(n.to, atoms::token_atom::value, std::move(n.event));
              break;
            case request_notice::kind::started:
              self->send(n.to, atoms::started_atom::value, n.event.seq_id, n.num_cached);
              break;
            case request_notice::kind::preempted:
              self->send(n.to, atoms::preempt_atom::value, n.event.seq_id);
              break;
          }
        }
      },
  };
}

}  // namespace

fan_out_actor spawn_fan_out(caf::actor_system& sys) { return sys.spawn(fan_out); }

}  // namespace troupe
