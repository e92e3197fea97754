#include "troupe/cluster/gate.hpp"


namespace troupe::cluster {

bool keys_match(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = a.size() > b.size() ? a.size() : b.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

namespace {

engine_actor::behavior_type replica_front(engine_actor::pointer self, engine_actor engine,
                                          std::shared_ptr<std::atomic<bool>> draining) {
  self->link_to(engine);  // the engine's end is the replica's end, and the other way round
  return {
      [=](atoms::submit_atom, request& req, const event_listener& listener) {
        if (draining->load(std::memory_order_acquire)) {
          caf::anon_send(listener, atoms::event_atom::value,
                         request_event_message{req.id, error_event{request_error_code::unavailable,
                                                                   "the replica is draining"}});
          return;
        }
        self->send(engine, atoms::submit_atom::value, std::move(req), listener);
      },
      [=](atoms::cancel_atom, const std::string& id) { self->send(engine, atoms::cancel_atom::value, id); },
      [=](atoms::stats_atom) -> caf::result<scheduler_snapshot> {
        return self->delegate(engine, atoms::stats_atom::value);
      },
      [=](atoms::done_ack_atom, const std::string&) {},  // only the engine's own sinks send it, to the engine
  };
}

}  // namespace

engine_actor spawn_replica_front(caf::actor_system& sys, engine_actor engine,
                                 std::shared_ptr<std::atomic<bool>> draining) {
  return sys.spawn(replica_front, std::move(engine), std::move(draining));
}

caf::actor spawn_gate(caf::actor_system& sys, engine_actor replica, replica_facts facts, std::string cluster_key) {
  return sys.spawn([replica, facts, cluster_key](caf::event_based_actor* self) -> caf::behavior {
    self->set_default_handler(caf::drop);  // anything but a hello gets nothing back
    return {
        [=](hello_atom, const std::string& key) -> caf::result<engine_actor, std::string, int32_t, int32_t> {
          if (!keys_match(key, cluster_key)) {
            // Not troupe's invalid_argument: CAF 0.17 takes an error of code 0 for no error.
            return caf::make_error(caf::sec::invalid_argument, std::string("wrong cluster key"));
          }
          return caf::result<engine_actor, std::string, int32_t, int32_t>(replica, facts.model_id, facts.vocab_size,
                                                                          facts.max_model_len);
        },
    };
  });
}

}  // namespace troupe::cluster
