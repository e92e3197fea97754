#include "troupe/cluster/router.hpp"

#include <caf/io/all.hpp>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "troupe/actors/engine.hpp"
#include "troupe/actors/messages.hpp"
#include "troupe/cluster/gate.hpp"
#include "troupe/cluster/replica_metrics.hpp"
#include "troupe/engine/serving_metrics.hpp"
#include "troupe/model/error.hpp"

namespace troupe::cluster {

namespace {

using route_tick_atom = caf::atom_constant<caf::atom("rtick")>;
using route_submit_atom = caf::atom_constant<caf::atom("rsubmit")>;
using route_cancel_atom = caf::atom_constant<caf::atom("rcancel")>;

}  // namespace

replica_address parse_address(const std::string& text, const std::string& flag, bool allow_zero_port) {
  auto reject = [&](const std::string& why) -> replica_address {
    throw error(error_code::invalid_argument, flag + " " + text + ": " + why + " (expected HOST:PORT)");
  };
  replica_address out;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') return reject("malformed");
    out.host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
    out.host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  } else {
    out.host = "127.0.0.1";
    port_text = text;
  }
  if (out.host.empty()) return reject("no host");
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return reject("the port is not a number");
  }
  const long port = std::stol(port_text);
  if (port > 65535 || (port == 0 && !allow_zero_port)) return reject("the port is out of range");
  out.port = static_cast<uint16_t>(port);
  return out;
}

struct replica_router::shared {
  std::mutex mutex;
  std::unordered_map<uint64_t, event_sink_ptr> arriving;  // submitted; the actor has not taken them yet
  std::atomic<uint64_t> next_ticket{1};
  mutable std::mutex status_mutex;
  std::vector<replica_status> status;
  std::atomic<int> num_up{0};
};

namespace {

struct slot {
  replica_address addr;
  std::string name;
  engine_actor handle;
  bool up = false;
  bool connecting = false;
  bool refusing = false;  // it refused a request as unavailable (draining): none until connected again
  bool draining = false;  // drain asked (fleet_drain_atom): no new requests; waiters answered at none in flight
  bool retired = false;   // removed: not connected to, not routed to; the slot stays so indices remain valid
  bool local = false;     // an engine in this process: never connected to (again)
  std::vector<std::pair<caf::response_promise, int64_t>> drain_waiters;  // and the count in flight when asked
  uint64_t generation = 0;  // bumped at each connection and loss; older callbacks are ignored
  int64_t in_flight = 0;
  int32_t num_waiting = 0;
  double kv_use = 0.0;
  std::vector<uint64_t> cached_prefix_keys;  // its last prefix digest, sorted
  // Its recent time per step: an average over its snapshots' step totals (0: none yet).
  bool has_step_totals = false;
  int64_t last_num_steps = 0;
  double last_step_busy_seconds = 0;
  int64_t last_prefill_tokens = 0;
  double step_ms = 0;
  bool stats_pending = false;
  int64_t backoff_ms = 0;
  int64_t next_attempt_ms = 0;
  std::string last_failure;  // logged once until it changes
  int64_t failed_connects = 0;
  counter_metric* routed = nullptr;
  gauge_metric* in_flight_gauge = nullptr;
  counter_metric* lost = nullptr;
  counter_metric* rerouted = nullptr;
  gauge_metric* up_gauge = nullptr;
  std::unique_ptr<replica_metrics> engine_metrics;  // its engine series, from its snapshots
};

struct routed_request {
  request req;  // kept until the replica accepts it, to route it again
  event_sink_ptr sink;
  std::string client_id;
  size_t replica = 0;
  uint32_t attempt = 0;
  bool accepted = false;
  uint64_t key = 0;
  std::vector<size_t> refused_by;  // replicas that refused it as unavailable
};

struct router_state {
  router_options options;
  std::shared_ptr<replica_router::shared> shared;
  std::shared_ptr<const model_bundle> model;
  std::shared_ptr<serving_metrics> serving;
  std::vector<slot> slots;
  std::unordered_map<uint64_t, routed_request> requests;
  affinity_table affinity;
  size_t rotation = 0;
  static inline const char* name = "troupe.router";
};

using router_self = caf::stateful_actor<router_state>*;

std::string wire_id(uint64_t ticket, uint32_t attempt) {
  return "router-" + std::to_string(ticket) + "." + std::to_string(attempt);
}

bool parse_wire_id(const std::string& id, uint64_t& ticket, uint32_t& attempt) {
  unsigned long long t = 0;
  unsigned a = 0;
  if (std::sscanf(id.c_str(), "router-%llu.%u", &t, &a) != 2) return false;
  ticket = t;
  attempt = a;
  return true;
}

void log_line(const std::string& line) {
  std::fprintf(stderr, "troupe: router: %s\n", line.c_str());
  std::fflush(stderr);
}

void publish_status(router_self self) {
  auto& st = self->state;
  int up = 0;
  std::vector<replica_status> status;
  for (const auto& s : st.slots) {
    status.push_back({s.name, s.up, s.in_flight, s.failed_connects, s.draining, s.retired});
    up += s.up ? 1 : 0;
  }
  std::lock_guard lock(st.shared->status_mutex);
  st.shared->status = std::move(status);
  st.shared->num_up.store(up);
}

void set_in_flight(slot& s, int64_t delta) {
  s.in_flight += delta;
  s.in_flight_gauge->set(static_cast<double>(s.in_flight));
  if (s.in_flight == 0 && s.draining) {
    for (auto& [promise, num_when_asked] : s.drain_waiters) promise.deliver(num_when_asked);
    s.drain_waiters.clear();
  }
}

// Passes the request's last event on and forgets it.
void end_request(router_self self, uint64_t ticket, request_event event) {
  auto& st = self->state;
  auto it = st.requests.find(ticket);
  if (it == st.requests.end()) return;
  routed_request r = std::move(it->second);
  st.requests.erase(it);
  if (auto done = std::get_if<done_event>(&event)) {
    st.serving->on_request_done(*done);
    if (r.replica < st.slots.size()) st.slots[r.replica].engine_metrics->on_request_done(*done);
  } else if (auto err = std::get_if<error_event>(&event)) st.serving->on_request_error(*err);
  r.sink->on_event(r.client_id, event);
}

void route(router_self self, uint64_t ticket) {
  auto& st = self->state;
  auto it = st.requests.find(ticket);
  if (it == st.requests.end()) return;
  auto& r = it->second;
  std::vector<replica_load> loads;
  loads.reserve(st.slots.size());
  double fastest_ms = 0;
  for (const auto& s : st.slots) {
    if (s.up && !s.retired && s.step_ms > 0 && (fastest_ms == 0 || s.step_ms < fastest_ms)) fastest_ms = s.step_ms;
  }
  for (size_t i = 0; i < st.slots.size(); ++i) {
    const auto& s = st.slots[i];
    const bool refused = std::find(r.refused_by.begin(), r.refused_by.end(), i) != r.refused_by.end();
    const bool has_prefix = std::binary_search(s.cached_prefix_keys.begin(), s.cached_prefix_keys.end(), r.key);
    const double slowness = fastest_ms > 0 && s.step_ms > 0 ? s.step_ms / fastest_ms : 1.0;
    loads.push_back({s.up && !s.refusing && !s.draining && !s.retired && !refused, s.in_flight, s.num_waiting,
                     s.kv_use, has_prefix, slowness});
  }
  const auto pick = pick_replica(loads, st.affinity.find(r.key), st.rotation++, st.options.routing);
  if (!pick) {
    const auto num_up = std::count_if(st.slots.begin(), st.slots.end(), [](const slot& s) { return s.up; });
    const auto num_refusing = std::count_if(st.slots.begin(), st.slots.end(),
                                            [](const slot& s) { return s.up && (s.refusing || s.draining); });
    const auto num_members =
        std::count_if(st.slots.begin(), st.slots.end(), [](const slot& s) { return !s.retired; });
    std::string why = "no replica is available (" + std::to_string(num_up) + " of " +
                      std::to_string(num_members) + " up";
    if (num_refusing > 0) why += ", " + std::to_string(num_refusing) + " of them draining";
    end_request(self, ticket, error_event{request_error_code::unavailable, why + ")"});
    return;
  }
  auto& s = st.slots[*pick];
  r.replica = *pick;
  ++r.attempt;
  st.affinity.remember(r.key, *pick);
  set_in_flight(s, +1);
  s.routed->inc();
  request copy = r.req;
  copy.id = wire_id(ticket, r.attempt);
  self->send(s.handle, atoms::submit_atom::value, std::move(copy), caf::actor_cast<event_listener>(self));
}

void connect(router_self self, size_t i);

void schedule_reconnect(router_self self, slot& s) {
  const auto& o = self->state.options;
  s.next_attempt_ms = now_ms(self) + s.backoff_ms;
  s.backoff_ms = std::min(std::max(s.backoff_ms * 2, o.reconnect_min_ms), o.reconnect_max_ms);
}

// The replica is gone (its connection closed, or it stopped answering): its accepted
// requests end with replica_lost, the others go to another replica.
void lose(router_self self, size_t i, const std::string& why) {
  auto& st = self->state;
  auto& s = st.slots[i];
  if (!s.up) return;
  const engine_actor old = s.handle;
  s.up = false;
  s.stats_pending = false;
  s.cached_prefix_keys.clear();
  s.has_step_totals = false;
  s.step_ms = 0;
  ++s.generation;
  self->demonitor(old.address());
  s.handle = engine_actor{};
  s.up_gauge->set(0);
  std::vector<uint64_t> mine;
  for (const auto& [ticket, r] : st.requests) {
    if (r.replica == i) mine.push_back(ticket);
  }
  std::sort(mine.begin(), mine.end());
  int64_t num_lost = 0;
  int64_t num_rerouted = 0;
  for (uint64_t ticket : mine) {
    auto& r = st.requests.at(ticket);
    set_in_flight(s, -1);
    // A frozen replica that wakes up must not go on with work nobody waits for.
    caf::anon_send(old, atoms::cancel_atom::value, wire_id(ticket, r.attempt));
    if (r.accepted) {
      ++num_lost;
      s.lost->inc();
      end_request(self, ticket,
                  error_event{request_error_code::replica_lost,
                              "replica " + s.name + " was lost while running the request (" + why + ")"});
    } else {
      ++num_rerouted;
      s.rerouted->inc();
      route(self, ticket);
    }
  }
  log_line("replica " + s.name + " lost (" + why + "): " + std::to_string(num_lost) + " started request(s) ended, " +
           std::to_string(num_rerouted) + " routed again");
  s.backoff_ms = st.options.reconnect_min_ms;
  if (s.local) {
    log_line("replica " + s.name + " is an engine in this process: it stays down");
  } else {
    schedule_reconnect(self, s);
  }
  publish_status(self);
}

void connect_failed(router_self self, size_t i, uint64_t generation, const std::string& why) {
  auto& s = self->state.slots[i];
  if (s.generation != generation) return;
  s.connecting = false;
  ++s.failed_connects;
  if (why != s.last_failure) {
    log_line("replica " + s.name + ": cannot connect: " + why + " (trying again with backoff)");
    s.last_failure = why;
  }
  schedule_reconnect(self, s);
  publish_status(self);
}

void connected(router_self self, size_t i, uint64_t generation, engine_actor handle, const std::string& model_id,
               int32_t vocab_size, int32_t max_model_len) {
  auto& st = self->state;
  auto& s = st.slots[i];
  if (s.generation != generation) return;
  if (!handle) return connect_failed(self, i, generation, "its gate answered without a replica");
  if (vocab_size != st.model->config.vocab_size) {
    return connect_failed(self, i, generation,
                          "it serves a different model (" + model_id + ", vocabulary of " +
                              std::to_string(vocab_size) + " tokens, not " +
                              std::to_string(st.model->config.vocab_size) + ")");
  }
  s.connecting = false;
  s.up = true;
  s.refusing = false;
  s.stats_pending = false;
  s.handle = std::move(handle);
  ++s.generation;
  s.backoff_ms = st.options.reconnect_min_ms;
  s.last_failure.clear();
  s.num_waiting = 0;
  s.kv_use = 0;
  s.cached_prefix_keys.clear();
  s.has_step_totals = false;
  s.step_ms = 0;
  self->monitor(s.handle);
  s.up_gauge->set(1);
  std::string note;
  if (max_model_len != st.model->max_model_len) {
    note = " (its max_model_len is " + std::to_string(max_model_len) + ", the front door's " +
           std::to_string(st.model->max_model_len) + ")";
  }
  log_line("replica " + s.name + " up: " + model_id + note);
  publish_status(self);
}

void connect(router_self self, size_t i) {
  auto& st = self->state;
  auto& s = st.slots[i];
  s.connecting = true;
  const uint64_t generation = s.generation;
  const auto timeout = std::chrono::milliseconds(st.options.connect_timeout_ms);
  const std::string key = st.options.cluster_key;
  auto mm = self->system().middleman().actor_handle();
  self->request(mm, timeout, caf::connect_atom::value, s.addr.host, s.addr.port)
      .then(
          [=](const caf::node_id&, caf::strong_actor_ptr& gate_ptr, const std::set<std::string>&) {
            if (!gate_ptr) return connect_failed(self, i, generation, "nothing is published there");
            auto gate = caf::actor_cast<caf::actor>(gate_ptr);
            self->request(gate, timeout, hello_atom::value, key)
                .then(
                    [=](engine_actor& h, std::string& model_id, int32_t vocab_size, int32_t max_model_len) {
                      connected(self, i, generation, std::move(h), model_id, vocab_size, max_model_len);
                    },
                    [=](caf::error& e) { connect_failed(self, i, generation, self->system().render(e)); });
          },
          [=](caf::error& e) { connect_failed(self, i, generation, self->system().render(e)); });
}

// The replica's recent time per decode step, from the step totals of two snapshots in a
// row: an exponential average over the polls whose steps fed no prompt tokens (a prefill
// step's length says nothing of the pace its streams see; a replica with no such steps
// keeps its last value).
void note_step_time(slot& s, const scheduler_snapshot& snapshot) {
  const int64_t steps = snapshot.scheduling.num_steps;
  const double busy = snapshot.step_busy_seconds;
  const int64_t prefill = snapshot.num_prefill_tokens;
  if (s.has_step_totals && steps > s.last_num_steps && busy >= s.last_step_busy_seconds &&
      prefill == s.last_prefill_tokens) {
    const double ms = (busy - s.last_step_busy_seconds) * 1000.0 / static_cast<double>(steps - s.last_num_steps);
    if (std::isfinite(ms)) s.step_ms = s.step_ms > 0 ? 0.7 * s.step_ms + 0.3 * ms : ms;
  }
  s.has_step_totals = true;
  s.last_num_steps = steps;
  s.last_step_busy_seconds = busy;
  s.last_prefill_tokens = prefill;
}

void tick(router_self self) {
  auto& st = self->state;
  const int64_t now = now_ms(self);
  for (size_t i = 0; i < st.slots.size(); ++i) {
    auto& s = st.slots[i];
    if (s.retired) continue;
    if (s.up && !s.stats_pending) {
      s.stats_pending = true;
      const uint64_t generation = s.generation;
      self->request(s.handle, std::chrono::milliseconds(st.options.stats_timeout_ms), atoms::stats_atom::value)
          .then(
              [=](scheduler_snapshot& snapshot) {
                auto& s = self->state.slots[i];
                if (s.generation != generation) return;
                s.stats_pending = false;
                s.num_waiting = snapshot.scheduling.num_waiting;
                note_step_time(s, snapshot);
                const auto& b = snapshot.blocks;
                s.kv_use = b.num_total_blocks > 0 ? static_cast<double>(b.num_used_blocks) / b.num_total_blocks : 0.0;
                s.engine_metrics->on_snapshot(snapshot);
                // Routing binary-searches it: a replica that sends it unsorted or oversized is
                // not trusted to have kept the contract.
                auto& keys = snapshot.cached_prefix_keys;
                if (!std::is_sorted(keys.begin(), keys.end())) std::sort(keys.begin(), keys.end());
                if (keys.size() > max_digest_keys) keys.resize(max_digest_keys);
                s.cached_prefix_keys = std::move(snapshot.cached_prefix_keys);
              },
              [=](caf::error& e) {
                if (self->state.slots[i].generation != generation) return;
                lose(self, i, "no answer to a stats request: " + self->system().render(e));
              });
    } else if (!s.up && !s.local && !s.connecting && now >= s.next_attempt_ms) {
      connect(self, i);
    }
  }
  self->delayed_send(self, std::chrono::milliseconds(st.options.stats_interval_ms), route_tick_atom::value);
}

void on_event(router_self self, request_event_message& m) {
  auto& st = self->state;
  uint64_t ticket = 0;
  uint32_t attempt = 0;
  if (!parse_wire_id(m.request_id, ticket, attempt)) return;
  auto it = st.requests.find(ticket);
  if (it == st.requests.end() || it->second.attempt != attempt) return;  // a lost replica's late word
  auto& r = it->second;
  auto& s = st.slots[r.replica];
  auto& event = m.event;
  if (auto accepted = std::get_if<accepted_event>(&event)) {
    r.accepted = true;
    r.req = request{};  // it will not be routed again
    accepted->request_id = r.client_id;
    r.sink->on_event(r.client_id, event);
    return;
  }
  if (auto err = std::get_if<error_event>(&event)) {
    set_in_flight(s, -1);
    if (err->code == request_error_code::unavailable && !r.accepted) {
      // The replica is draining or has failed: not for new work until connected again.
      if (!s.refusing) log_line("replica " + s.name + " refuses new requests (" + err->message + ")");
      s.refusing = true;
      s.rerouted->inc();
      r.refused_by.push_back(r.replica);
      route(self, ticket);
      return;
    }
    end_request(self, ticket, std::move(event));
    return;
  }
  if (std::holds_alternative<done_event>(event)) {
    set_in_flight(s, -1);
    end_request(self, ticket, std::move(event));
    return;
  }
  r.sink->on_event(r.client_id, event);
}

// A new slot for addr (not connected yet: the next tick connects), its metrics registered.
size_t add_slot(router_self self, const replica_address& addr, const std::string& name = "") {
  auto& st = self->state;
  auto& registry = *st.options.metrics;
  slot s;
  s.addr = addr;
  s.name = name.empty() ? addr.name() : name;
  s.backoff_ms = st.options.reconnect_min_ms;
  const metric_labels labels{{"replica", s.name}};
  s.routed = registry.counter("troupe_replica_requests_routed_total",
                              "Requests the router sent to the replica (again after a loss or refusal).", labels);
  s.in_flight_gauge = registry.gauge("troupe_replica_requests_in_flight",
                                     "Requests the router sent to the replica that have not ended.", labels);
  s.lost = registry.counter("troupe_replica_requests_lost_total",
                            "Started requests that ended with replica_lost because the replica was lost.", labels);
  s.rerouted = registry.counter("troupe_replica_requests_rerouted_total",
                                "Requests not started on the replica that went to another one (lost or refusing).",
                                labels);
  s.up_gauge = registry.gauge("troupe_replica_up", "1 while the replica is connected and answering, else 0.", labels);
  s.engine_metrics = std::make_unique<replica_metrics>(registry, s.name);
  st.slots.push_back(std::move(s));
  return st.slots.size() - 1;
}

std::optional<size_t> find_slot(router_self self, const std::string& name) {
  const auto& slots = self->state.slots;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].name == name) return i;
  }
  return std::nullopt;
}

caf::error unknown_replica(const std::string& name) {
  return caf::make_error(caf::sec::invalid_argument, "no replica " + name + " in the fleet");
}

// fleet_add_atom: a new member, or a retired one revived. Connecting starts at the next tick.
caf::result<std::string> add_member(router_self self, const replica_address& addr) {
  auto& st = self->state;
  const std::string name = addr.name();
  if (auto i = find_slot(self, name)) {
    auto& s = st.slots[*i];
    if (!s.retired) return caf::make_error(caf::sec::invalid_argument, "replica " + name + " is already in the fleet");
    s.retired = false;
    s.draining = false;
    s.refusing = false;
    s.connecting = false;
    ++s.generation;
    s.backoff_ms = st.options.reconnect_min_ms;
    s.next_attempt_ms = 0;
    s.last_failure.clear();
  } else {
    add_slot(self, addr);
  }
  log_line("replica " + name + " added");
  publish_status(self);
  return name;
}

// fleet_drain_atom: no new requests go there; the reply comes once none is in flight.
caf::result<int64_t> drain_member(router_self self, const std::string& name) {
  auto& st = self->state;
  const auto i = find_slot(self, name);
  if (!i || st.slots[*i].retired) return unknown_replica(name);
  auto& s = st.slots[*i];
  const int64_t num_in_flight = s.in_flight;
  if (!s.draining) log_line("replica " + name + " draining: " + std::to_string(num_in_flight) + " in flight");
  s.draining = true;
  publish_status(self);
  if (num_in_flight == 0) return int64_t{0};
  s.drain_waiters.emplace_back(self->make_response_promise(), num_in_flight);
  return caf::delegated<int64_t>{};
}

// fleet_remove_atom: the replica leaves the fleet; whatever it still ran ends as on a loss.
caf::result<int64_t> remove_member(router_self self, const std::string& name) {
  auto& st = self->state;
  const auto i = find_slot(self, name);
  if (!i || st.slots[*i].retired) return unknown_replica(name);
  const int64_t num_in_flight = st.slots[*i].in_flight;
  if (st.slots[*i].up) lose(self, *i, "removed from the fleet");
  auto& s = st.slots[*i];  // lose may have routed requests elsewhere: take the reference again
  s.retired = true;
  s.draining = false;
  s.connecting = false;
  ++s.generation;  // a connection attempt under way is ignored when it answers
  s.up_gauge->set(0);
  for (auto& [promise, num_when_asked] : s.drain_waiters) promise.deliver(num_when_asked);
  s.drain_waiters.clear();
  log_line("replica " + name + " removed");
  publish_status(self);
  return num_in_flight;
}

caf::behavior router(router_self self, router_options options, std::shared_ptr<replica_router::shared> shared,
                     std::shared_ptr<const model_bundle> model) {
  auto& st = self->state;
  st.options = std::move(options);
  st.shared = std::move(shared);
  st.model = std::move(model);
  // No engine runs here: the replicas' engine series are their replica_metrics, labelled.
  st.serving = std::make_shared<serving_metrics>(st.options.metrics, metrics_scope::front_door);
  st.affinity = affinity_table(std::max<size_t>(1, st.options.affinity_keys));
  for (const auto& local : st.options.local_replicas) {
    auto& s = st.slots[add_slot(self, replica_address{"local", 0}, local.name)];
    s.local = true;
    s.handle = local.handle;
    s.up = true;
    self->monitor(s.handle);
    s.up_gauge->set(1);
  }
  for (const auto& addr : st.options.replicas) add_slot(self, addr);
  publish_status(self);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& slots = self->state.slots;
    for (size_t i = 0; i < slots.size(); ++i) {
      if (slots[i].handle && slots[i].handle.address() == dm.source) {
        lose(self, i, "connection lost: " + to_string(dm.reason));
      }
    }
  });
  self->send(self, route_tick_atom::value);
  return {
      [=](route_submit_atom, uint64_t ticket, request& req) {
        auto& st = self->state;
        event_sink_ptr sink;
        {
          std::lock_guard lock(st.shared->mutex);
          auto it = st.shared->arriving.find(ticket);
          if (it == st.shared->arriving.end()) return;
          sink = std::move(it->second);
          st.shared->arriving.erase(it);
        }
        routed_request r;
        r.key = prefix_key(req);
        r.client_id = req.id;
        r.req = std::move(req);
        r.sink = std::move(sink);
        st.requests.emplace(ticket, std::move(r));
        route(self, ticket);
      },
      [=](route_cancel_atom, uint64_t ticket) {
        auto& st = self->state;
        auto it = st.requests.find(ticket);
        if (it == st.requests.end()) return;
        const auto& s = st.slots[it->second.replica];
        if (s.up) self->send(s.handle, atoms::cancel_atom::value, wire_id(ticket, it->second.attempt));
      },
      [=](atoms::event_atom, request_event_message& m) { on_event(self, m); },
      [=](route_tick_atom) { tick(self); },
      [=](fleet_add_atom, const std::string& host, uint16_t port) {
        return add_member(self, replica_address{host, port});
      },
      [=](fleet_drain_atom, const std::string& name) { return drain_member(self, name); },
      [=](fleet_remove_atom, const std::string& name) { return remove_member(self, name); },
      [=](fleet_status_atom) {
        auto& st = self->state;
        std::vector<replica_status> out;
        for (const auto& s : st.slots) {
          out.push_back({s.name, s.up, s.in_flight, s.failed_connects, s.draining, s.retired});
        }
        return out;
      },
  };
}

}  // namespace

replica_router::replica_router(caf::actor_system& sys, std::shared_ptr<const model_bundle> model,
                               router_options options)
    : sys_(sys), model_(std::move(model)), shared_(std::make_shared<shared>()) {
  if (!options.metrics) options.metrics = std::make_shared<metrics_registry>();
  metrics_ = options.metrics;
  actor_ = sys_.spawn(router, std::move(options), shared_, model_);
}

replica_router::~replica_router() { caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown); }

uint64_t replica_router::submit(request req, event_sink_ptr sink) {
  const uint64_t ticket = shared_->next_ticket.fetch_add(1);
  {
    std::lock_guard lock(shared_->mutex);
    shared_->arriving.emplace(ticket, std::move(sink));
  }
  caf::anon_send(actor_, route_submit_atom::value, ticket, std::move(req));
  return ticket;
}

void replica_router::cancel(uint64_t ticket) { caf::anon_send(actor_, route_cancel_atom::value, ticket); }

void replica_router::run_with_model(std::function<void(const model_bundle&)> task) {
  sys_.spawn([model = model_, task = std::move(task)] { task(*model); });
}

int replica_router::num_up() const { return shared_->num_up.load(); }

std::vector<replica_status> replica_router::replicas() const {
  std::lock_guard lock(shared_->status_mutex);
  return shared_->status;
}

bool replica_router::wait_settled(int64_t timeout_ms) const {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto status = replicas();  // empty until the router actor has started
    bool settled = !status.empty();
    bool all_up = settled;
    for (const auto& r : status) {
      if (r.retired) continue;
      settled = settled && (r.up || r.failed_connects > 0);
      all_up = all_up && r.up;
    }
    if (settled || std::chrono::steady_clock::now() >= deadline) return all_up;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace troupe::cluster
