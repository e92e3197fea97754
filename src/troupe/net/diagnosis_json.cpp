// diagnosis_json: the findings first (what a reader wants), then the window's figures.
#include "troupe/net/diagnosis_json.hpp"

#include "troupe/net/json_writer.hpp"

namespace troupe::net {

namespace {

// -1 marks a figure the window could not give.
void figure(json_writer& w, const char* name, double value) {
  w.key(name);
  if (value < 0) w.null();
  else w.value(value);
}

void write_window(json_writer& w, const replica_window& r) {
  w.begin_object().key("replica").value(r.replica);
  w.key("duration_s").value(r.duration_seconds).key("num_snapshots").value(r.num_snapshots);
  w.key("num_finished").value(r.num_finished).key("requests_per_s").value(r.requests_per_second);
  w.key("generation_tokens_per_s").value(r.generation_tokens_per_second);
  figure(w, "mean_queue_s", r.mean_queue_seconds);
  figure(w, "mean_e2e_s", r.mean_e2e_seconds);
  figure(w, "queue_share", r.queue_share);
  w.key("num_steps").value(r.num_steps);
  figure(w, "mean_step_s", r.mean_step_seconds);
  w.key("busy_ratio").value(r.busy_ratio);
  figure(w, "batch_fill", r.batch_fill);
  figure(w, "mean_batch_sequences", r.mean_batch_sequences);
  figure(w, "mean_batch_tokens", r.mean_batch_tokens);
  figure(w, "prefill_share", r.prefill_share);
  figure(w, "mean_prompt_tokens", r.mean_prompt_tokens);
  w.key("num_prefix_query_tokens").value(r.num_prefix_query_tokens);
  figure(w, "prefix_hit_ratio", r.prefix_hit_ratio);
  w.key("num_preemptions").value(r.num_preemptions);
  w.key("mean_running").value(r.mean_running).key("max_running").value(r.max_running);
  w.key("mean_waiting").value(r.mean_waiting).key("max_waiting").value(r.max_waiting);
  w.key("mean_kv_usage").value(r.mean_kv_usage).key("max_kv_usage").value(r.max_kv_usage);
  figure(w, "max_num_seqs", r.max_num_seqs);
  figure(w, "max_num_batched_tokens", r.max_num_batched_tokens);
  w.end_object();
}

}  // namespace

std::string diagnosis_json(const diagnosis& d) {
  json_writer w;
  w.begin_object();
  w.key("limiting_factor").value(to_string(d.limiting_factor));
  w.key("summary").value(d.summary);
  w.key("window_s").value(d.window_seconds).key("num_snapshots").value(d.num_snapshots);
  w.key("findings").begin_array();
  for (const auto& f : d.findings) {
    w.begin_object().key("kind").value(to_string(f.kind));
    w.key("replica");
    if (f.replica.empty()) w.null();
    else w.value(f.replica);
    w.key("confidence").value(f.confidence).key("knob").value(to_string(f.knob_to_turn));
    w.key("advice").value(f.advice).key("evidence").begin_array();
    for (const auto& e : f.evidence) {
      w.begin_object().key("name").value(e.name).key("value").value(e.value);
      w.key("op").value(e.op).key("threshold").value(e.threshold).end_object();
    }
    w.end_array().end_object();
  }
  w.end_array();
  w.key("replicas").begin_array();
  for (const auto& r : d.replicas) write_window(w, r);
  w.end_array();
  w.end_object();
  return w.take();
}

}  // namespace troupe::net
