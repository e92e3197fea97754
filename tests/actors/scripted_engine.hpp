// A scripted engine for actor tests: a backend that answers every sampled sequence with
// (last fed token + 1) and can be told to fail a step, a sink that records every event, and
// a fixture running a real engine over them on CAF's deterministic test scheduler.
#pragma once
#include <doctest/doctest.h>

#include <caf/scheduler/test_coordinator.hpp>

#include <functional>
#include <map>
#include <mutex>
#include <new>
#include <set>

#include "troupe/actors/engine.hpp"
#include "troupe/model/error.hpp"
#include "util/tiny_model.hpp"

namespace troupe::test {

// Answers every sampled sequence with token (last fed token + 1) mod vocab, from a pool
// of 64 blocks of 16; can be told to fail its next step (with a troupe::error of a given
// code, or std::bad_alloc).
class scripted_backend : public backend {
 public:
  explicit scripted_backend(model_config c, int32_t num_blocks = 64) : config_(std::move(c)), num_blocks_(num_blocks) {}
  const model_config& config() const override { return config_; }
  kv_cache_shape kv_shape() const override { return {num_blocks_, 16, 1}; }
  step_result step(const batch_plan& plan) override {
    ++num_steps;
    if (fail_next || num_steps == fail_at_step) {
      fail_next = false;
      if (fail_with_bad_alloc) throw std::bad_alloc();
      throw error(fail_code, "scripted failure");
    }
    step_result r;
    for (const auto& s : plan.sequences) {
      sequence_output o;
      o.seq_id = s.seq_id;
      if (s.wants_sample) o.token = (s.tokens.back() + 1) % config_.vocab_size;
      r.outputs.push_back(o);
    }
    return r;
  }
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>&) override {}
  int32_t num_swap_blocks() const override { return 0; }
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>&) override {}
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>&) override {}

  int num_steps = 0;
  bool fail_next = false;
  int fail_at_step = -1;  // fail the step with this number (1 = the first)
  error_code fail_code = error_code::internal;
  bool fail_with_bad_alloc = false;

 private:
  model_config config_;
  int32_t num_blocks_;
};

struct recording_sink : event_sink {
  void on_event(const std::string& id, const request_event& e) override {
    std::lock_guard lock(mutex);
    if (std::holds_alternative<accepted_event>(e)) accepted.insert(id);
    if (auto d = std::get_if<delta_event>(&e)) {
      num_tokens[id] += (int)d->token_ids.size();
      token_ids[id].insert(token_ids[id].end(), d->token_ids.begin(), d->token_ids.end());
    }
    if (auto d = std::get_if<done_event>(&e)) done[id] = *d;
    if (auto x = std::get_if<error_event>(&e)) errors[id] = *x;
  }
  std::mutex mutex;
  std::set<std::string> accepted;
  std::map<std::string, int> num_tokens;
  std::map<std::string, std::vector<int32_t>> token_ids;
  std::map<std::string, done_event> done;
  std::map<std::string, error_event> errors;
};

struct deterministic_fixture {
  // adjust (may be empty) changes the engine's options before it starts.
  explicit deterministic_fixture(scheduler_config sc, int32_t num_kv_blocks = 64,
                                 const std::function<void(engine_options&)>& adjust = {}) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    auto file = std::make_shared<const gguf::file>(gguf::file::parse(test::make_tiny_llama()));
    model = model_bundle::load(file, 256);
    backend_ = std::make_shared<scripted_backend>(model->config, num_kv_blocks);
    engine_options o;
    o.scheduling = sc;
    o.detached_worker = false;
    if (adjust) adjust(o);
    eng = std::make_unique<engine>(*sys, model, backend_, o);
    sched->run();
  }
  ~deterministic_fixture() {
    eng.reset();
    sched->run();
  }
  request make(const std::string& id, int32_t max_tokens, int64_t timeout_ms = 0) {
    request r;
    r.id = id;
    r.prompt = "the cat sat on the mat";
    r.params.temperature = 0.0f;
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;
    r.timeout_ms = timeout_ms;
    return r;
  }
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<const model_bundle> model;
  std::shared_ptr<scripted_backend> backend_;
  std::unique_ptr<engine> eng;
  std::shared_ptr<recording_sink> sink = std::make_shared<recording_sink>();
};

}  // namespace troupe::test
