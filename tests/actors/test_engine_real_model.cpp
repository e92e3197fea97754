// The actor runtime on the real default model: concurrency gives the same greedy text as
// one request at a time, preemption under KV pressure keeps outputs intact, priorities,
// cancel storms return every block, and refusals arrive as error events.
#include <doctest/doctest.h>
#include <simdjson.h>

#include <cmath>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "troupe/actors/engine.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/draft_backend.hpp"
#include "util/gated_backend.hpp"
#include "util/require_model.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

// prefix + n; written out because GCC 12 warns (-Wrestrict, a false positive) on
// "literal" + std::to_string(n).
inline std::string numbered(const char* prefix, long long n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}


// Collects every request's events; waits until all submitted requests ended, or until
// requests were admitted (accepted) or refused.
class collecting_sink : public event_sink {
 public:
  struct record {
    std::string text;
    std::vector<int32_t> tokens;
    std::optional<done_event> done;
    std::optional<error_event> err;
    int64_t first_token_order = -1;  // global order of the first delta
  };

  void on_event(const std::string& id, const request_event& e) override {
    std::lock_guard lock(mutex_);
    auto& r = records_[id];
    if (std::holds_alternative<accepted_event>(e) || std::holds_alternative<error_event>(e)) settled_.insert(id);
    if (auto d = std::get_if<delta_event>(&e)) {
      if (r.first_token_order < 0 && !d->token_ids.empty()) r.first_token_order = next_order_++;
      r.text += d->text;
      r.tokens.insert(r.tokens.end(), d->token_ids.begin(), d->token_ids.end());
    } else if (auto done = std::get_if<done_event>(&e)) {
      r.done = *done;
      ++num_ended_;
    } else if (auto err = std::get_if<error_event>(&e)) {
      r.err = *err;
      ++num_ended_;
    }
    cv_.notify_all();
  }

  bool wait_for(size_t n, std::chrono::seconds timeout = 300s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return num_ended_ >= n; });
  }

  // Waits until n requests were accepted (admitted) or refused with an error.
  bool wait_settled(size_t n, std::chrono::seconds timeout = 60s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return settled_.size() >= n; });
  }

  std::map<std::string, record> records() {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, record> records_;
  std::set<std::string> settled_;
  size_t num_ended_ = 0;
  int64_t next_order_ = 0;
};

struct fixture {
  // self_draft: the model drafts for itself (draft_backend), for --speculative draft.
  explicit fixture(engine_options options = {}, int32_t num_blocks = 512, int32_t num_swap_blocks = 0,
                   bool self_draft = false) {
    auto file = std::make_shared<const gguf::file>(gguf::file::open(TROUPE_TEST_MODEL));
    model = model_bundle::load(file, 2048);
    cpu::cpu_backend_options o;
    o.num_blocks = num_blocks;
    o.num_swap_blocks = num_swap_blocks;
    o.eog_ids = model->tok.eog_ids();
    // Open unless a test closes it to hold requests running while it sets up the next step.
    std::shared_ptr<backend> b = std::make_shared<cpu::cpu_backend>(file, o);
    if (self_draft) b = std::make_shared<draft_backend>(b, std::make_shared<cpu::cpu_backend>(file, o), o.eog_ids);
    gate = std::make_shared<test::gated_backend>(std::move(b));
    cfg.set("scheduler.max-threads", 2);
    sys = std::make_unique<caf::actor_system>(cfg);
    eng = std::make_unique<engine>(*sys, model, gate, options);
  }
  ~fixture() {
    gate->open();  // a step waiting at the gate would hold up the engine's shutdown
    eng.reset();
    sys.reset();
  }
  caf::actor_system_config cfg;
  std::shared_ptr<const model_bundle> model;
  std::shared_ptr<test::gated_backend> gate;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<engine> eng;
};

request chat(const std::string& id, const std::string& question, int32_t max_tokens, int32_t priority = 0) {
  request r;
  r.id = id;
  r.messages = {{"user", question}};
  r.params.temperature = 0.0f;
  r.params.max_tokens = max_tokens;
  r.priority = priority;
  return r;
}

const std::vector<std::string> questions = {
    "What is the capital of France?", "Name three colors.", "Write a haiku about rain.",
    "What is 2 + 2?", "Give me a tip for learning C++.", "Who wrote Hamlet?",
    "Describe a cat in one sentence.", "What is the boiling point of water?",
};

std::map<std::string, collecting_sink::record> run_all(fixture& f, const std::vector<request>& reqs) {
  auto sink = std::make_shared<collecting_sink>();
  for (const auto& r : reqs) f.eng->submit(r, sink);
  REQUIRE(sink->wait_for(reqs.size()));
  return sink->records();
}

}  // namespace

TEST_CASE("engine: 32 concurrent requests give the same greedy text as one at a time") {
  TROUPE_REQUIRE_MODEL();
  fixture f;
  std::vector<request> reqs;
  for (int i = 0; i < 32; ++i) reqs.push_back(chat(numbered("r", i), questions[i % 8] + std::string(i / 8, '!'), 24));
  const auto together = run_all(f, reqs);
  for (int i = 0; i < 32; i += 5) {  // a sample of them alone, to keep the test short
    const auto alone = run_all(f, {reqs[i]});
    const auto& a = alone.at(reqs[i].id);
    const auto& t = together.at(reqs[i].id);
    CAPTURE(i);
    REQUIRE(a.done);
    REQUIRE(t.done);
    CHECK(t.tokens == a.tokens);
    CHECK(t.text == a.text);
  }
  const auto s = f.eng->stats();
  CHECK(s.blocks.num_used_blocks == 0);
}

// 8 sequences of ~105 positions share their 2 system-prompt blocks through the prefix
// cache and need ~42 blocks in all; 32 blocks make preemption certain. Every output must
// equal that of the same request run alone.
static void check_preemption_keeps_text(preemption_mode mode, int32_t num_swap_blocks) {
  engine_options o;
  o.scheduling.max_num_seqs = 8;
  o.scheduling.preemption = mode;
  fixture f(o, 32, num_swap_blocks);
  std::vector<request> reqs;
  for (int i = 0; i < 8; ++i) {
    auto r = chat(numbered("p", i), questions[i], 64);
    r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  const auto together = run_all(f, reqs);
  const auto s = f.eng->stats();
  MESSAGE("preemptions: " << s.scheduling.num_preemptions);
  CHECK(s.scheduling.num_preemptions > 0);
  CHECK(s.blocks.num_used_swap_blocks == 0);
  for (int i = 0; i < 8; i += 3) {
    const auto alone = run_all(f, {reqs[i]});
    CHECK(together.at(reqs[i].id).tokens == alone.at(reqs[i].id).tokens);
  }
  CHECK(f.eng->stats().blocks.num_used_blocks == 0);
}

TEST_CASE("engine: a draft model's KV follows the target's through swaps and prefix sharing") {
  // The default model drafting for itself, 8 greedy sequences sharing a system prompt in a
  // pool of 32 blocks (swap preemptions certain), all speculating: every proposal must be
  // accepted, which it is only while the draft's KV in every block (moved out and back,
  // shared through the prefix cache) is what the target's is; and the text is the plain one.
  TROUPE_REQUIRE_MODEL();
  engine_options o;
  o.scheduling.max_num_seqs = 8;
  o.scheduling.preemption = preemption_mode::swap;
  o.scheduling.speculative = speculative_method::draft;
  o.scheduling.speculative_max_batch = 64;
  std::vector<request> reqs;
  for (int i = 0; i < 8; ++i) {
    auto r = chat(numbered("d", i), questions[i], 64);
    r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  std::map<std::string, collecting_sink::record> plain;
  {
    fixture f;
    plain = run_all(f, reqs);
  }
  fixture f(o, 32, 64, true);
  const auto together = run_all(f, reqs);
  const auto s = f.eng->stats();
  MESSAGE("preemptions: " << s.scheduling.num_preemptions << "; proposed " << s.scheduling.num_draft_tokens
                          << ", accepted " << s.scheduling.num_accepted_tokens);
  CHECK(s.scheduling.num_preemptions > 0);
  CHECK(s.scheduling.num_draft_tokens > 0);
  CHECK(s.scheduling.num_accepted_tokens == s.scheduling.num_draft_tokens);
  for (const auto& r : reqs) {
    CAPTURE(r.id);
    CHECK(together.at(r.id).tokens == plain.at(r.id).tokens);
  }
  CHECK(s.blocks.num_used_blocks == 0);
  CHECK(s.blocks.num_used_swap_blocks == 0);
}

TEST_CASE("engine: requests preempted for KV space finish with the text of an uninterrupted run") {
  TROUPE_REQUIRE_MODEL();
  check_preemption_keeps_text(preemption_mode::recompute, 0);
}

TEST_CASE("engine: requests swapped out to host memory finish with the text of an uninterrupted run") {
  TROUPE_REQUIRE_MODEL();
  check_preemption_keeps_text(preemption_mode::swap, 64);
}

// The same requests through a synchronous and an asynchronous engine, both short of KV
// (preemptions), with every way to finish in the mix: the model's end of generation,
// max_tokens, a stop string, a stop token id, and cancels. Uncancelled requests end with
// the same tokens, text and reason; a cancelled one with a prefix of them.
TEST_CASE("engine: asynchronous scheduling gives the text of synchronous scheduling, with stops, cancels and preemptions") {
  TROUPE_REQUIRE_MODEL();
  std::vector<request> reqs;
  for (int i = 0; i < 16; ++i) {
    auto r = chat(numbered("a", i), questions[i % 8] + std::string(i / 8, '?'), 40 + 8 * (i % 4));
    if (i % 4 == 1) r.stop = {"."};
    if (i % 4 == 2) r.params.stop_token_ids = {28};  // "," in this vocabulary's first few hundred ids
    if (i % 4 == 3) r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  auto run = [&](bool is_async, bool with_cancels) {
    engine_options o;
    o.scheduling.max_num_seqs = 8;
    o.scheduling.async_scheduling = is_async;
    fixture f(o, 16);  // 256 positions for 8 sequences of up to ~100
    auto sink = std::make_shared<collecting_sink>();
    std::vector<engine::handle> handles;
    for (const auto& r : reqs) handles.push_back(f.eng->submit(r, sink));
    if (with_cancels) {
      // Cancels land after the first preemption (the run must have both), at least 300 ms in.
      std::this_thread::sleep_for(300ms);
      for (int i = 0; i < 600 && f.eng->stats().scheduling.num_preemptions == 0; ++i) std::this_thread::sleep_for(5ms);
      for (size_t i = 0; i < handles.size(); i += 5) f.eng->cancel(handles[i]);
    }
    REQUIRE(sink->wait_for(reqs.size()));
    auto s = f.eng->stats();
    for (int i = 0; i < 100 && s.blocks.num_used_blocks != 0; ++i) {
      std::this_thread::sleep_for(50ms);
      s = f.eng->stats();
    }
    CHECK(s.blocks.num_used_blocks == 0);
    CHECK(s.scheduling.num_preemptions > 0);
    CHECK((s.scheduling.num_steps_ahead > 0) == is_async);
    MESSAGE(std::string(is_async ? "async" : "sync") << ": " << s.scheduling.num_steps << " steps, " << s.scheduling.num_steps_ahead
                                          << " planned ahead, " << s.scheduling.num_preemptions << " preemptions");
    return sink->records();
  };
  const auto sync = run(false, false);
  const auto async = run(true, true);
  std::set<std::string> reasons;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& id = reqs[i].id;
    CAPTURE(id);
    const auto& a = sync.at(id);
    const auto& b = async.at(id);
    REQUIRE(a.done);
    REQUIRE(b.done);
    reasons.insert(std::string(to_string(a.done->reason)) + (a.done->stop_string ? "+string" : "") +
                   (a.done->stop_token ? "+token" : ""));
    if (b.done->reason == request_finish_reason::cancelled) {
      CHECK(i % 5 == 0);
      CHECK(std::equal(b.tokens.begin(), b.tokens.end(), a.tokens.begin(), a.tokens.begin() + std::min(a.tokens.size(), b.tokens.size())));
      CHECK(b.tokens.size() <= a.tokens.size());
      continue;
    }
    CHECK(b.tokens == a.tokens);
    CHECK(b.text == a.text);
    CHECK(b.done->reason == a.done->reason);
  }
  std::string seen;
  for (const auto& r : reasons) seen += r + " ";
  MESSAGE("finishes seen: " << seen);
  CHECK(reasons.size() >= 3);
}

TEST_CASE("engine: a high-priority request submitted into a full engine starts before queued low-priority ones") {
  TROUPE_REQUIRE_MODEL();
  engine_options o;
  o.scheduling.max_num_seqs = 2;
  o.scheduling.max_num_batched_tokens = 256;
  fixture f(o);
  auto sink = std::make_shared<collecting_sink>();
  // The gate holds the first step until all six low-priority requests and then "high" are
  // admitted: at most two low ones have a slot when "high" arrives, the rest queue.
  f.gate->close();
  for (int i = 0; i < 6; ++i) {
    auto low = chat(numbered("low", i), questions[i], 48, 5);
    low.params.ignore_eos = true;
    f.eng->submit(low, sink);
  }
  REQUIRE(sink->wait_settled(6));
  REQUIRE(f.gate->wait_held());
  f.eng->submit(chat("high", questions[7], 8, 0), sink);
  REQUIRE(sink->wait_settled(7));
  f.gate->open();
  REQUIRE(sink->wait_for(7));
  const auto r = sink->records();
  // Request actors tokenize in parallel, so which two low-priority requests got the two
  // slots first is not fixed; the other four were queued when "high" arrived.
  int num_low_after_high = 0;
  for (int i = 0; i < 6; ++i) {
    num_low_after_high += r.at(numbered("low", i)).first_token_order > r.at("high").first_token_order;
  }
  CHECK(num_low_after_high >= 4);
}

TEST_CASE("engine: a cancel storm leaves every KV block free") {
  TROUPE_REQUIRE_MODEL();
  engine_options o;
  o.scheduling.max_num_seqs = 16;
  fixture f(o, 256);
  auto sink = std::make_shared<collecting_sink>();
  std::mt19937 rng(7);
  std::vector<engine::handle> handles;
  const int n = 200;
  for (int i = 0; i < n; ++i) {
    auto r = chat(numbered("c", i), questions[i % 8], 32);
    r.params.ignore_eos = true;
    handles.push_back(f.eng->submit(r, sink));
    if (rng() % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    if (rng() % 4 != 0) f.eng->cancel(handles[rng() % handles.size()]);
  }
  for (auto& h : handles) f.eng->cancel(h);
  f.eng->cancel(handles.front());  // twice: harmless
  REQUIRE(sink->wait_for(n));
  // A request ends as soon as it is cancelled; its abort reaches the scheduler after that.
  auto s = f.eng->stats();
  for (int i = 0; i < 100 && (s.blocks.num_used_blocks != 0 || s.scheduling.num_running != 0); ++i) {
    std::this_thread::sleep_for(50ms);
    s = f.eng->stats();
  }
  CHECK(s.blocks.num_used_blocks == 0);
  CHECK(s.scheduling.num_running == 0);
  CHECK(s.scheduling.num_waiting == 0);
  int num_cancelled = 0;
  for (const auto& [id, rec] : sink->records()) {
    CHECK((rec.done.has_value() || rec.err.has_value()));
    num_cancelled += rec.done && rec.done->reason == request_finish_reason::cancelled;
  }
  CHECK(num_cancelled > n / 2);
}

TEST_CASE("engine: refusals arrive as error events (queue full, prompt too long, bad parameters)") {
  TROUPE_REQUIRE_MODEL();
  engine_options o;
  o.scheduling.max_num_seqs = 1;
  o.scheduling.max_batch_size = 1;
  o.scheduling.max_queue_len = 2;
  fixture f(o);
  auto sink = std::make_shared<collecting_sink>();
  // The gate holds the first request's first step until every request was admitted or
  // refused, so the queue is still full when the last ones arrive.
  f.gate->close();
  for (int i = 0; i < 12; ++i) f.eng->submit(chat(numbered("q", i), questions[0], 16), sink);
  auto too_long = chat("long", std::string(20000, 'a'), 8);
  f.eng->submit(too_long, sink);
  auto bad = chat("bad", "hi", 8);
  bad.params.top_p = 7.0f;
  f.eng->submit(bad, sink);
  REQUIRE(sink->wait_settled(14));
  f.gate->open();
  REQUIRE(sink->wait_for(14));
  const auto r = sink->records();
  int num_queue_full = 0;
  for (int i = 0; i < 12; ++i) {
    const auto& rec = r.at(numbered("q", i));
    num_queue_full += rec.err && rec.err->code == request_error_code::queue_full;
  }
  CHECK(num_queue_full > 0);
  REQUIRE(r.at("long").err);
  CHECK(r.at("long").err->code == request_error_code::context_overflow);
  REQUIRE(r.at("bad").err);
  CHECK(r.at("bad").err->code == request_error_code::invalid_request);
  CHECK(r.at("bad").err->message.find("top_p") != std::string::npos);
}

// Speculative decoding by prompt lookup against plain decoding, on prompts whose answers
// quote them (where proposals are accepted): greedy text token for token, in one batch
// with some requests opting out, so that speculative and plain sequences share steps.
static std::vector<request> grounded_requests(int n, int32_t max_tokens) {
  const std::vector<std::string> texts = {
      "The quick brown fox jumps over the lazy dog near the river bank.",
      "int add(int a, int b) { return a + b; } int sub(int a, int b) { return a - b; }",
      "Roses are red, violets are blue, sugar is sweet, and so are you.",
      "The meeting is on Monday at ten in the morning in room four.",
  };
  const std::vector<std::string> asks = {"Repeat this text exactly: ", "Copy the following line: ",
                                         "Say this again word for word: ", "Rewrite this sentence: "};
  std::vector<request> reqs;
  for (int i = 0; i < n; ++i) {
    reqs.push_back(chat(numbered("s", i), asks[(i / 4) % 4] + texts[i % 4] + std::string((i / 16), '!'), max_tokens));
  }
  return reqs;
}

TEST_CASE("engine: speculative decoding by prompt lookup gives the greedy text of plain decoding on 32 prompts") {
  TROUPE_REQUIRE_MODEL();
  auto reqs = grounded_requests(32, 40);
  for (int i = 0; i < 32; i += 4) reqs[i].speculative = speculative_method::off;
  std::map<std::string, collecting_sink::record> plain, spec;
  {
    fixture f;
    plain = run_all(f, reqs);
  }
  engine_options o;
  o.scheduling.speculative = speculative_method::ngram;
  o.scheduling.speculative_max_batch = 64;
  fixture f(o);
  spec = run_all(f, reqs);
  int num_same = 0;
  for (const auto& r : reqs) {
    CAPTURE(r.id);
    REQUIRE(plain.at(r.id).done);
    REQUIRE(spec.at(r.id).done);
    CHECK(spec.at(r.id).tokens == plain.at(r.id).tokens);
    CHECK(spec.at(r.id).text == plain.at(r.id).text);
    CHECK(spec.at(r.id).done->reason == plain.at(r.id).done->reason);
    num_same += spec.at(r.id).tokens == plain.at(r.id).tokens;
  }
  const auto s = f.eng->stats();
  MESSAGE(num_same << " of 32 identical; proposed " << s.scheduling.num_draft_tokens << ", accepted "
                   << s.scheduling.num_accepted_tokens << " in " << s.scheduling.num_speculative_steps
                   << " speculative sequence-steps");
  CHECK(s.scheduling.num_accepted_tokens > 0);
  CHECK(s.blocks.num_used_blocks == 0);
  // The requests that opted out report no proposals; the others report theirs.
  CHECK(spec.at("s0").done->timings.num_draft_tokens == 0);
  int32_t reported = 0;
  for (const auto& [id, rec] : spec) reported += rec.done->timings.num_draft_tokens;
  CHECK(reported == s.scheduling.num_draft_tokens);
}

TEST_CASE("engine: speculative decoding with a draft model gives the greedy text of plain decoding, beside n-gram and plain requests") {
  // The default model drafts for itself: with greedy requests every proposal must be
  // accepted, so a draft KV out of step with the target's would show as a rejection.
  TROUPE_REQUIRE_MODEL();
  auto reqs = grounded_requests(16, 40);
  for (int i = 0; i < 16; i += 4) reqs[i].speculative = speculative_method::off;
  for (int i = 1; i < 16; i += 4) reqs[i].speculative = speculative_method::ngram;
  std::map<std::string, collecting_sink::record> plain, spec;
  {
    fixture f;
    plain = run_all(f, reqs);
  }
  engine_options o;
  o.scheduling.speculative = speculative_method::draft;
  o.scheduling.speculative_max_batch = 64;
  fixture f(o, 512, 0, true);
  spec = run_all(f, reqs);
  for (const auto& r : reqs) {
    CAPTURE(r.id);
    REQUIRE(plain.at(r.id).done);
    REQUIRE(spec.at(r.id).done);
    CHECK(spec.at(r.id).tokens == plain.at(r.id).tokens);
    CHECK(spec.at(r.id).done->reason == plain.at(r.id).done->reason);
  }
  const auto s = f.eng->stats();
  int32_t draft_proposed = 0, draft_accepted = 0;
  for (int i = 2; i < 16; i += 4) {
    for (int j : {i, i + 1}) {
      draft_proposed += spec.at(reqs[static_cast<size_t>(j)].id).done->timings.num_draft_tokens;
      draft_accepted += spec.at(reqs[static_cast<size_t>(j)].id).done->timings.num_accepted_tokens;
    }
  }
  MESSAGE("proposed " << s.scheduling.num_draft_tokens << ", accepted " << s.scheduling.num_accepted_tokens
                      << "; by the draft model " << draft_accepted << " of " << draft_proposed);
  CHECK(draft_proposed > 0);
  CHECK(draft_accepted == draft_proposed);
  CHECK(spec.at("s0").done->timings.num_draft_tokens == 0);
  CHECK(s.blocks.num_used_blocks == 0);
}

TEST_CASE("engine: speculative decoding reproduces seeded sampling with penalties, one stream at a time") {
  TROUPE_REQUIRE_MODEL();
  auto reqs = grounded_requests(8, 32);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].params.temperature = 0.7f;
    reqs[i].params.top_p = 0.9f;
    reqs[i].params.seed = 1000 + i;
    reqs[i].params.repetition_penalty = i % 2 ? 1.1f : 1.0f;
    reqs[i].params.frequency_penalty = i % 3 == 0 ? 0.2f : 0.0f;
    reqs[i].logprobs = true;
    reqs[i].params.num_logprobs = 2;
  }
  engine_options plain_options;
  plain_options.scheduling.max_num_seqs = 1;
  engine_options spec_options = plain_options;
  spec_options.scheduling.speculative = speculative_method::ngram;
  fixture plain_engine(plain_options), spec_engine(spec_options);
  const auto plain = run_all(plain_engine, reqs);
  const auto spec = run_all(spec_engine, reqs);
  for (const auto& r : reqs) {
    CAPTURE(r.id);
    CHECK(spec.at(r.id).tokens == plain.at(r.id).tokens);
    CHECK(spec.at(r.id).text == plain.at(r.id).text);
  }
  const auto s = spec_engine.eng->stats();
  MESSAGE("proposed " << s.scheduling.num_draft_tokens << ", accepted " << s.scheduling.num_accepted_tokens);
  CHECK(s.scheduling.num_accepted_tokens > 0);
}

TEST_CASE("engine: speculative decoding with a draft model samples seeded requests to the end, every self-draft proposal accepted") {
  // The default model drafting for itself: the draft's rows are the target's, so p = q and
  // every proposal is accepted. The two engines' texts are not compared: which uniform decides
  // a token depends on k and on how steps fall, which timing moves (docs/speculative.md).
  TROUPE_REQUIRE_MODEL();
  auto reqs = grounded_requests(8, 32);
  for (size_t i = 0; i < reqs.size(); ++i) {
    reqs[i].params.temperature = 0.8f;
    reqs[i].params.top_p = 0.9f;
    reqs[i].params.seed = 2000 + i;
    reqs[i].params.repetition_penalty = i % 2 ? 1.1f : 1.0f;
    reqs[i].logprobs = true;
    reqs[i].params.num_logprobs = 2;
    reqs[i].speculative = speculative_method::draft;
  }
  engine_options o;
  o.scheduling.max_num_seqs = 1;
  fixture a(o, 512, 0, true), b(o, 512, 0, true);
  const auto first = run_all(a, reqs);
  const auto again = run_all(b, reqs);
  for (const auto& r : reqs) {
    CAPTURE(r.id);
    REQUIRE(first.at(r.id).done);
    REQUIRE(again.at(r.id).done);
    CHECK_FALSE(first.at(r.id).tokens.empty());
  }
  const auto s = a.eng->stats();
  MESSAGE("proposed " << s.scheduling.num_draft_tokens << ", accepted " << s.scheduling.num_accepted_tokens);
  CHECK(s.scheduling.num_draft_tokens > 0);
  CHECK(s.scheduling.num_accepted_tokens == s.scheduling.num_draft_tokens);
  CHECK(s.blocks.num_used_blocks == 0);
}

namespace {

// Each request's choices: text and tokens by index, the choice_done events and the done.
class choices_sink : public event_sink {
 public:
  struct record {
    std::map<int32_t, std::string> text;
    std::map<int32_t, std::vector<int32_t>> tokens;
    std::vector<token_logprobs> logprobs;  // every delta's, in order
    std::vector<choice_done_event> ends;
    std::optional<done_event> done;
    std::optional<error_event> err;
  };
  void on_event(const std::string& id, const request_event& e) override {
    std::lock_guard lock(mutex_);
    auto& r = records_[id];
    if (auto d = std::get_if<delta_event>(&e)) {
      r.text[d->index] += d->text;
      r.tokens[d->index].insert(r.tokens[d->index].end(), d->token_ids.begin(), d->token_ids.end());
      r.logprobs.insert(r.logprobs.end(), d->logprobs.begin(), d->logprobs.end());
    } else if (auto c = std::get_if<choice_done_event>(&e)) {
      r.ends.push_back(*c);
    } else if (auto done = std::get_if<done_event>(&e)) {
      r.done = *done;
      ++num_ended_;
    } else if (auto err = std::get_if<error_event>(&e)) {
      r.err = *err;
      ++num_ended_;
    }
    cv_.notify_all();
  }
  bool wait_for(size_t n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, 300s, [&] { return num_ended_ >= n; });
  }
  std::map<std::string, record> records() {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, record> records_;
  size_t num_ended_ = 0;
};

std::map<std::string, choices_sink::record> run_choices(fixture& f, const std::vector<request>& reqs) {
  auto sink = std::make_shared<choices_sink>();
  for (const auto& r : reqs) f.eng->submit(r, sink);
  REQUIRE(sink->wait_for(reqs.size()));
  return sink->records();
}

}  // namespace

TEST_CASE("engine: parallel sampling: n greedy choices equal the single greedy text, seeded choices reproduce, best_of keeps the likeliest") {
  TROUPE_REQUIRE_MODEL();
  fixture f;
  std::vector<request> reqs;
  reqs.push_back(chat("single", questions[2], 24));
  reqs.push_back(chat("greedy-4", questions[2], 24));
  reqs.back().n = 4;
  for (const char* id : {"seeded-a", "seeded-b", "seeded-single"}) {
    reqs.push_back(chat(id, questions[6], 24));
    reqs.back().params.temperature = 0.9f;
    reqs.back().params.seed = 11;
    reqs.back().n = std::string(id) == "seeded-single" ? 1 : 3;
  }
  reqs.push_back(chat("best", questions[4], 16));
  reqs.back().params.temperature = 1.0f;
  reqs.back().params.seed = 5;
  reqs.back().n = 2;
  reqs.back().best_of = 5;
  const auto got = run_choices(f, reqs);
  for (const auto& [id, r] : got) {
    CAPTURE(id);
    REQUIRE(r.done);
    CHECK_FALSE(r.err);
  }
  const auto& single = got.at("single");
  const auto& greedy = got.at("greedy-4");
  REQUIRE(greedy.text.size() == 4);
  for (int32_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(greedy.tokens.at(i) == single.tokens.at(0));
  }
  CHECK(greedy.ends.size() == 4);
  REQUIRE(greedy.done->choices.size() == 4);
  CHECK(greedy.done->usage.completion_tokens == 4 * single.done->usage.completion_tokens);
  CHECK(single.done->choices.empty());
  CHECK(single.ends.empty());

  const auto& a = got.at("seeded-a");
  const auto& b = got.at("seeded-b");
  CHECK(a.tokens == b.tokens);  // the same seed: the same three choices
  REQUIRE(a.tokens.size() == 3);
  CHECK(a.tokens.at(0) == got.at("seeded-single").tokens.at(0));  // choice 0 keeps the seed
  CHECK((a.tokens.at(0) != a.tokens.at(1) || a.tokens.at(1) != a.tokens.at(2)));

  const auto& best = got.at("best");
  REQUIRE(best.done->choices.size() == 2);
  CHECK(best.done->choices[0].cumulative_logprob >= best.done->choices[1].cumulative_logprob);
  CHECK(best.text.size() == 2);
  const int32_t returned = best.done->choices[0].completion_tokens + best.done->choices[1].completion_tokens;
  CHECK(best.done->usage.completion_tokens > returned);  // five sampled, two returned
  auto s = f.eng->stats();
  for (int i = 0; i < 100 && s.blocks.num_used_blocks != 0; ++i) {
    std::this_thread::sleep_for(20ms);
    s = f.eng->stats();
  }
  CHECK(s.blocks.num_used_blocks == 0);
}

TEST_CASE("engine: parallel sampling: cancelling a request with n = 4 ends every choice and frees every block") {
  TROUPE_REQUIRE_MODEL();
  fixture f;
  auto sink = std::make_shared<choices_sink>();
  request r = chat("cancelled", questions[1], 400);
  r.params.ignore_eos = true;
  r.params.temperature = 0.8f;
  r.n = 4;
  auto h = f.eng->submit(r, sink);
  std::this_thread::sleep_for(300ms);
  f.eng->cancel(h);
  REQUIRE(sink->wait_for(1));
  const auto rec = sink->records().at("cancelled");
  REQUIRE(rec.done);
  CHECK(rec.done->choices.size() == 4);
  for (const auto& c : rec.done->choices) CHECK(c.reason == request_finish_reason::cancelled);
  auto s = f.eng->stats();
  for (int i = 0; i < 100 && s.blocks.num_used_blocks != 0; ++i) {
    std::this_thread::sleep_for(20ms);
    s = f.eng->stats();
  }
  CHECK(s.blocks.num_used_blocks == 0);
}

namespace {

struct reference_beam {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  double cumulative = 0.0;
};

struct reference_hypothesis {
  std::vector<int32_t> tokens;
  double cumulative = 0.0;
  double score = 0.0;
};

// Beam search written plainly against the engine's public API: every beam's next-token
// distribution is asked for afresh, as a one-token greedy request whose prompt is the
// beam's whole text (token ids) with the 2w likeliest alternatives. The rule is the one
// docs/protocol.md states: candidates ranked by summed log-probability, a stop token among
// the first w ends a hypothesis, any other candidate is a next beam until there are w;
// score = sum / length^length_penalty; done when a beam reaches max_tokens, when nothing
// continues, or once w hypotheses have ended and (early_stopping, or) the best next beam
// cannot beat the worst of them.
std::vector<reference_hypothesis> reference_beam_search(fixture& f, const std::vector<int32_t>& prompt, int32_t width,
                                                        int32_t max_tokens, float length_penalty, bool early_stopping) {
  const auto is_stop = [&](int32_t t) { return f.model->tok.is_eog(t); };
  const auto score = [&](double cumulative, size_t length) {
    return cumulative / std::pow(static_cast<double>(length), static_cast<double>(length_penalty));
  };
  std::vector<reference_hypothesis> hyps;
  const auto add = [&](reference_hypothesis h) {
    hyps.push_back(std::move(h));
    std::stable_sort(hyps.begin(), hyps.end(), [](const auto& a, const auto& b) { return a.score > b.score; });
    if (hyps.size() > static_cast<size_t>(width)) hyps.pop_back();
  };
  std::vector<reference_beam> beams(1);
  for (int round = 0;; ++round) {
    REQUIRE(round <= max_tokens);
    struct candidate {
      double cumulative;
      size_t beam;
      size_t rank;
      int32_t token;
      float logprob;
    };
    std::vector<candidate> ranked;
    for (size_t b = 0; b < beams.size(); ++b) {
      request r;
      r.id = "ref";
      r.prompt_token_ids = prompt;
      r.prompt_token_ids.insert(r.prompt_token_ids.end(), beams[b].tokens.begin(), beams[b].tokens.end());
      r.params.temperature = 0.0f;
      r.params.max_tokens = 1;
      r.params.ignore_eos = false;
      r.logprobs = true;
      r.params.num_logprobs = 2 * width;
      auto sink = std::make_shared<choices_sink>();
      f.eng->submit(r, sink);
      REQUIRE(sink->wait_for(1));
      const auto rec = sink->records().at("ref");
      REQUIRE(rec.done);
      REQUIRE(rec.logprobs.size() == 1);
      const auto& top = rec.logprobs.front().top;
      for (size_t k = 0; k < top.size(); ++k) {
        ranked.push_back({beams[b].cumulative + top[k].logprob, b, k, top[k].token, top[k].logprob});
      }
    }
    std::sort(ranked.begin(), ranked.end(), [](const candidate& x, const candidate& y) {
      if (x.cumulative != y.cumulative) return x.cumulative > y.cumulative;
      if (x.beam != y.beam) return x.beam < y.beam;
      return x.rank < y.rank;
    });
    ranked.resize(std::min(ranked.size(), static_cast<size_t>(2 * width)));
    std::vector<reference_beam> next;
    for (size_t rank = 0; rank < ranked.size() && next.size() < static_cast<size_t>(width); ++rank) {
      const candidate& c = ranked[rank];
      reference_beam grown = beams[c.beam];
      grown.tokens.push_back(c.token);
      grown.logprobs.push_back(c.logprob);
      grown.cumulative = c.cumulative;
      if (is_stop(c.token)) {
        if (rank < static_cast<size_t>(width)) add({grown.tokens, c.cumulative, score(c.cumulative, grown.tokens.size())});
        continue;
      }
      next.push_back(std::move(grown));
    }
    if (next.empty()) return hyps;
    const size_t length = next.front().tokens.size();
    if (length >= static_cast<size_t>(max_tokens)) {
      for (const auto& b : next) add({b.tokens, b.cumulative, score(b.cumulative, length)});
      return hyps;
    }
    if (hyps.size() >= static_cast<size_t>(width) &&
        (early_stopping || hyps.back().score >= score(next.front().cumulative, length))) {
      return hyps;
    }
    beams = std::move(next);
  }
}

}  // namespace

TEST_CASE("engine: beam search returns the hypotheses of a plain reference beam search, best first") {
  TROUPE_REQUIRE_MODEL();
  fixture f;
  struct config_case {
    int32_t width;
    int32_t n;
    int32_t max_tokens;
    float length_penalty;
    bool early_stopping;
    const char* prompt;
  };
  const config_case cases[] = {
      {3, 3, 12, 1.0f, false, "The capital of France is"},
      {2, 1, 10, 0.5f, true, "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\n"},
      {4, 2, 8, 2.0f, false, "def add(a, b):"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.prompt);
    const auto prompt = f.model->tok.encode(c.prompt, true, true);
    const auto expected = reference_beam_search(f, prompt, c.width, c.max_tokens, c.length_penalty, c.early_stopping);
    REQUIRE(static_cast<int32_t>(expected.size()) >= c.n);
    request r;
    r.id = "beams";
    r.prompt_token_ids = prompt;
    r.params.max_tokens = c.max_tokens;
    r.n = c.n;
    r.beam_width = c.width;
    r.length_penalty = c.length_penalty;
    r.early_stopping = c.early_stopping;
    auto sink = std::make_shared<choices_sink>();
    f.eng->submit(r, sink);
    REQUIRE(sink->wait_for(1));
    const auto got = sink->records().at("beams");
    REQUIRE(got.done);
    REQUIRE(got.done->choices.size() == (c.n > 1 ? static_cast<size_t>(c.n) : 0));
    for (int32_t i = 0; i < c.n; ++i) {
      CAPTURE(i);
      CHECK(got.tokens.at(i) == expected[static_cast<size_t>(i)].tokens);
      if (c.n > 1) {
        CHECK(got.done->choices[static_cast<size_t>(i)].cumulative_logprob ==
              doctest::Approx(expected[static_cast<size_t>(i)].cumulative).epsilon(1e-4));
      }
    }
  }
  auto s = f.eng->stats();
  for (int i = 0; i < 100 && s.blocks.num_used_blocks != 0; ++i) {
    std::this_thread::sleep_for(20ms);
    s = f.eng->stats();
  }
  CHECK(s.blocks.num_used_blocks == 0);
}

TEST_CASE("engine: structured output keeps every choice inside its grammar, with async scheduling and preemptions") {
  TROUPE_REQUIRE_MODEL();
  engine_options o;
  o.scheduling.max_num_seqs = 8;
  o.scheduling.async_scheduling = true;
  fixture f(o, 32);  // 512 token slots; six unconstrained neighbours need ~900: preemptions
  struct guided_case {
    grammar_spec spec;
    int32_t n;
  };
  const std::string person = R"({"type":"object","properties":{"name":{"type":"string","maxLength":12},)"
                             R"("age":{"type":"integer","minimum":0,"maximum":99},)"
                             R"("pets":{"type":"array","items":{"enum":["cat","dog"]},"maxItems":3}},)"
                             R"("required":["name","age","pets"],"additionalProperties":false})";
  const std::vector<guided_case> cases = {
      {{grammar_kind::json_schema, person, {}}, 2},
      {{grammar_kind::json_object, {}, {}}, 1},
      {{grammar_kind::regex, R"(\d{3}-\d{4})", {}}, 2},
      {{grammar_kind::choice, {}, {"red", "green", "blue"}}, 3},
  };
  std::vector<request> reqs;
  for (size_t i = 0; i < cases.size(); ++i) {
    auto r = chat(numbered("g", static_cast<long long>(i)), "Answer in JSON: " + questions[i], 100);
    r.params.temperature = 0.8f;
    r.params.seed = 40 + i;
    r.n = cases[i].n;
    r.guided = cases[i].spec;
    reqs.push_back(r);
  }
  for (int i = 0; i < 6; ++i) {  // unconstrained neighbours that fill the KV
    auto r = chat(numbered("free", i), questions[2 + i], 120);
    r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  const auto got = run_choices(f, reqs);
  simdjson::dom::parser parser;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& rec = got.at(reqs[i].id);
    CAPTURE(reqs[i].id);
    REQUIRE(rec.done);
    REQUIRE(rec.text.size() == static_cast<size_t>(cases[i].n));
    for (const auto& [index, text] : rec.text) {
      CAPTURE(text);
      const auto reason = cases[i].n > 1 ? rec.done->choices[static_cast<size_t>(index)].reason : rec.done->reason;
      if (reason == request_finish_reason::length) continue;  // cut short: may be incomplete
      CHECK(reason == request_finish_reason::stop);
      switch (cases[i].spec.kind) {
        case grammar_kind::json_schema: {
          simdjson::dom::element doc;
          REQUIRE(parser.parse(text).get(doc) == simdjson::SUCCESS);
          CHECK(doc["name"].is_string());
          CHECK(int64_t(doc["age"]) <= 99);
          CHECK(simdjson::dom::array(doc["pets"]).size() <= 3);
          break;
        }
        case grammar_kind::json_object: {
          simdjson::dom::element doc;
          REQUIRE(parser.parse(text).get(doc) == simdjson::SUCCESS);
          CHECK(doc.is_object());
          break;
        }
        case grammar_kind::regex:
          CHECK(text.size() == 8);
          CHECK(text[3] == '-');
          CHECK(std::all_of(text.begin(), text.begin() + 3, [](char c) { return c >= '0' && c <= '9'; }));
          break;
        case grammar_kind::choice:
          CHECK((text == "red" || text == "green" || text == "blue"));
          break;
      }
    }
  }
  const auto s = f.eng->stats();
  MESSAGE("preemptions: " << s.scheduling.num_preemptions << ", steps planned ahead: " << s.scheduling.num_steps_ahead);
  CHECK(s.scheduling.num_preemptions > 0);
}

TEST_CASE("engine: a grammar the compiler refuses is an invalid_request naming the field") {
  TROUPE_REQUIRE_MODEL();
  fixture f;
  auto r = chat("bad", questions[0], 10);
  r.guided = grammar_spec{grammar_kind::json_schema, R"({"type":"object","not":{}})", {}};
  r.guided_field = "guided_json";
  const auto got = run_choices(f, {r});
  REQUIRE(got.at("bad").err);
  CHECK(got.at("bad").err->code == request_error_code::invalid_request);
  CHECK(got.at("bad").err->message.find("guided_json: unsupported JSON Schema keyword \"not\"") == 0);
}
