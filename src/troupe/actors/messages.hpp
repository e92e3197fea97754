// Every atom and message type the actors exchange, each type with an `inspect` overload so
// that any message can be serialized: by CAF's middleman to another process, or by a test.
// Inside one process a message is moved into the receiver's mailbox and read in place (no
// deep copy). The typed interfaces are in each actor's header; the type ID block that
// names all of these types for CAF is actors/type_ids.hpp.
#pragma once
#include <caf/all.hpp>

#include <bit>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/kv_space.hpp"
#include "troupe/engine/request.hpp"
#include "troupe/engine/request_events.hpp"
#include "troupe/engine/scheduler_policy.hpp"
#include "troupe/engine/step_plan.hpp"
#include "troupe/model/backend.hpp"
#include "troupe/model/error.hpp"


namespace troupe::atoms {

// CAF 0.17 atoms are constants (at most 10 characters); they serialize as atom values.
using step_atom = caf::atom_constant<caf::atom("step")>;          // scheduler -> worker
using enqueue_atom = caf::atom_constant<caf::atom("enqueue")>;    // request -> batcher
using admitted_atom = caf::atom_constant<caf::atom("admitted")>;  // batcher's answer to enqueue
using dequeued_atom = caf::atom_constant<caf::atom("dequeued")>;  // request -> batcher
using batch_atom = caf::atom_constant<caf::atom("batch")>;        // batcher -> scheduler
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;      // client -> request -> batcher
using abort_atom = caf::atom_constant<caf::atom("abort")>;        // batcher -> scheduler
using started_atom = caf::atom_constant<caf::atom("started")>;    // scheduler -> request
using preempt_atom = caf::atom_constant<caf::atom("preempted")>;  // scheduler -> request
using token_atom = caf::atom_constant<caf::atom("token")>;        // scheduler -> request
using tick_atom = caf::atom_constant<caf::atom("tick")>;          // the batcher's timer
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;  // a request's own timer
using stats_atom = caf::atom_constant<caf::atom("stats")>;        // -> scheduler, engine actor
using submit_atom = caf::atom_constant<caf::atom("submit")>;      // application -> engine actor
using event_atom = caf::atom_constant<caf::atom("event")>;        // engine -> application listener
using done_ack_atom = caf::atom_constant<caf::atom("ended")>;     // sink adapter -> engine actor
using step_timer_atom = caf::atom_constant<caf::atom("steptimer")>;  // the scheduler's watchdog timer

}  // namespace troupe::atoms

namespace troupe {

// One step for the worker: the KV operations to apply first, then the plan (what changed
// since each sequence's last step: step_plan.hpp).
struct step_request {
  kv_operations ops;
  step_delta plan;
  bool operator==(const step_request&) const = default;
};

// A request's events as one message, for applications that talk to the engine actor.
struct request_event_message {
  std::string request_id;
  request_event event;
  bool operator==(const request_event_message&) const = default;
};

// What the scheduler reports when asked (stats_atom).
struct scheduler_snapshot {
  scheduler_stats scheduling;
  block_manager_stats blocks;
  double step_busy_seconds = 0;      // wall time the worker spent in steps
  double step_overhead_seconds = 0;  // scheduler-side time around them (plan + fan-out)
  // Running totals over the steps that came back (a replica's step series on the router's
  // /metrics, which cannot rebuild the step histograms from a snapshot).
  int64_t num_step_sequences = 0;    // sequences per step, summed
  int64_t num_prefill_tokens = 0;    // prompt (or recompute) tokens fed
  // The scheduler's limits.
  int32_t max_num_seqs = 0;
  int32_t max_num_batched_tokens = 0;
  // The prefix digest (engine/prefix_digest.hpp): prefix keys of recent requests whose
  // prompt's first KV block is still cached here, sorted ascending, at most 4,096.
  std::vector<uint64_t> cached_prefix_keys;
  bool operator==(const scheduler_snapshot&) const = default;
};

// Milliseconds on the actor system's clock: the time every policy is given. Under CAF's
// deterministic test scheduler this is the simulated time, so timers and policies agree.
inline int64_t now_ms(const caf::local_actor* self) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now().time_since_epoch()).count();
}

// Errors as values: a troupe::error_code or a request_error_code travels as a caf::error of
// category "troupe" or "request" with the message as its context, so a worker's failure
// reaches the client with its real code. CAF 0.17 takes an error whose code is 0 for no
// error at all, and both enums start at 0: the code crosses as the enumerator + 1 (so these
// two, not caf::make_error, build troupe's errors).
caf::error to_caf_error(error_code code, std::string message);
caf::error to_caf_error(request_error_code code, std::string message);

// The code and message of an error that came back from another actor: troupe's own
// categories keep their code; anything else (a dead receiver, a timeout) is internal.
struct error_value {
  error_code code = error_code::internal;
  std::string message;
};
error_value error_value_of(const caf::error& err, const caf::actor_system& sys);
// The request_error_code a client sees for an error that came back from another actor.
error_event error_event_of(const caf::error& err, const caf::actor_system& sys);

}  // namespace troupe

// -- inspection --------------------------------------------------------------------------

namespace troupe::wire {

// CAF 0.17.6's binary serializer (pack754) loops forever on +inf and turns NaN into 1, and
// logprobs of -inf are common: floats and doubles cross as their raw IEEE-754 bits.
struct float_bits {
  float& value;
};
struct double_bits {
  double& value;
};
struct floats_bits {
  std::vector<float>& values;
};
// std::optional and std::variant, which CAF 0.17 does not know: a flag or an index first.
template <class T>
struct optional_field {
  std::optional<T>& value;
};
template <class... Ts>
struct variant_field {
  std::variant<Ts...>& value;
};
// A list of (int32, float) pairs, such as logit_bias.
struct biases_field {
  std::vector<std::pair<int32_t, float>>& values;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, float_bits& x) {
  uint32_t bits = std::bit_cast<uint32_t>(x.value);
  return f(bits, caf::meta::load_callback([&]() -> caf::error {
             x.value = std::bit_cast<float>(bits);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, double_bits& x) {
  uint64_t bits = std::bit_cast<uint64_t>(x.value);
  return f(bits, caf::meta::load_callback([&]() -> caf::error {
             x.value = std::bit_cast<double>(bits);
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, floats_bits& x) {
  std::vector<uint32_t> bits(x.values.size());
  if (!bits.empty()) std::memcpy(bits.data(), x.values.data(), bits.size() * sizeof(float));
  return f(bits, caf::meta::load_callback([&]() -> caf::error {
             x.values.resize(bits.size());
             if (!bits.empty()) std::memcpy(x.values.data(), bits.data(), bits.size() * sizeof(float));
             return caf::none;
           }));
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, biases_field& x) {
  std::vector<int32_t> ids;
  std::vector<float> biases;
  for (const auto& [id, bias] : x.values) {
    ids.push_back(id);
    biases.push_back(bias);
  }
  floats_bits b{biases};
  return f(ids, b, caf::meta::load_callback([&]() -> caf::error {
             if (ids.size() != biases.size()) return caf::make_error(caf::sec::invalid_argument, "logit_bias sizes");
             x.values.clear();
             for (size_t i = 0; i < ids.size(); ++i) x.values.emplace_back(ids[i], biases[i]);
             return caf::none;
           }));
}

template <class Inspector, class T>
typename Inspector::result_type inspect(Inspector& f, optional_field<T>& x) {
  bool has_value = x.value.has_value();
  T value = has_value ? *x.value : T{};
  return f(has_value, value, caf::meta::load_callback([&]() -> caf::error {
             if (has_value) x.value = std::move(value);
             else x.value.reset();
             return caf::none;
           }));
}

template <size_t I, class Inspector, class... Ts>
caf::error load_alternative(Inspector& f, std::variant<Ts...>& v, uint8_t index) {
  if constexpr (I == sizeof...(Ts)) {
    return caf::make_error(caf::sec::invalid_argument, "variant index out of range");
  } else {
    if (index == I) return f(v.template emplace<I>());
    return load_alternative<I + 1>(f, v, index);
  }
}

template <class Inspector, class... Ts>
typename Inspector::result_type inspect(Inspector& f, variant_field<Ts...>& x) {
  uint8_t index = static_cast<uint8_t>(x.value.index());
  if constexpr (Inspector::reads_state) {
    return std::visit([&](auto& alternative) { return f(index, alternative); }, x.value);
  } else {
    if (auto err = f(index)) return err;
    return load_alternative<0>(f, x.value, index);
  }
}

}  // namespace troupe::wire

namespace troupe {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, block_copy& x) {
  return f(caf::meta::type_name("troupe::block_copy"), x.src, x.dst);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_operations& x) {
  return f(caf::meta::type_name("troupe::kv_operations"), x.copies, x.swap_out, x.swap_in);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  wire::float_bits temperature{x.temperature}, top_p{x.top_p}, min_p{x.min_p},
      repetition{x.repetition_penalty}, presence{x.presence_penalty}, frequency{x.frequency_penalty};
  wire::biases_field bias{x.logit_bias};
  return f(caf::meta::type_name("troupe::sampling_params"), temperature, x.top_k, top_p, min_p, repetition, presence,
           frequency, x.penalty_last_n, bias, x.seed, x.num_logprobs, x.max_tokens, x.min_tokens,
           x.stop_token_ids, x.ignore_eos);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sequence_step& x) {
  return f(caf::meta::type_name("troupe::sequence_step"), x.seq_id, x.tokens, x.start_pos, x.block_table,
           x.wants_sample, x.wants_all_logits, x.params, x.penalty_tokens, x.num_prompt_penalty_tokens,
           x.sample_index, x.num_draft_tokens);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch_plan& x) {
  return f(caf::meta::type_name("troupe::batch_plan"), x.sequences);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, decode_next& x) {
  return f(caf::meta::type_name("troupe::decode_next"), x.seq_id, x.start_pos, x.new_block);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_delta& x) {
  return f(caf::meta::type_name("troupe::step_delta"), x.forget, x.full, x.next, x.is_planned_ahead);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_request& x) {
  return f(caf::meta::type_name("troupe::step_request"), x.ops, x.plan);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_logprob& x) {
  wire::float_bits logprob{x.logprob};
  return f(caf::meta::type_name("troupe::token_logprob"), x.token, logprob);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampled_token_info& x) {
  wire::float_bits logprob{x.logprob};
  return f(caf::meta::type_name("troupe::sampled_token_info"), x.token, logprob, x.top_logprobs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sequence_output& x) {
  wire::float_bits logprob{x.logprob};
  wire::floats_bits logits{x.logits};
  return f(caf::meta::type_name("troupe::sequence_output"), x.seq_id, x.token, logprob, x.top_logprobs, logits,
           x.accepted, x.num_drafted);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_result& x) {
  return f(caf::meta::type_name("troupe::step_result"), x.outputs);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sequence_request& x) {
  wire::optional_field<speculative_method> speculative{x.speculative};
  wire::float_bits length_penalty{x.beam.length_penalty};
  return f(caf::meta::type_name("troupe::sequence_request"), x.id, x.prompt_tokens, x.params, x.priority,
           speculative, x.fork_ids, x.beam.width, length_penalty, x.beam.early_stopping, x.prefix_key);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, beam_hypothesis& x) {
  wire::floats_bits logprobs{x.logprobs};
  wire::double_bits cumulative_logprob{x.cumulative_logprob}, score{x.score};
  return f(caf::meta::type_name("troupe::beam_hypothesis"), x.tokens, logprobs, cumulative_logprob, score, x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sequence_event& x) {
  wire::float_bits logprob{x.logprob};
  return f(caf::meta::type_name("troupe::sequence_event"), x.seq_id, x.state, x.token, logprob, x.top_logprobs,
           x.reason, x.error, x.message, x.num_proposed, x.num_accepted, x.beams);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_call& x) {
  return f(caf::meta::type_name("troupe::tool_call"), x.id, x.name, x.arguments);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_definition& x) {
  return f(caf::meta::type_name("troupe::tool_definition"), x.name, x.description, x.parameters);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_choice& x) {
  return f(caf::meta::type_name("troupe::tool_choice"), x.mode, x.name);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_message& x) {
  return f(caf::meta::type_name("troupe::chat_message"), x.role, x.content, x.tool_calls, x.tool_call_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, grammar_spec& x) {
  return f(caf::meta::type_name("troupe::grammar_spec"), x.kind, x.text, x.choices, x.max_whitespace_bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, request& x) {
  wire::optional_field<speculative_method> speculative{x.speculative};
  wire::optional_field<grammar_spec> guided{x.guided};
  wire::float_bits length_penalty{x.length_penalty};
  return f(caf::meta::type_name("troupe::request"), x.id, x.prompt, x.prompt_token_ids, x.messages, x.params,
           x.priority, x.stop, x.timeout_ms, x.logprobs, x.echo, x.include_usage, speculative, x.n, x.best_of,
           x.beam_width, length_penalty, x.early_stopping, guided, x.guided_field, x.tools, x.tool_use);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, logprob_entry& x) {
  wire::float_bits logprob{x.logprob};
  return f(caf::meta::type_name("troupe::logprob_entry"), x.token, x.text, logprob);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_logprobs& x) {
  return f(caf::meta::type_name("troupe::token_logprobs"), x.sampled, x.top);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, accepted_event& x) {
  return f(caf::meta::type_name("troupe::accepted_event"), x.request_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, delta_event& x) {
  return f(caf::meta::type_name("troupe::delta_event"), x.text, x.token_ids, x.logprobs, x.index);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, request_usage& x) {
  return f(caf::meta::type_name("troupe::request_usage"), x.prompt_tokens, x.completion_tokens,
           x.cached_prompt_tokens);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, request_timings& x) {
  wire::double_bits queue{x.queue_ms}, first{x.time_to_first_token_ms}, per_token{x.per_output_token_ms},
      total{x.total_ms};
  return f(caf::meta::type_name("troupe::request_timings"), queue, first, per_token, total, x.num_draft_tokens,
           x.num_accepted_tokens);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, choice_done_event& x) {
  wire::optional_field<std::string> stop_string{x.stop_string};
  wire::optional_field<int32_t> stop_token{x.stop_token};
  wire::double_bits cumulative_logprob{x.cumulative_logprob};
  return f(caf::meta::type_name("troupe::choice_done_event"), x.index, x.reason, stop_string, stop_token,
           x.completion_tokens, cumulative_logprob);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, done_event& x) {
  wire::optional_field<std::string> stop_string{x.stop_string};
  wire::optional_field<int32_t> stop_token{x.stop_token};
  return f(caf::meta::type_name("troupe::done_event"), x.reason, stop_string, stop_token, x.usage, x.timings,
           x.choices);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, error_event& x) {
  return f(caf::meta::type_name("troupe::error_event"), x.code, x.message);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, request_event_message& x) {
  wire::variant_field<accepted_event, delta_event, done_event, error_event, choice_done_event> event{x.event};
  return f(caf::meta::type_name("troupe::request_event_message"), x.request_id, event);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scheduler_stats& x) {
  return f(caf::meta::type_name("troupe::scheduler_stats"), x.num_running, x.num_waiting, x.num_swapped,
           x.num_preemptions, x.num_steps, x.num_scheduled_tokens, x.num_budget_tokens, x.num_steps_ahead,
           x.num_steady_tokens, x.num_speculative_steps, x.num_draft_tokens, x.num_accepted_tokens,
           x.num_emitted_tokens, x.num_drafts_at_position, x.num_accepted_at_position);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, block_manager_stats& x) {
  return f(caf::meta::type_name("troupe::block_manager_stats"), x.num_total_blocks, x.num_used_blocks,
           x.num_cached_blocks, x.num_free_blocks, x.num_total_swap_blocks, x.num_used_swap_blocks,
           x.num_prefix_query_tokens, x.num_prefix_hit_tokens, x.num_evicted_blocks, x.num_reserved_slots,
           x.num_unused_slots);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scheduler_snapshot& x) {
  wire::double_bits busy{x.step_busy_seconds}, overhead{x.step_overhead_seconds};
  return f(caf::meta::type_name("troupe::scheduler_snapshot"), x.scheduling, x.blocks, busy, overhead,
           x.num_step_sequences, x.num_prefill_tokens, x.max_num_seqs, x.max_num_batched_tokens,
           x.cached_prefix_keys);
}

}  // namespace troupe
