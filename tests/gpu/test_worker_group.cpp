// Tensor parallelism through the actor runtime, under CAF's deterministic test scheduler
// with scripted rank backends: the worker_group sends every step to every rank, the
// sequence continues with rank 0's tokens, and a failing rank fails the step (naming the
// rank) without wedging the group.
#include <doctest/doctest.h>

#include <caf/scheduler/test_coordinator.hpp>

#include <map>
#include <mutex>

#include "troupe/actors/engine.hpp"
#include "troupe/model/error.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

// Samples (last fed token + offset) mod vocab; counts its steps; can fail its next step.
class scripted_rank : public backend {
 public:
  scripted_rank(model_config c, int32_t offset) : config_(std::move(c)), offset_(offset) {}
  const model_config& config() const override { return config_; }
  kv_cache_shape kv_shape() const override { return {64, 16, 1}; }
  step_result step(const batch_plan& plan) override {
    ++num_steps;
    if (fail_next) {
      fail_next = false;
      throw error(error_code::internal, "rank failure");
    }
    step_result r;
    for (const auto& s : plan.sequences) {
      sequence_output o;
      o.seq_id = s.seq_id;
      if (s.wants_sample) o.token = (s.tokens.back() + offset_) % config_.vocab_size;
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

 private:
  model_config config_;
  int32_t offset_;
};

struct token_sink : event_sink {
  void on_event(const std::string& id, const request_event& e) override {
    std::lock_guard lock(mutex);
    if (auto d = std::get_if<delta_event>(&e)) tokens[id].insert(tokens[id].end(), d->token_ids.begin(), d->token_ids.end());
    if (std::get_if<done_event>(&e)) done[id] = true;
    if (auto x = std::get_if<error_event>(&e)) errors[id] = x->message;
  }
  std::mutex mutex;
  std::map<std::string, std::vector<int32_t>> tokens;
  std::map<std::string, bool> done;
  std::map<std::string, std::string> errors;
};

struct two_rank_fixture {
  two_rank_fixture() {
    cfg.set("scheduler.policy", caf::atom("testing"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    auto file = std::make_shared<const gguf::file>(gguf::file::parse(test::make_tiny_llama()));
    model = model_bundle::load(file, 256);
    rank0 = std::make_shared<scripted_rank>(model->config, 1);
    rank1 = std::make_shared<scripted_rank>(model->config, 7);
    engine_options o;
    o.detached_worker = false;
    o.more_ranks = {rank1};
    eng = std::make_unique<engine>(*sys, model, rank0, o);
    sched->run();
  }
  ~two_rank_fixture() {
    eng.reset();
    sched->run();
  }
  request make(const std::string& id, int32_t max_tokens) {
    request r;
    r.id = id;
    r.prompt = "the cat sat";
    r.params.temperature = 0.0f;
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;
    return r;
  }
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<const model_bundle> model;
  std::shared_ptr<scripted_rank> rank0, rank1;
  std::unique_ptr<engine> eng;
  std::shared_ptr<token_sink> sink = std::make_shared<token_sink>();
};

}  // namespace

TEST_CASE("worker group: every rank runs every step and the sequence follows rank 0") {
  two_rank_fixture f;
  f.eng->submit(f.make("a", 5), f.sink);
  f.sched->run();
  REQUIRE(f.sink->done["a"]);
  const auto& t = f.sink->tokens["a"];
  REQUIRE(t.size() == 5);
  for (size_t i = 1; i < t.size(); ++i) CHECK(t[i] == (t[i - 1] + 1) % f.model->config.vocab_size);
  CHECK(f.rank0->num_steps == f.rank1->num_steps);
  CHECK(f.rank0->num_steps >= 5);
}

TEST_CASE("worker group: a failing rank fails the step, naming the rank, and the group serves the next") {
  two_rank_fixture f;
  f.rank1->fail_next = true;
  f.eng->submit(f.make("first", 3), f.sink);
  f.sched->run();
  REQUIRE(f.sink->errors.count("first"));
  CHECK(f.sink->errors["first"].find("rank 1") != std::string::npos);
  f.eng->submit(f.make("second", 3), f.sink);
  f.sched->run();
  CHECK(f.sink->done["second"]);
  CHECK(f.sink->tokens["second"].size() == 3);
}
