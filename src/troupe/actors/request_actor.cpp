#include "troupe/actors/request_actor.hpp"

#include <atomic>
#include <chrono>
#include <optional>

#include "troupe/actors/request_links.hpp"
#include "troupe/engine/prefix_key.hpp"
#include "troupe/engine/request_choices.hpp"
#include "troupe/engine/tool_calls.hpp"
#include "troupe/engine/trace.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

namespace {

struct request_actor_state {
  std::shared_ptr<const model_bundle> model;
  std::optional<request> req;
  std::unique_ptr<request_choices> choices;
  event_sink_ptr sink;
  uint64_t seq_id = 0;  // choice i runs as sequence seq_id + i
  request_actor_links links;
  bool is_done = false;
  // Shared with the exit guard below, which outlives this state.
  std::shared_ptr<std::atomic<bool>> has_ended = std::make_shared<std::atomic<bool>>(false);
  bool is_waiting = false;  // admitted and not yet started: the batcher counts it
  std::optional<std::chrono::steady_clock::time_point> last_token_at;  // for the inter-token gaps
  static inline const char* name = "troupe.request";
};

using request_self = request_actor::stateful_pointer<request_actor_state>;

void emit(request_self self, const request_event& e) { self->state.sink->on_event(self->state.req->id, e); }

void emit_all(request_self self, const std::vector<request_event>& events) {
  for (const auto& e : events) emit(self, e);
}

// The choice a sequence id belongs to, or -1 for an id that is not this request's.
int32_t choice_of(request_self self, uint64_t seq_id) {
  auto& st = self->state;
  if (!st.choices || seq_id < st.seq_id || seq_id - st.seq_id >= static_cast<uint64_t>(st.choices->size())) return -1;
  return static_cast<int32_t>(seq_id - st.seq_id);
}

// The batcher counts waiting sequences for its queue cap: tell it once this one stops waiting.
void leave_queue(request_self self) {
  auto& st = self->state;
  if (!st.is_waiting) return;
  st.is_waiting = false;
  self->send(st.links.batcher, atoms::dequeued_atom::value, st.seq_id);
}

void end(request_self self) {
  self->state.has_ended->store(true);
  leave_queue(self);
  self->demonitor(self->state.links.scheduler_watcher.address());
  self->quit();
}

// Stops choice i's sequence wherever it is (batcher or scheduler).
void cancel_sequence(request_self self, int32_t i) {
  auto& st = self->state;
  self->send(st.links.batcher, atoms::cancel_atom::value, st.seq_id + static_cast<uint64_t>(i));
}

void fail(request_self self, request_error_code code, const std::string& message) {
  auto& st = self->state;
  if (st.is_done) return;
  st.is_done = true;
  if (st.choices) {
    // The other choices' sequences stop with the request (the failed one is gone already).
    for (int32_t i = 0; i < st.choices->size(); ++i) {
      if (st.choices->is_finished(i)) continue;
      if (st.choices->size() > 1) cancel_sequence(self, i);
      if (!st.choices->state(i).is_finished()) st.choices->state(i).transition_to(request_status::failed, now_ms(self));
    }
  }
  emit(self, error_event{code, message});
  end(self);
}

// Ends choice i with a choice_done (and the request with its done after the last one).
void finish_choice(request_self self, int32_t i, request_finish_reason reason) {
  auto& st = self->state;
  if (st.is_done) return;
  emit_all(self, st.choices->finish(i, reason, now_ms(self)));
  if (st.choices->is_done()) {
    st.is_done = true;
    end(self);
  }
}

// Stops every choice still running (cancel, deadline) and ends the request.
void stop_early(request_self self, request_finish_reason reason) {
  auto& st = self->state;
  st.is_waiting = false;  // the cancel takes it off the batcher's count too
  for (int32_t i = 0; i < st.choices->size() && !st.is_done; ++i) {
    if (st.choices->is_finished(i)) continue;
    cancel_sequence(self, i);
    finish_choice(self, i, reason);
  }
}

void mark_running(request_self self) {
  leave_queue(self);
  self->state.choices->transition_all(request_status::running, now_ms(self));
}

// A beam search's end: its best hypotheses become the choices, in order, all at once.
void on_beams(request_self self, const std::vector<beam_hypothesis>& beams) {
  auto& st = self->state;
  leave_queue(self);
  for (int32_t i = 0; i < st.choices->size() && !st.is_done; ++i) {
    if (st.choices->is_finished(i)) continue;
    auto reason = request_finish_reason::stop;
    if (static_cast<size_t>(i) < beams.size()) {
      const beam_hypothesis& h = beams[static_cast<size_t>(i)];
      for (size_t k = 0; k < h.tokens.size(); ++k) {
        const float logprob = k < h.logprobs.size() ? h.logprobs[k] : 0.0f;
        auto r = st.choices->on_token(i, sampled_token{h.tokens[k], logprob, {}}, now_ms(self));
        emit_all(self, r.events);
      }
      if (h.reason == finish_reason::length) reason = request_finish_reason::length;
    }
    finish_choice(self, i, reason);
  }
}

void on_token(request_self self, const sequence_event& e) {
  auto& st = self->state;
  if (st.is_done) return;
  if (e.state == sequence_state::failed) return fail(self, request_code_of(e.error), e.message);
  if (!e.beams.empty()) return on_beams(self, e.beams);
  const int32_t i = choice_of(self, e.seq_id);
  if (i < 0 || st.choices->is_finished(i)) return;
  leave_queue(self);
  auto& choice = st.choices->state(i);
  if (choice.status() == request_status::preempted || choice.status() == request_status::queued) {
    choice.transition_to(request_status::running, now_ms(self));
  }
  if (st.links.metrics) {
    const auto now = std::chrono::steady_clock::now();
    if (st.last_token_at) {
      st.links.metrics->on_inter_token(std::chrono::duration<double>(now - *st.last_token_at).count());
    }
    st.last_token_at = now;
  }
  if (e.num_proposed > 0) choice.on_speculation(e.num_proposed, e.num_accepted);
  auto r = st.choices->on_token(i, sampled_token{e.token, e.logprob, e.top_logprobs}, now_ms(self));
  emit_all(self, r.events);
  if (e.state == sequence_state::finished) {
    return finish_choice(self, i,
                         e.reason == finish_reason::length ? request_finish_reason::length : request_finish_reason::stop);
  }
  if (r.finish) {
    cancel_sequence(self, i);
    finish_choice(self, i, *r.finish);
  }
}

// The request's grammar, compiled (or found in the model's cache); what the grammar
// refuses is the client's mistake, named by the field it came in.
std::shared_ptr<const grammar_masks> compile_guided(const request& r, const model_bundle& m) {
  try {
    return m.grammar(*r.guided);
  } catch (const error& e) {
    throw error(e.code(), (r.guided_field.empty() ? std::string("response_format") : r.guided_field) + ": " + e.what());
  }
}

// Tokenizes and asks the batcher for admission; `accepted` goes out only once admitted.
void start(request_self self) {
  auto& st = self->state;
  const auto& m = *st.model;
  st.req->validate(m.config.vocab_size, m.max_model_len);
  st.choices = std::make_unique<request_choices>(*st.req, m.tok, m.max_model_len, now_ms(self));
  auto tokens = prompt_tokens(*st.req, m.tok, m.tmpl, m.max_model_len);
  // Refused here, before admission, rather than by the scheduler after `accepted`.
  if (static_cast<int64_t>(tokens.size()) > st.links.kv_pool_tokens) {
    throw error(error_code::context_overflow, "the prompt has " + std::to_string(tokens.size()) +
                                                  " tokens, but the whole KV cache holds " +
                                                  std::to_string(st.links.kv_pool_tokens) +
                                                  " (a larger --kv-cache-bytes makes room)");
  }
  st.choices->set_num_prompt_tokens(static_cast<int32_t>(tokens.size()));
  sampling_params params = st.req->params;
  if (st.req->guided) {
    params.grammar = compile_guided(*st.req, m);
  } else if (constrains_tool_call(*st.req)) {
    request call = *st.req;  // the call's grammar, compiled like a guided_json schema
    call.guided = grammar_spec{grammar_kind::json_schema, tool_call_schema(*st.req), {}};
    call.guided_field = "tools";
    params.grammar = compile_guided(call, m);
  }
  sequence_request sequences{st.seq_id, std::move(tokens), std::move(params), st.req->priority, st.req->speculative,
                             {}, {}};
  // Parallel choices fork from the shared prefill; a beam search takes w ids for its beams.
  const auto& r = *st.req;
  const int32_t num_ids = r.beam_width > 0 ? r.beam_width : st.choices->size();
  for (int32_t i = 1; i < num_ids; ++i) sequences.fork_ids.push_back(st.seq_id + static_cast<uint64_t>(i));
  sequences.beam = {r.beam_width, r.length_penalty, r.early_stopping};
  sequences.prefix_key = prefix_key(r);
  pending_sequence pending{std::move(sequences), self};
  self->request(st.links.batcher, caf::infinite, atoms::enqueue_atom::value, std::move(pending))
      .then(
          [=](atoms::admitted_atom) {
            auto& st = self->state;
            if (st.is_done) return;
            st.is_waiting = true;
            st.choices->transition_all(request_status::queued, now_ms(self));
            emit(self, accepted_event{st.req->id});
          },
          [=](caf::error& err) {
            const auto e = error_event_of(err, self->system());
            fail(self, e.code, e.message);
          });
  if (const auto deadline = st.choices->state(0).deadline_ms()) {
    self->delayed_send(self, std::chrono::milliseconds(std::max<int64_t>(0, *deadline - now_ms(self))),
                       atoms::deadline_atom::value);
  }
}

request_actor::behavior_type request_actor_impl(request_self self, std::shared_ptr<const model_bundle> model,
                                                request req, event_sink_ptr sink, uint64_t seq_id,
                                                request_actor_links links) {
  auto& st = self->state;
  st.model = std::move(model);
  st.req = std::move(req);
  st.sink = std::move(sink);
  st.seq_id = seq_id;
  st.links = std::move(links);
  // The engine stopping (its scheduler gone) ends a request still in flight. If the actor
  // itself goes first (nothing refers to it any more once the batcher holding it stopped),
  // the guard tells the sink, so no request ends without an event.
  self->attach_functor([sink = st.sink, id = st.req->id, has_ended = st.has_ended](const caf::error&) {
    if (!has_ended->exchange(true)) {
      sink->on_event(id, error_event{request_error_code::unavailable, "the engine stopped before this request finished"});
    }
  });
  self->monitor(st.links.scheduler_watcher);
  self->set_down_handler([=](caf::down_msg&) {
    self->state.is_waiting = false;
    fail(self, request_error_code::unavailable, "the engine stopped before this request finished");
  });
  try {
    start(self);
  } catch (const error& e) {
    fail(self, to_error_event(e).code, e.what());
  }
  return {
      [=](atoms::cancel_atom) {
        if (self->state.is_done) return;
        stop_early(self, request_finish_reason::cancelled);
      },
      [=](atoms::deadline_atom) {
        if (self->state.is_done) return;
        stop_early(self, request_finish_reason::timeout);
      },
      [=](atoms::started_atom, uint64_t seq_id, int32_t num_cached) {
        auto& st = self->state;
        if (st.is_done) return;
        if (num_cached < 0) {  // one sequence resumed after a preemption
          leave_queue(self);
          const int32_t i = choice_of(self, seq_id);
          if (i >= 0 && st.choices->state(i).status() == request_status::preempted) {
            st.choices->state(i).transition_to(request_status::running, now_ms(self));
          }
          return;
        }
        // The first start: the group's shared prefill, so every choice runs from here.
        st.choices->set_num_cached_prompt_tokens(num_cached);
        mark_running(self);
      },
      [=](atoms::preempt_atom, uint64_t seq_id) {
        auto& st = self->state;
        if (st.is_done) return;
        const int32_t i = choice_of(self, seq_id);
        if (i < 0 || st.choices->state(i).status() != request_status::running) return;
        st.choices->state(i).transition_to(request_status::preempted, now_ms(self));
      },
      [=](atoms::token_atom, const sequence_event& e) {
        trace::scoped_span traced(trace::lane::request);
        on_token(self, e);
      },
  };
}

}  // namespace

request_actor spawn_request_actor(caf::actor_system& sys, std::shared_ptr<const model_bundle> model, request req,
                                  event_sink_ptr sink, uint64_t seq_id, const request_actor_links& links) {
  return sys.spawn(request_actor_impl, std::move(model), std::move(req), std::move(sink), seq_id, links);
}

}  // namespace troupe
