#include "troupe/cluster/autoscaler.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "troupe/actors/messages.hpp"
#include "troupe/cluster/child_process.hpp"
#include "troupe/engine/metrics.hpp"
#include "troupe/model/error.hpp"

namespace troupe::cluster {

struct autoscaler::shared {
  std::mutex mutex;
  std::map<uint64_t, std::shared_ptr<child_process>> children;  // every process started, until reaped
};

namespace {

using as_tick_atom = caf::atom_constant<caf::atom("astick")>;
using as_line_atom = caf::atom_constant<caf::atom("asline")>;    // (id, line): a worker process printed
using as_exit_atom = caf::atom_constant<caf::atom("asexit")>;    // (id, status): a worker process ended
using as_stop_atom = caf::atom_constant<caf::atom("asstop")>;    // (id, status): a stop command ended
using as_names_atom = caf::atom_constant<caf::atom("asnames")>;  // -> the addresses of the workers it knows

// A replica the autoscaler manages, from its start to its stop:
//   starting ─(address printed)─► warming ─(router: up)─► ready ─(scale down)─► draining ─► stopping
// and from any state to gone when its process dies (or the start fails, or it stays down).
enum class replica_phase { starting, warming, ready, draining, stopping };

const char* to_string(replica_phase p) {
  switch (p) {
    case replica_phase::starting: return "starting";
    case replica_phase::warming: return "warming up";
    case replica_phase::ready: return "ready";
    case replica_phase::draining: return "draining";
    case replica_phase::stopping: return "stopping";
  }
  return "?";
}

struct managed_replica {
  uint64_t id = 0;
  replica_phase phase = replica_phase::starting;
  int64_t phase_since_ms = 0;
  std::shared_ptr<child_process> process;
  bool has_process_exited = false;
  std::string name;  // HOST:PORT once printed
  int64_t down_since_ms = -1;  // ready but not up in the router since then
};

struct autoscaler_state {
  autoscaler_options options;
  std::shared_ptr<autoscaler::shared> shared;
  caf::actor router;
  std::unique_ptr<autoscale_policy> policy;
  std::map<uint64_t, managed_replica> replicas;
  uint64_t next_id = 1;
  int32_t desired = 0;
  bool status_pending = false;
  int64_t next_start_ms = 0;     // failed starts back off
  int64_t start_backoff_ms = 0;
  gauge_metric* desired_gauge = nullptr;
  gauge_metric* current_gauge = nullptr;
  gauge_metric* utilization_gauge = nullptr;
  counter_metric* ups = nullptr;
  counter_metric* downs = nullptr;
  static inline const char* name = "troupe.autoscaler";
};

using autoscaler_self = caf::stateful_actor<autoscaler_state>*;

void log_line(const std::string& line) {
  std::fprintf(stderr, "troupe: autoscaler: %s\n", line.c_str());
  std::fflush(stderr);
}

std::string label(const managed_replica& r) {
  return "worker #" + std::to_string(r.id) + (r.name.empty() ? "" : " (" + r.name + ")");
}

void enter(autoscaler_self self, managed_replica& r, replica_phase next) {
  const bool is_legal = (r.phase == replica_phase::starting && next == replica_phase::warming) ||
                        (r.phase == replica_phase::warming && next == replica_phase::ready) ||
                        (r.phase == replica_phase::ready && next == replica_phase::draining) ||
                        (r.phase == replica_phase::draining && next == replica_phase::stopping);
  if (!is_legal) {
    throw error(error_code::internal, std::string("autoscaler: ") + label(r) + ": no transition from " +
                                          to_string(r.phase) + " to " + to_string(next));
  }
  r.phase = next;
  r.phase_since_ms = now_ms(self);
}

// A line a worker (or the worker command) printed: the first one that names an address
// makes it warm up in the router. "troupe: worker M listening on HOST:PORT" or "HOST:PORT".
std::optional<replica_address> address_in(const std::string& line) {
  std::string text = line;
  if (const auto at = text.rfind(" listening on "); at != std::string::npos) text = text.substr(at + 14);
  while (!text.empty() && (text.back() == '\r' || text.back() == ' ')) text.pop_back();
  while (!text.empty() && text.front() == ' ') text.erase(0, 1);
  if (text.empty() || text.find(' ') != std::string::npos || text.find(':') == std::string::npos) return std::nullopt;
  try {
    return parse_address(text, "the worker's address");
  } catch (const error&) {
    return std::nullopt;
  }
}

launch_spec start_spec(const autoscaler_options& o) {
  launch_spec spec;
  if (o.worker_command.empty()) {
    spec.argv.push_back(o.worker_executable);
    spec.argv.insert(spec.argv.end(), o.worker_args.begin(), o.worker_args.end());
    spec.argv.push_back("--listen");
    spec.argv.push_back("127.0.0.1:0");
  } else {
    spec.argv = {"/bin/sh", "-c", o.worker_command};
  }
  if (!o.cluster_key.empty()) spec.env.emplace_back("TROUPE_CLUSTER_KEY", o.cluster_key);
  return spec;
}

void start_one(autoscaler_self self) {
  auto& st = self->state;
  const uint64_t id = st.next_id++;
  managed_replica r;
  r.id = id;
  r.phase_since_ms = now_ms(self);
  const caf::actor me = caf::actor_cast<caf::actor>(self);
  try {
    r.process = child_process::start(
        start_spec(st.options), [me, id](std::string line) { caf::anon_send(me, as_line_atom::value, id, line); },
        [me, id](int status) { caf::anon_send(me, as_exit_atom::value, id, status); });
  } catch (const error& e) {
    log_line("cannot start a worker: " + std::string(e.what()));
    return;
  }
  {
    std::lock_guard lock(st.shared->mutex);
    st.shared->children[id] = r.process;
  }
  log_line("started " + label(r) + ", pid " + std::to_string(r.process->pid()));
  st.replicas.emplace(id, std::move(r));
}

// The replica's worker is to go: out of the router, then the stop command (if given) and
// SIGTERM to its process (a local worker drains and exits 0). True when something will
// report its end (as_exit_atom or as_stop_atom); false when nothing can.
bool stop_one(autoscaler_self self, managed_replica& r, const std::string& why) {
  auto& st = self->state;
  log_line("stopping " + label(r) + ": " + why);
  if (!r.name.empty()) caf::anon_send(st.router, fleet_remove_atom::value, r.name);
  bool will_report = false;
  if (!st.options.worker_stop_command.empty() && !r.name.empty()) {
    const caf::actor me = caf::actor_cast<caf::actor>(self);
    const uint64_t id = r.id;
    launch_spec spec{{"/bin/sh", "-c", st.options.worker_stop_command}, {{"TROUPE_WORKER_ADDRESS", r.name}}};
    try {
      child_process::start(spec, [](std::string line) { log_line("stop command: " + line); },
                           [me, id](int status) { caf::anon_send(me, as_stop_atom::value, id, status); });
      will_report = true;
    } catch (const error& e) {
      log_line("cannot run the stop command for " + label(r) + ": " + e.what());
    }
  }
  if (r.process && !r.has_process_exited) {
    r.process->terminate();
    will_report = true;
  }
  if (!will_report && !st.options.worker_command.empty()) {
    log_line(label(r) + ": its command has exited and there is no --worker-stop-command: nothing stops it from here");
  }
  return will_report;
}

// The worker is gone or its start failed: forgotten here and in the router. Failed starts back off.
void forget(autoscaler_self self, uint64_t id, const std::string& why, bool is_failed_start) {
  auto& st = self->state;
  auto it = st.replicas.find(id);
  if (it == st.replicas.end()) return;
  auto& r = it->second;
  log_line(label(r) + " gone while " + to_string(r.phase) + ": " + why);
  if (r.phase != replica_phase::stopping) stop_one(self, r, why);  // it is forgotten whatever reports later
  if (is_failed_start) {
    st.start_backoff_ms = std::clamp<int64_t>(st.start_backoff_ms * 2, 1000, st.options.start_backoff_max_ms);
    st.next_start_ms = now_ms(self) + st.start_backoff_ms;
    log_line("next start in " + std::to_string(st.start_backoff_ms) + " ms at the earliest");
  }
  st.replicas.erase(it);
}

void scale_down(autoscaler_self self, const std::vector<replica_status>& fleet) {
  auto& st = self->state;
  managed_replica* pick = nullptr;
  int64_t least = 0;
  for (auto& [id, r] : st.replicas) {
    if (r.phase != replica_phase::ready) continue;
    int64_t in_flight = 0;
    for (const auto& s : fleet) {
      if (s.name == r.name) in_flight = s.in_flight;
    }
    if (!pick || in_flight < least) {
      pick = &r;
      least = in_flight;
    }
  }
  if (!pick) return;
  enter(self, *pick, replica_phase::draining);
  log_line("draining " + label(*pick) + " (" + std::to_string(least) + " request(s) in flight there)");
  const uint64_t id = pick->id;
  self->request(st.router, std::chrono::milliseconds(st.options.drain_timeout_ms), fleet_drain_atom::value,
                pick->name)
      .then(
          [=](int64_t num_in_flight) {
            auto it = self->state.replicas.find(id);
            if (it == self->state.replicas.end() || it->second.phase != replica_phase::draining) return;
            enter(self, it->second, replica_phase::stopping);
            if (!stop_one(self, it->second,
                          "drained (" + std::to_string(num_in_flight) + " request(s) finished since the drain began)")) {
              self->state.replicas.erase(it);
            }
          },
          [=](caf::error& e) {
            auto it = self->state.replicas.find(id);
            if (it == self->state.replicas.end() || it->second.phase != replica_phase::draining) return;
            enter(self, it->second, replica_phase::stopping);
            if (!stop_one(self, it->second, "the drain did not end: " + self->system().render(e))) {
              self->state.replicas.erase(it);
            }
          });
}

void act(autoscaler_self self, const std::vector<replica_status>& fleet) {
  auto& st = self->state;
  const int64_t now = now_ms(self);
  // Phases from the router's view, and the timeouts.
  std::vector<std::pair<uint64_t, std::string>> failed;
  for (auto& [id, r] : st.replicas) {
    const replica_status* s = nullptr;
    for (const auto& f : fleet) {
      if (!r.name.empty() && f.name == r.name && !f.retired) s = &f;
    }
    if (r.phase == replica_phase::starting && now - r.phase_since_ms > st.options.start_timeout_ms) {
      failed.emplace_back(id, "no address printed within " + std::to_string(st.options.start_timeout_ms) + " ms");
    } else if (r.phase == replica_phase::warming && s && s->up) {
      enter(self, r, replica_phase::ready);
      st.start_backoff_ms = 0;
      log_line(label(r) + " ready: its gate answered after " + std::to_string(now - r.phase_since_ms) +
               " ms of warm-up; routed to from now on");
      r.phase_since_ms = now;
    } else if (r.phase == replica_phase::warming && now - r.phase_since_ms > st.options.warm_up_timeout_ms) {
      failed.emplace_back(id, "not up in the router within " + std::to_string(st.options.warm_up_timeout_ms) + " ms");
    } else if (r.phase == replica_phase::ready) {
      const bool is_up = s && s->up;
      r.down_since_ms = is_up ? -1 : (r.down_since_ms < 0 ? now : r.down_since_ms);
      if (r.down_since_ms >= 0 && now - r.down_since_ms > st.options.lost_after_ms) {
        failed.emplace_back(id, "down in the router for " + std::to_string(now - r.down_since_ms) + " ms");
      }
    }
  }
  for (const auto& [id, why] : failed) {
    const bool is_start = st.replicas.at(id).phase != replica_phase::ready;
    forget(self, id, why, is_start);
  }

  // The sample: requests in flight on the replicas routed to, per slot of capacity.
  int64_t in_flight = 0;
  int32_t num_ready = 0;
  for (const auto& s : fleet) {
    if (s.retired || s.draining || !s.up) continue;
    in_flight += s.in_flight;
    ++num_ready;
  }
  fleet_sample sample;
  for (const auto& [id, r] : st.replicas) {
    const bool counts = r.phase == replica_phase::starting || r.phase == replica_phase::warming ||
                        r.phase == replica_phase::ready;
    sample.num_replicas += counts ? 1 : 0;
    sample.is_changing = sample.is_changing || r.phase == replica_phase::starting ||
                         r.phase == replica_phase::warming || r.phase == replica_phase::draining;
  }
  sample.num_ready = num_ready;
  const double capacity = static_cast<double>(num_ready) * st.options.max_num_seqs;
  sample.utilization = capacity > 0 ? static_cast<double>(in_flight) / capacity : 0.0;
  st.utilization_gauge->set(sample.utilization);
  st.current_gauge->set(num_ready);

  const auto d = st.policy->observe(now, sample);
  if (d.direction == scale_direction::none) return;
  const std::string numbers = " [" + std::to_string(in_flight) + " in flight on " + std::to_string(num_ready) +
                              " ready replica(s) x max_num_seqs " + std::to_string(st.options.max_num_seqs) + "]";
  if (d.direction == scale_direction::up) {
    if (now < st.next_start_ms) return;  // backing off after a failed start
    st.desired = d.desired;
    st.desired_gauge->set(st.desired);
    st.ups->inc();
    log_line("scale up " + std::to_string(sample.num_replicas) + " -> " + std::to_string(d.desired) + ": " + d.reason +
             numbers);
    for (int32_t n = sample.num_replicas; n < d.desired; ++n) start_one(self);
  } else {
    st.desired = d.desired;
    st.desired_gauge->set(st.desired);
    st.downs->inc();
    log_line("scale down " + std::to_string(sample.num_replicas) + " -> " + std::to_string(d.desired) + ": " +
             d.reason + numbers);
    scale_down(self, fleet);
  }
}

void tick(autoscaler_self self) {
  auto& st = self->state;
  self->delayed_send(self, std::chrono::milliseconds(st.options.sample_interval_ms), as_tick_atom::value);
  if (st.status_pending) return;
  st.status_pending = true;
  self->request(st.router, std::chrono::seconds(5), fleet_status_atom::value)
      .then(
          [=](const std::vector<replica_status>& fleet) {
            self->state.status_pending = false;
            act(self, fleet);
          },
          [=](caf::error& e) {
            self->state.status_pending = false;
            log_line("the router did not answer: " + self->system().render(e));
          });
}

void on_line(autoscaler_self self, uint64_t id, const std::string& line) {
  auto& st = self->state;
  auto it = st.replicas.find(id);
  if (it == st.replicas.end() || it->second.phase != replica_phase::starting) return;
  auto& r = it->second;
  const auto addr = address_in(line);
  if (!addr) return;
  r.name = addr->name();
  enter(self, r, replica_phase::warming);
  log_line(label(r) + " listening after " + std::to_string(now_ms(self) - r.phase_since_ms) +
           " ms; warming up (routed to once its gate answers)");
  self->request(st.router, std::chrono::seconds(5), fleet_add_atom::value, addr->host, addr->port)
      .then([](const std::string&) {},
            [=](caf::error& e) {
              auto it = self->state.replicas.find(id);
              if (it == self->state.replicas.end()) return;
              it->second.name.clear();  // not ours to remove from the router
              forget(self, id, "the router refused it: " + self->system().render(e), true);
            });
}

void on_exit(autoscaler_self self, uint64_t id, int status) {
  auto& st = self->state;
  {
    std::lock_guard lock(st.shared->mutex);
    st.shared->children.erase(id);
  }
  auto it = st.replicas.find(id);
  if (it == st.replicas.end()) return;
  auto& r = it->second;
  r.has_process_exited = true;
  if (r.phase == replica_phase::stopping) {
    log_line(label(r) + " stopped (" + describe_exit(status) + ")");
    st.replicas.erase(it);
    return;
  }
  // A --worker-command may print the address and leave the worker running elsewhere.
  if (!st.options.worker_command.empty() && !r.name.empty() && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    log_line(label(r) + ": the worker command exited 0; the router watches the worker from here");
    return;
  }
  forget(self, id, "its process ended unexpectedly (" + describe_exit(status) + ")",
         r.phase == replica_phase::starting || r.phase == replica_phase::warming);
}

caf::behavior autoscaler_actor(autoscaler_self self, autoscaler_options options,
                               std::shared_ptr<autoscaler::shared> shared, caf::actor router,
                               std::shared_ptr<metrics_registry> metrics) {
  auto& st = self->state;
  st.options = std::move(options);
  st.shared = std::move(shared);
  st.router = std::move(router);
  st.policy = std::make_unique<autoscale_policy>(st.options.policy);
  st.desired = st.options.policy.min_replicas;
  const std::string replicas_help = "Replicas the autoscaler wants (desired) and has routed to (current).";
  st.desired_gauge = metrics->gauge("troupe_autoscaler_replicas", replicas_help, {{"state", "desired"}});
  st.current_gauge = metrics->gauge("troupe_autoscaler_replicas", replicas_help, {{"state", "current"}});
  st.utilization_gauge = metrics->gauge(
      "troupe_autoscaler_utilization", "Requests in flight per slot of capacity (ready replicas x max_num_seqs).");
  metrics->gauge("troupe_autoscaler_target_utilization", "The --target-utilization the autoscaler holds to.")
      ->set(st.options.policy.target_utilization);
  const std::string decisions_help = "Scaling decisions the autoscaler took.";
  st.ups = metrics->counter("troupe_autoscaler_decisions_total", decisions_help, {{"direction", "up"}});
  st.downs = metrics->counter("troupe_autoscaler_decisions_total", decisions_help, {{"direction", "down"}});
  st.desired_gauge->set(st.desired);
  self->send(self, as_tick_atom::value);
  return {
      [=](as_tick_atom) { tick(self); },
      [=](as_line_atom, uint64_t id, const std::string& line) { on_line(self, id, line); },
      [=](as_exit_atom, uint64_t id, int status) { on_exit(self, id, status); },
      [=](as_names_atom) {
        std::vector<std::string> names;
        for (const auto& [id, r] : self->state.replicas) {
          // A stopping one has had its stop command already.
          if (!r.name.empty() && r.phase != replica_phase::stopping) names.push_back(r.name);
        }
        return names;
      },
      [=](as_stop_atom, uint64_t id, int status) {
        log_line("the stop command for worker #" + std::to_string(id) + " ended (" + describe_exit(status) + ")");
        auto it = self->state.replicas.find(id);
        if (it != self->state.replicas.end() && it->second.phase == replica_phase::stopping) {
          self->state.replicas.erase(it);
        }
      },
  };
}

}  // namespace

autoscaler::autoscaler(caf::actor_system& sys, replica_router& router, autoscaler_options options)
    : sys_(sys), shared_(std::make_shared<shared>()) {
  validate(options.policy);
  if (options.max_num_seqs < 1) throw error(error_code::invalid_argument, "the autoscaler needs max_num_seqs >= 1");
  if (options.worker_command.empty() && options.worker_executable.empty()) {
    throw error(error_code::invalid_argument, "the autoscaler needs a worker executable or --worker-command");
  }
  stop_command_ = options.worker_stop_command;
  actor_ = sys.spawn(autoscaler_actor, std::move(options), shared_, router.actor(), router.metrics());
}

autoscaler::~autoscaler() { stop_workers(5000); }

void autoscaler::stop_workers(int64_t timeout_ms) {
  // Workers a --worker-command started elsewhere (its process may have exited long ago)
  // stop only by the stop command: run it for every worker whose address is known.
  std::vector<std::shared_ptr<child_process>> stop_commands;
  if (actor_) {
    std::vector<std::string> names;
    if (!stop_command_.empty()) {
      caf::scoped_actor self{sys_};
      self->request(actor_, std::chrono::seconds(2), as_names_atom::value)
          .receive([&](std::vector<std::string>& got) { names = std::move(got); }, [](caf::error&) {});
    }
    caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
    actor_ = caf::actor{};
    for (const auto& name : names) {
      try {
        stop_commands.push_back(child_process::start(
            launch_spec{{"/bin/sh", "-c", stop_command_}, {{"TROUPE_WORKER_ADDRESS", name}}},
            [](std::string line) { log_line("stop command: " + line); }, [](int) {}));
      } catch (const error& e) {
        log_line("cannot run the stop command for " + name + ": " + e.what());
      }
    }
  }
  auto live = [&] {
    std::vector<std::shared_ptr<child_process>> out;
    std::lock_guard lock(shared_->mutex);
    for (const auto& [id, child] : shared_->children) {
      if (!child->has_exited()) out.push_back(child);
    }
    return out;
  };
  for (const auto& child : live()) child->terminate();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const auto commands_running = [&] {
    return std::any_of(stop_commands.begin(), stop_commands.end(), [](const auto& c) { return !c->has_exited(); });
  };
  while ((!live().empty() || commands_running()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const auto& c : stop_commands) {
    if (!c->has_exited()) c->kill();
  }
  for (const auto& child : live()) {
    std::fprintf(stderr, "troupe: autoscaler: worker pid %d did not exit in %lld ms: killing it\n",
                 static_cast<int>(child->pid()), static_cast<long long>(timeout_ms));
    child->kill();
  }
}

}  // namespace troupe::cluster
