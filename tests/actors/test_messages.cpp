// Every message type the actors exchange survives CAF's binary serialization (the format a
// middleman uses between processes) unchanged: inside a caf::message, as the receiving node
// decodes it by the registered type names. Samples carry the values CAF 0.17.6 gets wrong
// for plain floats (+inf hangs its serializer, NaN becomes 1, -0 and denormals change) and
// strings that are not valid UTF-8.
#include <doctest/doctest.h>

#include <bit>
#include <limits>
#include <set>
#include <typeindex>

#include "troupe/actors/fan_out.hpp"
#include "troupe/actors/type_ids.hpp"

using namespace troupe;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();
const float nan_value = std::numeric_limits<float>::quiet_NaN();
const std::string invalid_utf8 = std::string("ok \xff\xfe \xc3") + '\0' + "tail";

struct serialization_fixture {
  serialization_fixture() : sys(init(cfg)) {}
  static caf::actor_system_config& init(caf::actor_system_config& c) {
    add_message_types(c);
    return c;
  }
  caf::actor_system_config cfg;
  caf::actor_system sys;
  std::set<std::type_index> types_checked;

  // Serializes (atom, x) as one message, decodes it as another node would, and returns the
  // decoded x (the message's element types come back from their registered names).
  template <class T>
  T round_trip(const T& x) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    auto msg = caf::make_message(atoms::token_atom::value, x);
    REQUIRE_FALSE(sink(msg));
    caf::message decoded;
    caf::binary_deserializer source{sys, buf};
    REQUIRE_FALSE(source(decoded));
    REQUIRE(decoded.size() == 2);
    REQUIRE(decoded.match_element<T>(1));
    return decoded.get_as<T>(1);
  }

  template <class T>
  void check(const T& x) {
    CHECK(round_trip(x) == x);
    types_checked.insert(typeid(T));
  }
};

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

sampling_params unusual_params() {
  sampling_params p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = -0.5f;
  p.frequency_penalty = 0.25f;
  p.penalty_last_n = -1;
  p.logit_bias = {{5, -inf}, {9, inf}, {11, 2.5f}};
  p.seed = 0xfedcba9876543210ull;
  p.num_logprobs = 3;
  p.max_tokens = 77;
  p.stop_token_ids = {2, 7};
  p.ignore_eos = true;
  return p;
}

step_request sample_step_request() {
  step_request r;
  r.ops.copies = {{1, 2}};
  r.ops.swap_out = {{3, 0}, {4, 1}};
  r.ops.swap_in = {{0, 5}};
  sequence_step s;
  s.seq_id = 42;
  s.tokens = {1, 2, 3};
  s.start_pos = 16;
  s.block_table = {7, 8};
  s.wants_sample = false;
  s.wants_all_logits = true;
  s.params = unusual_params();
  s.penalty_tokens = {9, 9, 10};
  s.num_prompt_penalty_tokens = 2;
  s.sample_index = 5;
  r.plan.full = {s, sequence_step{}};
  r.plan.next = {{43, 17, 9}, {44, 3, -1}};
  r.plan.forget = {7, 8};
  r.plan.is_planned_ahead = true;
  return r;
}

step_result sample_step_result() {
  step_result r;
  sequence_output o;
  o.seq_id = 42;
  o.token = 17;
  o.logprob = -inf;
  o.top_logprobs = {{17, -0.25f}, {3, -inf}};
  o.logits = {1.5f, -inf, inf, -0.0f, std::numeric_limits<float>::denorm_min(), 1e-40f};
  r.outputs = {o, sequence_output{}};
  return r;
}

sequence_event sample_sequence_event() {
  sequence_event e;
  e.seq_id = 9;
  e.state = sequence_state::failed;
  e.token = 4;
  e.logprob = -inf;
  e.top_logprobs = {{4, -1.0f}};
  e.reason = finish_reason::length;
  e.error = error_code::bad_plan;
  e.message = invalid_utf8;
  return e;
}

request sample_request() {
  request r;
  r.id = "req-" + invalid_utf8;
  r.prompt = "raw prompt";
  r.prompt_token_ids = {1, 2};
  r.messages = {{"system", "be brief"}, {"user", invalid_utf8}};
  r.params = unusual_params();
  r.priority = -3;
  r.stop = {"\n\n", "\xff"};
  r.timeout_ms = 1234;
  r.logprobs = true;
  r.echo = true;
  r.include_usage = true;
  return r;
}

}  // namespace

TEST_CASE_FIXTURE(serialization_fixture, "messages: every type in the type ID block round-trips through CAF serialization") {
  auto listener = caf::actor_cast<event_listener>(sys.spawn([](caf::event_based_actor*) -> caf::behavior {
    return {[](atoms::event_atom, const request_event_message&) {}};
  }));
  auto owner = caf::actor_cast<request_actor>(listener);

  check(sample_step_request());
  check(sample_step_result());
  check(sample_sequence_event());
  check(sample_request());

  pending_sequence p{sequence_request{3, {1, 2, 3}, unusual_params(), 7}, owner};
  p.request.prefix_key = 0xfedcba9876543210ULL;
  check(p);
  check(pending_batch{{p, pending_sequence{sequence_request{4, {5}, sampling_params{}, 0}, owner}}});

  delta_event delta;
  delta.text = invalid_utf8;
  delta.token_ids = {5, 6};
  delta.logprobs = {{{5, "\xe2\x82", -inf}, {{5, "\xe2\x82", -inf}, {6, "x", -0.5f}}}, {}};
  done_event done;
  done.reason = request_finish_reason::stop;
  done.stop_string = "\xff stop";
  done.usage = {10, 3, 8};
  done.timings = {0.5, 12.25, 3.0, std::numeric_limits<double>::infinity()};
  done_event done_on_token;
  done_on_token.stop_token = 2;
  // Every alternative of request_event, and both states of each optional.
  check(request_event_message{"a", accepted_event{"a"}});
  check(request_event_message{"b", delta});
  check(request_event_message{"c", done});
  check(request_event_message{"d", done_on_token});
  check(request_event_message{"e", error_event{request_error_code::out_of_memory, invalid_utf8}});

  scheduler_snapshot snap;
  snap.scheduling = {3, 4, 1, 2, 100, 5000, 204800, 60};
  snap.blocks = {64, 10, 5, 49, 8, 1, 1000, 250, 3, 160, 12};
  snap.step_busy_seconds = 12.5;
  snap.step_overhead_seconds = -0.0;
  snap.num_step_sequences = 700;
  snap.num_prefill_tokens = 4000;
  snap.max_num_seqs = 64;
  snap.max_num_batched_tokens = 2048;
  snap.cached_prefix_keys = {1, 0x8000000000000000ULL, ~0ULL};
  check(snap);

  // Handles: a deserialized handle is the same actor.
  check(owner);
  check(listener);
  check(caf::actor_cast<engine_actor>(listener));
  check(caf::actor_cast<batcher_actor>(listener));
  check(caf::actor_cast<scheduler_actor>(listener));
  check(caf::actor_cast<worker_actor>(listener));
  check(caf::actor_cast<fan_out_actor>(listener));

  notice_batch notices;
  notices.notices.push_back({owner, request_notice::kind::token, sample_sequence_event(), 0});
  request_notice started{owner, request_notice::kind::started, {}, -1};
  started.event.seq_id = 9;
  notices.notices.push_back(started);
  notices.notices.push_back({owner, request_notice::kind::preempted, {}, 0});
  check(notices);

  // Every type of the block was checked: a new message type must get a sample here too.
  const size_t num_types_in_block = caf::id_block::troupe::end - caf::id_block::troupe::begin;
  CHECK(types_checked.size() == num_types_in_block);
  caf::anon_send_exit(listener, caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(serialization_fixture, "messages: NaN, infinities, -0 and denormals keep their exact bits") {
  const float specials[] = {nan_value, -nan_value, inf, -inf, -0.0f, std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::max(), 1e-40f};
  for (float v : specials) {
    sequence_event e;
    e.logprob = v;
    CHECK(same_bits(round_trip(e).logprob, v));
    step_result r;
    r.outputs.push_back(sequence_output{1, 2, v, {{3, v}}, {v, v}});
    const auto back = round_trip(r).outputs.at(0);
    CHECK(same_bits(back.logprob, v));
    CHECK(same_bits(back.top_logprobs.at(0).logprob, v));
    CHECK(same_bits(back.logits.at(1), v));
  }
}

TEST_CASE_FIXTURE(serialization_fixture, "messages: a corrupted variant index is an error, not a crash") {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  request_event_message m{"x", accepted_event{"x"}};
  REQUIRE_FALSE(sink(m));
  // The layout is: request id (length + bytes), then the one-byte variant index.
  const size_t index_at = buf.size() - (1 + 1 + 1);  // index, then the accepted id "x" (length 1 + 'x')
  REQUIRE(buf[index_at] == 0);
  buf[index_at] = 9;
  request_event_message out;
  caf::binary_deserializer source{sys, buf};
  CHECK(static_cast<bool>(source(out)));
}

TEST_CASE_FIXTURE(serialization_fixture, "messages: troupe's error codes render by name with their message") {
  const auto e = to_caf_error(error_code::context_overflow, std::string("prompt too long"));
  CHECK(sys.render(e) == "troupe: context_overflow (prompt too long)");
  const auto r = to_caf_error(request_error_code::queue_full, std::string("1024 waiting"));
  CHECK(sys.render(r) == "request: queue_full (1024 waiting)");
  const auto v = error_value_of(e, sys);
  CHECK(v.code == error_code::context_overflow);
  CHECK(v.message == "prompt too long");
  const auto ev = error_event_of(e, sys);
  CHECK(ev.code == request_error_code::context_overflow);
  CHECK(error_event_of(r, sys).code == request_error_code::queue_full);
  CHECK(error_event_of(caf::make_error(caf::sec::request_receiver_down), sys).code == request_error_code::unavailable);
}

TEST_CASE_FIXTURE(serialization_fixture, "messages: the first code of each enum is an error too, also after the wire") {
  // CAF 0.17 takes code 0 for "no error": the first enumerators must not vanish.
  const auto e = to_caf_error(error_code::invalid_argument, std::string("bad block id"));
  REQUIRE(static_cast<bool>(e));
  CHECK(error_value_of(e, sys).code == error_code::invalid_argument);
  CHECK(sys.render(e) == "troupe: invalid_argument (bad block id)");
  const auto r = to_caf_error(request_error_code::invalid_request, std::string("already queued"));
  REQUIRE(static_cast<bool>(r));
  CHECK(error_event_of(r, sys).code == request_error_code::invalid_request);
  CHECK(error_event_of(r, sys).message == "already queued");
  // Through CAF's binary serializer, as between processes.
  const auto back = round_trip(r);
  REQUIRE(static_cast<bool>(back));
  CHECK(error_event_of(back, sys).code == request_error_code::invalid_request);
  CHECK(error_event_of(back, sys).message == "already queued");
}
